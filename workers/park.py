"""Parking: a running job waits for an outside event without a thread.

A step that must wait (for a guest to arrive, say) returns a Park request
instead of blocking:

    def run(self):
        self.step("prepare")
        ...
        return self.park("wait-arrival", then=self.arrived,
                         deadline=time.monotonic() + 600, poll=5)

    def arrived(self, reason):          # WOKEN, TIMER or ABORT_REQUESTED
        self.check_abort()              # an abort while parked lands here
        if not looked_and_found():
            return self.park("wait-arrival", then=self.arrived, ...)
        self.step("commit")
        ...

The worker thread is then free. The job stays `running` (its step shows
what it waits for) and abortable; the pool counts it as `parked`, not as
`queued` nor `running`. For everything outside the pool (a job table, a
caller's own bound such as a limit on incoming migrations) it is still a
running job, and counts as one. It goes
back on the queue, ahead of every queued job, and a worker calls
`then(reason)` when:

- somebody calls `job.wake()` (from any thread: it never waits for work,
  it only takes two short locks), reason WOKEN;
- its wake-up time passes (the earlier of `deadline` and now + `poll`),
  reason TIMER: one timer thread per pool serves every parked job;
- somebody aborts it, reason ABORT_REQUESTED (the continuation's first step or
  check_abort raises JobAborted and the job rolls back as usual).

A wake() that comes while the job is still running (before it parks) is
not lost: the job does not park and goes on at once with reason WOKEN.
So a continuation looks at the world after it was woken, never before:
subscribe, look, park; every event after the look wakes it.

The continuation is a plain bound method: the job's state lives on the
job (as with concurrent.futures' callbacks, no coroutine machinery).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Any, Callable, List, Optional, Tuple

log = logging.getLogger("workers.park")

WOKEN = "woken"
TIMER = "timer"
ABORT_REQUESTED = "abort"


class Park:
    """A step's request to wait: go on with `then(reason)` once woken."""
    __slots__ = ("then", "wake_at")

    def __init__(self, then: Callable[[str], Any],
                 wake_at: Optional[float]) -> None:
        self.then = then
        self.wake_at = wake_at   # time.monotonic() value, or None: no timer


def wake_time(deadline: Optional[float],
              poll: Optional[float]) -> Optional[float]:
    """The earlier of `deadline` (monotonic) and now + `poll` seconds."""
    times = [] if deadline is None else [deadline]
    if poll is not None:
        times.append(time.monotonic() + poll)
    return min(times) if times else None


class Timer:
    """One thread calling `fn()` at monotonic times, for any number of
    parked jobs. A call whose job was woken before is made anyway; the job
    ignores it (it is cheaper than finding it in the heap)."""

    def __init__(self, name: str) -> None:
        self._name = name
        # Guards _heap, _thread and _closed; _changed is notified when an
        # earlier time is added or the timer is closed.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._heap: List[Tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._thread: Optional[threading.Thread] = None
        self._closed = False

    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"timer {self._name} is closed")
            heapq.heappush(self._heap, (when, next(self._order), fn))
            if self._thread is None:
                # Started on first use: most pools never park a job.
                self._thread = threading.Thread(
                    target=self._loop, name=f"{self._name}-timer",
                    daemon=True)
                self._thread.start()
            elif self._heap[0][2] is fn:
                self._changed.notify()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._heap.clear()
            self._changed.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._closed:
                    if self._heap:
                        delay = self._heap[0][0] - time.monotonic()
                        if delay <= 0:
                            break
                        self._changed.wait(delay)
                    else:
                        self._changed.wait()
                if self._closed:
                    return
                fn = heapq.heappop(self._heap)[2]
            try:
                fn()    # outside the lock: it takes the job's and pool's
            except Exception:
                log.exception("timer %s: wake-up failed", self._name)


class Parking:
    """A job's parking state, guarded by the job's lock (every method is
    called under it): the pool that runs the job (set by submit), the
    request it is parked on, the continuation a worker calls next, and a
    wake() that came while it was not parked."""

    def __init__(self) -> None:
        self.runner: Any = None
        self.request: Optional[Park] = None
        self.resume: Optional[Tuple[Callable[[str], Any], str]] = None
        self.wake_pending = False

    def park(self, job: Any, request: Park) -> Optional[str]:
        """Park `job` (running, with a pool) on `request`; or, if woken
        meanwhile, return the reason to go on at once."""
        if self.wake_pending:
            self.wake_pending = False
            return WOKEN
        self.request = request
        # Lock order: job, then pool (the pool never calls a job while
        # holding its own lock).
        self.runner._job_parked(job, request)
        return None

    def unpark(self, reason: str) -> Any:
        """The pool to requeue the job on (outside the job's lock), or
        None if it is not parked."""
        request = self.request
        if request is None:
            return None
        self.request = None
        self.resume = (request.then, reason)
        return self.runner

    def take_resume(self) -> Optional[Tuple[Callable[[str], Any], str]]:
        """The continuation a worker calls next (None: run() from the
        start); a wake() that came before is spent by this turn."""
        resume, self.resume = self.resume, None
        self.wake_pending = False
        return resume
