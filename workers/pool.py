"""A fixed number of worker threads fed by a bounded queue.

The pool is the throttle: at most `workers` jobs run at once, at most
`queue_size` of each class (lanes.py's Priority) wait, and `submit` never
blocks a caller's request (only the service's own producers wait for
room: submit_all). When the queue is full for a job's class it refuses at
once (QueueFull), so a flood of requests turns into quick "try again
later" answers instead of piled-up threads (VDSM's executor does the same;
a thread per request behind a semaphore does not). Each class has its
own room: a flood of one (a thousand creations) never refuses a job of
another (an incoming migration, which goes ahead of them). A caller that
makes something others see before its job is queued (a staged VM) takes
the job's place first (`place()`): a refusal then finds nothing done.

Shape after CPython's concurrent.futures.thread: a plain worker loop over a
C SimpleQueue, one lock owned by the pool held only to count, and shutdown
that sets a flag under the lock and joins the workers. The SimpleQueue only
rings the bell (one token per job made ready); which job a woken worker
takes is chosen under the pool's lock from lanes.py's priority lanes.

Besides `queued` and `running` jobs there are `parked` ones (job.py,
wait_for): running jobs that wait for an outside event on no thread. A
parked job is requeued ahead of everything when woken, and the pool does
not stop (even on shutdown) while one is parked: it must still reach its
end.

The start rule, in one place (`_startable`): the head of a lane may start
when

- the spare worker allows it: while a job is parked, NORMAL jobs hold at
  most workers - 1 threads. The one left is for the parked job's wake-up
  and for HIGH work, which then wait for no NORMAL job's whole run (an
  incoming migration's arrival waits for no creation to finish before it
  commits). A pool of one worker has none to spare;
- admission allows it: at most `admission_limit` of the jobs that ask for
  it (Job.admission) run at once; the others wait in the queue, holding
  no thread, while other work passes them. An admitted job keeps its place
  while parked (a job that parks for long should not ask for admission).
  With a controller (adaptive.py) the limit moves by itself: each
  admitted job that ends done is a sample of how long a job takes at the
  parallelism it ran with;
- and, among the lanes that may start, lanes.py's order picks one.

A worker never dies of a job: a job that raises past its own handling is
logged and the worker takes the next one.

Between two turns a worker runs what was given to it for then
(`run_between_turns`), holding no lock: short work that is best done on a
thread that already runs, rather than by a thread of its own woken for it
(vmjobs sends what its jobs posted to the event streams this way: under a
storm, a thread woken for it waits milliseconds for a core and the GIL
behind the workers).
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from .adaptive import AdaptiveLimit
from .job import Job, Park
from .lanes import WOKEN, Lanes, Priority, lane_of
from .states import ENDED, JobEnded, JobStatus
from .timer import Timer

log = logging.getLogger("workers.pool")

DRAIN = "drain"
ABORT = "abort"


# The ended statuses in the order stats() lists them.
_ENDED_ORDER = (JobStatus.DONE, JobStatus.FAILED, JobStatus.ABORTED)


class QueueFull(Exception):
    """The queue holds `queue_size` pending jobs of the job's class: try
    again later."""


class PoolClosed(Exception):
    """The pool is shutting down and takes no more work."""


class Place:
    """A place in a pool's queue, held for one job (Pool.place)."""

    def __init__(self, submit: Callable[[Job], None],
                 give_back: Callable[[], None]) -> None:
        # The pool's own two ends of a place; None once one was called.
        self._ends: Optional[Tuple[Callable[[Job], None],
                                   Callable[[], None]]] = (submit, give_back)

    def submit(self, job: Job) -> None:
        """Queue `job` in this place (PoolClosed if the pool was shut down
        meanwhile); a place is used once."""
        ends, self._ends = self._ends, None
        if ends is None:
            raise RuntimeError("this place was used or given back")
        ends[0](job)

    def give_back(self) -> None:
        ends, self._ends = self._ends, None
        if ends is not None:
            ends[1]()

    def __enter__(self) -> "Place":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.give_back()


class Pool:
    """Implements job.Runner: jobs tell it when they park, are woken, and
    when they finished."""

    def __init__(self, workers: int, queue_size: int, name: str = "pool",
                 starvation_limit: int = 8,
                 admission_limit: Optional[int] = None,
                 admission_controller: Optional[AdaptiveLimit] = None
                 ) -> None:
        for what, size in (("workers", workers), ("queue_size", queue_size)):
            if size < 1:
                raise ValueError(f"{what} must be >= 1, got {size}")
        if admission_controller is not None and admission_limit is None:
            admission_limit = min(admission_controller.limit, workers)
        if admission_limit is not None and \
                not 1 <= admission_limit <= workers:
            raise ValueError(f"admission limit must be in 1..{workers}, "
                             f"got {admission_limit}")
        self.name = name
        self.workers = workers
        self.queue_size = queue_size
        # The workers' bell: one token per job put in the lanes (and one
        # None passed on by each worker that stops). A token may find no
        # job (taken by another worker, or aborted while queued): harmless.
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._timer = Timer(name)
        self._controller = admission_controller
        # Guards the fields below. Each waiter (_waiters: its predicate
        # and its condition on this lock) is notified when a change (a
        # queued job taken, a job parked or ended, a shutdown) makes its
        # predicate true (_notify_change).
        self._lock = threading.Lock()
        self._waiters: List[Tuple[Callable[[], bool],
                                  threading.Condition]] = []
        self._closed = False
        self._abort_queued = False
        self._lanes = Lanes(starvation_limit)
        self._pending: Dict[str, Job] = {}   # queued
        # Queued jobs and places taken (place()) whose job is not queued
        # yet, by class, each at most queue_size (_places_held: the latter).
        self._waiting = dict.fromkeys(Priority, 0)
        # Jobs a producer holds back for want of room (submit_all): they
        # are pending, and wait for a worker as queued ones do; counted
        # with them in stats()' queued.
        self._held_back = 0
        self._running: Dict[str, Job] = {}   # on a worker thread
        self._parked: Dict[str, Job] = {}    # parked, or woken not yet taken
        # At most _admission_limit jobs with admission run (or are parked)
        # at once; _admitted do.
        self._admission_limit = workers if admission_limit is None \
            else admission_limit
        self._admitted = 0
        self._ended = dict.fromkeys(_ENDED_ORDER, 0)   # jobs ended, by status
        # Jobs counted ended whose observer has not been told yet
        # (job_finished, then job_announced): whoever waits for the pool
        # (_wait_change) sees it only once they were, as the job's own
        # waiters do.
        self._unannounced = 0
        # What each worker calls between two turns (run_between_turns):
        # replaced whole under _lock, read without it.
        self._between_turns: Tuple[Callable[[], None], ...] = ()
        self._threads = [threading.Thread(target=self._worker,
                                          name=f"{name}-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Job, wait: bool = False,
               held_back: bool = False) -> None:
        """Queue `job`; raise QueueFull at once if there is no room.

        `wait=True` waits for room instead: only for the service's own
        producers (recovery at start-up), never for a caller's request.
        `held_back`: submit_all counted it held back until now."""
        finished = job.attach(self)     # before any worker can see it
        priority = job.priority
        with self._lock:
            try:
                if finished is not None:
                    self._count_finished_unqueued(finished)
                    return
                while (refusal := self._refusal(priority)) is not None:
                    if not wait or isinstance(refusal, PoolClosed):
                        raise refusal
                    self._wait_change(
                        lambda: self._closed or self._has_room(priority))
                self._enqueue(job)
            finally:
                if held_back:
                    # Queued now (one count for the other), or it never
                    # will be: no longer held back.
                    self._held_back -= 1
                    self._notify_change()

    def submit_all(self, jobs: List[Job],
                   on_closed: Callable[[Job], None]) -> None:
        """Queue `jobs` in order, each waiting for room (submit(wait=
        True)): only for the service's own producers (recovery at
        start-up), never for a caller's request. Until its turn each is
        counted in stats()' queued: it is pending, and waits for a worker
        as the queued ones do. A job the pool, shut down, will not take is
        given to `on_closed`."""
        with self._lock:
            self._held_back += len(jobs)
        for job in jobs:
            try:
                self.submit(job, wait=True, held_back=True)
            except PoolClosed:
                on_closed(job)

    def place(self, priority: Priority = Priority.NORMAL) -> "Place":
        """Take a place in the queue now, for a job of class `priority` to
        be submitted through it (Place.submit); raise QueueFull or
        PoolClosed at once. For a caller that must do something others see
        before it queues (stage a VM): taking the place first, it is
        refused before doing anything. Used as a context manager, a place
        not used is given back."""
        with self._lock:
            refusal = self._refusal(priority)
            if refusal is not None:
                raise refusal
            self._waiting[priority] += 1
        return Place(functools.partial(self._submit_in_place, priority),
                     functools.partial(self._give_back, priority))

    def _refusal(self, priority: Priority) -> Optional[Exception]:
        # Caller holds _lock. Why a job of class `priority` submitted now
        # would be refused.
        if self._closed:
            return PoolClosed(f"pool {self.name} is shut down")
        if not self._has_room(priority):
            return QueueFull(f"pool {self.name}: {self.queue_size} "
                             f"{priority.name} jobs queued")
        return None

    def _has_room(self, priority: Priority) -> bool:
        # Caller holds _lock.
        return self._waiting[priority] < self.queue_size

    def _enqueue(self, job: Job) -> None:
        # Caller holds _lock, and the job is attached.
        lane = lane_of(job)
        self._pending[job.id] = job
        self._waiting[job.priority] += 1
        self._lanes.push(job, lane)
        # (Nothing parked and no admission asked: the rule lets it start,
        # and the hot path skips computing it.)
        if not (self._parked or job.admission) or \
                self._startable() >> lane & 1:
            # Else no worker could take it yet: a worker whose job ends
            # looks for it (_worker), and a lifted limit rings.
            self._queue.put(True)

    def _submit_in_place(self, priority: Priority, job: Job) -> None:
        # Place.submit: the place is the room; the queue may have closed.
        if job.priority is not priority:
            self._give_back(priority)
            raise ValueError(f"a {priority.name} place for a "
                             f"{job.priority.name} job")
        finished = job.attach(self)
        with self._lock:
            self._release_place(priority)
            if finished is not None:
                self._count_finished_unqueued(finished)
                return
            if self._closed:
                self._notify_change()
                raise PoolClosed(f"pool {self.name} is shut down")
            self._enqueue(job)

    def _count_finished_unqueued(self, status: JobStatus) -> None:
        # Caller holds _lock. A job that finished before it was queued
        # (aborted while its caller reserved what it needs: a VM.destroy of
        # the VM it staged) told no pool its end: counted here, as every
        # job that was given a pool is once, never queued.
        self._ended[status] += 1
        self._notify_change()

    def _give_back(self, priority: Priority) -> None:
        with self._lock:
            self._release_place(priority)
            self._notify_change()

    def _release_place(self, priority: Priority) -> None:
        # Caller holds _lock. A stop's workers wait for the places held
        # (_may_stop): the last one given back wakes one to look again.
        self._waiting[priority] -= 1
        if self._closed and not self._places_held():
            self._queue.put(None)

    def _places_held(self) -> int:
        # Caller holds _lock. Places taken whose job is not queued yet.
        return sum(self._waiting.values()) - len(self._pending)

    def run_between_turns(self, work: Callable[[], None]) -> None:
        """Have each worker call `work()` after each turn of a job (the
        job ended or parked), holding no lock, until stop_between_turns.
        It must be quick and never block: the worker's next job waits for
        it. What it raises is logged."""
        with self._lock:
            self._between_turns += (work,)

    def stop_between_turns(self, work: Callable[[], None]) -> None:
        with self._lock:
            self._between_turns = tuple(
                w for w in self._between_turns if w is not work)

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
            self._notify_change()
        for job in to_abort:
            _abort_quietly(job)
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
            return self._wait_change(lambda: not (
                self._pending or self._running or self._parked), timeout)

    @property
    def admission_limit(self) -> int:
        with self._lock:
            return self._admission_limit

    def stats(self) -> Dict[str, int]:
        with self._lock:
            return self._stats()

    def wait_stats(self, predicate: Callable[[Dict[str, int]], bool],
                   timeout: Optional[float] = None) -> bool:
        """Wait until predicate(stats()) holds; True if so. Every change of
        the figures (a job queued, taken, parked, ended) wakes the waiters,
        so an observer waits for a state, not for a while. `predicate` runs
        under the pool's lock, in the thread that made the change: it must
        only read the figures it is given (no lock, no call out)."""
        with self._lock:
            return self._wait_change(lambda: predicate(self._stats()),
                                     timeout)

    def _stats(self) -> Dict[str, int]:
        # Caller holds _lock.
        return {
            "workers": self.workers,
            "queue_size": self.queue_size,
            "queued": len(self._pending) + self._held_back,
            "running": len(self._running),
            "parked": len(self._parked),
            "admission_limit": self._admission_limit,
            **{status.value: n for status, n in self._ended.items()},
        }

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.shutdown(DRAIN)

    # -- job.Runner: called by the jobs -----------------------------------

    def job_parked(self, job: Job, request: Park) -> None:
        # Called by the job, under its lock, in the worker that ran it.
        with self._lock:
            self._parked[job.id] = self._running.pop(job.id)
            if request.wake_at is not None:
                self._timer.call_at(request.wake_at, functools.partial(
                    job.timer_fired, request))
            self._notify_change()

    def job_woken(self, job: Job) -> None:
        # Called by the job (outside its lock) once it is woken; it stays
        # counted parked until a worker takes it.
        with self._lock:
            self._lanes.push(job, WOKEN)
            self._queue.put(True)

    def job_finished(self, job: Job, status: JobStatus,
                     started: Optional[float]) -> None:
        # Called by the job, under its lock, once: it ended and its end
        # hooks ran, and nobody has seen it finished yet. The one place
        # ended jobs are counted. Still queued (aborted there), its room is
        # freed; taken by a worker, it leaves the running ones, though the
        # worker returns from it only after this.
        with self._lock:
            self._ended[status] += 1
            if self._pending.pop(job.id, None) is not None:
                self._waiting[job.priority] -= 1
            self._leave_running(job, status, started)
            self._unannounced += 1

    def job_announced(self, job: Job) -> None:
        # Called by the job once after job_finished, outside its lock: its
        # waiters and its observer were told it finished. Those waiting for
        # the pool may now see it (a wait_idle that returned before the
        # job's last event was posted let a reader miss that event).
        with self._lock:
            self._unannounced -= 1
            self._notify_change()

    # -- internals --------------------------------------------------------

    def _worker(self) -> None:
        finished = None   # the job whose turn here ended it
        while True:
            try:
                self._queue.get_nowait()
                rung = True
            except queue.Empty:
                rung = False
            # Unrung, look all the same: a job held back (by the spare
            # worker or admission) rang no bell, and the job that ended
            # here may have let it run.
            job, abort = self._take(finished)
            if job is None and not rung:
                if self._may_stop():
                    return
                self._queue.get()        # sleep until something is rung
                job, abort = self._take(None)
            if job is None:
                finished = None
                continue
            finished = self._run_turn(job, abort)
            for work in self._between_turns:
                try:
                    work()
                except Exception:
                    log.exception("pool %s: between turns", self.name)

    def _run_turn(self, job: Job, abort: bool) -> Optional[Job]:
        """Run the job's next turn (or abort it) in this worker; return the
        job if it ended (job_finished counted it), None if it parked."""
        status: Optional[JobStatus]
        try:
            if abort:
                _abort_quietly(job)
                status = job.status
            else:
                status = job.execute()
        except BaseException:   # execute() never raises; if it did,
            log.exception("pool %s: job %s", self.name, job.id)
            status = job.status   # the worker lives on
        return job if status in ENDED else None

    def _take(self, finished: Optional[Job]) -> Tuple[Optional[Job], bool]:
        """Let go of the job this worker ended (if any); return the next
        job to run, if any, and whether to abort it instead."""
        with self._lock:
            if finished is not None:
                # Counted by job_finished, which let go of it unless it
                # finished before a worker took it (aborted as it was
                # queued): then its turn only waited for its end hooks.
                self._leave_running(finished)
            while True:
                lane, job = self._lanes.pop(self._startable())
                if job is None:
                    if finished is not None:
                        self._notify_change()
                    return None, False
                if lane == WOKEN:
                    del self._parked[job.id]
                    if not self._parked:
                        self._queue.put(True)   # the spare worker is free
                else:
                    if self._pending.pop(job.id, None) is None:
                        continue     # aborted while queued: it never runs
                    self._waiting[job.priority] -= 1
                    if job.admission:
                        self._admitted += 1
                self._running[job.id] = job
                self._notify_change()   # room for submit(wait=True)
                # A woken job runs (if aborted, its rollback); one queued
                # after an ABORT shutdown is aborted instead.
                return job, self._abort_queued and lane != WOKEN

    def _startable(self) -> int:
        # Caller holds _lock. The start rule (the module's docstring): the
        # lanes (a bit each) whose head may start now.
        normal = not self._parked or self.workers == 1 or sum(
            1 for job in self._running.values()
            if job.priority is Priority.NORMAL) < self.workers - 1
        return self._lanes.eligible(
            self._admitted < self._admission_limit, normal)

    def _may_stop(self) -> bool:
        """True if the worker may stop: shut down, and nothing queued,
        parked or still to come through a place a caller holds (its verb
        reserving what the job needs: a stop that did not wait for it
        closed the service under it). Passes the news on to the next
        worker."""
        with self._lock:
            if not self._closed or self._pending or self._parked or \
                    self._places_held():
                return False
            self._queue.put(None)
            return True

    def _leave_running(self, job: Job, status: Optional[JobStatus] = None,
                       started: Optional[float] = None) -> None:
        # Caller holds _lock. An ended job leaves the running ones (if it
        # is there) and gives back its admission. `status` and `started`
        # (when the job began running) are known when its end is told
        # (job_finished): a sample of the admission controller.
        if self._running.pop(job.id, None) is None or not job.admission:
            return
        waiting = self._lanes.waiting_for_admission()
        freed = 1
        if self._controller is not None and status is JobStatus.DONE and \
                started is not None:
            # Counted in _admitted still: it ran with that many.
            now = time.monotonic()
            limit = self._controller.sample(
                now, now - started, self._admitted, int(waiting),
                job.job_type)
            limit = max(1, min(self.workers, limit))
            freed += max(limit - self._admission_limit, 0)
            self._admission_limit = limit
        self._admitted -= 1
        for _ in range(freed if waiting else 0):
            self._queue.put(True)   # jobs that waited for room may go

    def _wait_change(self, predicate: Callable[[], bool],
                     timeout: Optional[float] = None) -> bool:
        # Caller holds _lock. The waiter's condition is notified only once
        # a change makes its predicate true, evaluated by whoever made the
        # change: a storm makes two changes per job, and a waiter woken by
        # each (wait_idle, while 5,000 VMs start) took a context switch
        # and a turn of the GIL from the workers twice per job
        # (docs/benchmarks.md, section 2).
        def announced_and_true() -> bool:
            return self._unannounced == 0 and predicate()
        waiter = (announced_and_true, threading.Condition(self._lock))
        self._waiters.append(waiter)
        try:
            return waiter[1].wait_for(announced_and_true, timeout)
        finally:
            self._waiters.remove(waiter)

    def _notify_change(self) -> None:
        # Caller holds _lock. A predicate that raises wakes its waiter,
        # whose own check then raises it in its own thread.
        for predicate, condition in self._waiters:
            try:
                ready = predicate()
            except Exception:
                ready = True
            if ready:
                condition.notify()


def _abort_quietly(job: Job) -> None:
    try:
        job.abort()
    except JobEnded:
        pass  # it ended on its own meanwhile
