"""Every job by id, for status queries: active ones for as long as they run,
ended ones for `autodelete_delay` seconds and at most `max_ended` of them
(oldest out first), so a long-lived service answers about recent work
without growing forever."""

from __future__ import annotations

import collections
import threading
import time
from typing import TYPE_CHECKING, Callable, Dict, Iterable, List, Optional

if TYPE_CHECKING:
    from .job import Job


class UnknownJob(KeyError):
    """No job with that id (never added, deleted or expired)."""

    def __str__(self) -> str:
        return f"no job {self.args[0]}"


class JobStillActive(Exception):
    """Only an ended job can be deleted."""


class JobTable:
    def __init__(self, autodelete_delay: float = 3600.0,
                 max_ended: int = 10000,
                 clock: Callable[[], float] = time.monotonic,
                 on_ended: Optional[Callable[[Job], None]] = None) -> None:
        """`on_ended(job)` is called as each job added ends (outside the
        table's lock), e.g. to count them."""
        self.autodelete_delay = autodelete_delay
        self._on_ended = on_ended
        self.max_ended = max_ended
        self._clock = clock
        # Guards _jobs, _ended and _by_type. Expiry is done lazily, on each
        # access, so there is no timer thread to manage.
        self._lock = threading.Lock()
        self._jobs: Dict[str, Job] = {}            # id -> job
        # id -> end time, in end order
        self._ended: collections.OrderedDict[str, float] = \
            collections.OrderedDict()
        # job_type -> {id: job}, the same jobs as _jobs, so that the jobs
        # of one type are read without a scan of the whole table.
        self._by_type: Dict[str, Dict[str, Job]] = {}

    def add(self, job: Job) -> None:
        with self._lock:
            if job.id in self._jobs:
                raise ValueError(f"job {job.id} already added")
            self._jobs[job.id] = job
            self._by_type.setdefault(job.job_type, {})[job.id] = job
        job.add_end_callback(self._job_ended)

    def get(self, job_id: str) -> Job:
        with self._lock:
            self._expire()
            try:
                return self._jobs[job_id]
            except KeyError:
                raise UnknownJob(job_id) from None

    def jobs(self) -> List[Job]:
        with self._lock:
            self._expire()
            return list(self._jobs.values())

    def of_type(self, job_type: str) -> List[Job]:
        """The listed jobs of `job_type`."""
        with self._lock:
            self._expire()
            return list(self._by_type.get(job_type, {}).values())

    def some(self, job_ids: Iterable[str]) -> List[Job]:
        """The jobs of `job_ids` that are known (unknown ids are skipped)."""
        with self._lock:
            self._expire()
            return [self._jobs[job_id] for job_id in job_ids
                    if job_id in self._jobs]

    def delete(self, job_id: str) -> None:
        """Forget a job shown ended (Job.shown_ended, as its info says).
        One done whose end hooks still run is forgotten at once, and its
        end, once they have run, finds it gone (_job_ended)."""
        with self._lock:
            self._expire()
            job = self._jobs.get(job_id)
            if job is None:
                raise UnknownJob(job_id)
            if job_id in self._ended:
                self._forget(self._jobs.pop(job_id))
                del self._ended[job_id]
                return
        # Outside the table's lock: the status is read under the job's.
        if not job.shown_ended:
            raise JobStillActive(f"job {job_id} has not ended")
        with self._lock:
            if self._jobs.get(job_id) is not job:
                raise UnknownJob(job_id)   # deleted meanwhile
            self._forget(self._jobs.pop(job_id))
            self._ended.pop(job_id, None)   # its end came meanwhile

    def discard(self, job: Job) -> None:
        """Forget a job that never started (its submission was refused)."""
        with self._lock:
            if self._jobs.get(job.id) is job and job.id not in self._ended:
                self._forget(self._jobs.pop(job.id))

    def counts(self) -> Dict[str, int]:
        with self._lock:
            self._expire()
            return {"jobs": len(self._jobs), "ended": len(self._ended)}

    def _job_ended(self, job: Job) -> None:
        with self._lock:
            if job.id in self._jobs:
                self._ended[job.id] = self._clock()
                self._expire()
        if self._on_ended is not None:
            self._on_ended(job)

    def _expire(self) -> None:
        # Caller holds _lock.
        deadline = self._clock() - self.autodelete_delay
        while self._ended:
            job_id, ended = next(iter(self._ended.items()))
            if len(self._ended) <= self.max_ended and ended > deadline:
                break
            del self._ended[job_id]
            self._forget(self._jobs.pop(job_id))

    def _forget(self, job: Job) -> None:
        # Caller holds _lock and has removed `job` from _jobs.
        of_type = self._by_type[job.job_type]
        del of_type[job.id]
        if not of_type:
            del self._by_type[job.job_type]
