"""Waiting on the pool (wait_idle, wait_stats, submit(wait=True)): a
waiter wakes when its condition holds, not at every change. A storm makes
two changes per job, and a waiter woken by each took a context switch and
a turn of the GIL from the workers twice per job, to go back to sleep."""

import threading

import pytest

from conftest import WAIT
from workers import Job, Pool


class Gated(Job):
    def __init__(self, gate):
        super().__init__()
        self.gate = gate

    def run(self):
        assert self.gate.wait(WAIT)


def wait_in_thread(pool, predicate):
    """Start a thread in pool.wait_stats(predicate); return it and what it
    returned or raised (a list, filled once it ends)."""
    outcome = []

    def wait():
        try:
            outcome.append(pool.wait_stats(predicate, WAIT))
        except Exception as exc:
            outcome.append(exc)
    thread = threading.Thread(target=wait, name="waiter")
    thread.start()
    return thread, outcome


def test_a_waiter_wakes_once_for_a_hundred_changes():
    pool = Pool(workers=1, queue_size=50)
    jobs = [Gated(threading.Event()) for _ in range(50)]
    for job in jobs:
        pool.submit(job)
    seen_by_waiter, waiting = [], threading.Event()

    def all_done(stats):
        if threading.current_thread().name == "waiter":
            seen_by_waiter.append(stats["done"])
            waiting.set()
        return stats["done"] == 50
    thread, outcome = wait_in_thread(pool, all_done)
    assert waiting.wait(WAIT)
    # One job at a time, each let end before the next: a waiter woken by
    # every change would have time to look after each.
    for job in jobs:
        job.gate.set()
        assert job.wait(WAIT)
    thread.join(WAIT)
    assert outcome == [True]
    # Checked once before it waited, once when woken: 50 jobs taken and
    # 50 ended woke it once.
    assert seen_by_waiter == [0, 50]
    pool.shutdown()


def test_a_waiter_whose_check_raises_gets_the_error_and_the_pool_goes_on():
    gate = threading.Event()
    pool = Pool(workers=1, queue_size=10)
    pool.submit(Gated(gate))

    def broken(stats):
        if stats["done"]:
            raise ZeroDivisionError("the waiter's own bug")
        return False
    thread, outcome = wait_in_thread(pool, broken)
    gate.set()
    thread.join(WAIT)
    assert isinstance(outcome[0], ZeroDivisionError)
    # The worker that evaluated it lives on: the next job runs.
    job = Gated(gate)
    pool.submit(job)
    assert pool.wait_idle(WAIT)
    assert job.status == "done"
    pool.shutdown()


def test_a_waiter_for_room_wakes_when_a_queued_job_is_taken():
    gate = threading.Event()
    pool = Pool(workers=1, queue_size=1)
    pool.submit(Gated(gate))           # runs, blocked on the gate
    assert pool.wait_stats(lambda stats: stats["running"] == 1, WAIT)
    pool.submit(Gated(gate))           # fills the queue
    third = Gated(gate)
    submitter = threading.Thread(target=pool.submit, args=(third, True))
    submitter.start()
    assert pool.wait_stats(lambda stats: stats["queued"] == 1, WAIT)
    gate.set()
    submitter.join(WAIT)
    assert not submitter.is_alive()
    assert pool.wait_idle(WAIT)
    assert third.status == "done"
    pool.shutdown()


def test_a_timeout_still_ends_the_wait():
    pool = Pool(workers=1, queue_size=1)
    assert pool.wait_stats(lambda stats: False, 0.01) is False
    pool.shutdown()
    with pytest.raises(ZeroDivisionError):
        pool.wait_stats(lambda stats: 1 / 0, 0.01)
