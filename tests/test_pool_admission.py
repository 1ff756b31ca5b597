"""The admission limit: of the jobs that ask for admission, at most
`admission_limit` run at once; the others wait queued, on no thread, while
other work passes them; the limit is within 1..workers (test_admission.py moves it)."""

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


@pytest.mark.parametrize("limit", [0, 3])
def test_limit_is_bounded_by_one_and_workers(limit):
    with pytest.raises(ValueError):
        Pool(workers=2, queue_size=1, admission_limit=limit)
    with Pool(workers=2, queue_size=1, admission_limit=2) as pool:
        assert pool.admission_limit == 2      # the positive control
