"""A job past its timeout is reported stuck, and is neither abandoned nor
replaced: it still ends the way it would have."""

import threading
import time

from conftest import WAIT
from workers import Job, Pool


class Slow(Job):
    def __init__(self):
        super().__init__(timeout=5.0)
        self.started = threading.Event()
        self.release = threading.Event()

    def run(self):
        self.started.set()
        assert self.release.wait(WAIT)
        self.step("after")


def test_stuck_job_is_reported_and_kept():
    with Pool(workers=1, queue_size=1) as pool:
        job = Slow()
        pool.submit(job)
        assert job.started.wait(WAIT)
        now = time.monotonic()
        assert not job.is_stuck(now)
        assert job.is_stuck(now + 6.0)     # as seen six seconds later
        assert pool.stats()["running"] == 1
        job.release.set()
    assert job.status == "done"
    assert not job.is_stuck(time.monotonic() + 60)


def test_job_info_reports_stuck():
    job = Slow()
    job.timeout = 0.0
    worker = threading.Thread(target=job.execute)
    worker.start()
    assert job.started.wait(WAIT)
    assert job.info()["stuck"] is True
    job.release.set()
    worker.join(WAIT)
    assert "stuck" not in job.info()
    assert job.status == "done"
