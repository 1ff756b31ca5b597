"""A full queue refuses at once; it never blocks the caller."""

import pytest

from conftest import WAIT, StepGate, new_id, vm_params
from conftest import GateJob as Blocker  # holds its worker until released
from vmjobs.errors import ResourceExhausted
from workers import Pool, PoolClosed, QueueFull


def test_pool_refuses_when_queue_is_full():
    with Pool(workers=1, queue_size=2) as pool:
        running = Blocker()
        pool.submit(running)
        assert running.started.wait(WAIT)
        queued = [Blocker(), Blocker()]
        for job in queued:
            pool.submit(job)
        with pytest.raises(QueueFull):
            pool.submit(Blocker())
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
