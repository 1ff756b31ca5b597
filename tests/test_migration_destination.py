"""VM.migrationCreate on libvirt's test driver, the source host played by vmjobs.tools.simulation: arrival, timeout, destroy, limits, refusals and faults."""

import threading

import libvirt
import pytest

from conftest import (
    WAIT,
    AtStep,
    DestroyAt,
    assert_quiet_and_clean,
    new_id,
    our_domains,
    vm_params,
    wait_job,
)
from faults import KINDS, FaultyHypervisor
from vmjobs import domxml
from vmjobs.errors import (
    InvalidParams,
    MigrateError,
    MigrateLimit,
    MissParam,
    NoVM,
    VmExists,
)
from vmjobs.params import parse_create
from vmjobs.tools import simulation
from workers.job import current_job

STEPS = ["prepare", "wait-arrival", "persist", "commit"]


def domain_xml(vm_id):
    return (f"<domain type='test'><name>in-{vm_id[:8]}</name>"
            f"<uuid>{vm_id}</uuid><memory unit='MiB'>64</memory>"
            "<os><type>hvm</type></os></domain>")


def incoming(vm_id, **extra):
    return {"vmId": vm_id, "xml": domain_xml(vm_id), **extra}


def all_domains(hv):
    """Every domain in libvirt, ours or not (an incoming domain carries no
    vmjobs metadata until the job persists it)."""
    return hv.list_domains(domxml.METADATA_NS)


def assert_nothing_left(api):
    assert_quiet_and_clean(api)
    assert all_domains(api.hv) == []
    assert api.Host.getVMList() == []


class Watched:
    """The real adapter, telling the test what the waiting job saw: an
    event is set once a job in step wait-arrival looked and found no
    domain, once it found one in transfer (defined, not running: see
    vmjobs.tools.simulation), and once it found the domain paused.

    While the test holds `frozen`, lookups wait: a simulated arrival made
    under it is seen whole. (On the test driver a paused arrival runs for a
    moment before it is paused; a real one is paused from the start.)"""

    def __init__(self, real):
        self._real = real
        self.saw_nothing = threading.Event()
        self.saw_transfer = threading.Event()
        self.saw_paused = threading.Event()
        self.frozen = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._real, name)

    def state_reason(self, uuid):
        with self.frozen:
            state, reason = self._real.state_reason(uuid)
        job = current_job()
        if job is not None and job.info()["step"] == "wait-arrival":
            if state is None:
                self.saw_nothing.set()
            elif state == "shutoff":
                self.saw_transfer.set()
            elif state == "paused":
                self.saw_paused.set()
        return state, reason


def assert_committed(api, vm_id, params, status="Up"):
    stats = api.VM.getStats(vm_id)
    assert (stats["status"], stats["staging"]) == (status, False)
    assert stats["params"] == params
    assert api.Host.getVMList() == [vm_id]
    dom = api.hv.shared_connection.lookupByUUIDString(vm_id)
    assert dom.isPersistent()
    assert dom.state()[0] == (libvirt.VIR_DOMAIN_RUNNING if status == "Up"
                              else libvirt.VIR_DOMAIN_PAUSED)
    assert domxml.read_metadata(api.hv.metadata(vm_id, domxml.METADATA_NS)
                                ) == (vm_id, params)
    # Also in the persistent definition, so the VM is still known as ours
    # once it stops.
    config = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                          domxml.METADATA_NS, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    assert domxml.read_metadata(config) == (vm_id, params)


# -- arrival ------------------------------------------------------------------

def test_result_view_while_waiting_and_arrival_after_the_wait_started(
        make_api, hypervisor):
    """Only a lifecycle event can wake the job (the safety-net lookup is an
    hour away): the arrival is seen through libvirt's events."""
    watched = Watched(hypervisor)
    api = make_api(hv=watched, migration_check_interval=3600)
    vm_id = new_id()
    created = api.VM.migrationCreate(vm_id, incoming(vm_id, owner="ops"))
    job_id = created["params"]["jobId"]
    assert isinstance(job_id, str)
    assert created == {"migrationPort": 0,
                       "params": {"vmId": vm_id,
                                  "status": "Migration Destination",
                                  "jobId": job_id}}
    assert watched.saw_nothing.wait(WAIT)

    stats = api.VM.getStats(vm_id)
    assert stats["staging"] is True
    assert stats["status"] == "Migration Destination"
    assert stats["jobId"] == job_id
    assert api.Host.getVMList() == []
    assert api.Host.getAllVmStats() == []
    info = api.Host.getJobs(job_ids=[job_id])[job_id]
    assert (info["job_type"], info["status"], info["step"]) == (
        "migration-destination", "running", "wait-arrival")

    with watched.frozen:
        simulation.simulate_incoming_migration(hypervisor, domain_xml(vm_id))
    info = wait_job(api, job_id)
    assert (info["status"], info["step"]) == ("done", "commit"), info
    assert_committed(api, vm_id, {"vmId": vm_id, "owner": "ops"})
    assert_quiet_and_clean(api)


def test_arrival_before_the_wait_starts(make_api, hypervisor):
    hook = AtStep("wait-arrival", lambda job: simulation.
                  simulate_incoming_migration(hypervisor,
                                              domain_xml(job.vm_id)))
    api = make_api(step_hook=hook, migration_check_interval=3600)
    vm_id = new_id()
    created = api.VM.migrationCreate(vm_id, incoming(vm_id))
    info = wait_job(api, created["params"]["jobId"])
    assert info["status"] == "done", info
    assert_committed(api, vm_id, {"vmId": vm_id})
    assert_quiet_and_clean(api)


def in_transfer(make_api, hypervisor, wrap=lambda hv: hv):
    """A migration whose domain has appeared but not arrived (transfer
    running), and been seen so by the waiting job, which only events can
    wake. `wrap`: what the API gets of the watched hypervisor."""
    watched = Watched(hypervisor)
    api = make_api(hv=wrap(watched), migration_check_interval=3600)
    vm_id = new_id()
    job_id = api.VM.migrationCreate(vm_id, incoming(vm_id))["params"]["jobId"]
    assert watched.saw_nothing.wait(WAIT)
    simulation.begin_incoming_migration(hypervisor, domain_xml(vm_id))
    assert watched.saw_transfer.wait(WAIT)
    return api, vm_id, job_id


def test_a_domain_in_transfer_is_not_committed_until_it_arrives(
        make_api, hypervisor):
    api, vm_id, job_id = in_transfer(make_api, hypervisor)

    job = api.jobs.get(job_id)
    assert not job.finished
    assert job.info()["step"] == "wait-arrival"
    stats = api.VM.getStats(vm_id)
    assert (stats["status"], stats["staging"]) == (
        "Migration Destination", True)
    assert api.Host.getVMList() == []
    # Counted running, as its JobInfo says, though parked on no worker.
    assert job.info()["status"] == "running"
    host = api.Host.getStats()
    assert (host["running"], host["parked"], host["queued"]) == (1, 1, 0)
    metrics = api.metrics.render()
    assert b"\nvmjobs_running_jobs 1.0\n" in metrics
    assert b"\nvmjobs_parked_jobs 1.0\n" in metrics

    simulation.finish_incoming_migration(hypervisor, vm_id)
    assert wait_job(api, job_id)["status"] == "done"
    assert_committed(api, vm_id, {"vmId": vm_id})
    assert_quiet_and_clean(api)
    assert (api.Host.getStats()["running"], api.Host.getStats()["parked"]) \
        == (0, 0)


def test_a_vm_paused_on_the_source_arrives_and_commits_paused(make_api,
                                                              hypervisor):
    """Arrived is "the migration finished", not "running": a VM paused on
    the source arrives paused (reason USER, not MIGRATION) and is
    committed Paused, not left waiting until the timeout removes it."""
    watched = Watched(hypervisor)
    api = make_api(hv=watched, migration_check_interval=3600)
    vm_id = new_id()
    job_id = api.VM.migrationCreate(vm_id, incoming(vm_id))["params"]["jobId"]
    assert watched.saw_nothing.wait(WAIT)
    with watched.frozen:
        simulation.simulate_incoming_migration(hypervisor, domain_xml(vm_id),
                                               paused=True)
    assert wait_job(api, job_id)["status"] == "done"
    assert_committed(api, vm_id, {"vmId": vm_id}, status="Paused")
    assert_quiet_and_clean(api)


def test_waiting_past_the_job_timeout_is_not_stuck(make_api, hypervisor):
    """jobs.timeout bounds work, not the wait for the source (which
    migration.destination_timeout bounds): a migration waiting longer is
    not reported stuck."""
    watched = Watched(hypervisor)
    api = make_api(hv=watched, migration_check_interval=3600,
                   job_timeout=0.0)
    vm_id = new_id()
    job_id = api.VM.migrationCreate(vm_id, incoming(vm_id))["params"]["jobId"]
    assert watched.saw_nothing.wait(WAIT)
    info = api.Host.getJobs(job_ids=[job_id])[job_id]
    assert (info["status"], info["step"]) == ("running", "wait-arrival")
    assert "stuck" not in info
    assert api.VM.destroy(vm_id) is True
    assert_nothing_left(api)


# -- timeout --------------------------------------------------------------

def test_nothing_arrives_before_the_timeout(make_api):
    api = make_api(migration_destination_timeout=0.3)
    vm_id = new_id()
    job_id = api.VM.migrationCreate(vm_id, incoming(vm_id))["params"]["jobId"]
    info = wait_job(api, job_id)
    assert (info["status"], info["step"]) == ("failed", "wait-arrival")
    assert info["error"]["code"] == 12
    with pytest.raises(NoVM):
        api.VM.getStats(vm_id)
    assert_nothing_left(api)


def test_a_domain_in_transfer_at_the_timeout_is_removed(make_api,
                                                         hypervisor):
    hook = AtStep("wait-arrival", lambda job: simulation.
                  begin_incoming_migration(hypervisor, domain_xml(job.vm_id)))
    api = make_api(step_hook=hook, migration_destination_timeout=0.3)
    vm_id = new_id()
    job_id = api.VM.migrationCreate(vm_id, incoming(vm_id))["params"]["jobId"]
    info = wait_job(api, job_id)
    assert hook.reached.is_set()
    assert (info["status"], info["step"]) == ("failed", "wait-arrival")
    assert info["error"]["code"] == 12
    assert hypervisor.state(vm_id) is None
    assert_nothing_left(api)


def sent_by_a_vmjobs_source(vm_id, hv):
    """The domain XML a vmjobs source's libvirtd sends: with the source's
    vmjobs metadata (measured on two real daemons:
    test_real_migration_ends.py::test_a_guest_arriving_after_the_\
destinations_job_ended_is_listed_there)."""
    return domxml.compose(parse_create(vm_id, vm_params(vm_id)), hv.guest)


def ended_before_arrival(make_api, hypervisor, end):
    """A migration job that ended without a commit, nothing arrived:
    `end` is "aborted" (Job.abort while it waits) or "failed" (its arrival
    timeout)."""
    watched = Watched(hypervisor)
    if end == "aborted":
        api = make_api(hv=watched, migration_check_interval=3600)
    else:
        api = make_api(hv=watched, migration_destination_timeout=0.3)
    vm_id = new_id()
    job_id = api.VM.migrationCreate(vm_id, incoming(vm_id))["params"]["jobId"]
    assert watched.saw_nothing.wait(WAIT)
    if end == "aborted":
        assert api.Job.abort(job_id) is True
    assert wait_job(api, job_id)["status"] == end
    assert hypervisor.state(vm_id) is None
    return api, vm_id, job_id


@pytest.mark.parametrize("end", ["aborted", "failed"])
def test_arrival_after_the_end_is_counted_destroyable_and_adopted(
        make_api, hypervisor, end):
    """The source began only after the job ended: the domain that arrives
    then may be the guest's only copy, so it is not destroyed nor made
    public; it carries the source's vmjobs metadata, so Host.getStats
    counts it unowned, VM.destroy removes it, and a recovery adopts it."""
    api, vm_id, job_id = ended_before_arrival(make_api, hypervisor, end)
    simulation.simulate_incoming_migration(
        hypervisor, sent_by_a_vmjobs_source(vm_id, hypervisor))
    assert api.pool.wait_idle(WAIT)
    assert api.Host.getJobs(job_ids=[job_id])[job_id]["status"] == end
    assert api.Host.getVMList() == []
    assert api.registry.snapshot()[0] == []
    with pytest.raises(NoVM):
        api.VM.getStats(vm_id)
    assert hypervisor.state(vm_id) == "running"   # not destroyed
    stats = api.Host.getStats()
    assert (stats["unowned_domains"], stats["external_domains"]) == (1, 0)
    after = make_api()
    assert after.wait_recovered(WAIT)
    assert after.VM.getStats(vm_id)["status"] == "Up"
    after.close()
    assert api.VM.destroy(vm_id) is True
    assert_nothing_left(api)


@pytest.mark.parametrize("made", ["defined", "created"])
@pytest.mark.parametrize("end", ["aborted", "failed"])
def test_a_domain_another_tool_makes_after_the_end_is_not_ours(
        make_api, hypervisor, end, made):
    """Once the job's end found nothing here, a domain with the vmId that
    carries no vmjobs metadata was made by someone else (an operator's
    virsh define or create, another tool): it is external, and VM.destroy
    leaves it alone (round 7: while the job was listed, an hour, it was
    counted as ours and removed). The control is the test above: what a
    vmjobs source sends is ours."""
    api, vm_id, job_id = ended_before_arrival(make_api, hypervisor, end)
    if made == "defined":
        hypervisor.define(domain_xml(vm_id))
    else:
        simulation.create_transient(hypervisor, domain_xml(vm_id))
    assert job_id in api.Host.getJobs()   # still listed
    stats = api.Host.getStats()
    assert (stats["external_domains"], stats["stopped_domains"],
            stats["unowned_domains"]) == (1, 0, 0)
    with pytest.raises(NoVM):
        api.VM.destroy(vm_id)
    assert hypervisor.state(vm_id) == ("shutoff" if made == "defined"
                                       else "running")
    hypervisor.remove(vm_id)


def test_a_removal_that_failed_at_the_end_keeps_the_vmid_ours(make_api,
                                                              hypervisor):
    """The positive control of the rule above, unmarked: the job's end
    could not remove the domain in transfer, so it may still be here
    without vmjobs metadata; it stays ours, counted, and VM.destroy
    removes it, as the job's error says."""
    api, vm_id, job_id = in_transfer(
        make_api, hypervisor,
        lambda watched: FaultyHypervisor(watched, fail_calls=("remove",)))
    api.hv.arm(1)     # the FaultyHypervisor
    assert api.Job.abort(job_id) is True
    info = wait_job(api, job_id)
    assert info["status"] == "aborted"
    assert "removing incoming domain" in info["error"]["message"]
    assert hypervisor.state(vm_id) == "shutoff"
    assert api.Host.getStats()["stopped_domains"] == 1
    assert api.VM.destroy(vm_id) is True
    assert_nothing_left(api)


# -- destroy ---------------------------------------------------------------

def destroy_in_thread(api, hypervisor, vm_id):
    """VM.destroy from another thread; it must return while the job still
    waits for an arrival that only an event could announce."""
    result = []
    thread = threading.Thread(
        target=lambda: result.append(api.VM.destroy(vm_id)))
    thread.start()
    thread.join(WAIT)
    if thread.is_alive():
        # The abort did not wake the job: let an arrival wake it, so the
        # test ends instead of waiting out the hour.
        if hypervisor.state(vm_id) is None:
            simulation.simulate_incoming_migration(hypervisor,
                                                   domain_xml(vm_id))
        else:
            simulation.finish_incoming_migration(hypervisor, vm_id)
        thread.join(WAIT)
        pytest.fail("VM.destroy did not return while the job waited")
    return result


def test_destroy_while_waiting(make_api, hypervisor):
    watched = Watched(hypervisor)
    api = make_api(hv=watched, migration_check_interval=3600)
    vm_id = new_id()
    job_id = api.VM.migrationCreate(vm_id, incoming(vm_id))["params"]["jobId"]
    assert watched.saw_nothing.wait(WAIT)
    assert destroy_in_thread(api, hypervisor, vm_id) == [True]
    info = api.Host.getJobs(job_ids=[job_id])[job_id]
    assert (info["status"], info["step"]) == ("aborted", "wait-arrival")
    assert api.jobs.get(job_id).history() == [
        "pending", "running", "aborting", "aborted"]
    assert api.registry.snapshot()[0] == []
    with pytest.raises(NoVM):
        api.VM.getStats(vm_id)
    assert_nothing_left(api)


def test_destroy_during_the_transfer_removes_the_domain(make_api,
                                                       hypervisor):
    api, vm_id, job_id = in_transfer(make_api, hypervisor)
    assert destroy_in_thread(api, hypervisor, vm_id) == [True]
    assert api.Host.getJobs(job_ids=[job_id])[job_id]["status"] == "aborted"
    assert hypervisor.state(vm_id) is None
    assert_nothing_left(api)


class ArriveThenDestroyAt(DestroyAt):
    """DestroyAt; with `arrive`, the domain arrives (a whole simulated
    incoming migration) when the job reaches wait-arrival, before any
    destroy."""

    def __init__(self, step, hypervisor, arrive):
        super().__init__(step)
        self.hypervisor = hypervisor
        self.arrive = arrive

    def __call__(self, job, step):
        if self.arrive and step == "wait-arrival":
            simulation.simulate_incoming_migration(
                self.hypervisor, domain_xml(job.vm_id))
        super().__call__(job, step)


@pytest.mark.parametrize("step,arrive", [
    ("prepare", False),
    ("wait-arrival", False),
    ("wait-arrival", True),
    ("persist", True),
    ("commit", True),
], ids=["prepare", "wait-arrival", "wait-arrival-arrived", "persist",
        "commit"])
def test_destroy_at_every_step(make_api, hypervisor, step, arrive):
    hook = ArriveThenDestroyAt(step, hypervisor, arrive)
    api = make_api(step_hook=hook, migration_check_interval=3600)
    hook.api = api
    vm_id = new_id()
    job_id = api.VM.migrationCreate(vm_id, incoming(vm_id))["params"]["jobId"]
    job = api.jobs.get(job_id)
    assert job.wait(WAIT)
    hook.thread.join(WAIT)
    assert hook.result == [True]
    info = api.Host.getJobs(job_ids=[job_id])[job_id]
    if step in ("persist", "commit"):
        # Arrived: the abort comes too late (the source's migration has
        # completed, its job may be done): the job lists the VM all the same
        # and says so, and VM.destroy, which asked, then destroys it.
        assert (info["status"], info["step"]) == ("failed", step)
        assert "too late to abort" in info["error"]["message"]
        assert job.history() == ["pending", "running", "aborting", "failed"]
    else:
        assert (info["status"], info["step"]) == ("aborted", step)
        assert job.history() == ["pending", "running", "aborting",
                                 "aborted"]
    with pytest.raises(NoVM):
        api.VM.getStats(vm_id)
    assert_nothing_left(api)


# -- incoming limit ---------------------------------------------------------

def test_incoming_limit(make_api):
    api = make_api(max_incoming=2, migration_check_interval=3600)
    first, second, third = new_id(), new_id(), new_id()
    api.VM.migrationCreate(first, incoming(first))
    api.VM.migrationCreate(second, incoming(second))
    with pytest.raises(MigrateLimit) as err:
        api.VM.migrationCreate(third, incoming(third))
    assert err.value.code == 82
    assert {vm.vm_id for vm in api.registry.snapshot()[0]} == {first, second}
    assert len(api.Host.getJobs()) == 2
    with pytest.raises(NoVM):
        api.VM.getStats(third)

    # A caller's limit above the host's is lowered to it, not refused.
    with pytest.raises(MigrateLimit):
        api.VM.migrationCreate(vmID=third, params=incoming(third),
                               incomingLimit=100)
    # One below it is honoured.
    with pytest.raises(MigrateLimit):
        api.VM.migrationCreate(vmID=third, params=incoming(third),
                               incomingLimit=1)
    assert api.VM.destroy(second) is True
    created = api.VM.migrationCreate(vmID=third, params=incoming(third),
                                     incomingLimit=100)
    assert created["params"]["status"] == "Migration Destination"
    assert {vm.vm_id for vm in api.registry.snapshot()[0]} == {first, third}

    for vm_id in (first, third):
        assert api.VM.destroy(vm_id) is True
    assert_nothing_left(api)


def test_incoming_limit_holds_under_a_race(make_api):
    api = make_api(max_incoming=2, migration_check_interval=3600)
    threads_count = 32
    barrier = threading.Barrier(threads_count)
    accepted, refused, other = [], [], []
    lock = threading.Lock()

    def request():
        vm_id = new_id()
        barrier.wait(WAIT)
        try:
            api.VM.migrationCreate(vm_id, incoming(vm_id))
        except MigrateLimit as exc:
            with lock:
                refused.append(exc.code)
        except Exception as exc:
            with lock:
                other.append(exc)
        else:
            with lock:
                accepted.append(vm_id)

    threads = [threading.Thread(target=request)
               for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)
    assert other == []
    assert len(accepted) == 2
    assert refused == [82] * 30
    assert {vm.vm_id for vm in api.registry.snapshot()[0]} == set(accepted)
    assert len(api.Host.getJobs()) == 2
    for vm_id in accepted:
        assert api.VM.destroy(vm_id) is True
    assert_nothing_left(api)


# -- refusals -----------------------------------------------------------------

def test_domain_already_running_here_is_refused_and_untouched(api):
    """Refused by the verb itself, before it answers (the source starts
    sending once it has the answer): nothing staged, no job, and the
    domain that was here keeps running, as it was."""
    vm_id = new_id()
    dom = api.hv.shared_connection.defineXML(domain_xml(vm_id))
    dom.create()
    with pytest.raises(MigrateError) as err:
        api.VM.migrationCreate(vm_id, incoming(vm_id))
    assert err.value.code == 12
    assert "already exists" in str(err.value)
    assert api.Host.getJobs() == {}
    assert api.Host.getVMList() == [] and api.registry.snapshot()[0] == []
    assert api.pool.wait_idle(WAIT)
    assert api.hv.state(vm_id) == "running"
    assert api.hv.shared_connection.lookupByUUIDString(vm_id).isPersistent()
    assert our_domains(api.hv) == []   # not made ours either
    api.hv.remove(vm_id)
    assert_nothing_left(api)


# -- over the VM's own stopped definition ------------------------------------

def stopped_definition(hypervisor, vm_id, mem):
    """The VM's own definition (vmjobs metadata), stopped, in no registry:
    what a hibernation interrupted by a crash leaves here when its state
    file is then restored on another host; the domain XML of the VM with
    `mem` MiB (the source's, as it would send it)."""
    xml = domxml.compose(parse_create(vm_id, vm_params(vm_id, memSize=mem)),
                         hypervisor.guest)
    hypervisor.define(xml)
    return xml


def inactive_xml(hypervisor, vm_id):
    return hypervisor.shared_connection.lookupByUUIDString(vm_id).XMLDesc(
        libvirt.VIR_DOMAIN_XML_INACTIVE)


def test_the_vm_arrives_over_its_own_stopped_definition(make_api,
                                                        hypervisor):
    """The VM coming back from the host where its state file was restored
    is taken, not refused with exist: the guest arrives over the stopped
    definition, whose place the guest's own definition takes."""
    vm_id = new_id()
    stopped_definition(hypervisor, vm_id, 64)
    api = make_api()
    assert api.wait_recovered(WAIT)
    assert api.Host.getStats()["stopped_domains"] == 1
    xml = domxml.compose(parse_create(vm_id, vm_params(vm_id, memSize=96)),
                         hypervisor.guest)
    created = api.VM.migrationCreate(vm_id, incoming(vm_id, owner="ops"))
    simulation.simulate_incoming_migration(hypervisor, xml)
    info = wait_job(api, created["params"]["jobId"])
    assert (info["status"], info["step"]) == ("done", "commit"), info
    assert_committed(api, vm_id, {"vmId": vm_id, "owner": "ops"})
    assert "<memory unit='KiB'>98304</memory>" in inactive_xml(hypervisor,
                                                               vm_id)
    assert api.Host.getStats()["stopped_domains"] == 0
    assert api.VM.destroy(vm_id) is True
    assert_nothing_left(api)


@pytest.mark.parametrize("end", ["timeout", "Job.abort"])
def test_an_end_before_arrival_leaves_the_stopped_definition_as_it_was(
        make_api, hypervisor, end):
    """The definition was here before the job: its undo leaves it, as a
    failed restore over it does; VM.destroy still removes it."""
    vm_id = new_id()
    stopped_definition(hypervisor, vm_id, 64)
    before = inactive_xml(hypervisor, vm_id)
    watched = Watched(hypervisor)
    api = make_api(hv=watched, migration_destination_timeout=(
        0.3 if end == "timeout" else 3600))
    assert api.wait_recovered(WAIT)
    job_id = api.VM.migrationCreate(vm_id, incoming(vm_id))["params"]["jobId"]
    if end == "Job.abort":
        assert watched.saw_transfer.wait(WAIT)   # shut off: not arrived
        api.Job.abort(job_id)
    info = wait_job(api, job_id)
    assert (info["status"], info["step"]) == (
        ("failed" if end == "timeout" else "aborted"), "wait-arrival"), info
    assert hypervisor.state(vm_id) == "shutoff"
    assert inactive_xml(hypervisor, vm_id) == before
    assert api.Host.getStats()["stopped_domains"] == 1
    assert api.pool.wait_idle(WAIT)
    assert api.registry.snapshot() == ([], [])
    assert api.VM.destroy(vm_id) is True
    assert_nothing_left(api)


def test_a_vm_here_is_exist_whatever_its_xml(api):
    """exist (4) comes before the XML is judged, as for VM.create (test_restore:
    a restore onto a VM here is exist whatever its file): it answered
    -32602 for an XML the policy refuses. The control is the same request
    for a vmId not here, refused for its XML."""
    def refused_xml(vm_id):
        return domain_xml(vm_id).replace(
            "</os>", "<kernel>/etc/passwd</kernel></os>")
    vm_id = new_id()
    assert wait_job(api, api.VM.create(vm_id, vm_params(vm_id))["jobId"])[
        "status"] == "done"
    with pytest.raises(VmExists):
        api.VM.migrationCreate(vm_id, {"vmId": vm_id,
                                       "xml": refused_xml(vm_id)})
    other = new_id()
    with pytest.raises(InvalidParams) as err:   # the control
        api.VM.migrationCreate(other, {"vmId": other,
                                       "xml": refused_xml(other)})
    assert err.value.data == {"param": "xml"}
    assert [j["job_type"] for j in api.Host.getJobs().values()] == [
        "create"]   # nothing staged, no job for either
    assert api.VM.getStats(vm_id)["status"] == "Up"
    assert api.VM.destroy(vm_id) is True


def test_a_stopped_domain_that_is_not_ours_is_refused_and_untouched(api):
    """The control: without vmjobs metadata a stopped domain with the UUID
    is someone else's, refused as a running one is."""
    vm_id = new_id()
    api.hv.shared_connection.defineXML(domain_xml(vm_id))
    with pytest.raises(MigrateError) as err:
        api.VM.migrationCreate(vm_id, incoming(vm_id))
    assert err.value.code == 12
    assert "already exists" in str(err.value)
    assert api.Host.getJobs() == {}
    assert api.hv.state(vm_id) == "shutoff"
    api.hv.remove(vm_id)
    assert_nothing_left(api)


def test_missing_xml(api):
    vm_id = new_id()
    with pytest.raises(MissParam) as err:
        api.VM.migrationCreate(vm_id, {"vmId": vm_id})
    assert err.value.code == 11
    assert api.registry.snapshot()[0] == [] and api.Host.getJobs() == {}


def test_xml_of_another_vm(api):
    vm_id = new_id()
    params = {"vmId": vm_id, "xml": domain_xml(new_id())}
    with pytest.raises(InvalidParams) as err:
        api.VM.migrationCreate(vm_id, params)
    assert err.value.code == -32602
    assert err.value.data == {"param": "xml"}
    assert api.registry.snapshot()[0] == [] and api.Host.getJobs() == {}


@pytest.mark.parametrize("limit", [0, -1, "2", 2.0, True],
                         ids=["zero", "negative", "string", "float", "bool"])
def test_bad_incoming_limit(api, limit):
    vm_id = new_id()
    with pytest.raises(InvalidParams) as err:
        api.VM.migrationCreate(vmID=vm_id, params=incoming(vm_id),
                               incomingLimit=limit)
    assert err.value.code == -32602
    assert err.value.data == {"param": "incomingLimit"}
    assert api.registry.snapshot()[0] == [] and api.Host.getJobs() == {}


# -- libvirt failures -------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_libvirt_failure_at_every_call(make_api, hypervisor, kind):
    """The first call is the verb's own look for a domain already here;
    the domain arrives through the real adapter, so only vmjobs' own calls
    are counted and failed, before or after libvirt acted. Once the domain
    has arrived no failure destroys it: the job fails saying it is left
    running, Host.getStats counts it, and VM.destroy removes it."""
    def arrive(job):
        simulation.simulate_incoming_migration(hypervisor,
                                               domain_xml(job.vm_id))

    faulty = FaultyHypervisor(hypervisor)
    api = make_api(hv=faulty, step_hook=AtStep("wait-arrival", arrive),
                   migration_check_interval=3600)
    faulty.arm(None)
    vm_id = new_id()
    job_id = api.VM.migrationCreate(vm_id, incoming(vm_id))["params"]["jobId"]
    assert wait_job(api, job_id)["status"] == "done"
    calls = list(faulty.calls)
    assert calls == ["state", "state_reason", "persist", "set_metadata"]
    assert api.VM.destroy(vm_id) is True

    for n, call in enumerate(calls, start=1):
        faulty.arm(n, kind)
        vm_id = new_id()
        if n == 1:
            # The verb's own look for a domain already here, before it
            # answers: refused at once, no job.
            with pytest.raises(MigrateError) as err:
                api.VM.migrationCreate(vm_id, incoming(vm_id))
            assert err.value.code == 12
            assert f"injected fault in {call}" in str(err.value)
            assert not any(job.vm_id == vm_id for job in api.jobs.jobs())
        else:
            job_id = api.VM.migrationCreate(vm_id, incoming(vm_id))[
                "params"]["jobId"]
            info = wait_job(api, job_id)
            assert info["status"] == "failed", (n, call, info)
            assert info["error"]["code"] == 12
            assert f"injected fault in {call}" in info["error"]["message"]
            # It had arrived: kept, ours, and said so.
            assert "arrived but was not committed" in \
                info["error"]["message"]
            assert hypervisor.state(vm_id) == "running"
            assert api.Host.getStats()["unowned_domains"] == 1
            assert api.registry.snapshot()[0] == [] and \
                api.Host.getVMList() == []
            assert api.VM.destroy(vm_id) is True
        assert faulty.failed == call
        with pytest.raises(NoVM):
            api.VM.getStats(vm_id)
        assert_nothing_left(api)


# -- waiting is not work --------------------------------------------------

def test_waiting_migrations_hold_no_worker(make_api, hypervisor):
    """One worker, five migrations waiting for their guests: they are
    parked (running, step wait-arrival), and a creation queued behind them
    runs meanwhile; then the guests arrive and each is committed."""
    api = make_api(workers=1, max_incoming=5, migration_check_interval=3600)
    waiting = [new_id() for _ in range(5)]
    jobs = [api.VM.migrationCreate(vm_id, incoming(vm_id))["params"]["jobId"]
            for vm_id in waiting]
    created = new_id()
    info = wait_job(api, api.VM.create(created, vm_params(created))["jobId"])
    assert info["status"] == "done"
    for job_id in jobs:
        info = api.Host.getJobs(job_ids=[job_id])[job_id]
        assert (info["status"], info["step"]) == ("running", "wait-arrival")
    assert api.pool.stats()["parked"] == 5
    for vm_id in waiting:
        simulation.simulate_incoming_migration(hypervisor, domain_xml(vm_id))
    for job_id in jobs:
        assert wait_job(api, job_id)["status"] == "done"
    assert sorted(api.Host.getVMList()) == sorted(waiting + [created])
    for vm_id in waiting + [created]:
        assert api.VM.destroy(vm_id) is True
    assert_nothing_left(api)
