"""The pool's timer: one thread calling functions at monotonic times, for
any number of parked jobs (their poll and deadline wake-ups).

A call whose job was woken before is made anyway; the job ignores it (it
is cheaper than finding it in the heap)."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Callable, List, Tuple

log = logging.getLogger("workers.timer")


class Timer:
    def __init__(self, name: str) -> None:
        self._name = name
        # Guards _heap and _closed; _changed is notified when an earlier
        # time is added or the timer is closed. The thread is started here,
        # never under a lock (call_at runs under a job's and a pool's).
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._heap: List[Tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._closed = False
        self._thread = threading.Thread(target=self._loop,
                                        name=f"{name}-timer", daemon=True)
        self._thread.start()

    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"timer {self._name} is closed")
            heapq.heappush(self._heap, (when, next(self._order), fn))
            if self._heap[0][2] is fn:
                self._changed.notify()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._heap.clear()
            self._changed.notify()
        self._thread.join()

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
