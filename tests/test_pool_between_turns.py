"""What a pool's workers run between two turns of jobs
(Pool.run_between_turns): after each job's turn, on the worker's own
thread, holding no lock of the pool's, until stop_between_turns; what it
raises is logged and the worker goes on. (vmjobs' event streams send what
the jobs posted this way: eventstream.Streams.flush_if_due.)"""

import logging
import threading

from conftest import WAIT
from workers import Job, Pool


class Noop(Job):
    def run(self):
        pass


def run_all(pool, count):
    jobs = [Noop() for _ in range(count)]
    for job in jobs:
        pool.submit(job)
    for job in jobs:
        assert job.wait(WAIT)
        assert job.status == "done"


def test_each_worker_runs_it_after_each_job_on_its_own_thread():
    pool = Pool(workers=2, queue_size=100, name="between")
    calls = []
    called = threading.Condition()   # guards calls

    def work():
        # stats() takes the pool's lock: under it, it would never return
        stats = pool.stats()
        with called:
            calls.append((threading.current_thread().name, stats))
            called.notify_all()
    pool.run_between_turns(work)
    run_all(pool, 20)
    with called:   # a job is counted ended before its worker is back
        assert called.wait_for(lambda: len(calls) == 20, WAIT)
    assert {name for name, _ in calls} <= {"between-0", "between-1"}
    pool.stop_between_turns(work)
    run_all(pool, 5)
    assert pool.shutdown(wait=True, timeout=WAIT)   # every turn taken
    assert len(calls) == 20


def test_what_it_raises_is_logged_and_the_worker_goes_on(caplog):
    pool = Pool(workers=1, queue_size=100, name="between")

    def work():
        raise RuntimeError("between turns")
    pool.run_between_turns(work)
    with caplog.at_level(logging.ERROR, logger="workers.pool"):
        run_all(pool, 3)
        assert pool.shutdown(wait=True, timeout=WAIT)
    assert caplog.text.count("RuntimeError: between turns") == 3
