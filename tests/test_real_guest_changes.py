"""A guest paused or resumed outside vmjobs, on the real daemon (by its user
with virsh, or by libvirt itself on an I/O error): its public status
follows libvirt's lifecycle events, with a `|virt|VM_status|`
notification, unless a job works on the VM (its own pauses are its job's
to tell). Another libvirt client plays the user. (On the test driver's
private host nobody else reaches the domains, and nothing is followed.)"""

import time

import libvirt

from conftest import StepGate, new_id, wait_job
from realdaemon import WAIT, real_params
from vmjobs.notifications import VM_STATUS


def up_vm(api, **extra):
    vm_id = new_id()
    assert wait_job(api, api.VM.create(vm_id, real_params(vm_id, **extra))[
        "jobId"])["status"] == "done"
    return vm_id


def next_status(subscription, vm_id):
    """The VM's next status notification (waiting for it)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for event in subscription.get(deadline - time.monotonic()) or []:
            if event.method == VM_STATUS + vm_id:
                return event.params[vm_id]["status"]
    raise AssertionError(f"no status notification of {vm_id}")


def test_a_pause_and_a_resume_by_another_client_are_followed(
        make_real_api, daemon):
    api = make_real_api()
    running, paused = up_vm(api), up_vm(api, launchPaused=True)
    user = libvirt.open(daemon.uri)
    try:
        with api.subscribe() as subscription:
            user.lookupByUUIDString(running).suspend()
            assert next_status(subscription, running) == "Paused"
            assert api.VM.getStats(running)["status"] == "Paused"
            user.lookupByUUIDString(running).resume()
            assert next_status(subscription, running) == "Up"
            user.lookupByUUIDString(paused).resume()
            assert next_status(subscription, paused) == "Up"
        listed = api.Host.getVMList(fullStatus=True)
        assert {vm["vmId"]: vm["status"] for vm in listed} == {
            running: "Up", paused: "Up"}
    finally:
        user.close()
    assert api.VM.destroy(running) is True
    assert api.VM.destroy(paused) is True


def test_a_vm_a_job_works_on_keeps_its_jobs_status(make_real_api, daemon,
                                                   tmp_path):
    """A hibernation held before its save: a pause and a resume meanwhile
    are not taken (the VM's one change is back to Up, at the job's end);
    the control, once no job works on it, is taken."""
    gate = StepGate("save")
    api = make_real_api(step_hook=gate)
    vm_id = up_vm(api)
    job_id = api.VM.hibernate(vm_id, str(tmp_path / "s.state"))["jobId"]
    assert gate.reached.wait(WAIT)
    user = libvirt.open(daemon.uri)
    try:
        with api.subscribe() as subscription:
            user.lookupByUUIDString(vm_id).suspend()
            user.lookupByUUIDString(vm_id).resume()
            assert api.Job.abort(job_id) is True
            gate.release.set()
            assert wait_job(api, job_id)["status"] == "aborted"
            assert next_status(subscription, vm_id) == "Up"
            user.lookupByUUIDString(vm_id).suspend()   # the control
            assert next_status(subscription, vm_id) == "Paused"
    finally:
        user.close()
    assert api.VM.destroy(vm_id) is True
