"""A generic job runner: a fixed-size thread pool behind a bounded queue
with priority lanes, jobs with a checked state machine that may wait for
an outside event on no thread (Job.wait_for), and a table of recent jobs.

One concept per module: job (a job, its states' use, its waits), pool
(the workers and the start rule), lanes (the queue's order), timer (the
parked jobs' wake-ups), states (the state machine's tables), table (jobs
by id), adaptive (the admission limit that moves by itself).

Knows nothing of VMs or libvirt; vmjobs builds on it.
"""

from .adaptive import AdaptiveLimit
from .job import (
    ABORT_REQUESTED,
    MAX_ERROR_MESSAGE,
    TIMER,
    WOKEN,
    Job,
    Park,
    bounded_error,
    current_job,
)
from .lanes import Priority
from .pool import ABORT, DRAIN, Place, Pool, PoolClosed, QueueFull
from .states import (
    ENDED,
    EVENTS,
    TRANSITIONS,
    Event,
    IllegalTransition,
    JobAborted,
    JobEnded,
    JobStatus,
)
from .table import JobStillActive, JobTable, UnknownJob

__all__ = [
    "ABORT", "ABORT_REQUESTED", "AdaptiveLimit", "DRAIN", "ENDED", "EVENTS",
    "Event", "IllegalTransition", "Job", "JobAborted", "JobEnded",
    "JobStatus", "JobStillActive", "JobTable", "Park", "Place", "Pool",
    "PoolClosed", "Priority", "QueueFull", "TIMER", "TRANSITIONS",
    "UnknownJob", "WOKEN", "MAX_ERROR_MESSAGE", "bounded_error",
    "current_job",
]
