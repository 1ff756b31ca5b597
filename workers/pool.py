"""A fixed number of worker threads fed by a bounded queue.

The pool is the throttle: at most `workers` jobs run at once, at most
`queue_size` wait, and `submit` never blocks the caller. When the queue is
full it refuses at once (QueueFull), so a flood of requests turns into quick
"try again later" answers instead of piled-up threads (VDSM's executor does
the same; a thread per request behind a semaphore does not).

Shape after CPython's concurrent.futures.thread: a plain worker loop, one
lock owned by the pool, shutdown that sets a flag under the lock, wakes
every worker and joins them.
"""

import collections
import logging
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
    def __init__(self, workers, queue_size, name="pool"):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.name = name
        self.workers = workers
        self.queue_size = queue_size
        # Guards the queue, the closed flag, the running jobs and the
        # counters; workers wait
        # on _work (new job or shutdown), wait_idle() on _idle.
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._room = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._queue = collections.deque()
        self._closed = False
        self._running = 0
        self._current = {}  # worker thread id -> the job it executes
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
                if len(self._queue) >= self.queue_size:
                    self._drop_ended()
                if len(self._queue) < self.queue_size:
                    break
                if not wait:
                    raise QueueFull(
                        f"pool {self.name}: {self.queue_size} jobs queued")
                self._room.wait()
            self._queue.append(job)
            self._work.notify()
        job.add_end_callback(self._count_end)

    def shutdown(self, mode=DRAIN, wait=True):
        """Stop taking work. DRAIN runs what is queued; ABORT aborts it (and
        asks running jobs to abort at their next step). Then, with `wait`,
        join every worker."""
        if mode not in (DRAIN, ABORT):
            raise ValueError(f"unknown shutdown mode {mode!r}")
        with self._lock:
            self._closed = True
            queued = list(self._queue) if mode == ABORT else []
            self._work.notify_all()
            self._room.notify_all()
        if mode == ABORT:
            for job in queued:
                _abort_quietly(job)
            for job in self._running_jobs():
                _abort_quietly(job)
        if wait:
            for thread in self._threads:
                thread.join()

    def wait_idle(self, timeout=None):
        """Wait until nothing is queued or running; True if so."""
        with self._lock:
            return self._idle.wait_for(
                lambda: not self._queue and not self._running, timeout)

    def stats(self):
        with self._lock:
            self._drop_ended()
            return {
                "workers": self.workers,
                "queue_size": self.queue_size,
                "queued": len(self._queue),
                "running": self._running,
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
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._work.wait()
                if not self._queue:
                    return  # closed and drained
                job = self._queue.popleft()
                self._room.notify()
                self._running += 1
                self._current[threading.get_ident()] = job
            try:
                job.execute()
            finally:
                with self._lock:
                    self._running -= 1
                    del self._current[threading.get_ident()]
                    if not self._queue and not self._running:
                        self._idle.notify_all()

    def _running_jobs(self):
        with self._lock:
            return list(self._current.values())

    def _drop_ended(self):
        # Caller holds _lock. Jobs aborted while queued never run; dropping
        # them frees their room for new work.
        if any(job.ended for job in self._queue):
            self._queue = collections.deque(
                job for job in self._queue if not job.ended)
            self._room.notify_all()
            if not self._queue and not self._running:
                self._idle.notify_all()

    def _count_end(self, job):
        status = job.status
        with self._lock:
            self._ended[status] += 1


def _abort_quietly(job):
    try:
        job.abort()
    except JobNotActive:
        pass  # it ended on its own meanwhile
