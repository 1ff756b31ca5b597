"""Ended jobs are kept `autodelete_delay` seconds and at most `max_ended`
of them, oldest out first; active jobs are always kept."""

import pytest

from workers import Job, JobStillActive, JobTable, UnknownJob


class Noop(Job):
    def run(self):
        pass


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def ended_job():
    job = Noop()
    job.execute()
    return job


def test_ended_jobs_expire_after_delay():
    clock = Clock()
    table = JobTable(autodelete_delay=60, max_ended=100, clock=clock)
    active = Noop()
    table.add(active)
    old = Noop()
    table.add(old)
    old.execute()
    clock.now += 30
    new = Noop()
    table.add(new)
    new.execute()
    clock.now += 31
    assert {j.id for j in table.jobs()} == {active.id, new.id}
    with pytest.raises(UnknownJob):
        table.get(old.id)
    clock.now += 1000
    assert table.jobs() == [active]


def test_max_ended_keeps_newest():
    table = JobTable(autodelete_delay=3600, max_ended=3, clock=Clock())
    jobs = [Noop() for _ in range(5)]
    for job in jobs:
        table.add(job)
    for job in jobs:
        job.execute()
    assert [j.id for j in table.jobs()] == [j.id for j in jobs[2:]]
    assert table.counts() == {"jobs": 3, "ended": 3}


def test_delete_only_ended():
    table = JobTable()
    active = Noop()
    table.add(active)
    with pytest.raises(JobStillActive):
        table.delete(active.id)
    done = ended_job()
    table.add(done)
    table.delete(done.id)
    with pytest.raises(UnknownJob):
        table.delete(done.id)
