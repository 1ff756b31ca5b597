"""What a worker thread does with a job: run its next turn, or abort it,
and never die of either (a job that raises past its own handling is
logged and the worker takes the next one). Also how the threads start.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, List, Optional, Tuple

from .job import Job, JobEnded
from .states import ENDED, JobStatus

log = logging.getLogger("workers.pool")


def check_at_least_one(**sizes: int) -> None:
    for name, size in sizes.items():
        if size < 1:
            raise ValueError(f"{name} must be >= 1, got {size}")


def start_threads(target: Callable[[], None], name: str, count: int
                  ) -> List[threading.Thread]:
    """`count` daemon threads running `target`, named name-0, name-1..."""
    threads = [threading.Thread(target=target, name=f"{name}-{i}",
                                daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads


def run_turn(job: Job, abort: bool, pool_name: str
             ) -> Optional[Tuple[Job, JobStatus]]:
    """Run the job's next turn (or abort it) in the calling worker; return
    (job, status) if it ended, None if it parked."""
    status: Optional[JobStatus]
    try:
        if abort:
            abort_quietly(job)
            status = job.status
        else:
            status = job.execute()
    except BaseException:   # execute() never raises; if it did,
        log.exception("pool %s: job %s", pool_name, job.id)
        status = job.status   # the worker lives on
    return (job, status) if status in ENDED else None


def abort_quietly(job: Job) -> None:
    try:
        job.abort()
    except JobEnded:
        pass  # it ended on its own meanwhile
