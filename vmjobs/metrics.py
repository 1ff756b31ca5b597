"""Prometheus metrics for `GET /metrics` (names in docs/service.md's Metrics
section), on a registry of each API's own (tests run many APIs in one
process).

Most figures are read live at scrape time from the pool, the registries,
the job table and recovery (a custom collector): nothing to keep in step
on the hot path. Only what exists nowhere else is counted as it happens:
ended jobs (one callback per job, from the job table) and refused verbs.
"""

import threading
import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder, generate_latest

from workers import JobStatus

from . import __version__
from .flows import CreateJob, MigrationDestinationJob, RecoverJob, RestoreJob

# Job types that start a VM: their commit is the VM being Up (or Paused,
# if asked to start paused).
STARTUPS = frozenset(cls.job_type for cls in (
    CreateJob, RestoreJob, MigrationDestinationJob, RecoverJob))
# From a test driver's milliseconds to a real restore's minutes.
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
           60.0, 120.0, 300.0, 600.0, float("inf"))


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=False)
        self._jobs = Counter(
            "vmjobs_jobs", "Ended jobs by type and end status.",
            ["job_type", "status"], registry=self.registry)
        self._duration = Histogram(
            "vmjobs_job_duration_seconds", "Seconds from the verb's answer "
            "(the job queued) to the job's end.", ["job_type"],
            buckets=BUCKETS, registry=self.registry)
        self._time_to_up = Histogram(
            "vmjobs_time_to_up_seconds", "Seconds from the verb's answer to "
            "the VM's commit (Up, or Paused when asked), per startup job "
            "type; successful startups only.", ["job_type"],
            buckets=BUCKETS, registry=self.registry)
        self._refused = Counter(
            "vmjobs_refused", "Verbs answered with an error, by code.",
            ["code"], registry=self.registry)
        # process_* (CPU, memory, open files, start time) of this process.
        ProcessCollector(registry=self.registry)
        Gauge("vmjobs_build_info", "Always 1; its label says which vmjobs "
              "runs.", ["version"], registry=self.registry) \
            .labels(__version__).set(1)
        # (job_type, status) -> its children; labels() takes a lock and
        # builds a key each time, this is one dict lookup on the hot path.
        self._children = {}
        self._children_lock = threading.Lock()   # guards _children's writes

    def watch(self, api):
        """Read `api`'s live figures at each scrape."""
        self.registry.register(_Live(api))

    def job_ended(self, job):
        """A job ended (called once per job, in the thread that ended it)."""
        # Not the wall clock's: set back meanwhile, it made a duration
        # negative, and a histogram's _sum go down.
        seconds = time.monotonic() - job.created_monotonic
        key = (job.job_type, job.status.value)
        children = self._children.get(key) or self._make_children(key)
        total, duration, time_to_up = children
        total.inc()
        duration.observe(seconds)
        # Only a VM that came up: a recovery ends done without a commit
        # when it finds its domain stopped, or migrated away.
        if time_to_up is not None and job.committed:
            time_to_up.observe(seconds)

    def _make_children(self, key):
        job_type, status = key
        children = (self._jobs.labels(job_type, status),
                    self._duration.labels(job_type),
                    self._time_to_up.labels(job_type)
                    if status == JobStatus.DONE and job_type in STARTUPS else None)
        with self._children_lock:
            return self._children.setdefault(key, children)

    def refused(self, code):
        self._refused.labels(str(code)).inc()

    def render(self):
        """The text exposition format (bytes)."""
        return generate_latest(self.registry)

    def exposition(self, accept):
        """(body, Content-Type) for a scrape whose Accept header is
        `accept`, as prometheus_client's own server answers: OpenMetrics
        when asked for, else the classic text format, `version=0.0.4`
        (what a scraper without an Accept header is given)."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type


class _Live:
    """The figures that already exist, read at scrape time."""

    def __init__(self, api):
        self._api = api

    def collect(self):
        api = self._api
        pool = api.pool.stats()
        counts = api.registry.counts()
        recovery = api.recovery
        stuck = sum(1 for job in api.jobs.jobs() if job.is_stuck())
        yield _gauge("vmjobs_queued_jobs", "Jobs waiting for a worker.",
                     pool["queued"])
        yield _gauge("vmjobs_running_jobs", "Jobs running now, on a worker "
                     "or parked.", pool["running"] + pool["parked"])
        yield _gauge("vmjobs_parked_jobs", "Running jobs that wait on no "
                     "thread (an incoming migration's arrival, say).",
                     pool["parked"])
        yield _gauge("vmjobs_workers", "Jobs that may run at once.",
                     pool["workers"])
        yield _gauge("vmjobs_queue_size", "Jobs that may wait at once.",
                     pool["queue_size"])
        yield _gauge("vmjobs_admission_limit", "Startups that may run at "
                     "once ([pool] adaptive moves it; else the workers).",
                     pool["admission_limit"])
        vms = GaugeMetricFamily(
            "vmjobs_vms", "VMs by registry: staging (a job is starting "
            "them) or public.", labels=["registry"])
        vms.add_metric(["staging"], counts["staged"])
        vms.add_metric(["public"], counts["public"])
        yield vms
        yield _gauge("vmjobs_stuck_jobs", "Jobs running past the job "
                     "timeout (reported, never abandoned).", stuck)
        yield _gauge("vmjobs_recovering", "1 while recovery at start-up "
                     "runs.", 0 if recovery.done else 1)
        yield _gauge("vmjobs_recovery_seconds", "Seconds recovery at "
                     "start-up took (so far, while it runs).",
                     recovery.seconds())
        events = api.notifications.stats()
        yield _gauge("vmjobs_event_subscribers", "Subscribers to the "
                     "notifications (GET /events streams and in-process).",
                     events["subscribers"])
        yield CounterMetricFamily(
            "vmjobs_event_subscribers_cut", "Subscribers cut off because "
            "they fell events.buffer notifications behind.",
            value=events["cut"])
        yield CounterMetricFamily(
            "vmjobs_events_dropped", "Notifications a subscriber had not "
            "read when it was cut off (it resumes with Last-Event-ID).",
            value=events["dropped"])
        yield _gauge("vmjobs_recovered_vms", "vmjobs domains found at "
                     "start-up (each one a recover job).", recovery.found)


def _gauge(name, documentation, value):
    return GaugeMetricFamily(name, documentation, value=value)
