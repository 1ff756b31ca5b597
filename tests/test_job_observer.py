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


class SlowEnd(Job):
    """A job whose end hook waits for `gate`: its status has ended, its
    end has not run yet. `fails`: its run raises (it ends failed)."""
    job_type = "slow-end"

    def __init__(self, fails):
        super().__init__()
        self.fails = fails
        self.in_hook = threading.Event()
        self.gate = threading.Event()

    def run(self):
        self.step("work")
        if self.fails:
            raise RuntimeError("it failed")

    def on_ended(self):
        self.in_hook.set()
        assert self.gate.wait(WAIT)


def during_and_after_its_end(job):
    """Its info while its end hook runs, what its observer had heard by
    then, and its info once the hook ran."""
    heard_statuses = []
    job.observe(lambda job, info: heard_statuses.append(info["status"]))
    with Pool(1, 10) as pool:
        pool.submit(job)
        assert job.in_hook.wait(WAIT)
        during, heard = job.info(), list(heard_statuses)
        job.gate.set()
        assert job.wait(WAIT)
    return during, heard, job.info()


def test_a_failed_jobs_end_is_shown_once_its_end_hooks_ran():
    """A job that failed (or was aborted) is shown ended when its
    observer hears it (the events) and its pool counts it: once its end
    hooks ran, which roll back (a claimed VM given back its status).
    Before, info() said failed while on_ended still ran (the clean-room
    run, round 2: a migration listed aborted while its VM still said
    Migration Source)."""
    during, heard, after = during_and_after_its_end(SlowEnd(fails=True))
    assert during["status"] == "running", during
    assert "ended" not in during and "error" not in during, during
    assert heard[-1] == "running"
    assert after["status"] == "failed" and "ended" in after, after
    assert "it failed" in after["error"]["message"]


def test_a_done_jobs_end_is_shown_at_once():
    """The control: a job done is shown done at once (its end, a commit,
    changed its VM in the same step: a VM listed public has its job
    done), while its end hooks, which only let go of what it held, run."""
    during, _, after = during_and_after_its_end(SlowEnd(fails=False))
    assert during["status"] == "done" and "ended" in during, during
    assert after == during
