"""Jobs as one event table: each (status, event) makes the moves EVENTS
says, every such path is legal, and the pool counts each ended job once."""

import threading

import pytest

from conftest import WAIT
from workers import EVENTS, JobAborted, JobEnded, JobStatus, Pool
from workers.job import Job
from workers.states import (
    ENDED,
    TRANSITIONS,
    Event,
    IllegalTransition,
    check_transition,
)


def test_every_path_is_a_chain_of_legal_moves():
    for (status, _event), outcome in EVENTS.items():
        if isinstance(outcome, tuple):
            for new in outcome:
                assert new in TRANSITIONS[status]
                status = check_transition(status, new)


@pytest.mark.parametrize("status", [JobStatus.RUNNING, JobStatus.ABORTING,
                                    JobStatus.DONE])
@pytest.mark.parametrize("event", [Event.RETURNED, Event.ABORTED_ITSELF,
                                   Event.RAISED, Event.CRASHED])
def test_every_end_of_run_is_covered(status, event):
    # run() may end in any of these statuses (DONE: it completed itself);
    # none may find a hole in the table, or the worker would raise.
    path = EVENTS[(status, event)]
    assert isinstance(path, tuple)
    end = path[-1] if path else status
    assert end in ENDED


class Ends(Job):
    """Runs `body(self)` in a real pool, and records what it raised."""

    def __init__(self, body):
        super().__init__()
        self.body = body
        self.raised = None

    def run(self):
        try:
            self.body(self)
        except Exception as exc:
            self.raised = exc
            raise


def run_in_pool(body):
    job = Ends(body)
    with Pool(workers=1, queue_size=1) as pool:
        pool.submit(job)
        assert job.wait(WAIT)
    return job


def test_a_job_that_aborts_itself_goes_through_aborting():
    def abort_itself(job):
        raise JobAborted("told to")
    assert run_in_pool(abort_itself).history() == [
        JobStatus.PENDING, JobStatus.RUNNING, JobStatus.ABORTING,
        JobStatus.ABORTED]


def test_refusals_raise_what_the_table_names():
    # Through a real job's moves (Job._path), each refusal and a positive
    # control beside it.
    def aborted_then_complete(job):
        job.abort()
        job.complete()
    job = run_in_pool(aborted_then_complete)
    assert isinstance(job.raised, JobAborted) and job.status == "aborted"

    def complete_twice(job):
        job.complete()
        job.complete()
    job = run_in_pool(complete_twice)
    assert isinstance(job.raised, IllegalTransition)
    assert job.status == "done"       # the first complete() stands

    job = run_in_pool(lambda job: job.complete())
    assert job.raised is None and job.status == "done"
    with pytest.raises(JobEnded):
        job.abort()


class Outcome(Job):
    """Ends as told, once `go` is set."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.started = threading.Event()
        self.go = threading.Event()

    def run(self):
        self.started.set()
        assert self.go.wait(WAIT)
        self.step("end")
        if self.how == "fail":
            raise RuntimeError("told to fail")
        if self.how == "abort-itself":
            raise JobAborted("told to")


def test_pool_counts_each_ended_job_once():
    with Pool(workers=1, queue_size=10) as pool:
        blocker = Outcome("done")
        pool.submit(blocker)
        assert blocker.started.wait(WAIT)
        jobs = [Outcome(how) for how in
                ("done", "fail", "abort-itself", "abort-queued")]
        for job in jobs:
            job.go.set()
            pool.submit(job)
        jobs[-1].abort()          # ended while queued: counted by abort
        assert pool.stats()["aborted"] == 1
        assert pool.stats()["queued"] == 3
        blocker.abort()           # ended running: counted by its worker
        blocker.go.set()
        assert pool.wait_idle(WAIT)
        stats = pool.stats()
    assert (stats["done"], stats["failed"], stats["aborted"]) == (1, 1, 3)
    assert (stats["queued"], stats["running"], stats["parked"]) == (0, 0, 0)
