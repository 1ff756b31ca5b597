"""A fixed number of worker threads fed by a bounded queue.

The pool is the throttle: at most `workers` jobs run at once, at most
`queue_size` wait, and `submit` never blocks the caller. When the queue is
full it refuses at once (QueueFull), so a flood of requests turns into quick
"try again later" answers instead of piled-up threads (VDSM's executor does
the same; a thread per request behind a semaphore does not).

Shape after CPython's concurrent.futures.thread: a plain worker loop over a
C SimpleQueue, one lock owned by the pool held only to count, and shutdown
that sets a flag under the lock and joins the workers. The SimpleQueue only
rings the bell (one token per job made ready); which job a woken worker
takes is chosen under the pool's lock from lanes.py's priority lanes.

Besides `queued` and `running` jobs there are `parked` ones (park.py):
running jobs that wait for an outside event on no thread. A parked job is
requeued ahead of everything when woken, and the pool does not stop (even
on shutdown) while one is parked: it must still reach its end.

The reserve: while a job is parked, NORMAL jobs hold at most workers - 1
threads. The one left is for the parked job's wake-up and for HIGH work,
which then wait for no NORMAL job's whole run (an incoming migration's
arrival waits for no creation to finish before it commits). A pool of one
worker has none to spare.

The admission limit (admission.py) bounds how many of the jobs that ask
for it run at once; the others wait in the queue, holding no thread. An
admission controller (adaptive.py) may move it.
"""

from __future__ import annotations

import functools
import queue
import threading
import time
from typing import Any, Dict, Optional, Tuple

from .adaptive import AdaptiveLimit
from .admission import Admission
from .changes import Changes
from .job import Job
from .lanes import RESUMED, Lanes, Priority, lane_of
from .park import Park, Timer
from .states import JobStatus
from .turns import abort_quietly, check_at_least_one, run_turn, start_threads

DRAIN = "drain"
ABORT = "abort"


# The ended statuses in the order stats() lists them.
_ENDED_ORDER = (JobStatus.DONE, JobStatus.FAILED, JobStatus.ABORTED)


class QueueFull(Exception):
    """The queue holds `queue_size` pending jobs: try again later."""


class PoolClosed(Exception):
    """The pool is shutting down and takes no more work."""


class Pool:
    def __init__(self, workers: int, queue_size: int, name: str = "pool",
                 starvation_limit: int = 8,
                 admission_limit: Optional[int] = None,
                 admission_controller: Optional[AdaptiveLimit] = None
                 ) -> None:
        check_at_least_one(workers=workers, queue_size=queue_size)
        self.name = name
        self.workers = workers
        self.queue_size = queue_size
        # The workers' bell: one token per job put in the lanes (and one
        # None passed on by each worker that stops). A token may find no
        # job (taken by another worker, or aborted while queued): harmless.
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._timer = Timer(name)
        # Guards the fields below. _changes is notified as a queued job
        # leaves the queue's count (room for submit(wait=True)) and as a
        # job ends (wait_idle).
        self._lock = threading.Lock()
        self._changes = Changes(self._lock)
        self._closed = False
        self._abort_queued = False
        self._lanes = Lanes(starvation_limit)
        self._pending: Dict[str, Job] = {}   # queued, counted in queue_size
        self._running: Dict[str, Job] = {}   # on a worker thread
        self._parked: Dict[str, Job] = {}    # parked, or woken not yet taken
        self._admission = Admission(workers, admission_limit,
                                    admission_controller)
        self._ended = dict.fromkeys(_ENDED_ORDER, 0)   # jobs ended, by status
        self._threads = start_threads(self._worker, name, workers)

    def submit(self, job: Job, wait: bool = False) -> None:
        """Queue `job`; raise QueueFull at once if there is no room.

        `wait=True` waits for room instead: only for the service's own
        producers (recovery at start-up), never for a caller's request."""
        job._attach(self)     # before any worker can see it
        lane = lane_of(job)
        with self._lock:
            while True:
                if self._closed:
                    raise PoolClosed(f"pool {self.name} is shut down")
                if len(self._pending) < self.queue_size:
                    break
                if not wait:
                    raise QueueFull(
                        f"pool {self.name}: {self.queue_size} jobs queued")
                self._changes.wait()
            self._pending[job.id] = job
            self._lanes.push(job, lane)
            if not (self._parked or job.admission) or \
                    self._eligible() >> lane & 1:
                # Else no worker could take it yet: a worker whose job
                # ends looks for it (_worker), and a lifted limit rings.
                self._queue.put(True)

    def shutdown(self, mode: str = DRAIN, wait: bool = True,
                 timeout: Optional[float] = None) -> bool:
        """Stop taking work. DRAIN runs what is queued; ABORT aborts it (and
        asks running and parked jobs to abort at their next step). Then,
        with `wait`, join every worker: they stop once nothing is queued or
        parked; at most `timeout` seconds in all. True if every worker
        stopped (False: a job still runs, on a daemon thread)."""
        if mode not in (DRAIN, ABORT):
            raise ValueError(f"unknown shutdown mode {mode!r}")
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)    # wakes a worker to see it
            self._abort_queued = self._abort_queued or mode == ABORT
            to_abort = [*self._pending.values(), *self._running.values(),
                        *self._parked.values()] if mode == ABORT else []
            self._changes.notify()
        for job in to_abort:
            abort_quietly(job)
        if not wait:
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None
                        else max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                return False
        self._timer.close()
        return True

    def wait_idle(self, timeout: Optional[float] = None) -> bool:
        """Wait until nothing is queued, running or parked; True if so."""
        with self._lock:
            return self._changes.wait(lambda: not (
                self._pending or self._running or self._parked), timeout)

    @property
    def admission_limit(self) -> int:
        with self._lock:
            return self._admission.limit

    def set_admission_limit(self, limit: int) -> None:
        """At most `limit` (1..workers) jobs with admission run at once;
        takes effect for the next ones (running ones are not stopped)."""
        self._admission.check(limit)
        with self._lock:
            for _ in range(self._admission.set_limit(limit)):
                self._queue.put(True)   # jobs that waited for room may go

    def stats(self) -> Dict[str, int]:
        with self._lock:
            return {
                "workers": self.workers,
                "queue_size": self.queue_size,
                "queued": len(self._pending),
                "running": len(self._running),
                "parked": len(self._parked),
                "admission_limit": self._admission.limit,
                **{status.value: n for status, n in self._ended.items()},
            }

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.shutdown(DRAIN)

    # -- internals --------------------------------------------------------

    def _worker(self) -> None:
        finished = None   # (the job this worker ended, its status)
        while True:
            try:
                self._queue.get_nowait()
                rung = True
            except queue.Empty:
                rung = False
            # Counting the job that ended and taking the next share one
            # critical section. Unrung, look all the same: a job held back
            # (by the reserve or the admission limit) rang no bell, and the
            # job that ended here may have let it run.
            job, abort = self._take(finished)
            if job is None and not rung:
                if self._may_stop():
                    return
                self._queue.get()        # sleep until something is rung
                job, abort = self._take(None)
            finished = None if job is None else run_turn(job, abort, self.name)

    def _take(self, finished: Optional[Tuple[Job, JobStatus]]
              ) -> Tuple[Optional[Job], bool]:
        """Count the job this worker ended (if any); return the next job
        to run, if any, and whether to abort it instead."""
        with self._lock:
            if finished is not None:
                self._count_ended(*finished)
            while True:
                lane, job = self._lanes.pop(self._eligible())
                if job is None:
                    if finished is not None:
                        self._changes.notify()
                    return None, False
                if lane == RESUMED:
                    del self._parked[job.id]
                    if not self._parked:
                        self._queue.put(True)   # the reserve is lifted
                elif self._pending.pop(job.id, None) is None:
                    continue     # aborted while queued: it never runs
                else:
                    self._admission.started(job)
                self._running[job.id] = job
                self._changes.notify()   # room for submit(wait=True)
                # A woken job runs (if aborted, its rollback); one queued
                # after an ABORT shutdown is aborted instead.
                return job, self._abort_queued and lane != RESUMED

    def _may_stop(self) -> bool:
        """True if the worker may stop: shut down, and nothing queued or
        parked. Passes the news on to the next worker."""
        with self._lock:
            if not self._closed or self._pending or self._parked:
                return False
            self._queue.put(None)
            return True

    def _eligible(self) -> int:
        # Caller holds _lock. The lanes whose head may start now: within
        # the admission limit, and the reserve (the module's docstring).
        normal = not self._parked or self.workers == 1 or sum(
            1 for job in self._running.values()
            if job.priority is Priority.NORMAL) < self.workers - 1
        return self._lanes.eligible(self._admission.has_room(), normal)

    def _count_ended(self, job: Job, status: JobStatus) -> None:
        # Caller holds _lock. The one place ended jobs are counted: a job a
        # worker took, by that worker (in _take); a job aborted while
        # queued, by _job_aborted_queued.
        self._ended[status] += 1
        if self._running.pop(job.id, None) is not None:
            waiting = self._lanes.waiting_for_admission()
            freed = self._admission.ended(job, status, waiting)
            for _ in range(freed if waiting else 0):
                self._queue.put(True)   # jobs that waited for room may go

    def _job_parked(self, job: Job, request: Park) -> None:
        # Called by the job, under its lock, in the worker that ran it.
        with self._lock:
            self._parked[job.id] = self._running.pop(job.id)
            if request.wake_at is not None:
                self._timer.call_at(
                    request.wake_at,
                    functools.partial(job._timer_fired, request))

    def _job_resumed(self, job: Job) -> None:
        # Called by the job (outside its lock) once it is woken; it stays
        # counted parked until a worker takes it.
        with self._lock:
            self._lanes.push(job, RESUMED)
            self._queue.put(True)

    def _job_aborted_queued(self, job: Job) -> None:
        # Called by a job aborted while pending (outside its lock). If it
        # is still queued, it is counted here and its room is freed; if a
        # worker took it meanwhile, that worker counts it (it will not run).
        with self._lock:
            if self._pending.pop(job.id, None) is not None:
                self._count_ended(job, JobStatus.ABORTED)
                self._changes.notify()
