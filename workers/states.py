"""The job state machine: every status and every legal move, in one table.

The statuses and moves are VDSM's (see API.md, JobInfo):

    pending  -> running | aborted     (aborted while queued: it never runs)
    running  -> done | failed | aborting
    aborting -> aborted | failed      (rollback finished, or rollback failed)

Nothing else is legal; an illegal move is a bug and raises at once rather
than leaving a job in a state nobody can reason about.
"""

import enum


class JobStatus(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    ABORTING = "aborting"
    DONE = "done"
    FAILED = "failed"
    ABORTED = "aborted"

    # str's own hash and equality: a status is a dict key and a set member
    # on every move of every job, and Enum's Python-level __hash__ showed
    # in the dispatch benchmark's profile. (Equal to its value, as before.)
    __hash__ = str.__hash__

    def __str__(self):
        return self.value

    @property
    def ended(self):
        return self in ENDED


ENDED = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.ABORTED})

TRANSITIONS = {
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, JobStatus.ABORTED}),
    JobStatus.RUNNING: frozenset(
        {JobStatus.DONE, JobStatus.FAILED, JobStatus.ABORTING}),
    JobStatus.ABORTING: frozenset({JobStatus.ABORTED, JobStatus.FAILED}),
    JobStatus.DONE: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.ABORTED: frozenset(),
}


class IllegalTransition(RuntimeError):
    def __init__(self, old, new):
        super().__init__(f"illegal job transition {old} -> {new}")
        self.old = old
        self.new = new


def check_transition(old, new):
    """Return `new` if moving from `old` to `new` is legal, else raise."""
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(old, new)
    return new
