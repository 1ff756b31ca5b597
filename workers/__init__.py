"""A generic job runner: a fixed-size thread pool behind a bounded queue,
jobs with a checked state machine, and a table of recent jobs.

Knows nothing of VMs or libvirt; vmjobs builds on it.
"""

from .adaptive import AdaptiveLimit
from .admission import Admission
from .job import Job, JobAborted, JobNotActive, current_job
from .pool import ABORT, DRAIN, Pool, PoolClosed, QueueFull
from .states import ENDED, TRANSITIONS, IllegalTransition, JobStatus
from .table import JobStillActive, JobTable, UnknownJob

__all__ = [
    "ABORT", "AdaptiveLimit", "Admission", "DRAIN", "ENDED", "TRANSITIONS", "IllegalTransition", "Job",
    "JobAborted", "JobNotActive", "JobStatus", "JobStillActive", "JobTable",
    "Pool", "PoolClosed", "QueueFull", "UnknownJob", "current_job",
]
