"""Restore (VM.create with restoreState): the state file's domain must be
the VM asked for; the file is only ever read, whether the restore
succeeds, fails or is aborted; failures and destroys at every step leave
nothing behind."""

import hashlib

import pytest

from conftest import (
    WAIT,
    DestroyAt,
    assert_quiet_and_clean,
    new_id,
    our_domains,
    vm_params,
    wait_job,
)
from faults import FaultyHypervisor
from vmjobs import domxml
from vmjobs.errors import CreateError, InvalidParams, VmExists
from vmjobs.tools import simulation

STEPS = ["check-file", "read-domain", "prepare", "restore", "persist",
         "verify", "commit"]


def checksum(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hibernated_vm(api, tmp_path, **params):
    """A vmjobs VM hibernated to a state file: (vm_id, path, params)."""
    vm_id = new_id()
    params = vm_params(vm_id, **params)
    assert wait_job(api, api.VM.create(vm_id, params)["jobId"])[
        "status"] == "done"
    path = tmp_path / f"{vm_id}.state"
    assert wait_job(api, api.VM.hibernate(vm_id, str(path))["jobId"])[
        "status"] == "done"
    return vm_id, path, params


def restore(api, vm_id, path, **extra):
    return api.VM.create(vm_id, {"vmId": vm_id, "restoreState": str(path),
                                 **extra})


@pytest.mark.parametrize("paused", [False, True], ids=["up", "paused"])
def test_restore_brings_back_the_vm(api, tmp_path, paused):
    vm_id, path, params = hibernated_vm(api, tmp_path, owner="ops")
    before = checksum(path)
    created = restore(api, vm_id, path, launchPaused=paused)
    assert created["status"] == "Restoring state"
    info = wait_job(api, created["jobId"])
    assert (info["job_type"], info["status"]) == ("restore", "done")
    stats = api.VM.getStats(vm_id)
    assert stats["status"] == ("Paused" if paused else "Up")
    assert stats["params"] == params
    assert checksum(path) == before
    dom = api.hv.shared_connection.lookupByUUIDString(vm_id)
    assert dom.isPersistent()
    assert domxml.read_metadata(api.hv.metadata(vm_id, domxml.METADATA_NS)
                                ) == (vm_id, params)
    assert_quiet_and_clean(api)


def test_restore_keeps_the_engines_own_keys(api, tmp_path):
    """The VM's saved params come back, with the engine's own keys of the
    restore's request on top (API.md: unknown keys are kept); the keys
    vmjobs reads (the path, launchPaused) are the restore's, not the VM's.
    A restart would recover the same: they are in the domain's
    metadata."""
    vm_id, path, params = hibernated_vm(api, tmp_path, owner="ops",
                                        engineKey="E0")
    info = wait_job(api, restore(api, vm_id, path, launchPaused=False,
                                 engineKey="E1", ticket=7)["jobId"])
    assert info["status"] == "done", info
    expected = {**params, "engineKey": "E1", "ticket": 7}
    assert api.VM.getStats(vm_id)["params"] == expected
    assert domxml.read_metadata(api.hv.metadata(vm_id, domxml.METADATA_NS)
                                ) == (vm_id, expected)
    assert_quiet_and_clean(api)


def test_state_file_of_another_vm_is_refused(api, tmp_path):
    _, path, _ = hibernated_vm(api, tmp_path)
    before = checksum(path)
    other = new_id()
    info = wait_job(api, restore(api, other, path)["jobId"])
    assert (info["status"], info["step"]) == ("failed", "read-domain")
    assert info["error"]["code"] == 9
    assert "not VM" in info["error"]["message"]
    assert checksum(path) == before
    assert our_domains(api.hv) == []   # nothing started
    assert_quiet_and_clean(api)


def refused_by_the_verb(api, vm_id, path, error=InvalidParams):
    """The verb refuses at once (-32602 naming restoreState, or createErr
    when libvirt cannot read the file); nothing is staged."""
    jobs_before = api.jobs.jobs()
    with pytest.raises(error) as err:
        restore(api, vm_id, path)
    if error is InvalidParams:
        assert err.value.data == {"param": "restoreState"}
    assert api.jobs.jobs() == jobs_before
    assert_quiet_and_clean(api)
    return err.value.message


def test_missing_file_is_refused(api, tmp_path):
    message = refused_by_the_verb(api, new_id(), tmp_path / "nothing")
    assert "No such file" in message


def test_not_a_state_file_is_refused(api, tmp_path):
    path = tmp_path / "garbage"
    path.write_bytes(b"not a libvirt state file" * 100)
    before = checksum(path)
    refused_by_the_verb(api, new_id(), path, CreateError)
    assert checksum(path) == before


@pytest.mark.parametrize("state", ["missing", "not a state file"])
def test_a_restore_onto_a_vm_here_is_exist_whatever_its_file(api, tmp_path,
                                                             state):
    """exist (4) comes first, before the file is read (found by a contract
    audit: it answered 9 or -32602); the control is the same request for
    a vmId not here, refused for its file."""
    vm_id = new_id()
    assert wait_job(api, api.VM.create(vm_id, vm_params(vm_id))["jobId"])[
        "status"] == "done"
    path = tmp_path / "state"
    if state != "missing":
        path.write_bytes(b"not a libvirt state file" * 100)
    with pytest.raises(VmExists):
        restore(api, vm_id, path)
    with pytest.raises((CreateError, InvalidParams)):   # the control
        restore(api, new_id(), path)
    assert api.VM.getStats(vm_id)["status"] == "Up"
    assert api.VM.destroy(vm_id) is True


def test_plain_libvirt_save_file_is_restored_with_request_params(
        api, tmp_path):
    """A state file saved outside vmjobs (as `virsh save` would) has no
    vmjobs metadata: the VM gets the request's params, and the metadata,
    so the next start recovers it."""
    vm_id = new_id()
    simulation.create_transient(
        api.hv, f"<domain type='test'><name>outside</name><uuid>{vm_id}</uuid>"
        "<memory unit='MiB'>64</memory><os><type>hvm</type></os></domain>")
    path = tmp_path / "outside.state"
    api.hv.save(vm_id, str(path))
    info = wait_job(api, restore(api, vm_id, path, owner="ops")["jobId"])
    assert info["status"] == "done", info
    params = {"vmId": vm_id, "restoreState": str(path), "owner": "ops"}
    assert api.VM.getStats(vm_id)["params"] == params
    assert domxml.read_metadata(api.hv.metadata(vm_id, domxml.METADATA_NS)
                                ) == (vm_id, params)


@pytest.mark.parametrize("step", STEPS)
def test_destroy_at_every_step(make_api, tmp_path, step):
    hook = DestroyAt(step, job_type="restore")
    api = make_api(step_hook=hook)
    hook.api = api
    vm_id, path, _ = hibernated_vm(api, tmp_path)
    before = checksum(path)
    info = wait_job(api, restore(api, vm_id, path)["jobId"])
    hook.thread.join(WAIT)
    assert hook.result == [True]
    assert (info["status"], info["step"]) == ("aborted", step)
    assert checksum(path) == before
    assert our_domains(api.hv) == []
    assert_quiet_and_clean(api)


def test_libvirt_failure_at_every_call(make_api, hypervisor, tmp_path):
    faulty = FaultyHypervisor(hypervisor)
    api = make_api(hv=faulty)
    vm_id, path, _ = hibernated_vm(api, tmp_path)
    before = checksum(path)
    faulty.arm(None)
    assert wait_job(api, restore(api, vm_id, path)["jobId"])[
        "status"] == "done"
    calls = list(faulty.calls)
    # The verb reads the state file's domain XML, to check it; the job
    # restores with that, without reading it again.
    assert calls == ["saved_domain_xml", "state", "restore", "persist",
                     "state"]
    # Hibernate it again, to restore it once per fault.
    path.unlink()
    assert wait_job(api, api.VM.hibernate(vm_id, str(path))["jobId"])[
        "status"] == "done"
    before = checksum(path)
    faulty.arm(1)
    message = refused_by_the_verb(api, vm_id, path, CreateError)
    assert "injected fault in saved_domain_xml" in message
    for n, call in enumerate(calls[1:], start=2):
        faulty.arm(n)
        info = wait_job(api, restore(api, vm_id, path)["jobId"])
        assert faulty.failed == call
        assert info["status"] == "failed", (n, call, info)
        assert info["error"]["code"] == 9
        assert f"injected fault in {call}" in info["error"]["message"]
        assert checksum(path) == before
        assert our_domains(hypervisor) == []
        assert_quiet_and_clean(api)


@pytest.mark.parametrize("end", ["done", "failed"])
def test_an_ended_restore_keeps_its_info_not_the_state_files_xml(
        make_api, tmp_path, end):
    """An ended job stays listed (an hour, up to 10,000 of them) with its
    JobInfo, not its request (docs/benchmarks.md, section 7): a restore's
    domain XML, read from its state file, is let go as it ends, whether it
    ended done or failed, as a creation's is. The control: the job holds
    it while it runs (seen at its read-domain step)."""
    held = []

    def look(job, step):
        if step == "read-domain":
            held.append(job.domain_xml is not None)
    api = make_api(step_hook=look)
    vm_id, path, _ = hibernated_vm(api, tmp_path)
    restored = vm_id if end == "done" else new_id()   # another VM: fails
    job = api.jobs.get(restore(api, restored, path)["jobId"])
    assert job.wait(WAIT)
    assert job.info()["status"] == end
    assert held == [True]                               # the control
    assert (job.spec, job.domain_xml, job.kept_xml_bytes()) == (
        None, None, 0)
    assert_quiet_and_clean(api)
