"""Never lose or leak a guest, on real daemons (issue 11): a VM paused on
the source is committed Paused as soon as it arrives; a migration job
aborted while queued, and one stopped by SIGTERM, leave no domain on the
destination and the guest running on the source; libvirtd restarted at
each step of a create and of a hibernate leaves the invariants whole."""

import contextlib
import os
import signal
import threading
import time

import libvirt
import pytest

from conftest import StepGate, new_id, our_domains
from invariants import check_invariants, digest
from realdaemon import WAIT, qemu_pid, real_params, wait_left
from serve import ServeProcess, rpc, wait_job_info
from test_real_migration import Migration, finished, incoming, source_vms
from vmjobs.hypervisor import Hypervisor

libvirt.registerErrorHandler(lambda ctx, err: None, None)


class Arrivals:
    """When B's lifecycle events of one domain came (time.time()), by
    event: 0 DEFINED, 2 STARTED, 3 SUSPENDED, 4 RESUMED, 5 STOPPED."""

    def __init__(self, hv, vm_id):
        self._hv, self._vm_id = hv, vm_id
        self._lock = threading.Lock()   # guards times
        self.times = {}
        self.seen = {event: threading.Event() for event in range(10)}
        self._token = hv.subscribe(vm_id, self._on_event)

    def _on_event(self, event, detail):
        with self._lock:
            self.times.setdefault(event, time.time())
        if event in self.seen:
            self.seen[event].set()

    def close(self):
        self._hv.unsubscribe(self._vm_id, self._token)


def source_vm(make_real_api, daemon, **extra):
    """(A's API, vm_id, migratable XML) of one VM Up (or Paused) on A."""
    api_a = make_real_api(sandbox=daemon)
    conn_a = libvirt.open(daemon.uri)
    try:
        (vm_id, xml), = source_vms(api_a, conn_a, 1, **extra).items()
    finally:
        conn_a.close()
    return api_a, vm_id, xml


def domains_of(sandbox):
    conn = libvirt.open(sandbox.uri)
    try:
        return [dom.UUIDString() for dom in conn.listAllDomains(0)]
    finally:
        conn.close()


@contextlib.contextmanager
def held_still(pid):
    """The process stopped (SIGSTOP) for the block, then continued."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def running_on(sandbox, vm_id):
    conn = libvirt.open(sandbox.uri)
    try:
        return conn.lookupByUUIDString(vm_id).state()[0] == \
            libvirt.VIR_DOMAIN_RUNNING
    finally:
        conn.close()


def test_a_paused_vm_migrated_in_commits_paused_on_arrival(
        make_real_api, daemon, daemon_b):
    """The safety-net lookup is an hour away: only the SUSPENDED event that
    ends a paused VM's migration can wake the job, which commits Paused."""
    api_a, vm_id, xml = source_vm(make_real_api, daemon, launchPaused=True)
    assert api_a.VM.getStats(vm_id)["status"] == "Paused"
    api = make_real_api(sandbox=daemon_b, migration_check_interval=3600)
    arrivals = Arrivals(api.hv, vm_id)
    job_id = api.VM.migrationCreate(vm_id, incoming(vm_id, xml))[
        "params"]["jobId"]
    migration = Migration(daemon, daemon_b, vm_id)
    migration.start()
    assert migration.finish().error is None
    info = finished(api, job_id)
    arrivals.close()
    assert (info["status"], info["step"]) == ("done", "commit"), info
    assert api.VM.getStats(vm_id)["status"] == "Paused"
    check_invariants(api)
    suspended = arrivals.times[libvirt.VIR_DOMAIN_EVENT_SUSPENDED]
    print(f"paused VM committed Paused {info['ended'] - suspended:.3f} s "
          "after its SUSPENDED event (the migration's end)")
    assert api.VM.destroy(vm_id) is True
    wait_left(api_a, [vm_id])   # migrated away by libvirt, not vmjobs


def test_a_migration_aborted_while_queued_leaves_no_domain(
        make_real_api, daemon, daemon_b):
    """B's only worker is busy; the migration job waits in the queue while
    A sends. Job.abort removes the domain in transfer: the migration fails
    on A, which keeps the guest running, and B has nothing left."""
    api_a, vm_id, xml = source_vm(make_real_api, daemon, memSize=1024)
    gate = StepGate("prepare")
    api = make_real_api(sandbox=daemon_b, workers=1, step_hook=gate,
                        migration_check_interval=3600)
    blocker = new_id()
    blocker_job = api.VM.create(blocker, real_params(blocker))["jobId"]
    assert gate.reached.wait(WAIT)
    arrivals = Arrivals(api.hv, vm_id)
    job_id = api.VM.migrationCreate(vm_id, incoming(vm_id, xml))[
        "params"]["jobId"]
    migration = Migration(daemon, daemon_b, vm_id, max_speed=1)
    migration.start()
    assert arrivals.seen[libvirt.VIR_DOMAIN_EVENT_STARTED].wait(WAIT)
    assert api.Job.abort(job_id) is True
    assert api.jobs.get(job_id).history() == ["pending", "aborted"]
    assert migration.finish().error is not None
    arrivals.close()
    assert api.hv.state(vm_id) is None
    assert running_on(daemon, vm_id)           # the guest: still on A
    gate.release.set()
    assert finished(api, blocker_job)["status"] == "done"
    check_invariants(api)
    assert domains_of(daemon_b) == [blocker]
    assert api.VM.destroy(blocker) is True
    assert api_a.VM.destroy(vm_id) is True


def test_a_migration_stopped_by_sigterm_leaves_no_domain(
        make_real_api, daemon, daemon_b, tmp_path):
    """A vmjobs service on B (stop_mode=abort) gets SIGTERM while its
    migration job waits and A sends: the domain in transfer is removed,
    the migration fails on A, which keeps the guest."""
    api_a, vm_id, xml = source_vm(make_real_api, daemon, memSize=1024)
    server = ServeProcess("--uri", daemon_b.uri, "--listen", "127.0.0.1:0",
                          "--insecure",
                          "--stop-mode", "abort", tmp_path=tmp_path)
    watcher = Hypervisor(daemon_b.uri)
    try:
        arrivals = Arrivals(watcher, vm_id)
        answer = rpc(server.url, "VM.migrationCreate",
                     {"vmID": vm_id, "params": incoming(vm_id, xml)})
        job_id = answer["result"]["params"]["jobId"]
        wait_job_info(server, job_id,
                      lambda info: info["step"] == "wait-arrival")
        migration = Migration(daemon, daemon_b, vm_id, max_speed=1)
        migration.start()
        assert arrivals.seen[libvirt.VIR_DOMAIN_EVENT_STARTED].wait(WAIT)
        # The source's QEMU is held still, so the transfer cannot finish
        # before the stop however slow the stop is (on a loaded machine a
        # 1 MiB/s transfer of a fresh 1 GiB guest, mostly zero pages, once
        # did); it goes on once B's service has stopped.
        with held_still(qemu_pid(daemon, vm_id)):
            status, out, err = server.stop(signal.SIGTERM)
        assert status == 0, err
        assert migration.finish().error is not None
        arrivals.close()
        assert watcher.state(vm_id) is None
        assert domains_of(daemon_b) == []
        assert running_on(daemon, vm_id)
    finally:
        server.kill()
        watcher.close()
    assert api_a.VM.destroy(vm_id) is True


CREATE_STEPS = ["prepare", "define", "start", "verify", "commit"]
HIBERNATE_STEPS = ["prepare", "save", "undefine", "commit"]


class RestartAt:
    """A step hook: when a job of `job_type` reaches `step`, restart
    libvirtd (its QEMU processes live on) before the job goes on."""

    def __init__(self, sandbox, job_type, step):
        self.sandbox, self.job_type, self.step = sandbox, job_type, step
        self.done = False

    def __call__(self, job, step):
        if job.job_type == self.job_type and step == self.step and \
                not self.done:
            self.done = True
            self.sandbox.restart_daemon()


@pytest.mark.parametrize("step", CREATE_STEPS)
def test_libvirtd_restarted_at_each_step_of_a_create(make_real_api, daemon,
                                                     step):
    hook = RestartAt(daemon, "create", step)
    api = make_real_api(step_hook=hook)
    vm_id = new_id()
    info = finished(api, api.VM.create(vm_id, real_params(vm_id))["jobId"])
    assert hook.done
    print(f"restart at {step}: {info['status']} "
          f"{info.get('error', {}).get('message', '')}")
    public = check_invariants(api)
    assert api.Host.getStats()["stopped_domains"] == 0
    assert len(daemon.qemu_pids()) == len(public)
    for vm_id in public:
        assert api.VM.destroy(vm_id) is True


@pytest.mark.parametrize("step", HIBERNATE_STEPS)
def test_libvirtd_restarted_at_each_step_of_a_hibernate(make_real_api,
                                                        daemon, tmp_path,
                                                        step):
    hook = RestartAt(daemon, "hibernate", step)
    api = make_real_api(step_hook=hook)
    vm_id = new_id()
    assert finished(api, api.VM.create(vm_id, real_params(vm_id))[
        "jobId"])["status"] == "done"
    theirs = tmp_path / "theirs"
    theirs.write_bytes(b"the caller's")
    path = tmp_path / "state"
    info = finished(api, api.VM.hibernate(vm_id, str(path))["jobId"])
    assert hook.done
    print(f"restart at {step}: {info['status']} "
          f"{info.get('error', {}).get('message', '')}")
    public = check_invariants(api, {str(theirs): digest(theirs)})
    if vm_id in public:
        assert not path.exists()         # back up: the job's file went
        assert api.VM.destroy(vm_id) is True
    else:
        # Hibernated: its state is in the file, and a restore brings it
        # back.
        assert our_domains(api.hv) == []
        restored = finished(api, api.VM.create(
            vm_id, {"vmId": vm_id, "restoreState": str(path)})["jobId"])
        assert restored["status"] == "done", restored
        assert api.VM.destroy(vm_id) is True
    assert daemon.qemu_pids() == []
