"""A generic job runner: a fixed-size thread pool behind a bounded queue
with priority lanes, jobs with a checked state machine that may park (wait
for an outside event on no thread), and a table of recent jobs.

Knows nothing of VMs or libvirt; vmjobs builds on it.
"""

from .adaptive import AdaptiveLimit
from .job import MAX_ERROR_MESSAGE, Job, bounded_error, current_job
from .lanes import Priority
from .park import ABORT_REQUESTED, TIMER, WOKEN, Park
from .pool import ABORT, DRAIN, Pool, PoolClosed, QueueFull
from .states import (
                     ENDED,
                     EVENTS,
                     TRANSITIONS,
                     Event,
                     IllegalTransition,
                     JobAborted,
                     JobEnded,
                     JobNotActive,
                     JobStatus,
)
from .table import JobStillActive, JobTable, UnknownJob

__all__ = [
    "ABORT", "ABORT_REQUESTED", "AdaptiveLimit", "DRAIN", "ENDED", "EVENTS", "Event",
    "IllegalTransition", "Job", "JobAborted", "JobEnded", "JobNotActive",
    "JobStatus", "JobStillActive", "JobTable", "Park", "Pool", "PoolClosed",
    "Priority", "QueueFull", "TIMER", "TRANSITIONS", "UnknownJob", "WOKEN",
    "MAX_ERROR_MESSAGE", "bounded_error", "current_job",
]
