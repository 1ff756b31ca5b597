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


class Other(Noop):
    job_type = "other"


def test_of_type_lists_the_listed_jobs_of_one_type():
    clock = Clock()
    table = JobTable(autodelete_delay=60, max_ended=2, clock=clock)
    others = [Other() for _ in range(3)]
    noop = Noop()
    for job in others + [noop]:
        table.add(job)
    assert {j.id for j in table.of_type("other")} == {j.id for j in others}
    assert table.of_type("job") == [noop]
    assert table.of_type("none") == []
    # Deleted, pushed out by max_ended, expired, discarded: gone from it
    # as from the table.
    for job in others:
        job.execute()
    assert {j.id for j in table.of_type("other")} == \
        {j.id for j in others[1:]}
    table.delete(others[1].id)
    assert table.of_type("other") == [others[2]]
    clock.now += 61
    assert table.of_type("other") == []
    table.discard(noop)
    assert table.of_type("job") == [] == table.jobs()
