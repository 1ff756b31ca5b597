"""Creation on a real libvirtd with QEMU: real VMs come up (or paused),
a domain the daemon refuses fails cleanly, and a destroy at every step of
the flow leaves no domain and no QEMU process behind."""

import pytest

from conftest import DestroyAt, new_id, our_domains
from realdaemon import WAIT, real_params


def test_create_up_and_paused(make_real_api, daemon):
    api = make_real_api()
    up, paused = new_id(), new_id()
    jobs = [api.VM.create(up, real_params(up))["jobId"],
            api.VM.create(paused, real_params(paused, launchPaused=True))[
                "jobId"]]
    for job_id in jobs:
        assert api.jobs.get(job_id).wait(WAIT)
    assert api.VM.getStats(up)["status"] == "Up"
    assert api.VM.getStats(paused)["status"] == "Paused"
    assert api.hv.state(up) == "running"
    assert api.hv.state(paused) == "paused"
    assert len(daemon.qemu_pids()) == 2
    for vm_id in (up, paused):
        assert api.VM.destroy(vm_id) is True
    assert our_domains(api.hv) == []
    assert daemon.qemu_pids() == []


def test_domain_refused_by_the_daemon(make_real_api, daemon):
    api = make_real_api()
    vm_id = new_id()
    xml = (f"<domain type='qemu'><name>bad-emulator</name>"
           f"<uuid>{vm_id}</uuid><memory unit='MiB'>48</memory>"
           "<os><type arch='x86_64'>hvm</type></os><devices>"
           # (A QEMU of the system by its path, as the policy asks, but
           # one that is not there: libvirt refuses it.)
           "<emulator>/usr/bin/qemu-system-nonexistent</emulator>"
           "</devices></domain>")
    created = api.VM.create(vm_id, {"vmId": vm_id, "xml": xml})
    assert api.jobs.get(created["jobId"]).wait(WAIT)
    info = api.Host.getJobs()[created["jobId"]]
    assert info["status"] == "failed"
    assert info["error"]["code"] == 9
    assert "libvirt error" in info["error"]["message"]
    assert our_domains(api.hv) == []
    assert api.registry.snapshot()[0] == [] and api.Host.getVMList() == []
    assert daemon.qemu_pids() == []


@pytest.mark.parametrize("step", ["prepare", "define", "start", "verify",
                                  "commit"])
def test_destroy_at_every_step(make_real_api, daemon, step):
    hook = DestroyAt(step)
    api = make_real_api(step_hook=hook)
    hook.api = api
    vm_id = new_id()
    created = api.VM.create(vm_id, real_params(vm_id))
    assert api.jobs.get(created["jobId"]).wait(WAIT)
    hook.thread.join(WAIT)
    assert hook.result == [True]
    info = api.Host.getJobs()[created["jobId"]]
    assert (info["status"], info["step"]) == ("aborted", step)
    assert our_domains(api.hv) == []
    assert api.registry.snapshot()[0] == [] and api.Host.getVMList() == []
    assert daemon.qemu_pids() == []


def test_graceful_destroy(make_real_api, daemon):
    """VDSM's VM.destroy(gracefulAttempts): QEMU is asked to terminate
    (libvirt's graceful destroy) before the forced one; none left."""
    api = make_real_api()
    vm_id = new_id()
    assert api.jobs.get(api.VM.create(vm_id, real_params(vm_id))[
        "jobId"]).wait(WAIT)
    assert len(daemon.qemu_pids()) == 1
    assert api.VM.destroy(vm_id, 2) is True
    assert our_domains(api.hv) == []
    assert daemon.qemu_pids() == []


def test_a_daemon_restart_before_the_state_check_still_commits(
        make_real_api, daemon):
    """libvirtd restarted between the start and the state check (the
    guest runs on): the check only reads, so it is made once more on a new
    connection, as every read is, and the VM is committed Up; the lost
    connection is dropped, not lent again."""
    def restart_at_verify(job, step):
        if step == "verify":
            daemon.restart_daemon()

    api = make_real_api(step_hook=restart_at_verify, workers=1)
    vm_id = new_id()
    created = api.VM.create(vm_id, real_params(vm_id))
    assert api.jobs.get(created["jobId"]).wait(WAIT)
    info = api.Host.getJobs()[created["jobId"]]
    assert info["status"] == "done", info
    assert api.VM.getStats(vm_id)["status"] == "Up"
    # The lost connection was dropped, not given back: the next one lent
    # works the first time (a call that changes something is never made
    # twice, so a dead one lent would fail it).
    with api.hv.connection() as conn:
        assert conn.getLibVersion() > 0
    assert api.VM.destroy(vm_id) is True
    assert daemon.qemu_pids() == []
