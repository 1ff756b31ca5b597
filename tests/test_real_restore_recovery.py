"""Restore and recovery on the real daemon: a real VM hibernated to a state
file comes back Up with the file unchanged, and with its TPM; another
VM's file is refused with nothing started; a restarted service takes back 50 running VMs
without restarting any (same QEMU processes)."""

import hashlib
import os

from conftest import new_id, our_domains
from realdaemon import (
    WAIT,
    real_params,
    require_programs,
    tpm_dir,
    tpm_guest,
    tpm_state,
)

RECOVERED = 50


def finished(api, job_id):
    assert api.jobs.get(job_id).wait(WAIT)
    return api.Host.getJobs(job_ids=[job_id])[job_id]


def test_hibernate_and_restore(make_real_api, daemon, tmp_path):
    api = make_real_api()
    vm_id = new_id()
    params = real_params(vm_id, owner="ops")
    assert finished(api, api.VM.create(vm_id, params)["jobId"])[
        "status"] == "done"
    path = tmp_path / "vm.state"
    info = finished(api, api.VM.hibernate(vm_id, str(path))["jobId"])
    assert info["status"] == "done", info
    assert our_domains(api.hv) == [] and daemon.qemu_pids() == []
    before = hashlib.sha256(path.read_bytes()).hexdigest()

    other = new_id()
    refused = finished(api, api.VM.create(other, {
        "vmId": other, "restoreState": str(path)})["jobId"])
    assert (refused["status"], refused["error"]["code"]) == ("failed", 9)
    assert our_domains(api.hv) == [] and daemon.qemu_pids() == []

    restored = finished(api, api.VM.create(vm_id, {
        "vmId": vm_id, "restoreState": str(path)})["jobId"])
    assert restored["status"] == "done", restored
    assert api.VM.getStats(vm_id)["status"] == "Up"
    assert api.VM.getStats(vm_id)["params"] == params
    assert api.hv.state(vm_id) == "running"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert len(daemon.qemu_pids()) == 1
    api.VM.destroy(vm_id)
    assert daemon.qemu_pids() == []


def test_a_guests_tpm_comes_back_with_it(make_real_api, daemon, tmp_path):
    """A guest's emulated TPM (BitLocker's keys, a measured boot) is its
    own across a hibernation: libvirt deletes swtpm's state with the
    undefine, and the save file carries it back (QEMU's tpm-emulator
    state); a VM.destroy leaves none behind. Another guest's TPM differs:
    the same hash is not an empty state."""
    require_programs("swtpm", "swtpm_setup")
    api = make_real_api()
    vm_id, other = new_id(), new_id()
    for each in (vm_id, other):
        job = api.VM.create(each, {"vmId": each, "xml": tpm_guest(each)})
        assert finished(api, job["jobId"])["status"] == "done"
    before = tpm_state(daemon, vm_id)
    assert before is not None and before != tpm_state(daemon, other)
    path = tmp_path / "vm.state"
    assert finished(api, api.VM.hibernate(vm_id, str(path))["jobId"])[
        "status"] == "done"
    assert tpm_state(daemon, vm_id) is None   # only in the file now

    restored = finished(api, api.VM.create(vm_id, {
        "vmId": vm_id, "restoreState": str(path)})["jobId"])
    assert restored["status"] == "done", restored
    assert tpm_state(daemon, vm_id) == before
    for each in (vm_id, other):
        assert api.VM.destroy(each) is True
        assert not os.path.exists(tpm_dir(daemon, each))


def test_restart_over_fifty_running_vms(make_real_api, daemon):
    first = make_real_api()
    vm_ids = [new_id() for _ in range(RECOVERED)]
    for vm_id in vm_ids:
        first.VM.create(vm_id, real_params(vm_id, memSize=32))
    assert first.pool.wait_idle(WAIT)
    assert len(first.Host.getVMList()) == RECOVERED
    pids = sorted(daemon.qemu_pids())
    first.close()                   # the service stops; the VMs run on

    second = make_real_api()
    assert second.wait_recovered(WAIT)
    assert sorted(second.Host.getVMList()) == sorted(vm_ids)
    assert {s["status"] for s in second.Host.getAllVmStats()} == {"Up"}
    assert sorted(daemon.qemu_pids()) == pids   # none restarted
    for vm_id in vm_ids:
        second.VM.destroy(vm_id)
    assert daemon.qemu_pids() == []
