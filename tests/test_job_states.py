"""The job state machine: every legal move, every illegal one, and the
moves a job really makes."""

import itertools
import threading

import pytest

from workers import (
    ENDED,
    TRANSITIONS,
    IllegalTransition,
    Job,
    JobAborted,
    JobEnded,
    JobStatus,
)
from workers.states import check_transition

LEGAL = {
    ("pending", "running"), ("pending", "aborted"),
    ("running", "done"), ("running", "failed"), ("running", "aborting"),
    ("aborting", "aborted"), ("aborting", "failed"),
}


@pytest.mark.parametrize("old,new", sorted(LEGAL))
def test_legal_move(old, new):
    assert check_transition(JobStatus(old), JobStatus(new)) is JobStatus(new)


@pytest.mark.parametrize("old,new", sorted(
    set(itertools.product([s.value for s in JobStatus], repeat=2)) - LEGAL))
def test_illegal_move_raises(old, new):
    with pytest.raises(IllegalTransition):
        check_transition(JobStatus(old), JobStatus(new))


def test_table_is_exactly_the_contract():
    table = {(old.value, new.value) for old, news in TRANSITIONS.items()
             for new in news}
    assert table == LEGAL
    assert {s.value for s in ENDED} == {"done", "failed", "aborted"}


class Steps(Job):
    def __init__(self, fail=False):
        super().__init__()
        self.fail = fail
        self.in_step = threading.Event()
        self.go_on = threading.Event()
        self.ran = False

    def run(self):
        self.ran = True
        self.step("one")
        self.in_step.set()
        assert self.go_on.wait(10)
        self.step("two")
        if self.fail:
            raise RuntimeError("boom")


def test_done_history():
    job = Steps()
    job.go_on.set()
    job.execute()
    assert job.history() == ["pending", "running", "done"]
    assert job.info()["step"] == "two"


def test_failed_history_and_error():
    job = Steps(fail=True)
    job.go_on.set()
    job.execute()
    assert job.history() == ["pending", "running", "failed"]
    assert job.info()["error"]["message"] == "boom"


def test_abort_while_running_takes_effect_at_next_step():
    job = Steps()
    worker = threading.Thread(target=job.execute)
    worker.start()
    assert job.in_step.wait(10)
    job.abort()
    assert job.status == "aborting"
    job.go_on.set()
    worker.join(10)
    assert job.history() == ["pending", "running", "aborting", "aborted"]
    assert job.info()["step"] == "two"


def test_abort_while_pending_never_runs():
    job = Steps()
    job.abort()
    assert job.finished and job.wait(0)
    job.execute()
    assert not job.ran
    assert job.history() == ["pending", "aborted"]


def test_abort_of_ended_job_raises():
    job = Steps()
    job.go_on.set()
    job.execute()
    with pytest.raises(JobEnded):
        job.abort()


def test_commit_refused_after_abort():
    class Committer(Job):
        def run(self):
            self.abort()  # as another thread would, just before the commit
            self.complete(lambda: committed.append(True))

    committed = []
    job = Committer()
    job.execute()
    assert committed == []
    assert job.history() == ["pending", "running", "aborting", "aborted"]


def test_job_aborting_itself_goes_through_aborting():
    class SelfAbort(Job):
        def run(self):
            raise JobAborted("changed my mind")

    job = SelfAbort()
    job.execute()
    assert job.history() == ["pending", "running", "aborting", "aborted"]
