"""The main job: start N VMs through the verbs, as an engine would, watch
them come up, summarise how fast, then destroy them.

It drives an in-process vmjobs (default: on a private instance of libvirt's
test driver) or a running `vmjobs serve` over JSON-RPC (`--server`). A
storm can mix the startup modes (`--mix create=70,restore=20,
migration=10`): restores need state files, which a preparation phase makes
by creating and hibernating VMs; incoming migrations need a source, which
the load test plays itself (tools.simulation: the domain appears paused,
then resumes), as libvirt's test driver cannot migrate; it needs the
libvirt the service uses (in-process, or `--uri` with `--server`).

It plays the engine as an engine should: it follows the service's events
(GET /events, or api.subscribe in process; tools.follow) instead of
polling. A VM's time-to-Up ends at its `Up` event, and the total at the
last VM's Up (or the last failure's end); the other figures come from the
jobs themselves (JobInfo's created, started and ended times, carried by
the events) and from timing each verb call. ResourceExhausted and
migrateLimit answers are retried with backoff, counted, and never counted
as failures of vmjobs.
"""

import functools
import random
import shutil
import sys
import tempfile
import time
import uuid

from workers import JobStatus

from .. import domxml
from ..config import Config
from ..params import parse_create
from . import report
from .follow import Jobs
from .mix import split
from .retry import no_retries, retrying
from .targets import InProcess, Remote, SimulatedSource


def run(vms=500, workers=4, uri=None, queue_size=1000, mem_mib=64,
        mix=None, rate=None, keep=False, server=None, tls=(None,) * 3,
        json_path=None, plot_path=None, out=sys.stdout, seed=0, domain_type=None, state_root=None, adaptive=False):
    """Run the load test, print its summary, and return it. State files
    (for restores) go to a directory of their own in `state_root`: with a
    server, one of its storage.state_dirs (default: the default one)."""
    counts = split(vms, mix or {"create": 1})
    if counts.get("migrate"):
        raise ValueError("migrate moves VMs between hosts: give two "
                         "--server (and their --dst-uri)")
    if counts.get("migration") and server is not None and uri is None:
        raise ValueError("migrations need the libvirt the server uses: "
                         "give --uri")
    if server is not None and state_root is None:
        state_root = Config().state_dirs[0]
    state_dir = tempfile.mkdtemp(prefix="vmjobs-loadtest-", dir=state_root)
    try:
        if server is None:
            target = InProcess(Config(uri=uri, workers=workers,
                                      queue_size=queue_size,
                                      domain_type=domain_type,
                                      state_dirs=[state_dir],
                                      adaptive=adaptive))
        else:
            target = Remote(server, uri, *tls)
    except BaseException:
        shutil.rmtree(state_dir, ignore_errors=True)
        raise
    try:
        modes = ", ".join(f"{n} {mode}" for mode, n in counts.items() if n)
        print(f"vmjobs loadtest: {vms} VMs ({modes}), "
              f"{target.description}", file=out, flush=True)
        storm = Storm(target, mem_mib, state_dir, random.Random(seed))
        summary = {}
        try:
            storm.prepare(counts)
            records, total, retried = storm.run(out, rate)
            summary = report.summarize(records, total, retried)
            summary["started"] = storm.started   # wall time, first request
            summary["admission_limits"] = storm.limits
            report.print_summary(summary, out)
            if json_path:
                report.save(json_path, records, summary, {
                    "vms": vms, "mix": counts, "target": target.description,
                    "rate": rate})
                print(f"timings of every VM: {json_path}", file=out)
            if plot_path:
                report.plot(records, plot_path, storm.limits)
                print(f"plot: {plot_path}", file=out)
        finally:
            # Whatever happened (a failure, ^C): nothing made is left
            # running on a real --uri.
            if not keep:
                started = time.monotonic()
                destroyed = storm.destroy_all()
                summary["destroy_s"] = time.monotonic() - started
                print(f"destroyed {destroyed} VMs in "
                      f"{summary['destroy_s']:.2f} s", file=out)
            storm.follower.close()
        return summary
    finally:
        target.close()
        shutil.rmtree(state_dir, ignore_errors=True)


class Storm:
    """The requests of one load test, and what came of them."""

    def __init__(self, target, mem_mib, state_dir, rng):
        self.target = target
        self.mem_mib = mem_mib
        self.state_dir = state_dir
        self.rng = rng
        self.requests = []   # (mode, vm_id, what the mode needs)
        self._prepared = []  # preparation jobs not yet checked
        # (mode, vm_id, None) of VMs the preparation created, in case it
        # fails before they are hibernated.
        self._made = []
        self.limits = []     # (time, admission limit) while the storm ran
        # The service's events, subscribed before the first request.
        self.follower = target.follower()

    def prepare(self, counts):
        """Make the requests; hibernate VMs for the restores to restore."""
        for _ in range(counts.get("create", 0)):
            vm_id = str(uuid.uuid4())
            self.requests.append(("create", vm_id, self._params(vm_id)))
        for vm_id, path in self._hibernated(counts.get("restore", 0)):
            self.requests.append(("restore", vm_id, path))
        for _ in range(counts.get("migration", 0)):
            vm_id = str(uuid.uuid4())
            params = self._params(vm_id)
            domain_xml = domxml.compose(parse_create(vm_id, params),
                                        self.target.hv.guest)
            self.requests.append(("migration", vm_id, (params, domain_xml)))
        self.rng.shuffle(self.requests)

    def destroy_all(self):
        """Destroy every VM this storm asked for that exists (a staged
        one's job is aborted and rolled back); returns how many."""
        destroyed = 0
        for _, vm_id, _ in self.requests + self._made:
            try:
                self.target.call("VM.destroy", [vm_id])
            except Exception as exc:
                if getattr(exc, "code", None) != 1:   # noVM: never made
                    raise
            else:
                destroyed += 1
        return destroyed

    def run(self, out, rate=None):
        """Send every request (at `rate` per second, or as fast as they are
        taken); follow every job to its end. Returns (records, seconds from
        the first request to the last Up, retried)."""
        progress = report.Progress(out, len(self.requests))
        jobs = Jobs(self.follower, self.target.call)
        retried = no_retries()
        source = SimulatedSource(self.target.hv) \
            if any(r[0] == "migration" for r in self.requests) else None
        started, self.started = time.monotonic(), time.time()
        for i, (mode, vm_id, what) in enumerate(self.requests):
            if rate:
                pause_until(started + i / rate)
            job_id, latency = retrying(
                functools.partial(self._request, mode, vm_id, what), retried)
            jobs.add(job_id, {"vm_id": vm_id, "mode": mode,
                              "verb_latency": latency})
            if mode == "migration":
                source.migrate(what[1])
        self._follow(jobs, progress, self.limits)
        total = (jobs.last or time.monotonic()) - started
        if source is not None:
            source.stop()
        progress.done()
        return list(jobs.records.values()), total, retried

    def _job_id(self, verb, params):
        return self.target.call(verb, params)["jobId"]

    def _request(self, mode, vm_id, what):
        if mode == "create":
            return self.target.call("VM.create", [vm_id, what])["jobId"]
        if mode == "restore":
            return self.target.call("VM.create", [vm_id, {
                "vmId": vm_id, "restoreState": what}])["jobId"]
        params, domain_xml = what
        return self.target.call("VM.migrationCreate", [
            vm_id, {**params, "xml": domain_xml}])["params"]["jobId"]

    def _follow(self, jobs, progress=None, limits=None):
        """Take the events until every job of `jobs` ended; every second,
        also the admission limit into `limits`."""
        limit_due = 0.0
        while not jobs.ended():
            if limits is not None and time.monotonic() >= limit_due:
                limit_due = time.monotonic() + 1.0
                self._record_limit(limits)
            if not jobs.wait(1.0):
                raise RuntimeError("the service ended its event stream "
                                   "(it stops?)")
            if progress is not None:
                progress.show("starting", *jobs.counts())

    def _record_limit(self, limits):
        # Host.getStats lists libvirt's domains at each call: once a
        # second, not at every poll.
        limit = self.target.call("Host.getStats").get("admission_limit")
        if limit is not None and (not limits or limits[-1][1] != limit):
            limits.append((time.time(), limit))

    def _params(self, vm_id):
        return {"vmId": vm_id, "vmName": f"loadtest-{vm_id}",
                "memSize": self.mem_mib, "smp": 1}

    def _hibernated(self, n):
        """n VMs created and hibernated through the verbs (not timed)."""
        if not n:
            return []
        retried = no_retries()
        made = []
        for _ in range(n):
            vm_id = str(uuid.uuid4())
            job_id, _ = retrying(functools.partial(
                self._job_id, "VM.create", [vm_id, self._params(vm_id)]),
                retried)
            made.append(vm_id)
            self._made.append(("prepare", vm_id, None))
            self._prepared.append((job_id, vm_id))
        self._check_prepared()
        result = []
        for vm_id in made:
            path = f"{self.state_dir}/{vm_id}.state"
            job_id, _ = retrying(functools.partial(
                self._job_id, "VM.hibernate", [vm_id, path]), retried)
            self._prepared.append((job_id, vm_id))
            result.append((vm_id, path))
        self._check_prepared()
        return result

    def _check_prepared(self):
        jobs = Jobs(self.follower, self.target.call)
        for job_id, vm_id in self._prepared:
            jobs.add(job_id, {"vm_id": vm_id, "mode": "prepare"})
        self._follow(jobs)
        failed = [r for r in jobs.records.values()
                  if r["status"] != JobStatus.DONE]
        if failed:
            raise RuntimeError(f"preparing the storm failed: {failed[0]}")
        self._prepared = []


def pause_until(deadline):
    """Sleep until time.monotonic() reaches `deadline`: a steady schedule
    (a late request does not delay the ones after it), the pace of a
    storm, not a wait for a state."""
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)
