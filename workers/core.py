"""What every job guards with its lock: its status and history, its step,
times, progress and error, its end hooks and its waiters; and the one
place that moves it (`_path` finds the moves an event makes in
states.EVENTS, `_move_through` makes them).

The runner's side of a job (running it, parking it, ending it) is in
job.py; this is the record everybody else reads."""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from .states import (
    ABORTING,
    ENDED,
    EVENTS,
    PENDING,
    RUNNING,
    Event,
    IllegalTransition,
    JobStatus,
)

log = logging.getLogger("workers.job")

# Job ids need to be unique, not secret (Host.getJobs lists them all):
# uuid.uuid4() asks the kernel for randomness at every call, which costs
# more than the rest of a job's bookkeeping together.
_ids = random.Random()


def new_id() -> str:
    """A random (version 4) UUID string."""
    n = _ids.getrandbits(128)
    n = (n & ~(0xF000 << 64)) | (0x4000 << 64)       # version 4
    n = (n & ~(0xC000 << 48)) | (0x8000 << 48)       # RFC 4122 variant
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class JobRecord:
    job_type = "job"

    def __init__(self, description: str = "", timeout: Optional[float] = None,
                 job_id: Optional[str] = None) -> None:
        self.id = job_id or new_id()
        self.description = description
        # Past this many seconds of running the job is reported stuck. It is
        # never abandoned: its calls have side effects that only it can undo.
        self.timeout = timeout
        self.created = time.time()
        self._end_callbacks: List[Callable[[Any], None]] = []
        # Guards every field below (and a Job's parking fields). `_changed`,
        # on the same lock, is made by the first waiter (most jobs never
        # have one) and notified when an abort is requested and when the
        # job finished.
        self._lock = threading.Lock()
        self._changed: Optional[threading.Condition] = None
        self._finished = False    # ended, and the end hooks ran
        self._final_info: Optional[Dict[str, Any]] = None  # once finished
        self._status = PENDING
        self._history = [PENDING]
        self._step = "queued"
        self._progress: Optional[Any] = None
        self._error: Optional[Dict[str, Any]] = None
        self._started_at: Optional[float] = None
        self._started_mono: Optional[float] = None
        self._ended_at: Optional[float] = None
        # Told of every change (observe()); called under the lock.
        self._observer: Optional[Callable[[Any, Dict[str, Any]], None]] = \
            None

    def on_ended(self) -> None:
        """Called once, outside the lock, when the job has ended (whether it
        ran or was aborted while pending), before waiters are woken."""

    @property
    def status(self) -> JobStatus:
        with self._lock:
            return self._status

    @property
    def ended(self) -> bool:
        """True once the job ended and its end hooks ran."""
        with self._lock:
            return self._finished

    def history(self) -> List[JobStatus]:
        with self._lock:
            return list(self._history)

    def wait_abort_requested(self, timeout: Optional[float] = None) -> bool:
        """Wait until an abort was requested; True if one was."""
        with self._lock:
            return self._condition().wait_for(self._abort_requested, timeout)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until the job ended and its end hooks ran; True if it did."""
        with self._lock:
            return self._condition().wait_for(lambda: self._finished,
                                              timeout)

    def add_end_callback(self, callback: Callable[[Any], None]) -> None:
        """Call `callback(job)` once the job ended (at once if it has)."""
        with self._lock:
            if self._status not in ENDED:
                self._end_callbacks.append(callback)
                return
        callback(self)

    def observe(self, observer: Callable[[Any, Dict[str, Any]], None]
                ) -> None:
        """Call `observer(job, info)` with the job's info now, then at each
        change of its status or step; the ended status once, when the end
        hooks ran, with the final info. It runs under the job's lock, so
        the calls come in the order of the changes: it must be quick, never
        block, never raise and never touch the job (e.g. append to a buffer
        of its own). info_extra() is called under the lock too."""
        with self._lock:
            self._observer = observer
            if self._status not in ENDED or self._finished:
                self._observed()

    def is_stuck(self, now: Optional[float] = None) -> bool:
        with self._lock:
            return self._is_stuck(now)

    def info(self) -> Dict[str, Any]:
        """A snapshot of the job as API.md's JobInfo, with the keys of
        info_extra(). An ended job's never changes again: it is built once
        (Host.getJobs over thousands of ended jobs copies them)."""
        with self._lock:
            final = self._final_info
            if final is None:
                info = self._snapshot()
                finished = self._finished
        if final is not None:
            return dict(final)
        info.update(self.info_extra())
        if finished:
            with self._lock:
                self._final_info = info
            return dict(info)
        return info

    def info_extra(self) -> Dict[str, Any]:
        """Keys a subclass adds to info(); they must not change."""
        return {}

    def _snapshot(self) -> Dict[str, Any]:
        # Caller holds self._lock.
        info: Dict[str, Any] = {
            "id": self.id,
            "job_type": self.job_type,
            "status": self._status.value,
            "description": self.description,
            "step": self._step,
            "created": self.created,
        }
        if self._is_stuck():
            # Beyond API.md's JobInfo, and only when true: the job runs
            # past its timeout (it is not abandoned; see __init__).
            info["stuck"] = True
        if self._progress is not None:
            info["progress"] = self._progress
        if self._error is not None:
            info["error"] = self._error
        if self._started_at is not None:
            info["started"] = self._started_at
        if self._ended_at is not None:
            info["ended"] = self._ended_at
        return info

    def _observed(self) -> None:
        # Caller holds self._lock.
        if self._observer is not None:
            info = self._snapshot()
            info.update(self.info_extra())
            self._observer(self, info)

    def _path(self, event: Event) -> Tuple[JobStatus, ...]:
        # Caller holds self._lock. (moves(), inlined: it is on every job's
        # path twice, and the dispatch benchmark counts the calls.)
        path = EVENTS.get((self._status, event))
        if isinstance(path, tuple):
            return path
        if path is None:
            raise IllegalTransition(self._status, event)
        raise path(f"job {self.id} {self._status.value} in step "
                   f"{self._step!r}: {event.value} refused")

    def _move_through(self, path: Tuple[JobStatus, ...]) -> None:
        # Caller holds self._lock. Every path of EVENTS is legal (states.py
        # checks it on import), so the moves need no check here.
        for new in path:
            self._status = new
            self._history.append(new)
            if new is RUNNING:
                self._started_at = time.time()
                self._started_mono = time.monotonic()
            elif new is ABORTING or new is JobStatus.ABORTED:
                self._notify()
            if new in ENDED:
                self._ended_at = time.time()
            elif self._observer is not None:
                self._observed()

    def _condition(self) -> threading.Condition:
        # Caller holds self._lock.
        if self._changed is None:
            self._changed = threading.Condition(self._lock)
        return self._changed

    def _notify(self) -> None:
        # Caller holds self._lock.
        if self._changed is not None:
            self._changed.notify_all()

    def _abort_requested(self) -> bool:
        # Caller holds self._lock.
        return ABORTING in self._history or \
            self._status is JobStatus.ABORTED

    def _is_stuck(self, now: Optional[float] = None) -> bool:
        # Caller holds self._lock.
        if self.timeout is None or self._started_mono is None or \
                self._status.ended:
            return False
        now = time.monotonic() if now is None else now
        return now - self._started_mono > self.timeout

    def _finish(self) -> JobStatus:
        """Run the end hooks, then wake the waiters, whatever the hooks do.
        Returns the final status."""
        with self._lock:
            callbacks, self._end_callbacks = self._end_callbacks, []
        try:
            try:
                self.on_ended()
            except BaseException:   # a bug must not keep waiters waiting
                log.exception("job %s: end hook failed", self.id)
            for callback in callbacks:
                try:
                    callback(self)
                except BaseException:
                    log.exception("job %s: end callback failed", self.id)
        finally:
            with self._lock:
                self._finished = True
                self._notify()
                self._observed()
                status = self._status
        return status

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.status}>"
