"""A job: one unit of work with a status, a current step, and an end.

A job owns its state and the lock that guards it (as CPython's Future does);
the pool only decides when it runs. Subclasses implement `run()` and call
`step(name)` at each step boundary: that is where an abort requested from
another thread takes effect, so a job is never interrupted in the middle of
a call that has side effects. A step may also park the job (park.py): it
then waits for an outside event without holding a worker thread.

Every change of status is an event applied by `_apply`, looked up in
states.EVENTS; nothing else moves a job.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from .lanes import Priority
from .park import ABORT_REQUESTED, TIMER, WOKEN, Park, wake_time
from .states import (ABORTING, ENDED, EVENTS, PENDING, RUNNING, Event,
                     IllegalTransition, JobAborted, JobEnded, JobNotActive,
                     JobStatus)

__all__ = ["Job", "JobAborted", "JobEnded", "JobNotActive", "current_job"]

log = logging.getLogger("workers.job")

_worker_context = threading.local()


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


def current_job() -> Optional["Job"]:
    """The job the calling thread is running, or None (for log context)."""
    return getattr(_worker_context, "job", None)


class Job:
    job_type = "job"
    # Queued HIGH jobs run ahead of NORMAL ones (lanes.py says why a NORMAL
    # one still cannot starve).
    priority = Priority.NORMAL
    # True: counts against the pool's admission limit while it runs.
    admission = False

    def __init__(self, description: str = "", timeout: Optional[float] = None,
                 on_step: Optional[Callable[["Job", str], None]] = None,
                 job_id: Optional[str] = None) -> None:
        self.id = job_id or new_id()
        self.description = description
        # Past this many seconds of running the job is reported stuck. It is
        # never abandoned: its calls have side effects that only it can undo.
        self.timeout = timeout
        # Called as on_step(job, name) at every step boundary, before the
        # abort check: tests use it to inject a destroy between two steps.
        self._on_step = on_step
        self.created = time.time()
        self._end_callbacks: List[Callable[[Job], None]] = []
        # Guards every field below. `_changed`, on the same lock, is made by
        # the first waiter (most jobs never have one) and notified when an
        # abort is requested and when the job finished.
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
        # Parking (park.py): the pool that runs the job (set by submit), the
        # request it is parked on, the continuation a worker calls next, and
        # a wake() that came while it was not parked.
        self._runner: Any = None
        self._parked: Optional[Park] = None
        self._resume: Optional[Tuple[Callable[[str], Any], str]] = None
        self._wake_pending = False

    # -- for subclasses ---------------------------------------------------

    def run(self) -> Optional[Park]:
        raise NotImplementedError

    def step(self, name: str) -> None:
        """Enter step `name`; raise JobAborted if an abort was requested."""
        with self._lock:
            self._step = name
        if self._on_step is not None:
            self._on_step(self, name)
        self.check_abort()

    def park(self, step: str, then: Callable[[str], Any],
             deadline: Optional[float] = None,
             poll: Optional[float] = None) -> Park:
        """Enter step `step` and return the request to park there (a step
        returns it): `then(reason)` runs once woken, at `deadline`
        (time.monotonic()) or every `poll` seconds. See park.py."""
        self.step(step)
        return Park(then, wake_time(deadline, poll))

    def check_abort(self) -> None:
        """Raise JobAborted if an abort was requested (for a job that waits
        inside a step and must notice an abort there)."""
        with self._lock:
            if self._status is ABORTING:
                raise JobAborted(f"aborted in step {self._step!r}")

    def set_progress(self, percent: Any) -> None:
        with self._lock:
            self._progress = percent

    def complete(self, commit: Optional[Callable[[], None]] = None) -> None:
        """End the job `done`, running `commit()` under the job's lock.

        Doing both in one critical section means nobody sees the job done
        without its commit, or the commit without the job done; and an abort
        requested before this point wins: the commit is refused. `commit`
        must be short and must not block (a registry update, no I/O).
        """
        with self._lock:
            path = self._path(Event.COMPLETE)
            if commit is not None:
                commit()
            self._move_through(path)

    def error_info(self, exc: BaseException) -> Dict[str, Any]:
        """The `{"code", "message"}` a failure is reported as."""
        return {"code": getattr(exc, "code", None), "message": str(exc)}

    def on_ended(self) -> None:
        """Called once, outside the lock, when the job has ended (whether it
        ran or was aborted while pending), before waiters are woken."""

    # -- for everybody ----------------------------------------------------

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

    def abort(self) -> None:
        """Request an abort. A pending job ends `aborted` at once and never
        runs; a running one moves to `aborting` and rolls back at its next
        step boundary (a parked one is woken for it). Raises JobEnded if
        the job already ended."""
        with self._lock:
            was = self._status
            self._move_through(self._path(Event.ABORT))
            runner = self._unpark(ABORT_REQUESTED)
        if was is PENDING:
            self._finish()
        elif runner is not None:
            runner._job_resumed(self)

    def wake(self) -> None:
        """Resume the job if it is parked, or make its next park return at
        once if it is running (from any thread; never waits for work)."""
        with self._lock:
            runner = self._unpark(WOKEN)
            if runner is None:
                self._wake_pending = True
        if runner is not None:
            runner._job_resumed(self)

    def wait_abort_requested(self, timeout: Optional[float] = None) -> bool:
        """Wait until an abort was requested; True if one was."""
        with self._lock:
            return self._condition().wait_for(self._abort_requested, timeout)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until the job ended and its end hooks ran; True if it did."""
        with self._lock:
            return self._condition().wait_for(lambda: self._finished,
                                              timeout)

    def add_end_callback(self, callback: Callable[["Job"], None]) -> None:
        """Call `callback(job)` once the job ended (at once if it has)."""
        with self._lock:
            if self._status not in ENDED:
                self._end_callbacks.append(callback)
                return
        callback(self)

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
        info = {
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

    # -- for the pool -----------------------------------------------------

    def execute(self) -> Optional[JobStatus]:
        """Run the job's next turn in the calling worker thread: run(), or
        the continuation it parked with; nothing if it was aborted while
        pending. Never raises: the outcome is the job's status, returned
        once it ended (None if it parked)."""
        with self._lock:
            resume, self._resume = self._resume, None
            self._wake_pending = False
            if resume is None:
                try:
                    self._move_through(self._path(Event.START))
                except JobEnded:
                    return self._status   # aborted while queued: never runs
        # Set until the end hooks ran: they log in the job's context, and
        # the pool knows by it that the job ends in its own worker.
        _worker_context.job = self
        try:
            try:
                ended = self._turn(resume)
            except BaseException as exc:   # a bug of the runner, not the job
                self._crash(exc)
                ended = True
            return self._finish() if ended else None
        finally:
            _worker_context.job = None

    def _crash(self, exc: BaseException) -> None:
        """The runner failed (a bug): end the job failed, so that nothing
        waits for it forever."""
        log.error("job %s: internal error", self.id, exc_info=exc)
        with self._lock:
            if (self._status, Event.CRASHED) in EVENTS:
                self._move_through(self._path(Event.CRASHED))
            if self._error is None and self._status is JobStatus.FAILED:
                self._error = {"code": None,
                               "message": f"internal error: {exc!r}"}

    # -- internals --------------------------------------------------------

    def _turn(self, resume: Optional[Tuple[Callable[[str], Any], str]]
              ) -> bool:
        """Run until the job ends (True) or parks (False)."""
        call, reason = resume if resume is not None else (None, "")
        while True:
            try:
                result = self.run() if call is None else call(reason)
            except JobAborted as exc:
                self._end(Event.ABORTED_ITSELF, exc)
                return True
            except BaseException as exc:
                self._end(Event.RAISED, exc)
                return True
            if not isinstance(result, Park):
                self._end(Event.RETURNED, None)
                return True
            reason = self._park(result)
            if reason is None:
                return False
            call = result.then    # woken or aborted before it parked

    def _park(self, request: Park) -> Optional[str]:
        """Park on `request`; or, if woken or aborted meanwhile, return the
        reason to go on at once."""
        with self._lock:
            if self._status is not RUNNING and self._status is not ABORTING:
                raise ValueError(f"job {self.id} parks while {self._status}")
            if self._runner is None:
                raise ValueError(f"job {self.id} parks without a pool")
            if self._status is ABORTING:
                return ABORT_REQUESTED
            if self._wake_pending:
                self._wake_pending = False
                return WOKEN
            self._parked = request
            # Lock order: job, then pool (the pool never calls a job while
            # holding its own lock).
            self._runner._job_parked(self, request)
            return None

    def _timer_fired(self, request: Park) -> None:
        with self._lock:
            runner = self._unpark(TIMER) if self._parked is request else None
        if runner is not None:
            runner._job_resumed(self)

    def _unpark(self, reason: str) -> Any:
        # Caller holds self._lock. Returns the pool to requeue the job on
        # (outside the lock), or None if it is not parked.
        parked = self._parked
        if parked is None:
            return None
        self._parked = None
        self._resume = (parked.then, reason)
        return self._runner

    def _end(self, event: Event, exc: Optional[BaseException]) -> None:
        error = self._error_of(exc) if event is Event.RAISED else None
        with self._lock:
            was = self._status
            self._move_through(self._path(event))
            if self._status is JobStatus.FAILED:
                self._error = error
            status = self._status
        if was is JobStatus.DONE and exc is not None:
            log.error("job %s raised after it completed", self.id,
                      exc_info=exc)
        elif status is JobStatus.ABORTED:
            log.info("job %s aborted: %s", self.id,
                     exc or f"during step {self._step!r}")
        elif status is JobStatus.FAILED:
            if getattr(exc, "expected", False):
                log.info("job %s failed: %s", self.id, exc)
            else:
                log.error("job %s failed", self.id, exc_info=exc)

    def _error_of(self, exc: Optional[BaseException]) -> Dict[str, Any]:
        try:
            return self.error_info(exc)
        except Exception:
            log.exception("job %s: error_info failed", self.id)
            return {"code": None, "message": str(exc)}

    def _path(self, event: Event) -> Tuple[JobStatus, ...]:
        # Caller holds self._lock. (moves(), inlined: it is on every job's
        # path twice, and the dispatch benchmark counts the calls.)
        path = EVENTS.get((self._status, event))
        if type(path) is tuple:
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
                return self._status

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.status}>"
