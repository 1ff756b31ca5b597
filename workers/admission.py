"""The pool's admission count: of the jobs that ask for it (Job.admission),
how many run now and how many may at once.

At most `admission_limit` of them run at once; the others wait in the
queue, holding no thread, while other work passes them. An admitted job
keeps its place while parked (its heavy steps are its whole run; a job
that parks for long should not ask for admission).

With a controller (adaptive.py) the limit moves by itself: each admitted
job that ends done is a sample of how long a job takes at the parallelism
it ran with.

A plain counter, guarded by the pool's lock (every method but check() is
called under it): the pool decides, this only keeps the numbers, so that
the pool's worker loop reads as what it does.
"""

from __future__ import annotations

import time
from typing import Optional

from .adaptive import AdaptiveLimit
from .job import Job
from .states import JobStatus


class Admission:
    def __init__(self, workers: int, limit: Optional[int] = None,
                 controller: Optional[AdaptiveLimit] = None) -> None:
        self.workers = workers
        self.controller = controller
        if controller is not None and limit is None:
            limit = min(controller.limit, workers)
        if limit is not None:
            self.check(limit)
        # At most this many admitted jobs run at once (all, by default).
        self.limit = workers if limit is None else limit
        self.admitted = 0      # running jobs with admission

    def check(self, limit: int) -> None:
        """Raise ValueError unless `limit` is in 1..workers."""
        if not 1 <= limit <= self.workers:
            raise ValueError(f"admission limit must be in 1..{self.workers}"
                             f", got {limit}")

    def has_room(self) -> bool:
        return self.admitted < self.limit

    def started(self, job: Job) -> None:
        """A queued job starts running (a woken one kept its place)."""
        if job.admission:
            self.admitted += 1

    def ended(self, job: Job, status: JobStatus, waiting: bool) -> int:
        """A running job ended with `status` while others did (or did not)
        wait for admission; return how many more may start now."""
        if not job.admission:
            return 0
        freed = 1
        if self.controller is not None and status is JobStatus.DONE and \
                job._started_mono is not None:
            # Counted in `admitted` still: it ran with that many.
            now = time.monotonic()
            limit = self.controller.sample(
                now, now - job._started_mono, self.admitted, int(waiting),
                job.job_type)
            freed += self.set_limit(max(1, min(self.workers, limit)))
        self.admitted -= 1
        return freed

    def set_limit(self, limit: int) -> int:
        """Take `limit` (checked) for the next jobs; return how many more
        may start now than before."""
        room = limit - self.limit
        self.limit = limit
        return max(room, 0)
