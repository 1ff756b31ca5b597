"""A full queue refuses at once; it never blocks the caller."""

import pytest

from conftest import WAIT, StepGate, new_id, vm_params, wait_job
from conftest import GateJob as Blocker  # holds its worker until released
from test_migration_destination import incoming
from vmjobs.errors import ResourceExhausted
from workers import Pool, PoolClosed, Priority, QueueFull


class HighBlocker(Blocker):
    priority = Priority.HIGH


def fill_with_normal_jobs(pool):
    """One NORMAL job on the pool's one worker, and queue_size (2) queued:
    the next is refused. (running, queued)"""
    running = Blocker()
    pool.submit(running)
    assert running.started.wait(WAIT)
    queued = [Blocker(), Blocker()]
    for job in queued:
        pool.submit(job)
    with pytest.raises(QueueFull):
        pool.submit(Blocker())
    return running, queued


def test_pool_refuses_when_queue_is_full():
    with Pool(workers=1, queue_size=2) as pool:
        running, queued = fill_with_normal_jobs(pool)
        assert pool.stats() == {"workers": 1, "queue_size": 2, "queued": 2,
                                "running": 1, "parked": 0,
                                "admission_limit": 1, "done": 0, "failed": 0,
                                "aborted": 0}
        for job in [running] + queued:
            job.release.set()
    assert all(job.status == "done" for job in [running] + queued)
    assert pool.stats()["done"] == 3


def test_aborted_queued_jobs_make_room():
    with Pool(workers=1, queue_size=1) as pool:
        running = Blocker()
        pool.submit(running)
        assert running.started.wait(WAIT)
        queued = Blocker()
        pool.submit(queued)
        queued.abort()
        replacement = Blocker()
        replacement.release.set()
        pool.submit(replacement)      # the aborted job's room is free
        running.release.set()
    assert not queued.started.is_set()
    assert replacement.status == "done"
    assert pool.stats()["aborted"] == 1


def test_a_place_taken_counts_as_queued_until_used_or_given_back():
    with Pool(workers=1, queue_size=1) as pool:
        running = Blocker()
        pool.submit(running)
        assert running.started.wait(WAIT)
        with pool.place() as place:
            with pytest.raises(QueueFull):   # the place is the only room
                pool.submit(Blocker())
            with pytest.raises(QueueFull):
                pool.place()
        # Given back unused: the room is free again.
        with pool.place() as place:
            queued = Blocker()
            place.submit(queued)
            with pytest.raises(QueueFull):   # the job holds it now
                pool.submit(Blocker())
        with pytest.raises(RuntimeError):    # a place is used once
            place.submit(Blocker())
        queued.release.set()
        running.release.set()
    assert queued.status == "done"


def test_a_place_taken_before_a_shutdown_submits_nothing():
    pool = Pool(workers=1, queue_size=1)
    place = pool.place()
    pool.shutdown(wait=False)
    job = Blocker()
    with pytest.raises(PoolClosed):
        place.submit(job)
    assert pool.shutdown()     # its workers stopped once the place was used
    assert not job.started.is_set()


def test_each_class_of_job_has_its_own_room():
    """A queue full of NORMAL jobs refuses the next NORMAL one, and takes
    a HIGH one, up to queue_size of them: a flood of one class never
    refuses another."""
    with Pool(workers=1, queue_size=2) as pool:
        running, queued = fill_with_normal_jobs(pool)
        high = [HighBlocker(), HighBlocker()]
        pool.submit(high[0])
        with pool.place(Priority.HIGH) as place:
            with pytest.raises(QueueFull):     # HIGH's room is full now
                pool.submit(HighBlocker())
            with pytest.raises(ValueError):    # a place holds its class
                place.submit(Blocker())
        with pool.place(Priority.HIGH) as place:
            place.submit(high[1])
        assert pool.stats()["queued"] == 4
        with pytest.raises(QueueFull):
            pool.place()
        order = []
        for job in [running] + queued + high:
            job.order = order
            job.release.set()
    assert all(job.status == "done" for job in [running] + queued + high)
    assert order[:2] == high      # and HIGH went first


def test_a_queue_full_of_creations_takes_an_incoming_migration(make_api):
    """API.md: migration-destination jobs go ahead of queued creations,
    "even with a thousand creations queued": the creations filling the
    queue do not refuse it."""
    gate = StepGate("prepare")
    api = make_api(workers=1, queue_size=2, step_hook=gate)
    created = [new_id() for _ in range(3)]
    for vm_id in created:
        api.VM.create(vm_id, vm_params(vm_id))
        gate.reached.wait(WAIT)
    extra = new_id()
    with pytest.raises(ResourceExhausted):      # the control: full
        api.VM.create(extra, vm_params(extra))
    arriving = new_id()
    job_id = api.VM.migrationCreate(
        arriving, incoming(arriving))["params"]["jobId"]
    assert api.Host.getJobs()[job_id]["status"] in ("pending", "running")
    gate.release.set()
    assert api.pool.wait_stats(lambda stats: stats["done"] == 3, WAIT)
    assert set(api.Host.getVMList()) == set(created)
    api.Job.abort(job_id)      # nothing will arrive
    assert wait_job(api, job_id)["status"] == "aborted"


def test_create_maps_full_queue_to_resource_exhausted(make_api):
    gate = StepGate("prepare")
    api = make_api(workers=1, queue_size=1, step_hook=gate)
    first, second, third = new_id(), new_id(), new_id()
    api.VM.create(first, vm_params(first))
    assert gate.reached.wait(WAIT)
    api.VM.create(second, vm_params(second))
    with pytest.raises(ResourceExhausted) as err:
        api.VM.create(third, vm_params(third))
    assert err.value.code == 1100
    # The refused request left no trace: not staged, no job.
    staged = {vm.vm_id for vm in api.registry.snapshot()[0]}
    assert staged == {first, second}
    assert all(info["vm_id"] != third
               for info in api.Host.getJobs().values())
    gate.release.set()
    assert api.pool.wait_idle(WAIT)
    assert set(api.Host.getVMList()) == {first, second}
