"""workers.Job.observe: the observer hears every change of status and of
step, in order, the ended status once with the final info (after the end
hooks), and a job observed once it finished hears its final info once."""

import threading

from conftest import WAIT
from workers import Job, Pool


class Steps(Job):
    job_type = "steps"

    def __init__(self, gate=None, fail=False):
        super().__init__()
        self.gate = gate
        self.fail = fail

    def run(self):
        self.step("one")
        if self.gate is not None:
            assert self.gate.wait(WAIT)
        self.step("one")   # the same step again: no change
        self.step("two")
        if self.fail:
            raise RuntimeError("failed in two")

    def on_ended(self):
        with self._lock:   # end handling adds to the error (as flows do)
            if self._error is not None:
                self._error = {"code": 9, "message": "failed in two; then "
                               "cleaned up"}

    def info_extra(self):
        return {"extra": True}


def heard(job):
    calls = []
    job.observe(lambda j, info: calls.append(
        (info["status"], info["step"], info.get("error"), info["extra"])))
    return calls


def test_every_change_in_order_and_the_end_once_with_the_final_info():
    with Pool(1, 10) as pool:
        gate = threading.Event()
        job = Steps(gate, fail=True)
        calls = heard(job)          # observed while pending
        pool.submit(job)
        gate.set()
        assert job.wait(WAIT)
    assert [(s, step) for s, step, _, _ in calls] == [
        ("pending", "queued"), ("running", "queued"), ("running", "one"),
        ("running", "two"), ("failed", "two")]
    assert calls[-1][2] == {"code": 9, "message": "failed in two; then "
                            "cleaned up"}
    assert all(extra for *_, extra in calls)


def test_aborted_while_pending():
    with Pool(1, 10) as pool:
        gate = threading.Event()
        first = Steps(gate)
        pool.submit(first)
        queued = Steps()
        pool.submit(queued)
        calls = heard(queued)
        queued.abort()
        gate.set()
        assert queued.wait(WAIT) and first.wait(WAIT)
    assert [s for s, *_ in calls] == ["pending", "aborted"]


def test_observed_after_it_finished_hears_the_end_once():
    with Pool(1, 10) as pool:
        job = Steps()
        pool.submit(job)
        assert job.wait(WAIT)
    calls = heard(job)
    assert [(s, step) for s, step, _, _ in calls] == [("done", "two")]
