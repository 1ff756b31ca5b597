"""The pool's figures (running, done, failed, aborted, queued) agree with
a job's end as everybody else sees it: by the time a job is seen ended
(its observer told its ended status, which vmjobs publishes as the job's
last event; job.wait() returning), the pool counts it ended and no
longer running or queued. The observer runs under the job's lock, which
the job's own worker needs again before it gets back to the pool: what
the observer reads is what a subscriber of the event could read."""

import threading

from conftest import WAIT
from workers import Job, JobStatus, Pool


class Ends(Job):
    def __init__(self, outcome="done"):
        super().__init__()
        self.outcome = outcome

    def run(self):
        self.step("work")
        if self.outcome == "failed":
            raise RuntimeError("failed")


def figures_at_end(pool, job):
    """The pool's stats as read when the job's ended status is
    observed."""
    seen = []

    def observer(j, info):
        if JobStatus(info["status"]).ended:
            # (The job's lock is held here: the pool's comes after it.)
            seen.append(pool.stats())
    job.observe(observer)
    return seen


def test_a_job_seen_ended_is_counted_ended_and_not_running():
    for outcome in ("done", "failed"):
        pool = Pool(workers=1, queue_size=4)
        job = Ends(outcome)
        seen = figures_at_end(pool, job)
        pool.submit(job)
        assert job.wait(WAIT)
        (stats,) = seen
        assert stats[outcome] == 1, stats
        assert stats["running"] == 0, stats
        pool.shutdown()


def test_a_job_aborted_while_queued_seen_ended_is_counted():
    pool = Pool(workers=1, queue_size=4)
    started, gate = threading.Event(), threading.Event()

    class Gate(Job):
        def run(self):
            started.set()
            assert gate.wait(WAIT)
    pool.submit(Gate())
    assert started.wait(WAIT)   # the one worker is busy: the next queues
    queued = Ends()
    seen = figures_at_end(pool, queued)
    pool.submit(queued)
    queued.abort()
    (stats,) = seen
    assert stats["aborted"] == 1 and stats["queued"] == 0, stats
    gate.set()
    pool.shutdown()


def test_wait_idle_returns_once_the_last_job_was_seen_ended():
    """The pool counts a job at its end, before anybody sees it; those who
    wait for the pool (wait_idle, wait_stats) return only once its
    observer was told (vmjobs' last event of the job, its metrics): a test
    that waits for an idle pool and then reads the events found the last
    one missing. The observer's last call holds until the waiter returns,
    or a while: a waiter that returns in the meantime is a failure."""
    pool = Pool(workers=1, queue_size=4)
    job = Ends()
    idle_returned = threading.Event()
    returned_while_observed = []

    def observer(j, info):
        if JobStatus(info["status"]).ended:
            returned_while_observed.append(idle_returned.wait(0.5))

    job.observe(observer)
    waiter = threading.Thread(
        target=lambda: pool.wait_idle(WAIT) and idle_returned.set())
    pool.submit(job)
    waiter.start()
    assert job.wait(WAIT)
    waiter.join(WAIT)
    assert idle_returned.is_set()
    assert returned_while_observed == [False]
    pool.shutdown()
