"""The admission limit: of the jobs that ask for admission, at most
`admission_limit` run at once; the others wait queued, on no thread, while
other work passes them; the limit moves at run time within 1..workers."""

import pytest

from conftest import WAIT, GateJob
from workers import Pool


class Heavy(GateJob):
    admission = True


class Light(GateJob):
    admission = False


def one_admitted_one_waiting(pool):
    first, second = Heavy(), Heavy()
    pool.submit(first)
    assert first.started.wait(WAIT)
    pool.submit(second)
    return first, second


def test_limit_holds_admission_jobs_back_and_lets_others_pass():
    with Pool(workers=2, queue_size=10, admission_limit=1) as pool:
        first, second = one_admitted_one_waiting(pool)
        light = Light()
        pool.submit(light)          # the free worker runs it, not `second`
        assert light.started.wait(WAIT)
        assert not second.started.is_set()
        assert pool.stats()["admission_limit"] == 1
        assert pool.stats()["queued"] == 1     # `second`, on no thread
        light.release.set()
        assert light.wait(WAIT)
        first.release.set()
        assert second.started.wait(WAIT)        # it had to wait for `first`
        second.release.set()


def test_raising_the_limit_admits_waiting_jobs_at_once():
    with Pool(workers=2, queue_size=10, admission_limit=1) as pool:
        first, second = one_admitted_one_waiting(pool)
        pool.set_admission_limit(2)
        assert second.started.wait(WAIT)        # while `first` still runs
        assert pool.stats()["admission_limit"] == 2
        first.release.set()
        second.release.set()


def test_lowering_the_limit_takes_effect_for_the_next_jobs():
    with Pool(workers=3, queue_size=10) as pool:
        running = [Heavy(), Heavy()]
        for job in running:
            pool.submit(job)
        for job in running:
            assert job.started.wait(WAIT)
        pool.set_admission_limit(1)
        waiting = Heavy()
        pool.submit(waiting)
        light = Light()
        pool.submit(light)
        assert light.started.wait(WAIT)     # the third worker was free
        assert not waiting.started.is_set()
        running[0].release.set()
        assert running[0].wait(WAIT)
        assert not waiting.started.is_set()  # still 1 admitted: running[1]
        running[1].release.set()
        assert waiting.started.wait(WAIT)
        for job in (light, waiting):
            job.release.set()


@pytest.mark.parametrize("limit", [0, 3])
def test_limit_is_bounded_by_one_and_workers(limit):
    with Pool(workers=2, queue_size=1) as pool:
        with pytest.raises(ValueError):
            pool.set_admission_limit(limit)
        assert pool.admission_limit == 2
