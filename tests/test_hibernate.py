"""VM.hibernate: the VM stays public as Saving State while its state is saved, then leaves; refusals; failures, destroys and aborts leave it running or gone, never half."""

import hashlib
import os

import libvirt
import pytest

from conftest import (
    WAIT,
    DestroyAt,
    StepGate,
    assert_quiet_and_clean,
    new_id,
    our_domains,
    vm_params,
    wait_job,
)
from faults import FaultyHypervisor
from vmjobs import domxml
from vmjobs.errors import InvalidParams, MigrateError, MissParam, NoVM

STEPS = ["prepare", "save", "undefine", "commit"]


def checksum(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def up_vm(api, **extra):
    """A committed VM: (vm_id, its vmParams)."""
    vm_id = new_id()
    params = vm_params(vm_id, **extra)
    info = wait_job(api, api.VM.create(vm_id, params)["jobId"])
    assert info["status"] == "done", info
    return vm_id, params


def domain_state(hv, vm_id):
    return hv.shared_connection.lookupByUUIDString(vm_id).state()[0]


def all_domains(hv):
    return hv.list_domains(domxml.METADATA_NS)


def assert_public(api, vm_id, status):
    stats = api.VM.getStats(vm_id)
    assert (stats["status"], stats["staging"]) == (status, False)
    assert "jobId" not in stats
    assert vm_id in api.Host.getVMList()
    expected = (libvirt.VIR_DOMAIN_PAUSED if status == "Paused"
                else libvirt.VIR_DOMAIN_RUNNING)
    assert domain_state(api.hv, vm_id) == expected
    assert api.hv.shared_connection.lookupByUUIDString(vm_id).isPersistent()


def assert_gone(api, vm_id):
    with pytest.raises(NoVM) as err:
        api.VM.getStats(vm_id)
    assert err.value.code == 1
    assert api.Host.getVMList() == []
    assert api.registry.snapshot()[0] == []
    assert all_domains(api.hv) == []


# -- a clean hibernation ----------------------------------------------------

def test_result_and_view_while_saving(make_api, tmp_path):
    gate = StepGate("save")
    api = make_api(step_hook=gate)
    vm_id, _ = up_vm(api)
    path = tmp_path / "state"
    result = api.VM.hibernate(vm_id, str(path))
    assert set(result) == {"jobId"}
    job_id = result["jobId"]
    assert gate.reached.wait(WAIT)
    try:
        assert gate.job.id == job_id
        stats = api.VM.getStats(vm_id)
        assert stats["status"] == "Saving State"
        assert stats["staging"] is False
        assert stats["jobId"] == job_id
        assert api.Host.getVMList() == [vm_id]
        assert api.Host.getVMList(fullStatus=True) == [
            {"vmId": vm_id, "status": "Saving State"}]
        info = api.Host.getJobs(job_ids=[job_id])[job_id]
        assert (info["job_type"], info["status"], info["step"]) == (
            "hibernate", "running", "save")
    finally:
        gate.release.set()
    info = wait_job(api, job_id)
    assert (info["status"], info["step"]) == ("done", "commit"), info
    assert path.is_file() and path.stat().st_size > 0
    assert_gone(api, vm_id)
    assert_quiet_and_clean(api)


@pytest.mark.parametrize("created_paused,restored_paused,status", [
    (False, False, "Up"),
    (True, False, "Up"),
    (False, True, "Paused"),
    (True, True, "Paused"),
], ids=["up-up", "paused-up", "up-paused", "paused-paused"])
def test_round_trip(api, tmp_path, created_paused, restored_paused, status):
    vm_id, params = up_vm(api, owner="ops", launchPaused=created_paused)
    path = tmp_path / "state"
    assert wait_job(api, api.VM.hibernate(vm_id, str(path))["jobId"])[
        "status"] == "done"
    assert_gone(api, vm_id)
    before = checksum(path)

    request = {"vmId": vm_id, "restoreState": str(path)}
    if restored_paused:
        request["launchPaused"] = True
    created = api.VM.create(vm_id, request)
    assert created["status"] == "Restoring state"
    info = wait_job(api, created["jobId"])
    assert (info["job_type"], info["status"]) == ("restore", "done"), info
    assert_public(api, vm_id, status)
    assert api.VM.getStats(vm_id)["params"] == params
    assert checksum(path) == before
    assert_quiet_and_clean(api)


# -- refusals -----------------------------------------------------------------

def test_existing_file_is_refused(api, tmp_path):
    vm_id, _ = up_vm(api)
    path = tmp_path / "state"
    path.write_bytes(b"precious, not ours")
    before = checksum(path)
    with pytest.raises(MigrateError) as err:
        api.VM.hibernate(vm_id, str(path))
    assert err.value.code == 12
    assert checksum(path) == before
    assert [j["job_type"] for j in api.Host.getJobs().values()] == ["create"]
    assert_public(api, vm_id, "Up")
    assert_quiet_and_clean(api)


@pytest.mark.parametrize("handle", ["relative/state", "state",
                                    "{tmp}/no-such-dir/state"],
                         ids=["relative", "bare-name", "missing-dir"])
def test_bad_path(api, tmp_path, handle):
    vm_id, _ = up_vm(api)
    handle = handle.format(tmp=tmp_path)
    with pytest.raises(InvalidParams) as err:
        api.VM.hibernate(vm_id, handle)
    assert err.value.code == -32602
    assert err.value.data == {"param": "hibernationVolHandle"}
    assert_public(api, vm_id, "Up")
    assert_quiet_and_clean(api)


def test_a_state_directory_itself_is_named_so(api, tmp_path):
    """A state directory given as the file: -32602 saying so. It said the
    directory was "outside storage.state_dirs (<that directory>)". The
    control: a file outside them is still said to be outside."""
    vm_id, _ = up_vm(api)
    other = new_id()
    calls = {
        "hibernationVolHandle": lambda p: api.VM.hibernate(vm_id, p),
        "restoreState": lambda p: api.VM.create(
            other, {"vmId": other, "restoreState": p}),
    }
    for param, call in calls.items():
        with pytest.raises(InvalidParams, match="is a state directory, "
                           "not a file in one") as err:
            call(str(tmp_path))
        assert err.value.data == {"param": param}
        with pytest.raises(InvalidParams,
                           match="is outside storage.state_dirs"):
            call(str(tmp_path.parent / "elsewhere"))
    assert_public(api, vm_id, "Up")
    assert_quiet_and_clean(api)


def test_a_file_name_longer_than_the_file_system_takes_is_malformed(
        api, tmp_path):
    """A hibernationVolHandle whose file name the file system cannot hold
    (NAME_MAX: 255 bytes on every Linux one) is a malformed parameter,
    -32602 naming it, as restoreState's is: it was migrateErr (12),
    'cannot create ...: File name too long', as if the host had failed a
    hibernation. The control: a name of 255 bytes is hibernated."""
    vm_id, _ = up_vm(api)
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    for name in ("s" * (name_max + 1), "é" * (name_max // 2 + 1)):
        with pytest.raises(InvalidParams, match="longer than the file "
                           "system takes") as err:
            api.VM.hibernate(vm_id, str(tmp_path / name))
        assert err.value.data == {"param": "hibernationVolHandle"}
    assert list(tmp_path.iterdir()) == []
    assert_public(api, vm_id, "Up")
    path = tmp_path / ("s" * name_max)
    info = wait_job(api, api.VM.hibernate(vm_id, str(path))["jobId"])
    assert info["status"] == "done", info
    assert path.stat().st_size > 0
    assert_gone(api, vm_id)


def test_missing_path_is_miss_param(api):
    vm_id, _ = up_vm(api)
    with pytest.raises(MissParam) as err:
        api.VM.hibernate(vm_id)
    assert err.value.code == 11
    with pytest.raises(InvalidParams) as err:   # present, but empty
        api.VM.hibernate(vm_id, "")
    assert err.value.data == {"param": "hibernationVolHandle"}
    assert_public(api, vm_id, "Up")
    assert_quiet_and_clean(api)


def test_unknown_vm(api, tmp_path):
    path = tmp_path / "state"
    with pytest.raises(NoVM) as err:
        api.VM.hibernate(new_id(), str(path))
    assert err.value.code == 1
    assert not path.exists()
    assert api.Host.getJobs() == {}


def test_unknown_vm_before_an_existing_file(api, tmp_path):
    # noVM (1) is about the VM, whatever the file: VDSM looks the VM up
    # before it reads any other parameter. The file is left as it was.
    path = tmp_path / "state"
    path.write_bytes(b"precious, not ours")
    before = checksum(path)
    with pytest.raises(NoVM) as err:
        api.VM.hibernate(new_id(), str(path))
    assert err.value.code == 1
    assert checksum(path) == before
    assert api.Host.getJobs() == {}


def test_staged_vm_is_not_hibernated(make_api, tmp_path):
    gate = StepGate("prepare")
    api = make_api(step_hook=gate)
    vm_id = new_id()
    job_id = api.VM.create(vm_id, vm_params(vm_id))["jobId"]
    assert gate.reached.wait(WAIT)
    path = tmp_path / "state"
    try:
        # Neither noVM (it is staged) nor a second job on it: its startup
        # job works on it, as a busy public VM's would.
        with pytest.raises(MigrateError, match="not up yet") as err:
            api.VM.hibernate(vm_id, str(path))
        assert err.value.code == 12
        with pytest.raises(MigrateError, match="not up yet") as err:
            api.VM.migrate(vm_id, {"dst": "127.0.0.1:1",
                                   "dstUri": "qemu+tcp://127.0.0.1/system"})
        assert err.value.code == 12
        assert api.VM.getStats(vm_id)["status"] == "WaitForLaunch"
        assert list(api.Host.getJobs()) == [job_id]
    finally:
        gate.release.set()
    assert wait_job(api, job_id)["status"] == "done"
    assert not path.exists()
    assert_public(api, vm_id, "Up")
    assert_quiet_and_clean(api)


def test_second_hibernate_while_one_runs(make_api, tmp_path):
    gate = StepGate("save")
    api = make_api(step_hook=gate)
    vm_id, _ = up_vm(api)
    first, second = tmp_path / "first", tmp_path / "second"
    job_id = api.VM.hibernate(vm_id, str(first))["jobId"]
    assert gate.reached.wait(WAIT)
    try:
        with pytest.raises(MigrateError) as err:
            api.VM.hibernate(vm_id, str(second))
        assert err.value.code == 12
        assert api.VM.getStats(vm_id)["jobId"] == job_id
    finally:
        gate.release.set()
    assert wait_job(api, job_id)["status"] == "done"
    assert first.is_file() and not second.exists()
    assert len(api.Host.getJobs(job_type="hibernate")) == 1
    assert_gone(api, vm_id)
    assert_quiet_and_clean(api)


class SaveGates:
    """A step hook holding each hibernate job at "save" (accepted, nothing
    saved yet) on a gate of its VM's."""

    def __init__(self, *vm_ids):
        self.gates = {vm_id: StepGate("save") for vm_id in vm_ids}

    def __call__(self, job, step):
        if job.job_type == "hibernate" and job.vm_id in self.gates:
            self.gates[job.vm_id](job, step)


def test_two_hibernates_to_one_path_never_lose_a_vm(make_api, tmp_path):
    """The second is refused (at once, or by its job before it saves): the
    file holds the first VM, and the second stays up."""
    first, second = new_id(), new_id()
    gates = SaveGates(first, second)
    api = make_api(step_hook=gates)
    for vm_id in (first, second):
        assert wait_job(api, api.VM.create(vm_id, vm_params(vm_id))[
            "jobId"])["status"] == "done"
    path = tmp_path / "state"
    jobs = {first: api.VM.hibernate(first, str(path))["jobId"]}
    assert gates.gates[first].reached.wait(WAIT)
    try:
        jobs[second] = api.VM.hibernate(second, str(path))["jobId"]
    except MigrateError as exc:   # refused at once: fine too
        assert exc.code == 12
    else:
        # Let the first save only once the second job is held before its
        # own save (past its file check), or has ended.
        held = gates.gates[second].reached
        api.jobs.get(jobs[second]).add_end_callback(lambda job: held.set())
        assert held.wait(WAIT)
    gates.gates[first].release.set()
    assert wait_job(api, jobs[first])["status"] == "done"
    gates.gates[second].release.set()
    ended = {vm_id: wait_job(api, job_id) for vm_id, job_id in jobs.items()}

    # The first VM is in the file; the second never left.
    assert domxml.domain_uuid(api.hv.saved_domain_xml(str(path))) == first
    if second in ended:
        assert ended[second]["status"] == "failed", ended[second]
        assert ended[second]["error"]["code"] == 12
    assert_public(api, second, "Up")
    assert_quiet_and_clean(api)


@pytest.mark.parametrize("how", ["Job.abort", "VM.destroy"])
def test_hibernate_ended_while_queued_leaves_no_file(make_api, tmp_path, how):
    blocker = new_id()
    gate = StepGate("prepare")
    api = make_api(workers=1, step_hook=lambda job, step: gate(job, step)
                   if job.vm_id == blocker else None)
    vm_id, _ = up_vm(api)
    blocker_job = api.VM.create(blocker, vm_params(blocker))["jobId"]
    assert gate.reached.wait(WAIT)   # holds the only worker
    path = tmp_path / "state"
    try:
        job_id = api.VM.hibernate(vm_id, str(path))["jobId"]
        assert api.Host.getJobs(job_ids=[job_id])[job_id]["status"] == \
            "pending"
        if how == "Job.abort":
            assert api.Job.abort(job_id) is True
        else:
            assert api.VM.destroy(vm_id) is True
        info = wait_job(api, job_id)
        assert (info["status"], info["step"]) == ("aborted", "queued")
    finally:
        gate.release.set()
    assert wait_job(api, blocker_job)["status"] == "done"
    if how == "Job.abort":
        assert_public(api, vm_id, "Up")
    assert not path.exists()
    assert_quiet_and_clean(api)


# -- libvirt failures -------------------------------------------------------

@pytest.mark.parametrize("paused", [False, True], ids=["up", "paused"])
def test_libvirt_failure_at_every_call(make_api, hypervisor, tmp_path,
                                       paused):
    """A failure before the save leaves no file; a failure after it brings
    the VM back from the file and removes the file. Either way the VM is
    public as it was, and runs."""
    status = "Paused" if paused else "Up"
    faulty = FaultyHypervisor(hypervisor)
    api = make_api(hv=faulty)
    vm_id, _ = up_vm(api, launchPaused=paused)
    faulty.arm(None)
    assert wait_job(api, api.VM.hibernate(
        vm_id, str(tmp_path / "clean"))["jobId"])["status"] == "done"
    calls = list(faulty.calls)
    assert calls == ["state", "persist", "save", "remove"]

    for n, call in enumerate(calls, start=1):
        vm_id, _ = up_vm(api, launchPaused=paused)
        path = tmp_path / f"state-{n}"
        faulty.arm(n)
        info = wait_job(api, api.VM.hibernate(vm_id, str(path))["jobId"])
        assert faulty.failed == call
        assert info["status"] == "failed", (n, call, info)
        assert info["step"] == {"state": "prepare", "persist": "prepare",
                                "save": "save", "remove": "undefine"}[call]
        assert info["error"]["code"] == 12
        assert f"injected fault in {call}" in info["error"]["message"]
        assert_public(api, vm_id, status)
        assert not path.exists()
        assert [d.uuid for d in our_domains(hypervisor)] == [vm_id]
        assert_quiet_and_clean(api)
        assert api.VM.destroy(vm_id) is True


class Gates:
    """A step hook passing on to the newest of several StepGates."""

    def __init__(self):
        self.gates = []

    def new(self, step):
        self.gates.append(StepGate(step))
        return self.gates[-1]

    def __call__(self, job, step):
        if self.gates and job.job_type == "hibernate":
            self.gates[-1](job, step)


def test_libvirt_failure_in_the_rollback_keeps_the_state_file(
        make_api, hypervisor, tmp_path):
    """An abort after the save brings the VM back from the file; if that
    fails too, the job fails (12) and the file, now the only copy of the
    VM's state, is kept."""
    gates = Gates()
    faulty = FaultyHypervisor(hypervisor)
    api = make_api(hv=faulty, step_hook=gates)

    def abort_after_save(path, fail_at):
        vm_id, _ = up_vm(api)
        gate = gates.new("undefine")
        job_id = api.VM.hibernate(vm_id, str(path))["jobId"]
        assert gate.reached.wait(WAIT)
        try:
            faulty.arm(fail_at)
            assert api.Job.abort(job_id) is True
        finally:
            gate.release.set()
        return vm_id, wait_job(api, job_id)

    vm_id, info = abort_after_save(tmp_path / "clean", None)
    assert info["status"] == "aborted"
    calls = list(faulty.calls)
    assert calls == ["restore", "persist"]
    api.VM.destroy(vm_id)

    for n, call in enumerate(calls, start=1):
        path = tmp_path / f"state-{n}"
        vm_id, info = abort_after_save(path, n)
        assert faulty.failed == call
        assert info["status"] == "failed", (n, call, info)
        assert info["error"]["code"] == 12
        assert "rollback failed" in info["error"]["message"]
        assert f"injected fault in {call}" in info["error"]["message"]
        assert path.is_file() and path.stat().st_size > 0
        faulty.arm(None)
        if call == "restore":
            # Not brought back: hibernated after all, its state in the
            # file, and not listed as a running VM.
            assert api.Host.getVMList() == []
            assert hypervisor.state(vm_id) == "shutoff"
            hypervisor.remove(vm_id)
        else:
            # Running again (transient): public as before.
            assert api.Host.getVMList() == [vm_id]
            assert hypervisor.state(vm_id) == "running"
            assert api.VM.destroy(vm_id) is True
        assert_gone(api, vm_id)


# -- destroy and abort --------------------------------------------------------

@pytest.mark.parametrize("step", STEPS)
def test_destroy_at_every_step(make_api, tmp_path, step):
    hook = DestroyAt(step, job_type="hibernate")
    api = make_api(step_hook=hook)
    hook.api = api
    vm_id, _ = up_vm(api)
    path = tmp_path / "state"
    job_id = api.VM.hibernate(vm_id, str(path))["jobId"]
    job = api.jobs.get(job_id)
    assert job.wait(WAIT)
    hook.thread.join(WAIT)
    assert not hook.thread.is_alive()
    assert hook.result == [True]
    info = api.Host.getJobs(job_ids=[job_id])[job_id]
    assert (info["status"], info["step"]) == ("aborted", step)
    assert job.history() == ["pending", "running", "aborting", "aborted"]
    assert_gone(api, vm_id)
    assert not path.exists()
    assert_quiet_and_clean(api)


def test_abort_after_the_save_brings_the_vm_back(make_api, tmp_path):
    gate = StepGate("undefine")
    api = make_api(step_hook=gate)
    vm_id, params = up_vm(api, owner="ops")
    path = tmp_path / "state"
    job_id = api.VM.hibernate(vm_id, str(path))["jobId"]
    assert gate.reached.wait(WAIT)
    try:
        assert path.is_file()   # saved: the domain is stopped now
        assert domain_state(api.hv, vm_id) == libvirt.VIR_DOMAIN_SHUTOFF
        assert api.Job.abort(job_id) is True
    finally:
        gate.release.set()
    info = wait_job(api, job_id)
    assert (info["status"], info["step"]) == ("aborted", "undefine")
    assert_public(api, vm_id, "Up")
    assert api.VM.getStats(vm_id)["params"] == params
    assert not path.exists()
    assert domxml.read_metadata(api.hv.metadata(vm_id, domxml.METADATA_NS)
                                ) == (vm_id, params)
    assert_quiet_and_clean(api)


def test_an_ended_hibernation_keeps_its_info_not_the_vm(make_api, tmp_path):
    """An ended job stays listed (an hour, up to 10,000 of them) with its
    JobInfo, not what it worked on (docs/benchmarks.md, section 7): the
    VM as its claim found it (its params, up to 64 KiB) is let go as the
    job ends. The control: the job holds it while it runs (seen at its
    save step)."""
    marker = f"ops-{new_id()}"

    def holding(job):
        return [name for name, value in vars(job).items()
                if marker in repr(value)]
    held = []
    api = make_api(step_hook=lambda job, step: step == "save" and
                   held.append(holding(job)))
    vm_id, _ = up_vm(api, owner=marker)
    job = api.jobs.get(api.VM.hibernate(
        vm_id, str(tmp_path / "vm.state"))["jobId"])
    assert job.wait(WAIT) and job.info()["status"] == "done"
    assert held == [["vm_before_claim"]]                # the control
    assert holding(job) == []
