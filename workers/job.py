"""A job: one unit of work with a status, a current step, and an end.

A job owns its state and the lock that guards it (as CPython's Future does);
the pool only decides when it runs. Subclasses implement `run()` and call
`step(name)` at each step boundary: that is where an abort requested from
another thread takes effect, so a job is never interrupted in the middle of
a call that has side effects.
"""

import logging
import random
import threading
import time

from .states import ENDED, JobStatus, check_transition

log = logging.getLogger("workers.job")

_worker_context = threading.local()


# Job ids need to be unique, not secret (Host.getJobs lists them all):
# uuid.uuid4() asks the kernel for randomness at every call, which costs
# more than the rest of a job's bookkeeping together.
_ids = random.Random()


def new_id():
    """A random (version 4) UUID string."""
    n = _ids.getrandbits(128)
    n = (n & ~(0xF000 << 64)) | (0x4000 << 64)       # version 4
    n = (n & ~(0xC000 << 48)) | (0x8000 << 48)       # RFC 4122 variant
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def current_job():
    """The job the calling thread is running, or None (for log context)."""
    return getattr(_worker_context, "job", None)


class JobAborted(Exception):
    """Raised inside `run()` once an abort was requested; the job then ends
    `aborted` (or `failed`, if its rollback fails)."""


class JobNotActive(Exception):
    """The job already ended: it can no longer be aborted."""


class Job:
    job_type = "job"

    def __init__(self, description="", timeout=None, on_step=None,
                 job_id=None):
        self.id = job_id or new_id()
        self.description = description
        # Past this many seconds of running the job is reported stuck. It is
        # never abandoned: its calls have side effects that only it can undo.
        self.timeout = timeout
        # Called as on_step(job, name) at every step boundary, before the
        # abort check: tests use it to inject a destroy between two steps.
        self._on_step = on_step
        self.created = time.time()
        self._end_callbacks = []
        # Guards every field below: status, history, step, progress, error,
        # the start and end times, and `_finished` (the end hooks ran).
        # `_changed`, on the same lock, is made by the first waiter (most
        # jobs never have one) and notified when an abort is requested and
        # when the job finished.
        self._lock = threading.Lock()
        self._changed = None
        self._finished = False
        self._final_info = None   # info() once finished (set once)
        self._status = JobStatus.PENDING
        self._history = [JobStatus.PENDING]
        self._step = "queued"
        self._progress = None
        self._error = None
        self._started_at = None
        self._started_mono = None
        self._ended_at = None

    # -- for subclasses ---------------------------------------------------

    def run(self):
        raise NotImplementedError

    def step(self, name):
        """Enter step `name`; raise JobAborted if an abort was requested."""
        with self._lock:
            self._step = name
        if self._on_step is not None:
            self._on_step(self, name)
        self.check_abort()

    def check_abort(self):
        """Raise JobAborted if an abort was requested (for a job that waits
        inside a step and must notice an abort there)."""
        with self._lock:
            if self._status is JobStatus.ABORTING:
                raise JobAborted(f"aborted in step {self._step!r}")

    def set_progress(self, percent):
        with self._lock:
            self._progress = percent

    def complete(self, commit=None):
        """End the job `done`, running `commit()` under the job's lock.

        Doing both in one critical section means nobody sees the job done
        without its commit, or the commit without the job done; and an abort
        requested before this point wins: the commit is refused. `commit`
        must be short and must not block (a registry update, no I/O).
        """
        with self._lock:
            if self._status is JobStatus.ABORTING:
                raise JobAborted(f"aborted before step {self._step!r} ended")
            if commit is not None:
                commit()
            self._move(JobStatus.DONE)

    def error_info(self, exc):
        """The `{"code", "message"}` a failure is reported as."""
        return {"code": getattr(exc, "code", None), "message": str(exc)}

    def on_ended(self):
        """Called once, outside the lock, when the job has ended (whether it
        ran or was aborted while pending), before waiters are woken."""

    # -- for everybody ----------------------------------------------------

    @property
    def status(self):
        with self._lock:
            return self._status

    @property
    def ended(self):
        """True once the job ended and its end hooks ran."""
        return self._finished

    def history(self):
        with self._lock:
            return list(self._history)

    def abort(self):
        """Request an abort. A pending job ends `aborted` at once and never
        runs; a running one moves to `aborting` and rolls back at its next
        step boundary. Raises JobNotActive if the job already ended."""
        with self._lock:
            status = self._status
            if status is JobStatus.PENDING:
                self._move(JobStatus.ABORTED)
            elif status is JobStatus.RUNNING:
                self._move(JobStatus.ABORTING)
            elif status is not JobStatus.ABORTING:
                raise JobNotActive(f"job {self.id} already {status}")
        if status is JobStatus.PENDING:
            self._finish()

    def wait_abort_requested(self, timeout=None):
        """Wait until an abort was requested; True if one was. (A job that
        waits on something outside, an incoming migration say, wakes up
        for it.)"""
        with self._lock:
            return self._condition().wait_for(self._abort_requested, timeout)

    def wait(self, timeout=None):
        """Wait until the job ended and its end hooks ran; True if it did."""
        with self._lock:
            return self._condition().wait_for(lambda: self._finished,
                                              timeout)

    def add_end_callback(self, callback):
        """Call `callback(job)` once the job ended (at once if it has)."""
        with self._lock:
            if self._status not in ENDED:
                self._end_callbacks.append(callback)
                return
        callback(self)

    def is_stuck(self, now=None):
        with self._lock:
            return self._is_stuck(now)

    def info(self):
        """A snapshot of the job as API.md's JobInfo, with the keys of
        info_extra(). An ended job's never changes again: it is built once
        (Host.getJobs over thousands of ended jobs copies them)."""
        final = self._final_info
        if final is not None:
            return dict(final)
        with self._lock:
            info = self._snapshot()
            finished = self._finished
        info.update(self.info_extra())
        if finished:
            self._final_info = info
            return dict(info)
        return info

    def info_extra(self):
        """Keys a subclass adds to info(); they must not change."""
        return {}

    def _snapshot(self):
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

    def execute(self):
        """Run the job in the calling worker thread, unless it was aborted
        while pending. Never raises: the outcome is the job's status."""
        with self._lock:
            if self._status is not JobStatus.PENDING:
                return
            self._move(JobStatus.RUNNING)
            self._started_at = time.time()
            self._started_mono = time.monotonic()
        _worker_context.job = self
        try:
            self.run()
            self._end_run()
        except JobAborted as exc:
            self._end(JobStatus.ABORTED, None)
            log.info("job %s aborted: %s", self.id, exc)
        except Exception as exc:
            self._end(JobStatus.FAILED, self.error_info(exc))
            if getattr(exc, "expected", False):
                log.warning("job %s failed: %s", self.id, exc)
            else:
                log.exception("job %s failed", self.id)
        finally:
            _worker_context.job = None
        self._finish()

    # -- internals --------------------------------------------------------

    def _end_run(self):
        """run() returned: the job is done, unless it completed itself (it
        committed) or an abort was requested, which wins as it would have
        at the next step boundary."""
        with self._lock:
            if self._status is JobStatus.RUNNING:
                self._move(JobStatus.DONE)
            elif self._status is JobStatus.ABORTING:
                raise JobAborted(f"aborted during step {self._step!r}")

    def _end(self, status, error):
        with self._lock:
            if self._status is JobStatus.RUNNING and \
                    status is JobStatus.ABORTED:
                # The job aborted itself (its commit was refused, say).
                self._move(JobStatus.ABORTING)
            self._move(status)
            self._error = error

    def _move(self, new):
        # Caller holds self._lock.
        self._status = check_transition(self._status, new)
        self._history.append(new)
        if new is JobStatus.ABORTING or new is JobStatus.ABORTED:
            self._notify()
        if new in ENDED:
            self._ended_at = time.time()

    def _condition(self):
        # Caller holds self._lock.
        if self._changed is None:
            self._changed = threading.Condition(self._lock)
        return self._changed

    def _notify(self):
        # Caller holds self._lock.
        if self._changed is not None:
            self._changed.notify_all()

    def _abort_requested(self):
        # Caller holds self._lock.
        return JobStatus.ABORTING in self._history or \
            self._status is JobStatus.ABORTED

    def _is_stuck(self, now=None):
        # Caller holds self._lock.
        if self.timeout is None or self._started_mono is None or \
                self._status.ended:
            return False
        now = time.monotonic() if now is None else now
        return now - self._started_mono > self.timeout

    def _finish(self):
        with self._lock:
            callbacks, self._end_callbacks = self._end_callbacks, []
        try:
            self.on_ended()
        except Exception:
            log.exception("job %s: end hook failed", self.id)
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                log.exception("job %s: end callback failed", self.id)
        with self._lock:
            self._finished = True
            self._notify()

    def __repr__(self):
        return f"<{type(self).__name__} {self.id} {self.status}>"
