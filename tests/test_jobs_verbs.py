"""Host.getJobs, Job.abort and Job.delete answer as API.md says, and ended jobs are kept only as long and as many as configured."""

import pytest

from conftest import WAIT, StepGate, assert_quiet_and_clean, new_id, vm_params, wait_job
from faults import FaultyHypervisor
from test_migration_destination import incoming
from vmjobs import domxml
from vmjobs.errors import (
    InvalidParams,
    JobNotActive,
    JobNotDone,
    MissParam,
    NoSuchJob,
    NoVM,
)

# The same contract in both publish modes (conftest.py).
pytestmark = pytest.mark.both_publish_modes

# API.md's JobInfo, for a create job (no progress: creation reports none).
ENDED_KEYS = {"id", "job_type", "vm_id", "status", "description", "step",
              "created", "started", "ended"}
PENDING_KEYS = {"id", "job_type", "vm_id", "status", "description", "step",
                "created"}


def create(api, **extra):
    vm_id = new_id()
    return vm_id, api.VM.create(vm_id, vm_params(vm_id, **extra))["jobId"]


def create_failing(api):
    """A create that libvirt refuses (its XML has no <name>)."""
    vm_id = new_id()
    xml = (f"<domain type='test'><uuid>{vm_id}</uuid><memory>1024</memory>"
           f"<os><type>hvm</type></os></domain>")
    return vm_id, api.VM.create(vm_id, {"vmId": vm_id, "xml": xml})["jobId"]


class Recorder:
    """A step hook that records (job id, step) and passes on to a gate."""

    def __init__(self, gate):
        self.gate = gate
        self.steps = []

    def __call__(self, job, step):
        self.steps.append((job.id, step))
        self.gate(job, step)


# -- Host.getJobs -----------------------------------------------------------

def test_get_jobs_lists_and_filters(api):
    _, first = create(api)
    _, second = create(api)
    wait_job(api, first)
    wait_job(api, second)

    assert set(api.Host.getJobs()) == {first, second}
    assert set(api.Host.getJobs(job_type="create")) == {first, second}
    assert api.Host.getJobs(job_type="other") == {}
    unknown = new_id()
    assert set(api.Host.getJobs(job_ids=[first, unknown])) == {first}
    assert api.Host.getJobs(job_ids=[unknown]) == {}
    # An empty filter is no filter, as in VDSM's jobs.info.
    assert set(api.Host.getJobs(job_ids=[])) == {first, second}
    assert set(api.Host.getJobs(job_type="")) == {first, second}
    assert set(api.Host.getJobs(job_type="create", job_ids=[second])) == {
        second}
    assert api.Host.getJobs(job_type="other", job_ids=[second]) == {}
    # Positional, in API.md's order.
    assert set(api.call("Host.getJobs", ["create", [first]])) == {first}


@pytest.mark.parametrize("params,param", [
    ({"job_ids": "not-a-list"}, "job_ids"),
    ({"job_ids": [1, 2]}, "job_ids"),
    ({"job_ids": {"a": 1}}, "job_ids"),
    ({"job_type": 5}, "job_type"),
])
def test_get_jobs_refuses_bad_filters(api, params, param):
    with pytest.raises(InvalidParams) as err:
        api.call("Host.getJobs", params)
    assert err.value.code == -32602
    assert err.value.data == {"param": param}


def test_jobinfo_of_done_and_failed_jobs(api):
    vm_id, job_id = create(api)
    info = wait_job(api, job_id)
    assert ENDED_KEYS <= set(info)
    assert info["id"] == job_id
    assert info["job_type"] == "create"
    assert info["vm_id"] == vm_id
    assert info["status"] == "done"
    assert info["step"] == "commit"
    assert isinstance(info["description"], str) and info["description"]
    assert "error" not in info
    assert all(isinstance(info[key], float)
               for key in ("created", "started", "ended"))
    assert info["created"] <= info["started"] <= info["ended"]

    bad_vm, bad_job = create_failing(api)
    info = wait_job(api, bad_job)
    assert ENDED_KEYS | {"error"} <= set(info)
    assert (info["id"], info["vm_id"]) == (bad_job, bad_vm)
    assert info["status"] == "failed"
    assert info["step"] == "define"
    assert set(info["error"]) == {"code", "message"}
    assert info["error"]["code"] == 9
    assert info["error"]["message"]


def test_jobinfo_has_exactly_the_documented_keys(api):
    _, job_id = create(api)
    _, bad_job = create_failing(api)
    assert set(wait_job(api, job_id)) == ENDED_KEYS
    assert set(wait_job(api, bad_job)) == ENDED_KEYS | {"error"}


# -- Job.abort ----------------------------------------------------------------

def test_abort_queued_job_never_runs(make_api):
    gate = StepGate("prepare")
    hook = Recorder(gate)
    api = make_api(workers=1, step_hook=hook)
    first_vm, first = create(api)
    assert gate.reached.wait(WAIT)             # the only worker is busy
    second_vm, second = create(api)
    info = api.Host.getJobs(job_ids=[second])[second]
    assert (info["status"], info["step"]) == ("pending", "queued")
    assert PENDING_KEYS <= set(info)
    assert not {"started", "ended", "error"} & set(info)
    assert api.VM.getStats(second_vm)["status"] == "WaitForLaunch"

    assert api.Job.abort(second) is True

    info = api.Host.getJobs(job_ids=[second])[second]
    assert (info["status"], info["step"]) == ("aborted", "queued")
    assert "started" not in info and "ended" in info
    assert api.jobs.get(second).history() == ["pending", "aborted"]
    assert second_vm not in {vm.vm_id for vm in api.registry.snapshot()[0]}
    with pytest.raises(NoVM) as err:
        api.VM.getStats(second_vm)
    assert err.value.code == 1

    gate.release.set()
    assert wait_job(api, first)["status"] == "done"
    assert api.pool.wait_idle(WAIT)
    assert all(job_id != second for job_id, _ in hook.steps)
    assert api.Host.getVMList() == [first_vm]
    assert api.Host.getStats()["jobs_aborted"] == 1
    assert_quiet_and_clean(api)


def test_abort_ended_job_is_job_not_active(api):
    vm_id, job_id = create(api)
    assert wait_job(api, job_id)["status"] == "done"
    with pytest.raises(JobNotActive) as err:
        api.Job.abort(job_id)
    assert err.value.code == 84
    assert api.Host.getJobs()[job_id]["status"] == "done"
    assert api.VM.getStats(vm_id)["status"] == "Up"


@pytest.mark.parametrize("verb", ["Job.abort", "Job.delete"])
def test_unknown_job_is_no_such_job(api, verb):
    with pytest.raises(NoSuchJob) as err:
        api.call(verb, {"jobId": new_id()})
    assert err.value.code == 66


@pytest.mark.parametrize("verb", ["Job.abort", "Job.delete"])
def test_job_id_missing_or_malformed(api, verb):
    with pytest.raises(MissParam) as err:
        api.call(verb, {})
    assert err.value.code == 11
    with pytest.raises(InvalidParams) as err:
        api.call(verb, {"jobId": 7})
    assert err.value.data == {"param": "jobId"}


# -- Job.delete ---------------------------------------------------------------

def test_delete_running_or_pending_job_is_job_not_done(make_api):
    gate = StepGate("define")
    api = make_api(workers=1, step_hook=gate)
    _, running = create(api)
    assert gate.reached.wait(WAIT)
    _, pending = create(api)
    for job_id in (running, pending):
        with pytest.raises(JobNotDone) as err:
            api.Job.delete(job_id)
        assert err.value.code == 68
    assert set(api.Host.getJobs()) == {running, pending}
    gate.release.set()
    assert api.pool.wait_idle(WAIT)
    assert_quiet_and_clean(api)


def test_delete_ended_job_forgets_it(api):
    vm_id, job_id = create(api)
    _, kept = create(api)
    wait_job(api, job_id)
    wait_job(api, kept)
    assert api.Job.delete(job_id) is True
    assert set(api.Host.getJobs()) == {kept}
    assert api.Host.getJobs(job_ids=[job_id]) == {}
    with pytest.raises(NoSuchJob):
        api.Job.delete(job_id)
    with pytest.raises(NoSuchJob):
        api.Job.abort(job_id)
    # Forgetting the job changes nothing for its VM.
    assert api.VM.getStats(vm_id)["status"] == "Up"
    assert "jobId" not in api.VM.getStats(vm_id)


def test_a_job_whose_end_still_runs_is_shown_as_before_its_end(make_api,
                                                                hypervisor):
    """A job whose status ended (aborted) while its end hooks still run
    (an incoming migration's removal of what may have arrived, here held
    in libvirt) is shown as it was until they ran, as its events show it:
    JobInfo `aborting`, without `ended`; Job.delete JobNotDone (68), as
    for any job aborting; Job.abort true (too late). Once the end ran:
    `aborted`, and Job.delete forgets it. Before, JobInfo said `aborted`
    while Job.delete answered 68 (found by the contract audit, round 12),
    and a migration away was listed `aborted` while its VM still said
    `Migration Source` (the clean-room run, round 2)."""
    faulty = FaultyHypervisor(hypervisor, fail_at=1,
                              fail_calls=("state_reason",), kind="hang",
                              within="_remove_unarrived")
    gate = StepGate("define")
    api = make_api(hv=faulty, step_hook=gate)
    vm_id = new_id()
    job_id = api.VM.migrationCreate(vm_id, incoming(vm_id))["params"]["jobId"]
    _, running = create(api)
    assert gate.reached.wait(WAIT)
    # Waiting for its guest, on no thread: its abort ends it on a worker
    # (one aborted while queued would end in this thread, held).
    assert api.pool.wait_stats(lambda stats: stats["parked"] == 1, WAIT)
    assert api.Job.abort(job_id) is True
    assert faulty.hanging.wait(WAIT)   # its end: the removal, held
    job = api.jobs.get(job_id)
    info = api.Host.getJobs(job_ids=[job_id])[job_id]
    assert info["status"] == "aborting" and "ended" not in info, info
    assert api.Job.abort(job_id) is True   # too late: it changes nothing
    with pytest.raises(JobNotDone):
        api.Job.delete(job_id)         # aborting, as its JobInfo says
    with pytest.raises(JobNotDone):
        api.Job.delete(running)        # the control: running
    faulty.release.set()
    gate.release.set()
    assert job.wait(WAIT)              # its end ran
    info = api.Host.getJobs(job_ids=[job_id])[job_id]
    assert info["status"] == "aborted" and "ended" in info, info
    with pytest.raises(JobNotActive):
        api.Job.abort(job_id)          # ended, as its JobInfo says
    assert api.Job.delete(job_id) is True
    with pytest.raises(NoSuchJob):
        api.Job.delete(job_id)
    wait_job(api, running)
    assert api.Job.delete(running) is True
    assert_quiet_and_clean(api)


# -- retention ----------------------------------------------------------------

def test_only_the_newest_max_ended_jobs_are_kept(make_api):
    api = make_api(max_ended=3)
    vm_ids, job_ids = [], []
    for _ in range(5):
        vm_id, job_id = create(api)
        assert wait_job(api, job_id)["status"] == "done"
        vm_ids.append(vm_id)
        job_ids.append(job_id)
    assert set(api.Host.getJobs()) == set(job_ids[2:])
    for old in job_ids[:2]:
        with pytest.raises(NoSuchJob):
            api.Job.delete(old)
    assert sorted(api.Host.getVMList()) == sorted(vm_ids)


def test_max_ended_never_drops_an_active_job(make_api):
    gate = StepGate("define")
    api = make_api(workers=2, max_ended=1, step_hook=gate)
    _, held = create(api)
    assert gate.reached.wait(WAIT)
    done = []
    for _ in range(3):
        _, job_id = create(api)
        assert wait_job(api, job_id)["status"] == "done"
        done.append(job_id)
    assert set(api.Host.getJobs()) == {held, done[-1]}
    gate.release.set()
    assert api.pool.wait_idle(WAIT)
    assert set(api.Host.getJobs()) == {held}
    assert_quiet_and_clean(api)


def test_autodelete_delay_zero_forgets_ended_jobs(make_api):
    gate = StepGate("commit")
    api = make_api(autodelete_delay=0, step_hook=gate)
    vm_id, job_id = create(api)
    assert gate.reached.wait(WAIT)
    job = gate.job
    # Still running: kept, however short the delay.
    assert set(api.Host.getJobs()) == {job_id}
    gate.release.set()
    assert job.wait(WAIT)
    assert job.status == "done"
    assert api.Host.getJobs() == {}
    with pytest.raises(NoSuchJob):
        api.Job.delete(job_id)
    assert api.VM.getStats(vm_id)["status"] == "Up"
    assert [d.uuid for d in api.hv.list_domains(domxml.METADATA_NS)] == [
        vm_id]


# -- a job id in any form of its UUID ------------------------------------------

def forms(job_id):
    """The forms of a UUID a vmID is taken in (params.parse_vm_id), but the
    canonical one."""
    return [job_id.upper(), "{" + job_id + "}", job_id.replace("-", ""),
            "urn:uuid:" + job_id]


def test_job_verbs_take_a_job_id_in_any_form_of_its_uuid(api):
    """A job id is a UUID, taken as a vmID is, in capitals or any form
    Python's uuid reads, each naming the same job."""
    _, job_id = create(api)
    assert wait_job(api, job_id)["status"] == "done"
    _, other = create(api)
    wait_job(api, other)
    for form in forms(job_id):
        assert set(api.Host.getJobs(job_ids=[form])) == {job_id}
        with pytest.raises(JobNotActive):
            api.Job.abort(form)
    assert api.Job.delete(job_id.upper()) is True
    assert set(api.Host.getJobs()) == {other}
    # Positive controls: the canonical form, and ids of no job.
    assert set(api.Host.getJobs(job_ids=[other])) == {other}
    for unknown in (new_id().upper(), "not-a-job"):
        assert api.Host.getJobs(job_ids=[unknown]) == {}
        with pytest.raises(NoSuchJob):
            api.Job.abort(unknown)
        with pytest.raises(NoSuchJob):
            api.Job.delete(unknown)
