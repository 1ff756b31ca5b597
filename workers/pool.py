"""A fixed number of worker threads fed by a bounded queue.

The pool is the throttle: at most `workers` jobs run at once, at most
`queue_size` wait, and `submit` never blocks the caller. When the queue is
full it refuses at once (QueueFull), so a flood of requests turns into quick
"try again later" answers instead of piled-up threads (VDSM's executor does
the same; a thread per request behind a semaphore does not).

Shape after CPython's concurrent.futures.thread: a plain worker loop over a
C SimpleQueue, one lock owned by the pool held only to count, and shutdown
that sets a flag under the lock, wakes every worker (one None each) and
joins them.
"""

import logging
import queue
import threading

from .job import JobNotActive
from .states import JobStatus

log = logging.getLogger("workers.pool")

DRAIN = "drain"
ABORT = "abort"


class QueueFull(Exception):
    """The queue holds `queue_size` pending jobs: try again later."""


class PoolClosed(Exception):
    """The pool is shutting down and takes no more work."""


class Pool:
    def __init__(self, workers, queue_size, name="pool", admission=None):
        """`admission`: a gate (workers.admission) the jobs' heavy steps
        pass (Job.admitted); None: they run as soon as a worker takes them."""
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.name = name
        self.workers = workers
        self.queue_size = queue_size
        self.admission = admission
        # Jobs for the workers, in order; a None tells a worker to stop.
        # A job aborted while queued stays in it until a worker skips it.
        self._queue = queue.SimpleQueue()
        # Guards the fields below. _changed is notified, when someone waits
        # on it (_waiters), as a queued job leaves the queue's count (room
        # for submit(wait=True)) and as the pool goes idle (wait_idle).
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._waiters = 0
        self._closed = False
        self._abort_queued = False
        self._pending = {}    # id -> job, queued and counted in queue_size
        self._current = {}    # worker thread id -> the job it executes
        self._ended = {JobStatus.DONE: 0, JobStatus.FAILED: 0,
                       JobStatus.ABORTED: 0}
        self._threads = [
            threading.Thread(target=self._worker, name=f"{name}-{i}",
                             daemon=True)
            for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, job, wait=False):
        """Queue `job`; raise QueueFull at once if there is no room.

        `wait=True` waits for room instead: only for the service's own
        producers (recovery at start-up), never for a caller's request."""
        with self._lock:
            while True:
                if self._closed:
                    raise PoolClosed(f"pool {self.name} is shut down")
                if len(self._pending) < self.queue_size:
                    break
                if not wait:
                    raise QueueFull(
                        f"pool {self.name}: {self.queue_size} jobs queued")
                self._wait_changed()
            self._pending[job.id] = job
            if self.admission is not None:
                job.admission = self.admission
            self._queue.put(job)
        job.add_end_callback(self._job_ended)

    def shutdown(self, mode=DRAIN, wait=True):
        """Stop taking work. DRAIN runs what is queued; ABORT aborts it (and
        asks running jobs to abort at their next step). Then, with `wait`,
        join every worker."""
        if mode not in (DRAIN, ABORT):
            raise ValueError(f"unknown shutdown mode {mode!r}")
        with self._lock:
            if not self._closed:
                self._closed = True
                for _ in self._threads:
                    self._queue.put(None)
            self._abort_queued = self._abort_queued or mode == ABORT
            to_abort = (list(self._pending.values()) +
                        list(self._current.values())) \
                if mode == ABORT else []
            self._changed.notify_all()
        for job in to_abort:
            _abort_quietly(job)
        if wait:
            for thread in self._threads:
                thread.join()

    def wait_idle(self, timeout=None):
        """Wait until nothing is queued or running; True if so."""
        with self._lock:
            return self._wait_changed(self._idle, timeout)

    def stats(self):
        limit = self.admission.limit if self.admission else self.workers
        with self._lock:
            return {
                "workers": self.workers,
                "admission_limit": limit,
                "queue_size": self.queue_size,
                "queued": len(self._pending),
                "running": len(self._current),
                "done": self._ended[JobStatus.DONE],
                "failed": self._ended[JobStatus.FAILED],
                "aborted": self._ended[JobStatus.ABORTED],
            }

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.shutdown(DRAIN)

    # -- internals --------------------------------------------------------

    def _worker(self):
        me = threading.get_ident()
        finished = None   # the job this worker ended, not yet counted
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                # Nothing waiting: count the last job now (the pool may be
                # idle), then sleep until there is something.
                if finished is not None:
                    self._take(me, finished, None)
                    finished = None
                job = self._queue.get()
            # Under load, counting the job that ended and taking the next
            # one share one critical section.
            start, abort = self._take(me, finished, job)
            finished = None
            if not start:
                if job is None:
                    return
                continue   # aborted while queued: it never runs
            try:
                if abort:
                    _abort_quietly(job)
                else:
                    job.execute()
            finally:
                finished = job

    def _take(self, me, finished, job):
        """Count the job this worker ended (if any) and take `job` (None:
        the signal to stop). Returns (start it?, abort it instead?)."""
        finished_status = finished.status if finished is not None else None
        with self._lock:
            if finished is not None:
                del self._current[me]
                self._ended[finished_status] += 1
            start = job is not None and \
                self._pending.pop(job.id, None) is not None
            if start:
                self._current[me] = job
            if start or self._idle():
                self._notify()
            return start, self._abort_queued

    def _wait_changed(self, predicate=None, timeout=None):
        # Caller holds _lock.
        self._waiters += 1
        try:
            if predicate is None:
                return self._changed.wait(timeout)
            return self._changed.wait_for(predicate, timeout)
        finally:
            self._waiters -= 1

    def _notify(self):
        # Caller holds _lock. Most of the time nobody waits: skip the cost.
        if self._waiters:
            self._changed.notify_all()

    def _idle(self):
        # Caller holds _lock.
        return not self._pending and not self._current

    def _job_ended(self, job):
        # A job a worker took is counted by that worker, under the lock it
        # takes anyway (this runs in that worker, inside execute()). Only
        # one aborted while queued is counted here, and its room freed.
        if self._current.get(threading.get_ident()) is job:
            return
        status = job.status
        with self._lock:
            if self._pending.pop(job.id, None) is not None:
                self._ended[status] += 1
                self._notify()


def _abort_quietly(job):
    try:
        job.abort()
    except JobNotActive:
        pass  # it ended on its own meanwhile
