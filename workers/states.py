"""The job state machine in two tables: every legal move, and the move each
event makes. A job applies events (Job._path, Job._move_through) and nothing else moves it.

The statuses and moves are VDSM's (see API.md, JobInfo):

    pending  -> running | aborted     (aborted while queued: it never runs)
    running  -> done | failed | aborting
    aborting -> aborted | failed      (rollback finished, or rollback failed)

Nothing else is legal; an illegal move is a bug and raises at once rather
than leaving a job in a state nobody can reason about.

EVENTS says, for each (status, event), the moves the event makes (zero, one
or two: a job that aborts itself goes through `aborting`, so its history
says it rolled back) or the exception that refuses it. A pair missing from
EVENTS is a bug and raises IllegalTransition.
"""

from __future__ import annotations

import enum
from typing import Dict, FrozenSet, Tuple, Type, Union


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

    def __str__(self) -> str:
        return self.value

    @property
    def ended(self) -> bool:
        return self in ENDED


class Event(str, enum.Enum):
    START = "start"                    # a worker takes the job
    ABORT = "abort"                    # somebody asks it to stop
    COMPLETE = "complete"              # the job commits its result itself
    RETURNED = "returned"              # run() returned
    ABORTED_ITSELF = "aborted_itself"  # run() raised JobAborted
    RAISED = "raised"                  # run() raised anything else
    CRASHED = "crashed"                # the runner itself failed (a bug)

    __hash__ = str.__hash__


class JobEnded(Exception):
    """The job already ended: it can no longer be aborted (or started)."""


class JobAborted(Exception):
    """Raised inside `run()` once an abort was requested; the job then ends
    `aborted` (or `failed`, if its rollback fails)."""


PENDING, RUNNING, ABORTING = (JobStatus.PENDING, JobStatus.RUNNING,
                              JobStatus.ABORTING)
DONE, FAILED, ABORTED = JobStatus.DONE, JobStatus.FAILED, JobStatus.ABORTED

ENDED: FrozenSet[JobStatus] = frozenset({DONE, FAILED, ABORTED})

TRANSITIONS: Dict[JobStatus, FrozenSet[JobStatus]] = {
    PENDING: frozenset({RUNNING, ABORTED}),
    RUNNING: frozenset({DONE, FAILED, ABORTING}),
    ABORTING: frozenset({ABORTED, FAILED}),
    DONE: frozenset(),
    FAILED: frozenset(),
    ABORTED: frozenset(),
}

Outcome = Union[Tuple[JobStatus, ...], Type[Exception]]

EVENTS: Dict[Tuple[JobStatus, Event], Outcome] = {
    (PENDING, Event.START): (RUNNING,),
    (ABORTED, Event.START): JobEnded,      # aborted while queued: never runs
    (PENDING, Event.ABORT): (ABORTED,),
    (RUNNING, Event.ABORT): (ABORTING,),   # it rolls back at its next step
    (ABORTING, Event.ABORT): (),
    (DONE, Event.ABORT): JobEnded,
    (FAILED, Event.ABORT): JobEnded,
    (ABORTED, Event.ABORT): JobEnded,
    (RUNNING, Event.COMPLETE): (DONE,),
    (ABORTING, Event.COMPLETE): JobAborted,  # the abort came first: no commit
    # run() ended. The abort wins over a plain return, as it would have at
    # the next step boundary; a job that completed itself stays done (an
    # exception after its commit is logged, the commit is not undone).
    (RUNNING, Event.RETURNED): (DONE,),
    (ABORTING, Event.RETURNED): (ABORTED,),
    (DONE, Event.RETURNED): (),
    (RUNNING, Event.ABORTED_ITSELF): (ABORTING, ABORTED),
    (ABORTING, Event.ABORTED_ITSELF): (ABORTED,),
    (DONE, Event.ABORTED_ITSELF): (),
    (RUNNING, Event.RAISED): (FAILED,),
    (ABORTING, Event.RAISED): (FAILED,),    # the rollback failed
    (DONE, Event.RAISED): (),
    (RUNNING, Event.CRASHED): (FAILED,),
    (ABORTING, Event.CRASHED): (FAILED,),
    (DONE, Event.CRASHED): (),
    (FAILED, Event.CRASHED): (),
    (ABORTED, Event.CRASHED): (),
}


class IllegalTransition(RuntimeError):
    def __init__(self, old: JobStatus, new: object) -> None:
        super().__init__(f"illegal job transition {old} -> {new}")
        self.old = old
        self.new = new


def check_transition(old: JobStatus, new: JobStatus) -> JobStatus:
    """Return `new` if moving from `old` to `new` is legal, else raise."""
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(old, new)
    return new


def _check_events() -> None:
    """Every path in EVENTS is a chain of legal moves (so a job applying
    them needs no check of its own)."""
    for (status, _event), outcome in EVENTS.items():
        if isinstance(outcome, tuple):
            for new in outcome:
                status = check_transition(status, new)


_check_events()
