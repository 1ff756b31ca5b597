"""Waiting is not work: a job parked on an outside event holds no worker
thread, stays `running` and abortable, and goes on when woken (from any
thread), at its deadline, or on abort; woken jobs run ahead of the queue.

The job here waits the way a migration destination waits for its guest:
look, park until an event or a deadline, look again."""

import threading
import time

from conftest import WAIT, GateJob
from workers import (
    ABORT,
    ABORT_REQUESTED,
    DRAIN,
    TIMER,
    WOKEN,
    Job,
    JobAborted,
    Park,
    Pool,
    Priority,
)


def park(job, step, then, deadline=None, poll=None):
    """Enter `step` and park there: `then(reason)` once woken, at the
    earlier of `deadline` and now + `poll` (the primitive beneath
    Job.wait_for)."""
    job.step(step)
    times = [t for t in (deadline, poll and time.monotonic() + poll)
             if t is not None]
    return Park(then, min(times) if times else None)


class Arrival(Job):
    priority = Priority.HIGH

    def __init__(self, deadline=WAIT, order=None):
        super().__init__()
        self.arrived = False          # the outside world, set by the test
        self.reasons = []             # why each continuation ran
        self.rolled_back = False
        self.deadline = time.monotonic() + deadline
        self.order = order

    def run(self):
        self.step("prepare")
        return self.wait_arrival(None)

    def wait_arrival(self, reason):
        self.reasons.append(reason)
        if self.order is not None:
            self.order.append(self)
        try:
            self.check_abort()
            if not self.arrived:
                if time.monotonic() >= self.deadline:
                    raise TimeoutError("did not arrive")
                return park(self, "wait-arrival", then=self.wait_arrival,
                            deadline=self.deadline)
        except JobAborted:
            self.rolled_back = True
            raise
        self.step("commit")
        self.complete()


def park_one(pool, job):
    """Submit `job` and return once it parked: a 1-worker pool then runs
    the next job, which looks at the stats while it holds the worker."""
    pool.submit(job)
    probe = GateJob()
    pool.submit(probe)
    assert probe.started.wait(WAIT)
    seen = pool.stats(), job.info()
    probe.release.set()
    assert probe.wait(WAIT)
    return seen


def test_parked_job_holds_no_worker_and_wakes_from_another_thread():
    with Pool(workers=1, queue_size=4) as pool:
        job = Arrival()
        stats, info = park_one(pool, job)
        assert (stats["parked"], stats["running"], stats["queued"]) == \
            (1, 1, 0)       # the running one is the probe
        assert (info["status"], info["step"]) == ("running", "wait-arrival")
        job.arrived = True
        waker = threading.Thread(target=job.wake)   # as an event thread
        waker.start()
        waker.join(WAIT)
        assert job.wait(WAIT)
    assert job.status == "done"
    assert job.reasons == [None, WOKEN]
    assert pool.stats()["parked"] == 0


def test_abort_while_parked_rolls_back():
    with Pool(workers=1, queue_size=4) as pool:
        job = Arrival()
        park_one(pool, job)
        job.abort()
        assert job.wait(WAIT)
    assert job.history() == ["pending", "running", "aborting", "aborted"]
    assert job.reasons == [None, ABORT_REQUESTED]
    assert job.rolled_back


def test_deadline_ends_the_wait():
    with Pool(workers=1, queue_size=4) as pool:
        job = Arrival(deadline=0.05)
        pool.submit(job)
        assert job.wait(WAIT)    # woken by the pool's timer, nobody else
    assert job.status == "failed"
    assert "did not arrive" in job.info()["error"]["message"]
    assert job.reasons[0] is None and set(job.reasons[1:]) == {TIMER}


def test_wake_before_the_job_parks_is_not_lost():
    def wake_in_prepare(job, step):
        if step == "prepare":
            job.arrived = True
            job.wake()          # the event comes before the job parks

    class Early(Arrival):
        def __init__(self):
            super().__init__()
            self._on_step = wake_in_prepare

        def wait_arrival(self, reason):
            if reason is None:   # it looked before the event: not there
                self.reasons.append(reason)
                return park(self, "wait-arrival", then=self.wait_arrival)
            return super().wait_arrival(reason)

    with Pool(workers=1, queue_size=4) as pool:
        job = Early()
        pool.submit(job)
        assert job.wait(WAIT)
    assert job.status == "done"
    assert job.reasons == [None, WOKEN]


def test_woken_job_runs_ahead_of_queued_work():
    order = []
    with Pool(workers=1, queue_size=10) as pool:
        job = Arrival(order=order)
        park_one(pool, job)
        gate = GateJob(order=order)
        pool.submit(gate)
        assert gate.started.wait(WAIT)
        queued = [GateJob(order=order) for _ in range(3)]
        for other in queued:
            other.release.set()
            other.priority = Priority.HIGH   # even ahead of HIGH ones
            pool.submit(other)
        job.arrived = True
        job.wake()
        gate.release.set()
    assert order == [job, gate, job] + queued


def test_a_parked_job_keeps_a_worker_free_of_normal_work():
    # The spare worker: while a job is parked, NORMAL work holds at most
    # workers - 1 threads, so the woken job waits for no NORMAL job's run.
    order = []
    with Pool(workers=2, queue_size=10) as pool:
        held = GateJob(order=order)             # NORMAL, on one worker
        pool.submit(held)
        assert held.started.wait(WAIT)
        job = Arrival(order=order)
        pool.submit(job)
        probe = GateJob(order=order)
        probe.priority = Priority.HIGH
        pool.submit(probe)      # runs on the other worker once job parked
        assert probe.started.wait(WAIT)
        second = GateJob(order=order)           # NORMAL: held back
        second.release.set()
        pool.submit(second)
        probe.release.set()
        assert probe.wait(WAIT)
        job.arrived = True
        job.wake()
        assert job.wait(WAIT)
        assert second.wait(WAIT)    # the spare worker is free: it runs now
        held.release.set()
    # `second`, queued while the job was parked, ran only after it ended,
    # although a worker was free all along: the spare worker held it back.
    assert order == [held, job, probe, job, second]


def test_drain_waits_for_parked_jobs():
    pool = Pool(workers=2, queue_size=4)
    job = Arrival()
    park_one(pool, job)
    pool.shutdown(DRAIN, wait=False)
    job.arrived = True
    job.wake()                 # the workers are still there to run it
    assert job.wait(WAIT) and job.status == "done"
    pool.shutdown(DRAIN)
    assert not any(t.is_alive() for t in pool._threads)


def test_abort_shutdown_aborts_parked_jobs():
    pool = Pool(workers=2, queue_size=4)
    job = Arrival()
    park_one(pool, job)
    pool.shutdown(ABORT)
    assert job.status == "aborted" and job.rolled_back
    assert not any(t.is_alive() for t in pool._threads)


def test_many_parked_jobs_share_one_timer_and_no_worker():
    with Pool(workers=1, queue_size=100) as pool:
        jobs = [Arrival() for _ in range(50)]
        for job in jobs:
            pool.submit(job)
        probe = GateJob()
        probe.priority = Priority.HIGH    # FIFO behind the 50 HIGH ones
        pool.submit(probe)
        assert probe.started.wait(WAIT)   # all 50 parked before it ran
        assert pool.stats()["parked"] == 50
        timers = [t for t in threading.enumerate()
                  if t.name == f"{pool.name}-timer"]
        assert len(timers) == 1
        probe.release.set()
        wakers = []
        for job in jobs:
            job.arrived = True
            wakers.append(threading.Thread(target=job.wake))
        for waker in wakers:
            waker.start()
        for job in jobs:
            assert job.wait(WAIT) and job.status == "done"
        for waker in wakers:
            waker.join(WAIT)


def test_poll_looks_again_until_it_arrives():
    class Polled(Arrival):
        def wait_arrival(self, reason):
            self.reasons.append(reason)
            if len(self.reasons) < 4:     # found at the fourth look
                return park(self, "wait-arrival", then=self.wait_arrival,
                            deadline=self.deadline, poll=0.001)
            self.step("commit")
            self.complete()
            return None

    with Pool(workers=1, queue_size=4) as pool:
        job = Polled()
        pool.submit(job)
        assert job.wait(WAIT)   # nobody wakes it: the timer polls
    assert job.status == "done"
    assert job.reasons == [None, TIMER, TIMER, TIMER]


def wake_at(barrier, job):
    barrier.wait(WAIT)
    job.wake()


def test_wake_and_abort_racing_end_the_job_once():
    with Pool(workers=2, queue_size=4) as pool:
        for _ in range(50):
            job = Arrival()
            park_one(pool, job)
            start = threading.Barrier(2)

            waker = threading.Thread(target=wake_at, args=(start, job))
            waker.start()
            start.wait(WAIT)
            job.abort()
            waker.join(WAIT)
            assert job.wait(WAIT)
            assert job.status == "aborted" and job.rolled_back
            assert job.reasons[0] is None
            assert set(job.reasons[1:]) <= {WOKEN, ABORT_REQUESTED}
        assert pool.wait_idle(WAIT)
        stats = pool.stats()
    assert (stats["parked"], stats["running"], stats["aborted"]) == \
        (0, 0, 50)
