"""Shutdown: stop taking work, drain or abort what is queued, join every
worker."""

import threading

import pytest

from conftest import WAIT, GateJob
from workers import ABORT, DRAIN, Job, Pool, PoolClosed


class Recorder(Job):
    def __init__(self, ran, block=None):
        super().__init__()
        self.ran = ran
        self.block = block
        self.started = threading.Event()

    def run(self):
        self.started.set()
        if self.block is not None:
            assert self.block.wait(WAIT)
        self.step("after-block")
        self.ran.append(self.id)


def fill(pool, ran, block):
    first = Recorder(ran, block)
    pool.submit(first)
    assert first.started.wait(WAIT)
    queued = [Recorder(ran) for _ in range(5)]
    for job in queued:
        pool.submit(job)
    return first, queued


def test_drain_runs_everything_queued():
    ran, block = [], threading.Event()
    pool = Pool(workers=1, queue_size=10)
    first, queued = fill(pool, ran, block)
    stopper = threading.Thread(target=pool.shutdown, args=(DRAIN,))
    stopper.start()
    with pytest.raises(PoolClosed):
        pool.submit(Recorder(ran))
    block.set()
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert all(job.status == "done" for job in [first] + queued)
    assert len(ran) == 6
    assert not any(t.is_alive() for t in pool._threads)


def test_abort_aborts_queued_and_running():
    ran, block = [], threading.Event()
    pool = Pool(workers=1, queue_size=10)
    first, queued = fill(pool, ran, block)
    stopper = threading.Thread(target=pool.shutdown, args=(ABORT,))
    stopper.start()
    # The running job is asked to abort; it does at its next step.
    assert first.wait_abort_requested(WAIT)
    block.set()
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert first.status == "aborted"
    assert all(job.status == "aborted" for job in queued)
    assert all(job.history() == ["pending", "aborted"] for job in queued)
    assert ran == []
    assert pool.stats()["aborted"] == 6
    assert not any(t.is_alive() for t in pool._threads)


def test_context_manager_drains_and_joins():
    ran = []
    with Pool(workers=3, queue_size=50) as pool:
        for _ in range(50):
            pool.submit(Recorder(ran))
    assert len(ran) == 50
    assert not any(t.is_alive() for t in pool._threads)
    with pytest.raises(PoolClosed):
        pool.submit(Recorder(ran))


def test_a_stop_has_a_bound_whatever_runs():
    # A job stuck behind libvirt (a hung call: it cannot see its abort)
    # must not keep the service from stopping: shutdown gives up on it
    # after its timeout (the service's stop_timeout, below the unit's
    # TimeoutStopSec) and says so.
    ran, block = [], threading.Event()
    pool = Pool(workers=2, queue_size=10)
    stuck = Recorder(ran, block)
    pool.submit(stuck)
    assert stuck.started.wait(WAIT)
    assert pool.shutdown(ABORT, timeout=0.2) is False
    assert not stuck.status.ended
    block.set()
    # Once the job reaches its end, a shutdown joins every worker (the
    # positive control: the same call, nothing stuck).
    assert pool.shutdown(ABORT, timeout=WAIT) is True
    assert stuck.status.ended
    assert not any(t.is_alive() for t in pool._threads)


class SlowToEnd(Job):
    """A job whose end hooks (on_ended) hold until released: a test can
    look at the pool while they run (a VmJob's unstage, a destination's
    removal of what arrived: libvirt calls)."""

    def __init__(self):
        super().__init__()
        self.in_hooks = threading.Event()
        self.release = threading.Event()

    def run(self):
        pass

    def on_ended(self):
        self.in_hooks.set()
        assert self.release.wait(WAIT), "end hooks never released"


def test_a_job_aborted_while_queued_ends_once_its_end_hooks_ran():
    # A job aborted while queued (Job.abort, VM.destroy) runs its end
    # hooks in the thread that aborted it. The pool counted it ended and
    # gave its place back before they ran: the pool looked idle (and a
    # stop joined its workers, then closed the hypervisor and the
    # notifications) while they still ran.
    pool = Pool(workers=1, queue_size=10)
    first = GateJob()
    pool.submit(first)
    assert first.started.wait(WAIT)
    queued = SlowToEnd()
    pool.submit(queued)
    aborter = threading.Thread(target=queued.abort)
    aborter.start()
    try:
        assert queued.in_hooks.wait(WAIT)
        first.release.set()
        assert pool.wait_stats(lambda s: s["done"] == 1, WAIT)
        # Its end hooks run: neither idle, nor counted, nor its place free.
        assert not pool.wait_idle(0)
        assert pool.stats()["aborted"] == 0
        stopper = threading.Thread(target=pool.shutdown, args=(DRAIN,))
        stopper.start()
        assert not queued.finished
    finally:
        queued.release.set()
    aborter.join(WAIT)
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert queued.finished and queued.history() == ["pending", "aborted"]
    assert pool.stats()["aborted"] == 1
    assert pool.wait_idle(0)
    assert not any(t.is_alive() for t in pool._threads)


@pytest.mark.parametrize("outcome", ["given back", "submitted"])
def test_a_stop_waits_for_the_places_its_callers_hold(outcome):
    """A caller that took a place (a verb reserving what its job needs:
    the VM staged, a libvirt look) may still submit or give it back: the
    stop returned meanwhile, and the service then closed its notifications
    and its libvirt connection under that caller (the concurrency review,
    round 2). Now the workers stop once no place is held; the place's job
    is refused (PoolClosed) and nothing runs after the stop."""
    pool = Pool(workers=1, queue_size=4)
    place = pool.place()
    stopped = threading.Event()
    stopper = threading.Thread(
        target=lambda: pool.shutdown(DRAIN) and stopped.set())
    stopper.start()
    assert not stopped.wait(0.5)      # the place is still held
    ran = []
    if outcome == "given back":
        place.give_back()
    else:
        with pytest.raises(PoolClosed):
            place.submit(Recorder(ran))
    stopper.join(WAIT)
    assert stopped.is_set()
    assert ran == []
