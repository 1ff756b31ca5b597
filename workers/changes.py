"""A condition on the pool's lock, notified only when somebody waits.

The pool's changes (a queued job leaves the queue's count, a job ends) are
many and its waiters (submit(wait=True), wait_idle) are rare: counting the
waiters lets the hot path skip notify_all() most of the time.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional


class Changes:
    def __init__(self, lock: threading.Lock) -> None:
        self._condition = threading.Condition(lock)
        self._waiters = 0   # guarded by the lock: threads in wait()

    def wait(self, predicate: Optional[Callable[[], bool]] = None,
             timeout: Optional[float] = None) -> bool:
        """Wait for the next change, or until `predicate()` holds. Caller
        holds the lock."""
        self._waiters += 1
        try:
            if predicate is None:
                return self._condition.wait(timeout)
            return self._condition.wait_for(predicate, timeout)
        finally:
            self._waiters -= 1

    def notify(self) -> None:
        """Caller holds the lock. Most of the time nobody waits: no cost."""
        if self._waiters:
            self._condition.notify_all()
