"""A worker thread never dies: whatever a job or its hooks raise, the job
ends (with the error when it failed), its waiters wake, and the worker
goes on to the next job."""

import threading

import pytest

from conftest import WAIT
from workers import Job, JobStatus, Park, Pool


class Fatal(BaseException):
    """Not an Exception: what `except Exception` lets through."""


class Misbehaving(Job):
    def __init__(self, run=None, on_ended=None, error_info=None):
        super().__init__()
        self._run, self._on_ended, self._error_info = run, on_ended, error_info

    def run(self):
        if self._run is not None:
            return self._run(self)

    def on_ended(self):
        if self._on_ended is not None:
            self._on_ended()

    def error_info(self, exc):
        if self._error_info is not None:
            return self._error_info(exc)
        return super().error_info(exc)


def raise_(exc):
    def fail(*args):
        raise exc
    return fail


def complete_then_raise(job):
    job.complete()
    raise RuntimeError("after the commit")


def complete_twice(job):
    job.complete()
    job.complete()      # an illegal move: done -> done


def park_without_pool(job):
    job.step("wait")
    return Park(lambda reason: None, None)


CASES = {
    # name: (job, status it ends with, error message it reports)
    "base-exception-in-run": (
        lambda: Misbehaving(run=raise_(Fatal("fatal"))),
        JobStatus.FAILED, "fatal"),
    "raise-after-complete": (
        lambda: Misbehaving(run=complete_then_raise), JobStatus.DONE, None),
    "illegal-move-after-complete": (
        lambda: Misbehaving(run=complete_twice), JobStatus.DONE, None),
    "base-exception-in-on-ended": (
        lambda: Misbehaving(on_ended=raise_(Fatal("hook"))),
        JobStatus.DONE, None),
    "error-info-raises": (
        lambda: Misbehaving(run=raise_(RuntimeError("boom")),
                            error_info=raise_(KeyError("bug"))),
        JobStatus.FAILED, "boom"),
    "park-without-a-pool": (
        lambda: Misbehaving(run=park_without_pool), JobStatus.FAILED,
        "parks without a pool"),
}


def ends_as(job, status, message):
    assert job.wait(WAIT)
    assert job.status is status
    error = job.info().get("error")
    if message is None:
        assert error is None
    else:
        assert message in error["message"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_job_ends_and_waiters_wake_when_run_directly(case):
    make, status, message = CASES[case]
    job = make()
    job.execute()
    ends_as(job, status, message)


@pytest.mark.parametrize("case", sorted(set(CASES) -
                                         {"park-without-a-pool"}))
def test_worker_survives(case):
    make, status, message = CASES[case]
    with Pool(workers=1, queue_size=4) as pool:
        job = make()
        waiter_woke = threading.Event()
        job.add_end_callback(lambda _: waiter_woke.set())
        pool.submit(job)
        ends_as(job, status, message)
        assert waiter_woke.wait(WAIT)
        after = Misbehaving()          # the same (only) worker runs it
        pool.submit(after)
        assert after.wait(WAIT) and after.status is JobStatus.DONE
        assert pool._threads[0].is_alive()
        assert pool.wait_idle(WAIT)
        stats = pool.stats()
    assert stats["done"] + stats["failed"] == 2


def test_end_callback_raising_base_exception_wakes_waiters():
    with Pool(workers=1, queue_size=4) as pool:
        job = Misbehaving()
        job.add_end_callback(raise_(Fatal("callback")))
        pool.submit(job)
        assert job.wait(WAIT) and job.status is JobStatus.DONE
        after = Misbehaving()
        pool.submit(after)
        assert after.wait(WAIT)
