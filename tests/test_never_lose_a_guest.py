"""Every interleaving that lost or leaked a guest (issue 11), one test each,
on the test driver, made deterministic with step gates and hooks on the
service's own objects (never a sleep). Each is named after what it
protects, and ends with the invariants."""

import os
import threading

import pytest

import workers
from conftest import StepGate, new_id, vm_params, wait_job
from faults import FaultyHypervisor
from invariants import check_invariants, digest
from vmjobs import domxml
from vmjobs.api import API
from vmjobs.config import Config
from vmjobs.errors import (
    CreateError,
    GeneralException,
    MigrateError,
    NoVM,
    VmExists,
)
from vmjobs.params import parse_create
from vmjobs.tools import simulation


def incoming_xml(vm_id):
    return (f"<domain type='test'><name>in-{vm_id[:8]}</name>"
            f"<uuid>{vm_id}</uuid><memory unit='MiB'>64</memory>"
            "<os><type>hvm</type></os></domain>")


def migrate_in(api, vm_id):
    return api.VM.migrationCreate(vm_id, {"vmId": vm_id,
                                          "xml": incoming_xml(vm_id)})


def up_vm(api):
    vm_id = new_id()
    assert wait_job(api, api.VM.create(vm_id, vm_params(vm_id))["jobId"])[
        "status"] == "done"
    return vm_id


class BusyWorker:
    """An API with one worker, held by a create at its first step: every
    job queued meanwhile stays pending until release()."""

    def __init__(self, make_api, **config):
        self.gate = StepGate("prepare")
        self.api = make_api(workers=1, step_hook=self.gate,
                            migration_check_interval=3600, **config)
        blocker = new_id()
        self.blocker_job = self.api.VM.create(blocker,
                                              vm_params(blocker))["jobId"]
        assert self.gate.reached.wait(60)

    def release(self):
        self.gate.release.set()
        assert wait_job(self.api, self.blocker_job)["status"] == "done"


def queued_migration(make_api):
    """A migration job queued behind a busy worker: (busy, api, vm_id,
    job_id)."""
    busy = BusyWorker(make_api)
    vm_id = new_id()
    return (busy, busy.api, vm_id,
            migrate_in(busy.api, vm_id)["params"]["jobId"])


class OnQueueing:
    """Wraps the API's job table: when a verb lists its job (after staging
    or claiming, before queueing it), run `action(job)` there."""

    def __init__(self, api, action):
        self._table = api.jobs
        self._action = action
        api.jobs = self

    def __getattr__(self, name):
        return getattr(self._table, name)

    def add(self, job):
        self._table.add(job)
        self._action(job)


# -- migration destination: an end before arrival, even while queued -------

def test_a_migration_destroyed_while_queued_removes_the_domain_in_transfer(
        make_api, hypervisor):
    busy, api, vm_id, job_id = queued_migration(make_api)
    simulation.begin_incoming_migration(hypervisor, incoming_xml(vm_id))
    assert api.VM.destroy(vm_id) is True
    assert api.jobs.get(job_id).history() == ["pending", "aborted"]
    assert hypervisor.state(vm_id) is None
    busy.release()
    check_invariants(api)


def test_a_migration_destroyed_while_queued_after_arrival_is_destroyed(
        make_api, hypervisor):
    """The job, aborted while queued, never destroys an arrived guest; the
    VM.destroy that aborted it does, as it was asked to."""
    busy, api, vm_id, job_id = queued_migration(make_api)
    simulation.simulate_incoming_migration(hypervisor, incoming_xml(vm_id))
    assert api.VM.destroy(vm_id) is True
    info = api.Host.getJobs(job_ids=[job_id])[job_id]
    assert info["status"] == "aborted"
    assert "arrived but was not committed" in info["error"]["message"]
    assert hypervisor.state(vm_id) is None
    busy.release()
    check_invariants(api)


@pytest.mark.parametrize("arrived", [False, True],
                         ids=["in-transfer", "arrived"])
def test_a_migration_aborted_while_queued_never_leaves_a_guest_unowned(
        make_api, hypervisor, arrived):
    """Job.abort of a queued migration: a domain in transfer is removed;
    an arrived one is left running, ours, counted, and the next recovery
    adopts it."""
    busy, api, vm_id, job_id = queued_migration(make_api)
    if arrived:
        simulation.simulate_incoming_migration(hypervisor,
                                               incoming_xml(vm_id))
    else:
        simulation.begin_incoming_migration(hypervisor, incoming_xml(vm_id))
    assert api.Job.abort(job_id) is True
    busy.release()
    check_invariants(api)
    if not arrived:
        assert hypervisor.state(vm_id) is None
        return
    assert hypervisor.state(vm_id) == "running"
    assert api.Host.getStats()["unowned_domains"] == 1
    api.close()
    with API(Config(workers=2), hypervisor=hypervisor) as after:
        assert after.wait_recovered(60)
        assert after.VM.getStats(vm_id)["status"] == "Up"
        check_invariants(after)


def test_a_stop_with_abort_removes_queued_and_waiting_migrations(
        make_api, hypervisor):
    """SIGTERM with stop_mode=abort is api.close(ABORT): a migration still
    queued and one waiting for its domain both remove what is in transfer.
    (One worker, held by a create; the waiting migration is parked.)"""
    gate = StepGate("prepare")
    waits = threading.Event()

    def hook(job, step):
        if job.job_type == "create":
            gate(job, step)
        elif step == "wait-arrival":
            waits.set()

    api = make_api(workers=1, step_hook=hook, migration_check_interval=3600)
    waiting, queued = new_id(), new_id()
    waiting_job = api.jobs.get(migrate_in(api, waiting)["params"]["jobId"])
    assert waits.wait(60)
    # The create gets the only worker once the migration parked.
    blocker = new_id()
    api.VM.create(blocker, vm_params(blocker))
    assert gate.reached.wait(60)
    queued_job = api.jobs.get(migrate_in(api, queued)["params"]["jobId"])
    for vm_id in (waiting, queued):
        simulation.begin_incoming_migration(hypervisor, incoming_xml(vm_id))
    closing = threading.Thread(target=api.close, args=(workers.ABORT,))
    closing.start()
    assert queued_job.wait(60)
    # The parked one ends on a worker: the create's, once it goes on.
    gate.release.set()
    assert waiting_job.wait(60)
    closing.join(60)
    assert not closing.is_alive()
    assert queued_job.history() == ["pending", "aborted"]
    assert waiting_job.history()[-1] == "aborted"
    assert hypervisor.state(waiting) is None
    assert hypervisor.state(queued) is None
    # The create held at its first step was asked to abort too.
    assert hypervisor.list_domains(domxml.METADATA_NS) == []


def test_a_migration_destroyed_before_its_verb_answers_is_refused(
        make_api, hypervisor):
    """A destroy between stage() and the queueing: the verb answers an
    error, so the source never starts sending."""
    api = make_api(migration_check_interval=3600)
    OnQueueing(api, lambda job: api.VM.destroy(job.vm_id))
    vm_id = new_id()
    with pytest.raises(MigrateError) as err:
        migrate_in(api, vm_id)
    assert err.value.code == 12
    assert "destroyed before its job could start" in str(err.value)
    assert hypervisor.state(vm_id) is None
    check_invariants(api)


def test_an_abort_after_arrival_lists_the_guest(make_api, hypervisor):
    """Job.abort at the persist step, after arrival: the guest is not
    destroyed (the source's copy is gone) and not left unlisted (issue 24,
    hole 3: the source's job may have ended done): the job lists it all the
    same, with vmjobs metadata, says so, and a restart recovers it."""
    def hook(job, step):
        if step == "wait-arrival":
            simulation.simulate_incoming_migration(hypervisor,
                                                   incoming_xml(job.vm_id))
        elif step == "persist":
            job.abort()

    api = make_api(step_hook=hook, migration_check_interval=3600)
    vm_id = new_id()
    info = wait_job(api, migrate_in(api, vm_id)["params"]["jobId"])
    assert (info["status"], info["step"]) == ("failed", "persist")
    assert "too late to abort" in info["error"]["message"]
    assert api.VM.getStats(vm_id)["status"] == "Up"
    assert hypervisor.state(vm_id) == "running"
    assert hypervisor.metadata(vm_id, domxml.METADATA_NS) is not None
    check_invariants(api)
    api.close()
    with API(Config(workers=2), hypervisor=hypervisor) as after:
        assert after.wait_recovered(60)
        assert after.Host.getVMList() == [vm_id]


# -- lost replies -------------------------------------------------------------

def test_a_lost_define_reply_leaves_no_domain(make_api, hypervisor):
    faulty = FaultyHypervisor(hypervisor)
    api = make_api(hv=faulty)
    faulty.arm(2, "after")          # state, define
    vm_id = new_id()
    info = wait_job(api, api.VM.create(vm_id, vm_params(vm_id))["jobId"])
    assert faulty.failed == "define"
    assert (info["status"], info["error"]["code"]) == ("failed", 9)
    assert hypervisor.state(vm_id) is None
    assert api.Host.getStats()["stopped_domains"] == 0
    check_invariants(api)


@pytest.mark.parametrize("restore_reply_lost", [False, True],
                         ids=["restored", "restore-reply-lost"])
def test_a_lost_save_reply_brings_the_vm_back_from_its_state(
        make_api, hypervisor, tmp_path, restore_reply_lost):
    """save took effect but its reply was lost: the job looks, finds the
    domain stopped, and brings the VM back from the file before it removes
    it, even when restore's own reply is lost too."""
    faulty = FaultyHypervisor(hypervisor)
    api = make_api(hv=faulty)
    vm_id = up_vm(api)
    path = tmp_path / "state"
    # state, persist (prepare), save, was_saved (look), restore, [state
    # (look)]
    faulty.arm({3, 5} if restore_reply_lost else 3, "after")
    info = wait_job(api, api.VM.hibernate(vm_id, str(path))["jobId"])
    assert (info["status"], info["error"]["code"]) == ("failed", 12)
    assert faulty.calls[:5] == ["state", "persist", "save", "was_saved",
                                "restore"]
    assert api.VM.getStats(vm_id)["status"] == "Up"
    assert hypervisor.state(vm_id) == "running"
    assert not path.exists()     # it runs again: the job's file went
    check_invariants(api)


def test_a_lost_save_reply_with_no_way_back_keeps_the_state_file(
        make_api, hypervisor, tmp_path):
    """save took effect, its reply lost, and the VM cannot be brought
    back: the file is its only state and stays, and the VM is not listed
    Up over a stopped domain."""
    faulty = FaultyHypervisor(hypervisor)
    api = make_api(hv=faulty)
    vm_id = up_vm(api)
    path = tmp_path / "state"
    # save's reply lost; then restore refused outright.
    faulty.arm({3: "after", 5: "error"})
    info = wait_job(api, api.VM.hibernate(vm_id, str(path))["jobId"])
    assert info["status"] == "failed"
    assert path.stat().st_size > 0
    assert api.Host.getVMList() == []
    assert hypervisor.state(vm_id) == "shutoff"
    check_invariants(api)


def test_a_lost_save_reply_of_an_undefined_domain_brings_the_vm_back(
        make_api, hypervisor, tmp_path):
    """An operator undefined the running domain (virsh undefine: it runs
    on, transient); its save took effect but the reply was lost. A saved
    transient domain is gone, not shut off with reason SAVED: the job
    must not take "gone" for "not saved" and remove the file that holds
    the VM's only state (round 13). The control, the same with the
    domain defined, is the test above."""
    faulty = FaultyHypervisor(hypervisor)
    api = make_api(hv=faulty)
    vm_id = up_vm(api)
    with hypervisor.connection() as conn:
        conn.lookupByUUIDString(vm_id).undefine()
    path = tmp_path / "state"
    faulty.arm(3, "after")   # state, persist (prepare), save: its reply lost
    info = wait_job(api, api.VM.hibernate(vm_id, str(path))["jobId"])
    assert info["status"] == "failed", info
    assert api.VM.getStats(vm_id)["status"] == "Up"
    assert hypervisor.state(vm_id) == "running"
    assert not path.exists()     # it runs again: the job's file went
    check_invariants(api)


def undefine_at_save(hypervisor, destroy=False):
    """A step hook: at the hibernation's step save, after its persist, an
    operator's virsh undefine of the running domain (it runs on,
    transient); with `destroy`, then a virsh destroy (a transient domain
    stopped is gone)."""
    def hook(job, step):
        if step != "save":
            return
        with hypervisor.connection() as conn:
            dom = conn.lookupByUUIDString(job.vm_id)
            dom.undefine()
            if destroy:
                dom.destroy()
    return hook


@pytest.mark.parametrize("destroyed", [False, True],
                         ids=["saved", "destroyed-before-the-save"])
def test_an_undefine_after_the_persist_of_a_hibernation_is_read_right(
        make_api, hypervisor, tmp_path, destroyed):
    """The operator's undefine comes between the hibernation's persist
    and its save, and the save's reply is lost: the saved transient
    domain is gone, and the job took "gone" for "not saved", removed the
    file that held the VM's only state, and the VM went Down (round 13's
    window left open). A complete saved state in the job's own file is
    libvirt's word that it saved, with or without a domain. The control:
    the domain gone because it was destroyed before the save, the file
    empty: not saved, it leaves Down, the file removed."""
    faulty = FaultyHypervisor(hypervisor)
    api = make_api(hv=faulty,
                   step_hook=undefine_at_save(hypervisor, destroyed))
    vm_id = up_vm(api)
    path = tmp_path / "state"
    if not destroyed:
        faulty.arm(3, "after")   # state, persist (prepare), save: reply lost
    info = wait_job(api, api.VM.hibernate(vm_id, str(path))["jobId"])
    assert info["status"] == "failed", info
    assert "save" in faulty.calls
    if destroyed:
        with pytest.raises(NoVM):    # it left, Down (guests.py)
            api.VM.getStats(vm_id)
        assert hypervisor.state(vm_id) is None
    else:
        assert api.VM.getStats(vm_id)["status"] == "Up"
        assert hypervisor.state(vm_id) == "running"
    assert not path.exists()     # runs again, or never saved: it went
    check_invariants(api)


# -- hibernate vs destroy -----------------------------------------------------

def test_a_hibernation_destroyed_before_its_verb_answers_is_refused(
        make_api, hypervisor, tmp_path):
    api = make_api()
    vm_id = up_vm(api)
    OnQueueing(api, lambda job: api.VM.destroy(job.vm_id))
    path = tmp_path / "state"
    with pytest.raises(MigrateError) as err:
        api.VM.hibernate(vm_id, str(path))
    assert "destroyed before its job could start" in str(err.value)
    assert not path.exists()           # the job's own file, removed
    with pytest.raises(NoVM):
        api.VM.getStats(vm_id)
    check_invariants(api)


def test_a_hibernation_aborted_before_its_verb_answers_leaves_the_vm_up(
        make_api, tmp_path):
    """The status the VM had before the claim comes back (never None)."""
    api = make_api()
    vm_id = up_vm(api)
    OnQueueing(api, lambda job: job.abort())
    with pytest.raises(MigrateError):
        api.VM.hibernate(vm_id, str(tmp_path / "state"))
    assert api.VM.getStats(vm_id)["status"] == "Up"
    assert api.Host.getVMList(fullStatus=True) == [
        {"vmId": vm_id, "status": "Up"}]
    check_invariants(api)


def test_a_file_put_in_place_of_the_created_one_is_never_removed(
        make_api, tmp_path):
    """The job removes only the file it created (same inode), not
    whatever is at its path when it ends."""
    api = make_api()
    vm_id = up_vm(api)
    path = tmp_path / "state"
    theirs = tmp_path / "theirs"
    theirs.write_bytes(b"someone else's")

    def swap_then_destroy(job):
        os.replace(theirs, path)
        api.VM.destroy(job.vm_id)
    OnQueueing(api, swap_then_destroy)
    with pytest.raises(MigrateError):
        api.VM.hibernate(vm_id, str(path))
    assert path.read_bytes() == b"someone else's"
    check_invariants(api, {str(path): digest(path)})


def test_an_existing_file_is_refused_before_the_vm_is_claimed(make_api,
                                                              tmp_path):
    api = make_api()
    vm_id = up_vm(api)
    path = tmp_path / "state"
    path.write_bytes(b"the caller's")
    with pytest.raises(MigrateError):
        api.VM.hibernate(vm_id, str(path))
    assert api.VM.getStats(vm_id)["status"] == "Up"
    assert path.read_bytes() == b"the caller's"
    check_invariants(api)


# -- stuck vmIds --------------------------------------------------------------

def test_destroy_removes_a_stopped_domain_a_crash_left(make_api, hypervisor):
    """A crash between define and start leaves a stopped vmjobs domain in
    neither registry: create refuses its vmId, destroy removes it, and the
    create then works."""
    vm_id = new_id()
    hypervisor.define(domxml.compose(
        parse_create(vm_id, vm_params(vm_id)), hypervisor.guest))
    api = make_api()
    assert api.wait_recovered(60)
    assert api.Host.getStats()["stopped_domains"] == 1
    info = wait_job(api, api.VM.create(vm_id, vm_params(vm_id))["jobId"])
    assert info["error"]["code"] == CreateError.code
    assert "VM.destroy removes it" in info["error"]["message"]
    assert api.VM.destroy(vm_id) is True
    assert hypervisor.state(vm_id) is None
    assert wait_job(api, api.VM.create(vm_id, vm_params(vm_id))["jobId"])[
        "status"] == "done"
    check_invariants(api)


def test_a_stopped_domain_being_destroyed_is_no_vm(make_api, hypervisor,
                                                   tmp_path):
    """While VM.destroy removes a stopped vmjobs domain in neither registry,
    its vmId is held (no job may make a domain with its UUID meanwhile),
    but it is no VM (API.md: noVM, "neither staged nor public"):
    VM.getStats, VM.hibernate and VM.migrate answer noVM, and Host.getStats
    and the metrics count nothing staged. They answered a staged VM
    `Down`, busy (12, "not up yet"), and counted it staged. A create of
    the vmId is refused meanwhile (exist, 4), saying why; a VM staged by
    its own job beside it is the control."""
    vm_id = new_id()
    hypervisor.define(domxml.compose(
        parse_create(vm_id, vm_params(vm_id)), hypervisor.guest))
    faulty = FaultyHypervisor(hypervisor, fail_at=1, fail_calls=("remove",),
                              kind="hang", within="remove_in_no_registry")
    gate = StepGate("prepare")
    api = make_api(hv=faulty, step_hook=gate)
    assert api.wait_recovered(60)
    other = new_id()
    other_job = api.VM.create(other, vm_params(other))["jobId"]
    assert gate.reached.wait(60)
    answers = []
    destroyer = threading.Thread(
        target=lambda: answers.append(api.VM.destroy(vm_id)))
    destroyer.start()
    try:
        assert faulty.hanging.wait(60)
        for call in (lambda: api.VM.getStats(vm_id),
                     lambda: api.VM.hibernate(vm_id, str(tmp_path / "s")),
                     lambda: api.VM.migrate(vm_id, {
                         "dst": "127.0.0.1:1",
                         "dstUri": "qemu+tcp://127.0.0.1/system"})):
            with pytest.raises(NoVM):
                call()
        assert not (tmp_path / "s").exists()
        with pytest.raises(VmExists, match="being removed by a VM.destroy"):
            api.VM.create(vm_id, vm_params(vm_id))
        # The control: the VM its own job stages is staged, and counted.
        assert api.VM.getStats(other)["status"] == "WaitForLaunch"
        assert api.Host.getStats()["staged"] == 1
        assert api.registry.counts()["staged"] == 1
    finally:
        faulty.release.set()
        gate.release.set()
        destroyer.join(60)
    assert answers == [True]
    assert hypervisor.state(vm_id) is None
    assert wait_job(api, other_job)["status"] == "done"
    check_invariants(api)


def test_destroy_removes_a_failed_recovery(make_api, hypervisor):
    vm_id = new_id()
    simulation.create_transient(
        hypervisor,
        f"<domain type='test'><name>damaged</name><uuid>{vm_id}</uuid>"
        "<memory unit='MiB'>64</memory><os><type>hvm</type></os>"
        "<metadata><v:vm xmlns:v='urn:vmjobs:domain:1'>"
        "<v:vmId>not-a-uuid</v:vmId></v:vm></metadata></domain>")
    api = make_api()
    assert api.wait_recovered(60)
    assert api.Host.getStats()["unowned_domains"] == 1
    check_invariants(api)
    assert api.VM.destroy(vm_id) is True
    assert hypervisor.state(vm_id) is None
    assert api.Host.getStats()["unowned_domains"] == 0


def test_destroy_never_touches_a_domain_that_is_not_ours(api):
    vm_id = new_id()
    simulation.create_transient(api.hv, incoming_xml(vm_id))
    with pytest.raises(NoVM):
        api.VM.destroy(vm_id)
    assert api.hv.state(vm_id) == "running"
    api.hv.remove(vm_id)


def saved_as_the_service_died(make_api, hypervisor, tmp_path):
    """An Up VM whose domain libvirt saved as the service died (before its
    undefine): (vm_id, the state file, its digest)."""
    before = make_api()
    vm_id = up_vm(before)
    path = tmp_path / "state"
    hypervisor.save(vm_id, str(path))      # ... and the service died
    before.close()
    return vm_id, path, digest(path)


def test_a_vm_hibernated_as_the_service_crashed_can_be_restored(
        make_api, hypervisor, tmp_path):
    """The save was done, the undefine was not: recovery leaves the stopped
    definition alone, and a restore goes over it."""
    vm_id, path, sha = saved_as_the_service_died(make_api, hypervisor,
                                                 tmp_path)
    api = make_api()
    assert api.wait_recovered(60)
    assert api.Host.getStats()["stopped_domains"] == 1
    info = wait_job(api, api.VM.create(vm_id, {"vmId": vm_id,
                                               "restoreState": str(path)})[
        "jobId"])
    assert info["status"] == "done", info
    assert api.VM.getStats(vm_id)["status"] == "Up"
    check_invariants(api, {str(path): sha})



def test_a_failed_restore_over_a_stopped_definition_keeps_it(
        make_api, hypervisor, tmp_path):
    """Its undo stops what the restore started and leaves the definition
    (and the state file) as they were: a later restore still works."""
    vm_id, path, sha = saved_as_the_service_died(make_api, hypervisor,
                                                 tmp_path)
    faulty = FaultyHypervisor(hypervisor, fail_calls=("restore",),
                              kind="after")
    api = make_api(hv=faulty)
    assert api.wait_recovered(60)
    faulty.arm(1)
    params = {"vmId": vm_id, "restoreState": str(path)}
    info = wait_job(api, api.VM.create(vm_id, params)["jobId"])
    assert (info["status"], faulty.failed) == ("failed", "restore"), info
    assert hypervisor.state(vm_id) == "shutoff"    # stopped, still defined
    assert api.Host.getStats()["stopped_domains"] == 1
    check_invariants(api, {str(path): sha})
    info = wait_job(api, api.VM.create(vm_id, params)["jobId"])
    assert info["status"] == "done", info      # the control
    assert api.VM.getStats(vm_id)["status"] == "Up"
    check_invariants(api, {str(path): sha})

# -- threads ------------------------------------------------------------------

class RemoveRaises:
    """The real adapter, whose next remove raises something unexpected."""

    def __init__(self, real):
        self._real = real
        self.armed = True

    def __getattr__(self, name):
        return getattr(self._real, name)

    def remove(self, uuid, *args, **kwargs):
        if self.armed:
            self.armed = False
            raise RuntimeError("not a HypervisorError")
        return self._real.remove(uuid, *args, **kwargs)


def test_a_destroy_failing_unexpectedly_releases_the_vm(make_api,
                                                        hypervisor):
    """No claim is left behind for a later destroy to spin on."""
    adapter = RemoveRaises(hypervisor)
    api = make_api(hv=adapter)
    vm_id = up_vm(api)
    with pytest.raises(GeneralException):
        api.VM.destroy(vm_id)
    vm = api.registry.get(vm_id)
    assert (vm.status, vm.job) == ("Up", None)
    assert api.VM.destroy(vm_id) is True
    check_invariants(api)


# -- memory -------------------------------------------------------------------

def test_an_ended_job_keeps_its_info_not_the_request(make_api, hypervisor):
    api = make_api(migration_destination_timeout=0.3)
    vm_id = new_id()
    job = api.jobs.get(api.VM.create(
        vm_id, vm_params(vm_id, blob="x" * 60_000))["jobId"])
    assert job.wait(60)
    assert (job.spec, job.domain_xml) == (None, None)
    migration = new_id()
    job = api.jobs.get(migrate_in(api, migration)["params"]["jobId"])
    assert job.spec is None or job.spec.xml is None   # never needed
    assert job.wait(60)
    assert job.spec is None
    check_invariants(api)
