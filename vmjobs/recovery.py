"""Recovery at start-up: a recover job for every domain in libvirt that
carries vmjobs' metadata; domains without it are not ours and are never
touched. Until every recover job has ended the service is `recovering`,
and the verbs answer `recovery` (99) but for the few that only look."""

import logging
import threading
import time

from . import ownership
from .errors import VmExists
from .flows import RecoverJob
from .params import VmSpec

log = logging.getLogger("vmjobs.recovery")


class Recovery:
    def __init__(self, hv, registry, jobs, pool, job_args, observe=None):
        self._hv = hv
        self._registry = registry
        self._jobs = jobs
        self._pool = pool
        self._job_args = job_args
        self._observe = observe   # told of each job's changes (observe())
        self._done = threading.Event()
        self._lock = threading.Lock()   # guards _remaining
        self._remaining = 0
        # For the metrics: vmjobs domains found, when recovery started and
        # ended (time.monotonic(); set once each).
        self.found = 0
        self._started = self._ended = None

    @property
    def done(self):
        return self._done.is_set()

    def wait(self, timeout=None):
        return self._done.wait(timeout)

    def seconds(self):
        """How long recovery took, or has taken so far (0 before start)."""
        if self._started is None:
            return 0.0
        return (self._ended or time.monotonic()) - self._started

    def start(self):
        """List the domains and stage a recover job for each of ours, here,
        before any verb is served (a failed listing raises: the service
        must not start without knowing what runs). The jobs are queued by a
        thread that waits for room, as the service's own producer."""
        self._started = time.monotonic()
        domains = ownership.marked_domains(self._hv)
        jobs = []
        for domain in domains:
            try:
                jobs.append(self._staged_job(domain.uuid))
            except VmExists:
                # Staged first by a late arrival's adoption (arrivals.py
                # watches from before this listing: a guest migrated here
                # while the service was down may arrive as it starts): its
                # recover job has it, as for every later adoption (adopt).
                # It was left to crash the service at start (VmExists; a
                # chaos run, round 13).
                log.info("recovery: VM %s is adopted already", domain.uuid)
        log.info("recovery: %d vmjobs domains found", len(jobs))
        self.found = len(jobs)
        if not jobs:
            self._ended = time.monotonic()
            self._done.set()
            return
        self._remaining = len(jobs)
        for job in jobs:
            job.add_end_callback(self._one_ended)
        threading.Thread(target=self._submit_all, args=(jobs,),
                         name="vmjobs-recovery", daemon=True).start()

    def adopt(self, vm_id):
        """Adopt a domain of ours found after start-up (arrivals.py: a
        guest migrated here late) with a recover job, queued as start-up's
        are. Returns the job, or None if vm_id is staged or public by now:
        a verb or another look was first, and it is theirs."""
        try:
            job = self._staged_job(vm_id)
        except VmExists:
            return None
        self._submit_all([job])
        return job

    def _staged_job(self, vm_id):
        # A recover job for vm_id: staged (VmExists if it is taken), listed
        # and observed.
        job = RecoverJob(VmSpec(vm_id, {}), self._hv, self._registry,
                         **self._job_args)
        job.reserve()
        self._jobs.add(job)
        if self._observe is not None:
            job.observe(self._observe)
        return job

    def _submit_all(self, jobs):
        # Each waits for room; still pending if the pool is shut down
        # first: aborted, it ends at once, unstaged.
        self._pool.submit_all(jobs, on_closed=lambda job: job.abort())

    def _one_ended(self, job):
        with self._lock:
            self._remaining -= 1
            last = self._remaining == 0
        if last:
            log.info("recovery ended: %d public VMs",
                     self._registry.counts()["public"])
            self._ended = time.monotonic()
            self._done.set()
