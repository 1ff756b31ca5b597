"""A job: one unit of work with a status, a current step, and an end.

A job owns its state and the lock that guards it (as CPython's Future does;
the record is core.py); the pool only decides when it runs. Subclasses
implement `run()` and call `step(name)` at each step boundary: that is
where an abort requested from another thread takes effect, so a job is
never interrupted in the middle of a call that has side effects. A step
may also park the job (park.py): it then waits for an outside event
without holding a worker thread.

Every change of status is an event (states.EVENTS) applied by
core.JobRecord's `_path` and `_move_through`; nothing else moves a job.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Dict, Optional, Tuple

from .core import JobRecord
from .lanes import Priority
from .park import ABORT_REQUESTED, TIMER, WOKEN, Park, Parking, wake_time
from .states import (
    ABORTING,
    EVENTS,
    PENDING,
    RUNNING,
    Event,
    JobAborted,
    JobEnded,
    JobNotActive,
    JobStatus,
)

__all__ = ["Job", "JobAborted", "JobEnded", "JobNotActive", "current_job"]

log = logging.getLogger("workers.job")

_worker_context = threading.local()


def current_job() -> Optional["Job"]:
    """The job the calling thread is running, or None (for log context)."""
    return getattr(_worker_context, "job", None)


class Job(JobRecord):
    # Queued HIGH jobs run ahead of NORMAL ones (lanes.py says why a NORMAL
    # one still cannot starve).
    priority = Priority.NORMAL
    # True: counts against the pool's admission limit while it runs.
    admission = False

    def __init__(self, description: str = "", timeout: Optional[float] = None,
                 on_step: Optional[Callable[["Job", str], None]] = None,
                 job_id: Optional[str] = None) -> None:
        super().__init__(description, timeout, job_id)
        # Called as on_step(job, name) at every step boundary, before the
        # abort check: tests use it to inject a destroy between two steps.
        self._on_step = on_step
        self._parking = Parking()   # guarded by self._lock

    # -- for subclasses ---------------------------------------------------

    def run(self) -> Optional[Park]:
        raise NotImplementedError

    def step(self, name: str) -> None:
        """Enter step `name`; raise JobAborted if an abort was requested."""
        with self._lock:
            if name != self._step:
                self._step = name
                self._observed()
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

    # -- for everybody ----------------------------------------------------

    def abort(self) -> None:
        """Request an abort. A pending job ends `aborted` at once and never
        runs; a running one moves to `aborting` and rolls back at its next
        step boundary (a parked one is woken for it). Raises JobEnded if
        the job already ended."""
        with self._lock:
            was = self._status
            self._move_through(self._path(Event.ABORT))
            runner = self._parking.unpark(ABORT_REQUESTED) \
                if was is not PENDING else self._parking.runner
        if was is PENDING:
            if runner is not None:     # queued: it frees its room
                runner._job_aborted_queued(self)
            self._finish()
        elif runner is not None:
            runner._job_resumed(self)

    def wake(self) -> None:
        """Resume the job if it is parked, or make its next park return at
        once if it is running (from any thread; never waits for work)."""
        with self._lock:
            runner = self._parking.unpark(WOKEN)
            if runner is None:
                self._parking.wake_pending = True
        if runner is not None:
            runner._job_resumed(self)

    # -- for the pool -----------------------------------------------------

    def execute(self) -> Optional[JobStatus]:
        """Run the job's next turn in the calling worker thread: run(), or
        the continuation it parked with; nothing if it was aborted while
        pending. Never raises: the outcome is the job's status, returned
        once it ended (None if it parked)."""
        with self._lock:
            resume = self._parking.take_resume()
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

    def _attach(self, runner: Any) -> None:
        """The pool that runs the job: where it goes when woken."""
        with self._lock:
            self._parking.runner = runner

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
        call: Optional[Callable[[str], Any]]
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
            woken = self._park(result)
            if woken is None:
                return False
            call, reason = result.then, woken   # woken before it parked

    def _park(self, request: Park) -> Optional[str]:
        """Park on `request`; or, if woken or aborted meanwhile, return the
        reason to go on at once."""
        with self._lock:
            if self._status is not RUNNING and self._status is not ABORTING:
                raise ValueError(f"job {self.id} parks while {self._status}")
            if self._parking.runner is None:
                raise ValueError(f"job {self.id} parks without a pool")
            if self._status is ABORTING:
                return ABORT_REQUESTED
            return self._parking.park(self, request)

    def _timer_fired(self, request: Park) -> None:
        with self._lock:
            runner = self._parking.unpark(TIMER) \
                if self._parking.request is request else None
        if runner is not None:
            runner._job_resumed(self)

    def _end(self, event: Event, exc: Optional[BaseException]) -> None:
        """Apply the event that ended run() (or its continuation)."""
        if exc is None:
            with self._lock:
                self._move_through(self._path(event))
                if self._status is not JobStatus.ABORTED:
                    return   # done: nothing to log
                step = self._step
            log.info("job %s aborted during step %r", self.id, step)
            return
        error = _error_of(self, exc) if event is Event.RAISED else None
        with self._lock:
            was = self._status
            self._move_through(self._path(event))
            if self._status is JobStatus.FAILED:
                self._error = error
            status = self._status
        _log_raised(self.id, was, status, exc)



def _log_raised(job_id: str, was: JobStatus, status: JobStatus,
                exc: BaseException) -> None:
    """Log how run() raising `exc` ended the job (it was `was`, and is now
    `status`): an expected failure is a warning, anything else an error."""
    if was is JobStatus.DONE:
        log.error("job %s raised after it completed", job_id, exc_info=exc)
    elif status is JobStatus.ABORTED:
        log.info("job %s aborted: %s", job_id, exc)
    elif status is JobStatus.FAILED:
        if getattr(exc, "expected", False):
            log.warning("job %s failed: %s", job_id, exc)
        else:
            log.error("job %s failed", job_id, exc_info=exc)


def _error_of(job: Job, exc: BaseException) -> Dict[str, Any]:
    """The job's error_info(exc); a subclass's error_info that fails must
    not hide the failure it was asked to describe."""
    try:
        return job.error_info(exc)
    except Exception:
        log.exception("job %s: error_info failed", job.id)
        return {"code": None, "message": str(exc)}
