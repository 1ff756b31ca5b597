"""VM.destroy at every step of the creation flow (bz912390): the job is
aborted at its next step boundary and rolled back; no domain, running or
defined, stays behind and both registries are empty."""

import pytest

from conftest import (
    WAIT,
    DestroyAt,
    assert_quiet_and_clean,
    new_id,
    our_domains,
    vm_params,
)
from vmjobs.errors import NoVM

# The same contract in both publish modes (conftest.py).
pytestmark = pytest.mark.both_publish_modes

STEPS = ["prepare", "define", "start", "verify", "commit"]


@pytest.mark.parametrize("paused", [False, True], ids=["up", "paused"])
@pytest.mark.parametrize("step", STEPS)
def test_destroy_at_step(make_api, step, paused):
    hook = DestroyAt(step)
    api = make_api(step_hook=hook)
    hook.api = api
    vm_id = new_id()
    created = api.VM.create(vm_id, vm_params(vm_id, launchPaused=paused))
    job = api.jobs.get(created["jobId"])
    assert job.wait(WAIT)
    hook.thread.join(WAIT)
    assert hook.result == [True]
    info = api.Host.getJobs()[created["jobId"]]
    assert info["status"] == "aborted"
    assert info["step"] == step
    assert job.history() == ["pending", "running", "aborting", "aborted"]
    assert our_domains(api.hv) == []
    assert api.Host.getVMList() == []
    with pytest.raises(NoVM):
        api.VM.getStats(vm_id)
    assert_quiet_and_clean(api)


def test_destroy_after_commit_destroys_the_public_vm(api):
    vm_id = new_id()
    created = api.VM.create(vm_id, vm_params(vm_id))
    assert api.jobs.get(created["jobId"]).wait(WAIT)
    assert api.VM.destroy(vm_id) is True
    assert our_domains(api.hv) == []
    assert api.Host.getVMList() == []
    with pytest.raises(NoVM) as err:
        api.VM.destroy(vm_id)
    assert err.value.code == 1


def test_destroy_of_queued_vm_never_starts_it(make_api):
    from conftest import StepGate
    gate = StepGate("prepare")
    api = make_api(workers=1, step_hook=gate)
    first, second = new_id(), new_id()
    api.VM.create(first, vm_params(first))
    assert gate.reached.wait(WAIT)
    queued = api.VM.create(second, vm_params(second))
    assert api.VM.destroy(second) is True
    info = api.Host.getJobs()[queued["jobId"]]
    assert (info["status"], info["step"]) == ("aborted", "queued")
    gate.release.set()
    assert api.pool.wait_idle(WAIT)
    assert api.Host.getVMList() == [first]
    assert_quiet_and_clean(api)
