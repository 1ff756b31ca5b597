"""A job: one unit of work with a status, a current step, and an end.

A job owns its state and the lock that guards it (as CPython's Future
does); the pool only decides when it runs. Subclasses implement `run()`
and call `step(name)` at each step boundary: that is where an abort
requested from another thread takes effect, so a job is never interrupted
in the middle of a call that has side effects.

Every change of status is an event (states.EVENTS) applied by `_path` and
`_move_through`; nothing else moves a job.

Waiting (`wait_for`): a step that must wait for something outside (a
guest to arrive, a turn, a transfer to end) does not block its worker. It
returns what `wait_for` gives:

    def run(self):
        self.step("prepare")
        unsubscribe = subscribe(lambda: self.wake())  # events wake it
        return self.wait_for("wait-arrival", ready=looked_and_found,
                             then=self.arrived, deadline=..., poll=5,
                             expired=self.timed_out)

The job is then *parked*: the worker thread is free, the job stays
`running` (its step shows what it waits for) and abortable; the pool
counts it `parked`. `ready()` is looked at first, then each time the job
is woken: by `job.wake()` (from any thread: it never waits for work), by
the pool's timer (every `poll` seconds, and at `deadline`), or by an
abort. Once `ready()` returns a value other than None or False, a worker
calls `then(value)`; at the deadline, `expired()` (or TimeoutError); on
abort, JobAborted is raised in the job (with `abortable=False` the job
sees the abort itself, with `abort_requested()`, e.g. to stop something
it must wait for before it can end). A wake() that comes before the job
parks is not lost: it looks again at once. So: subscribe, look, park;
every event after the look wakes it.

Continuations are plain bound methods: the job's state lives on the job
(as with concurrent.futures' callbacks, no coroutine machinery). Beneath
`wait_for` a step may return a `Park` itself: `then(reason)` runs when
woken, with reason WOKEN, TIMER or ABORT_REQUESTED.

Locks: a job's lock is taken before its pool's (the job tells the pool it
parks, and that it finished, under its own lock), and the pool's before
its timer's; nothing calls a job while holding a pool's or a timer's
lock.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import (
    Any,
    Callable,
    Dict,
    List,
    Optional,
    Protocol,
    Tuple,
)

from .lanes import Priority
from .states import (
    ABORTING,
    ENDED,
    EVENTS,
    PENDING,
    RUNNING,
    Event,
    IllegalTransition,
    JobAborted,
    JobEnded,
    JobStatus,
)

__all__ = ["ABORT_REQUESTED", "Job", "Park", "Runner", "TIMER", "WOKEN",
           "current_job", "bounded_error", "MAX_ERROR_MESSAGE"]

log = logging.getLogger("workers.job")

# Bytes of a job's error message, as JSON writes it (every character not
# printable ASCII escaped: up to 12 bytes for one beyond the BMP): it is
# kept as long as the job (an hour, thousands of jobs) and may echo what
# the caller sent. At this bound the infos of 10,000 failed jobs take
# under 16 MiB of JSON; 4,096 characters did not (a hostile-caller audit:
# 4,096 emoji are 49 KB of JSON, and vmjobs' Host.getJobs outgrew its
# answer's bound for an hour).
MAX_ERROR_MESSAGE = 1024


def bounded_error(error: Dict[str, Any]) -> Dict[str, Any]:
    """`error` with its message cut to MAX_ERROR_MESSAGE bytes of JSON,
    with a mark."""
    message = str(error.get("message", ""))
    if len(message) * 12 <= MAX_ERROR_MESSAGE:
        return error    # however it is escaped, it fits
    end = _json_prefix(message, MAX_ERROR_MESSAGE)
    if end == len(message):
        return error
    return {**error, "message": f"{message[:end]}...[cut: "
            f"{len(message)} characters in all]"}


def _json_prefix(text: str, limit: int) -> int:
    """How many of `text`'s first characters take at most `limit` bytes
    of JSON."""
    size = 0
    for end, char in enumerate(text):
        size += _json_size(char)
        if size > limit:
            return end
    return len(text)


def _json_size(char: str) -> int:
    """Bytes of `char` in JSON text that escapes all but printable ASCII."""
    if " " <= char <= "~":
        return 2 if char in '"\\' else 1
    return 12 if char > "\uffff" else 6


# Why a parked job goes on.
WOKEN = "woken"
TIMER = "timer"
ABORT_REQUESTED = "abort"

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


class Park:
    """A step's request to wait: go on with `then(reason)` once woken, at
    the latest at `wake_at` (time.monotonic(); None: no timer)."""
    __slots__ = ("then", "wake_at")

    def __init__(self, then: Callable[[str], Any],
                 wake_at: Optional[float]) -> None:
        self.then = then
        self.wake_at = wake_at


class Runner(Protocol):
    """What a job asks of the pool that runs it (pool.Pool)."""

    def job_parked(self, job: Job, request: Park) -> None:
        """`job` parked on `request`; called under the job's lock, in the
        worker that ran it."""

    def job_woken(self, job: Job) -> None:
        """A parked `job` was woken: run its continuation (called outside
        the job's lock)."""

    def job_finished(self, job: Job, status: JobStatus,
                     started: Optional[float]) -> None:
        """`job` ended `status` (it began running at `started`,
        time.monotonic(), or never) and its end hooks ran: called once,
        under the job's lock, before anybody sees it finished (its waiters,
        its observer's last call), so that what the runner counts agrees
        with what they see."""

    def job_announced(self, job: Job) -> None:
        """`job`, told finished (job_finished), has woken its waiters and
        told its observer: called once, outside the job's lock."""


class _Wait:
    """One wait_for: what the job waits for, until when, and what next."""
    __slots__ = ("job", "ready", "then", "deadline", "poll", "expired",
                 "abortable")

    def __init__(self, job: Job, ready: Callable[[], Any],
                 then: Callable[[Any], Any], deadline: Optional[float],
                 poll: Optional[float],
                 expired: Optional[Callable[[], Any]],
                 abortable: bool) -> None:
        self.job, self.ready, self.then = job, ready, then
        self.deadline, self.poll = deadline, poll
        self.expired, self.abortable = expired, abortable

    def look(self, reason: Optional[str] = None) -> Any:
        if self.abortable:
            self.job.check_abort()   # an abort while parked lands here
        value = self.ready()
        if value is not None and value is not False:
            return self.then(value)
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline:
            if self.expired is None:
                raise TimeoutError(f"job {self.job.id}: still waiting in "
                                   f"step {self.job.step_name!r} at its "
                                   "deadline")
            return self.expired()
        wake_at = self.deadline
        if self.poll is not None:
            wake_at = now + self.poll if wake_at is None else \
                min(wake_at, now + self.poll)
        return Park(self.look, wake_at)


class Job:
    job_type = "job"
    # Queued HIGH jobs run ahead of NORMAL ones (lanes.py says why a NORMAL
    # one still cannot starve).
    priority = Priority.NORMAL
    # True: counts against the pool's admission limit while it runs.
    admission = False

    def __init__(self, description: str = "", timeout: Optional[float] = None,
                 on_step: Optional[Callable[[Job, str], None]] = None,
                 job_id: Optional[str] = None) -> None:
        self.id = job_id or new_id()
        self.description = description
        # Past this many seconds of running the job is reported stuck. It is
        # never abandoned: its calls have side effects that only it can undo.
        self.timeout = timeout
        self.created = time.time()
        # The same moment on a clock that does not jump (NTP, date -s):
        # what durations are measured from (JobInfo keeps the wall
        # clock's, seconds since the epoch).
        self.created_monotonic = time.monotonic()
        # Called as on_step(job, name) at every step boundary, before the
        # abort check: tests use it to inject a destroy between two steps.
        self._on_step = on_step
        self._end_callbacks: List[Callable[[Any], None]] = []
        # Guards every field below. `_changed`, on the same lock, is made
        # by the first waiter (most jobs never have one) and notified when
        # an abort is requested and when the job finished.
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
        # Parking: the pool that runs the job (set by submit), the request
        # it is parked on, the continuation a worker calls next, and a
        # wake() that came while it was not parked.
        self._runner: Optional[Runner] = None
        self._parked_on: Optional[Park] = None
        self._resume: Optional[Tuple[Callable[[str], Any], str]] = None
        self._wake_pending = False
        # Told of every change (observe()); called under the lock.
        self._observer: Optional[Callable[[Any, Dict[str, Any]], None]] = \
            None

    # -- for subclasses ---------------------------------------------------

    def run(self) -> Any:
        """The job's work; may return what wait_for gives (a Park)."""
        raise NotImplementedError

    def on_ended(self) -> None:
        """Called once, outside the lock, when the job has ended (whether it
        ran or was aborted while pending), before waiters are woken."""

    def step(self, name: str) -> None:
        """Enter step `name`; raise JobAborted if an abort was requested."""
        with self._lock:
            if name != self._step:
                self._step = name
                self._observed()
        if self._on_step is not None:
            self._on_step(self, name)
        self.check_abort()

    def wait_for(self, step: Optional[str], ready: Callable[[], Any],
                 then: Callable[[Any], Any], *,
                 deadline: Optional[float] = None,
                 poll: Optional[float] = None,
                 expired: Optional[Callable[[], Any]] = None,
                 abortable: bool = True) -> Any:
        """Enter step `step` (None: stay in the current one) and wait,
        parked, until `ready()` returns a value (not None or False), then
        go on with `then(value)`; at `deadline` (time.monotonic()) with
        `expired()`. The module's docstring says what wakes it. Return its
        result from the step."""
        if step is not None:
            self.step(step)
        return _Wait(self, ready, then, deadline, poll, expired,
                     abortable).look()

    def check_abort(self) -> None:
        """Raise JobAborted if an abort was requested (for a job that waits
        inside a step and must notice an abort there)."""
        with self._lock:
            if self._status is ABORTING:
                raise JobAborted(f"aborted in step {self._step!r}")

    def abort_requested(self) -> bool:
        """True once an abort was requested (it stays true)."""
        with self._lock:
            return self._abort_requested()

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

    def set_end_error(self, code: Any, message: str) -> None:
        """Add to the job's error what its end hook (on_ended) found,
        while the job's info can still change."""
        with self._lock:
            if self._error is not None:
                message = f"{self._error['message']}; then {message}"
            self._error = bounded_error({"code": code, "message": message})

    def error_info(self, exc: BaseException) -> Dict[str, Any]:
        """The `{"code", "message"}` a failure is reported as."""
        return {"code": getattr(exc, "code", None), "message": str(exc)}

    def info_extra(self) -> Dict[str, Any]:
        """Keys a subclass adds to info(); they must not change."""
        return {}

    def stuck_since(self) -> Optional[float]:
        """When (time.monotonic()) the job's `timeout` starts counting, or
        None while it does not: by default, when it started running.
        Called under the job's lock: reads the job's own fields only."""
        return self._started_mono

    # -- for everybody ----------------------------------------------------

    @property
    def status(self) -> JobStatus:
        with self._lock:
            return self._status

    @property
    def step_name(self) -> str:
        with self._lock:
            return self._step

    @property
    def shown_ended(self) -> bool:
        """True once the job is shown ended (JobInfo, Job.delete): at
        once if it ended done, once its end hooks ran if not
        (_end_hidden)."""
        with self._lock:
            return self._status in ENDED and not self._end_hidden()

    @property
    def finished(self) -> bool:
        """True once the job finished: its status ended and its end hooks
        ran (the status alone is `status.ended`)."""
        with self._lock:
            return self._finished

    @property
    def started_monotonic(self) -> Optional[float]:
        """When it started running (time.monotonic()), or None."""
        with self._lock:
            return self._started_mono

    def history(self) -> List[JobStatus]:
        with self._lock:
            return list(self._history)

    def wait_abort_requested(self, timeout: Optional[float] = None) -> bool:
        """Wait until an abort was requested; True if one was."""
        with self._lock:
            return self._condition().wait_for(self._abort_requested, timeout)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until the job finished (ended, and its end hooks ran); True
        if it did."""
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

    def abort(self) -> None:
        """Request an abort. A pending job ends `aborted` at once and never
        runs; a running one moves to `aborting` and rolls back at its next
        step boundary (a parked one is woken for it). Raises JobEnded if
        the job already ended."""
        with self._lock:
            if self._end_hidden():
                # Shown as before its end (_snapshot): an abort there
                # comes too late, as one after a job's last step does.
                return
            was = self._status
            self._move_through(self._path(Event.ABORT))
            runner = self._unpark(ABORT_REQUESTED) \
                if was is not PENDING else None
        if was is PENDING:
            # Queued: it frees its room once its end hooks ran (_finish
            # tells the pool; before, the pool looked idle, and a stop went
            # on, under them).
            self._finish()
        elif runner is not None:
            runner.job_woken(self)

    def wake(self) -> None:
        """Resume the job if it is parked, or make its next park return at
        once if it is running (from any thread; never waits for work)."""
        with self._lock:
            runner = self._unpark(WOKEN)
            if runner is None:
                self._wake_pending = True
        if runner is not None:
            runner.job_woken(self)

    # -- for the pool -----------------------------------------------------

    def attach(self, runner: Runner) -> Optional[JobStatus]:
        """The pool that runs the job: where it goes when woken, and whom
        its end is told (Runner.job_finished). Returns the job's status if
        it has already finished (aborted before it was queued), which was
        then told nobody; else None."""
        with self._lock:
            self._runner = runner
            return self._status if self._finished else None

    def execute(self) -> Optional[JobStatus]:
        """Run the job's next turn in the calling worker thread: run(), or
        the continuation it parked with; nothing if it was aborted while
        pending (the turn then ends once the end hooks, which its aborter
        runs, have run). Never raises: the outcome is the job's status,
        returned once it ended (None if it parked)."""
        with self._lock:
            resume, self._resume = self._resume, None
            self._wake_pending = False   # spent by this turn
            if resume is None:
                try:
                    self._move_through(self._path(Event.START))
                except JobEnded:
                    # Aborted while queued: it never runs. Its aborter runs
                    # its end hooks (abort()) and the pool counts it ended
                    # once they ran; this worker waits for them, the hooks
                    # it would have run itself.
                    self._condition().wait_for(lambda: self._finished)
                    return self._status
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

    def timer_fired(self, request: Park) -> None:
        """The pool's timer: `request`'s wake-up time passed (ignored if
        the job no longer waits on it)."""
        with self._lock:
            runner = self._unpark(TIMER) \
                if self._parked_on is request else None
        if runner is not None:
            runner.job_woken(self)

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
            if self._runner is None:
                raise ValueError(f"job {self.id} parks without a pool")
            if self._status is ABORTING:
                return ABORT_REQUESTED
            if self._wake_pending:
                self._wake_pending = False
                return WOKEN
            self._parked_on = request
            self._runner.job_parked(self, request)   # lock order: job, pool
            return None

    def _unpark(self, reason: str) -> Optional[Runner]:
        # Caller holds self._lock. The pool to requeue the job on (outside
        # the lock), or None if it is not parked.
        request = self._parked_on
        if request is None:
            return None
        self._parked_on = None
        self._resume = (request.then, reason)
        return self._runner

    def _snapshot(self) -> Dict[str, Any]:
        # Caller holds self._lock.
        status, ended_at, error = self._status, self._ended_at, self._error
        if self._end_hidden():
            status = next(s for s in reversed(self._history)
                          if s not in ENDED)
            ended_at = error = None
        info: Dict[str, Any] = {
            "id": self.id,
            "job_type": self.job_type,
            "status": status.value,
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
        if error is not None:
            info["error"] = error
        if self._started_at is not None:
            info["started"] = self._started_at
        if ended_at is not None:
            info["ended"] = ended_at
        return info

    def _observed(self) -> None:
        # Caller holds self._lock.
        if self._observer is not None:
            info = self._snapshot()
            info.update(self.info_extra())
            self._observer(self, info)

    def _path(self, event: Event) -> Tuple[JobStatus, ...]:
        # Caller holds self._lock. The moves `event` makes (EVENTS), or the
        # refusal it names; on every job's path twice (the dispatch
        # benchmark counts the calls).
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

    def _end_hidden(self) -> bool:
        # Caller holds self._lock. An end shown only once its end hooks
        # ran: one aborted or failed, whose hooks roll back (a claimed VM
        # given back its status, what arrived removed), so that whoever
        # reads the job ended reads its VM as the end left it, as its
        # observer (the events) and its pool's counts do. (A poller read a
        # migration `aborted` while its VM still said `Migration Source`:
        # the clean-room run, round 2.) One done is shown at once: its
        # end (a commit) changed the VM in the same step, and its hooks
        # only let go of what it held; a VM listed public has its job
        # done.
        return self._status in ENDED and self._status is not JobStatus.DONE and \
            not self._finished

    def _is_stuck(self, now: Optional[float] = None) -> bool:
        # Caller holds self._lock.
        since = self.stuck_since()
        if self.timeout is None or since is None or self._status.ended:
            return False
        now = time.monotonic() if now is None else now
        return now - since > self.timeout

    def _crash(self, exc: BaseException) -> None:
        """The runner failed (a bug): end the job failed, so that nothing
        waits for it forever."""
        log.error("job %s: internal error", self.id, exc_info=exc)
        with self._lock:
            if (self._status, Event.CRASHED) in EVENTS:
                self._move_through(self._path(Event.CRASHED))
            if self._error is None and self._status is JobStatus.FAILED:
                self._error = bounded_error({
                    "code": None, "message": f"internal error: {exc!r}"})

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
                # The pool counts it first (lock order: job, pool): whoever
                # sees it finished (its waiters, the observer's last call,
                # the engine's event) then reads the pool's figures with it.
                if self._runner is not None:
                    self._runner.job_finished(self, self._status,
                                              self._started_mono)
                self._notify()
                self._observed()
                status = self._status
                runner = self._runner
        if runner is not None:
            runner.job_announced(self)
        return status

    def __repr__(self) -> str:
        # Without the job's lock: a job is named in messages made under
        # other locks (the registry's, refusing a VM busy with it), and
        # taking the job's there is the reverse of a commit's order (job,
        # then registry): a hostile-caller audit wedged the service so. The
        # status read alone is one attribute, as it was at some moment.
        return f"<{type(self).__name__} {self.id} {self._status}>"


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
        return bounded_error(job.error_info(exc))
    except Exception:
        log.exception("job %s: error_info failed", job.id)
        return bounded_error({"code": None, "message": str(exc)})
