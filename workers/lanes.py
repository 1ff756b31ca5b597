"""The pool's queue: one FIFO lane per class of work, served by priority,
with a rule that keeps a lower class from starving.

Lanes, highest first:

    woken      parked jobs woken up (job.py, wait_for): already running
    HIGH       e.g. incoming migrations and recovery
    NORMAL     e.g. creations and restores

plus, beside HIGH and NORMAL, a lane for the jobs of that class that ask
for admission (Job.admission): those are served only while the pool's
admission limit has room (pool.py).

Why nothing starves: a take that serves a higher lane while lane L holds
jobs "bypasses" L. Once L was bypassed `starvation_limit` times since it
was last served, the next take serves L (if several lanes are due, the
highest; the others get the takes after). So the job at the head of a
lane waits at most `starvation_limit` + (lanes above it) takes, and, each
lane being FIFO and bounded (the pool's queue_size; the woken lane by
the parked jobs), every queued job runs after a bounded number of takes
whatever the load of higher classes. With the default of 8 and only HIGH
work passing it, a waiting NORMAL job gets every ninth take (and every
take while no HIGH job waits). A job that waits for admission, or a
NORMAL job held back for the pool's spare worker (pool.py), is not eligible,
so not bypassed, until it may run.

Not thread-safe: the pool's lock guards it.
"""

from __future__ import annotations

import collections
import enum
from typing import Any, Deque, List, Optional, Tuple


class Priority(enum.IntEnum):
    HIGH = 0
    NORMAL = 1

    __hash__ = int.__hash__    # Enum's own is Python code (see JobStatus)


WOKEN = 0
_LANES = 1 + 2 * len(Priority)     # woken, then each class twice


def lane_of(job: Any) -> int:
    """The lane a newly submitted job waits in."""
    lane: int = 1 + 2 * job.priority + (1 if job.admission else 0)
    return lane


def needs_admission(lane: int) -> bool:
    return lane != WOKEN and lane % 2 == 0


_ADMISSION_MASK = sum(1 << lane for lane in range(_LANES)
                      if needs_admission(lane))
_NORMAL_MASK = sum(1 << lane for lane in range(1, _LANES)
                   if (lane - 1) // 2 == Priority.NORMAL)


class Lanes:
    def __init__(self, starvation_limit: int) -> None:
        if starvation_limit < 1:
            raise ValueError("starvation_limit must be >= 1")
        self.starvation_limit = starvation_limit
        self._lanes: List[Deque[Any]] = [
            collections.deque() for _ in range(_LANES)]
        self._bypassed = [0] * _LANES
        # Bit n set: lane n holds jobs. pop() is under the pool's lock on
        # every job's way, so it finds lanes with int operations rather
        # than a loop (measured by tests/benchmarks/dispatch.py).
        self._busy = 0

    def push(self, job: Any, lane: int) -> None:
        """Queue `job` in `lane`: its class's (lane_of), or WOKEN."""
        self._lanes[lane].append(job)
        self._busy |= 1 << lane

    def waiting_for_admission(self) -> bool:
        return bool(self._busy & _ADMISSION_MASK)

    def eligible(self, admit: bool, normal: bool) -> int:
        """The lanes (a bit each) whose head may run now: with `admit`
        False none needing admission, with `normal` False no NORMAL one."""
        busy = self._busy if admit else self._busy & ~_ADMISSION_MASK
        return busy if normal else busy & ~_NORMAL_MASK

    def pop(self, eligible: int) -> Tuple[int, Optional[Any]]:
        """The next job to run and its lane ((-1, None) if none); only
        from the lanes in `eligible` (bits, as eligible() gives them)."""
        busy = self._busy & eligible
        if not busy:
            return -1, None
        if busy & (busy - 1):          # two lanes or more: one may starve
            lane = self._choose(busy)
        else:
            lane = busy.bit_length() - 1
        queue = self._lanes[lane]
        job = queue.popleft()
        if not queue:
            self._busy &= ~(1 << lane)
        return lane, job

    def _choose(self, busy: int) -> int:
        bypassed = self._bypassed
        waiting = [lane for lane in range(_LANES) if busy >> lane & 1]
        chosen = waiting[0]
        for lane in waiting[1:]:
            if bypassed[lane] >= self.starvation_limit:
                chosen = lane
                break
        bypassed[chosen] = 0
        for lane in waiting:
            if lane > chosen:
                bypassed[lane] += 1
        return chosen
