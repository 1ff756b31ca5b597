"""An admission gate: at most `limit` jobs run their heavy steps at once,
whatever the number of workers, and the limit can move while they run.

A job wraps its heavy steps in `with job.admitted():` (the pool that runs
it gives it the gate). When the gate has a controller (an AdaptiveLimit),
every job leaving it is a sample and the controller sets the next limit;
without one the limit only moves by set_limit().

A job waiting for admission still holds its worker: the limit is at most
`workers`, so the workers it holds would otherwise be running the same
heavy steps. It looks for an abort every `abort_check` seconds while it
waits (an abort is only taken at step boundaries anyway).
"""

import threading
import time


class Admission:
    def __init__(self, limit, controller=None, clock=time.monotonic,
                 abort_check=0.2):
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self._controller = controller
        self._clock = clock
        self._abort_check = abort_check
        # Guards the fields below and the controller (a plain object: no
        # call out while it is held). _changed is notified when a slot
        # frees or the limit grows.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._limit = controller.limit if controller else limit
        self._inflight = 0
        self._waiting = 0

    @property
    def limit(self):
        return self._limit

    def set_limit(self, limit):
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        with self._lock:
            self._limit = limit
            self._changed.notify_all()

    def hold(self, job=None, kind=None):
        """A context manager: wait for a slot (raising the job's JobAborted
        if it is aborted meanwhile), hold it, and give it back."""
        return _Held(self, job, kind)

    def stats(self):
        with self._lock:
            return {"admission_limit": self._limit,
                    "admitted": self._inflight,
                    "admission_waiting": self._waiting}

    # -- internals --------------------------------------------------------

    def _enter(self, job):
        with self._lock:
            if self._inflight < self._limit:
                self._inflight += 1
                return
            self._waiting += 1
        try:
            while True:
                if job is not None:
                    job.check_abort()
                with self._lock:
                    if self._inflight < self._limit or \
                            self._changed.wait_for(self._has_room,
                                                   self._abort_check):
                        self._inflight += 1
                        return
        finally:
            with self._lock:
                self._waiting -= 1

    def _leave(self, seconds, kind, measured):
        with self._lock:
            inflight = self._inflight
            self._inflight -= 1
            if measured and self._controller is not None:
                self._limit = self._controller.sample(
                    self._clock(), seconds, inflight, self._waiting, kind)
            if self._waiting and self._inflight < self._limit:
                self._changed.notify(self._limit - self._inflight)

    def _has_room(self):
        # Caller holds _lock.
        return self._inflight < self._limit


class _Held:
    __slots__ = ("gate", "job", "kind", "entered")

    def __init__(self, gate, job, kind):
        self.gate, self.job, self.kind = gate, job, kind

    def __enter__(self):
        self.gate._enter(self.job)
        self.entered = self.gate._clock()
        return self

    def __exit__(self, exc_type, exc, tb):
        # Only a heavy section that ran to its end is a sample: a failure
        # or an abort says nothing about how long the work takes.
        self.gate._leave(self.gate._clock() - self.entered, self.kind,
                         exc_type is None)
        return False
