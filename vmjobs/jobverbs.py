"""The verbs that act on jobs by id (Host.getJobs, Job.abort, Job.delete).

They only look jobs up in the job table and translate the table's and the
job's exceptions (workers/, which knows no VDSM codes) into the documented
VdsmErrors; api.py binds them to the verb names.
"""

import workers

from .errors import InvalidParams, JobNotActive, JobNotDone, MissParam, NoSuchJob


def get_jobs(jobs, job_type=None, job_ids=None):
    """Host.getJobs: {id: info} of the listed jobs, optionally only those of
    `job_type` or among `job_ids`."""
    if job_type is not None and not isinstance(job_type, str):
        raise InvalidParams("job_type", "must be a string")
    if job_ids is not None and (
            not isinstance(job_ids, list) or
            not all(isinstance(i, str) for i in job_ids)):
        raise InvalidParams("job_ids", "must be a list of job ids")
    found = jobs.jobs() if job_ids is None else jobs.some(job_ids)
    return {job.id: job.info() for job in found
            if job_type is None or job.job_type == job_type}


def abort(jobs, job_id):
    """Job.abort: ask the job to stop; an ended job answers JobNotActive."""
    job = lookup(jobs, job_id)
    try:
        job.abort()
    except workers.JobEnded:
        raise JobNotActive(f"job {job_id} already ended "
                           f"({job.status})") from None
    return True


def delete(jobs, job_id):
    """Job.delete: forget an ended job; an active one answers JobNotDone."""
    lookup(jobs, job_id)
    try:
        jobs.delete(job_id)
    except workers.JobStillActive:
        raise JobNotDone(f"job {job_id} has not ended yet") from None
    except workers.UnknownJob:
        raise NoSuchJob(f"no job {job_id}") from None
    return True


def lookup(jobs, job_id):
    """The job `job_id` of table `jobs`, or the verb's documented error."""
    if job_id is None:
        raise MissParam("missing parameter 'jobId'")
    if not isinstance(job_id, str):
        raise InvalidParams("jobId", "must be a string")
    try:
        return jobs.get(job_id)
    except workers.UnknownJob:
        raise NoSuchJob(f"no job {job_id}") from None
