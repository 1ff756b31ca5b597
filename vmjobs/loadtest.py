"""The main job: start N VMs through the verbs, as an engine would, watch
them come up, summarise how fast, then destroy them.

A storm can mix the startup modes (`--mix create=70,restore=20,
migration=10`): restores need state files, which a preparation phase makes
by creating and hibernating VMs; incoming migrations need a source, which
the load test plays itself (vmjobs.simulation: the domain appears paused,
then resumes), as libvirt's test driver cannot migrate.

Every figure comes from the jobs themselves (JobInfo's created, started
and ended times) and from timing each verb call.
"""

import queue
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid

from . import domxml, simulation
from .api import API
from .config import Config
from .errors import MigrateLimit, ResourceExhausted
from .params import parse_create

BAR_WIDTH = 30
MODES = ("create", "restore", "migration")
ENDED = ("done", "failed", "aborted")


def percentile(values, pct):
    """Nearest-rank percentile of `values` (None if empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))   # ceil
    return ordered[int(rank) - 1]


def parse_mix(text):
    """'create=70,restore=20,migration=10' -> {mode: weight}."""
    mix = {}
    for part in text.split(","):
        mode, _, weight = part.partition("=")
        mode = mode.strip()
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} (modes: "
                             f"{', '.join(MODES)})")
        try:
            mix[mode] = int(weight)
        except ValueError:
            raise ValueError(f"weight of {mode} must be an integer") from None
        if mix[mode] < 0:
            raise ValueError(f"weight of {mode} must be >= 0")
    if not sum(mix.values()):
        raise ValueError("the mix has no weight")
    return mix


def split(vms, mix):
    """How many of `vms` each mode gets; rounding goes to the first mode."""
    total = sum(mix.values())
    counts = {mode: vms * weight // total for mode, weight in mix.items()}
    first = next(iter(mix))
    counts[first] += vms - sum(counts.values())
    return counts


class Progress:
    """One live line on a terminal; a line per tenth otherwise."""

    def __init__(self, out, total):
        self.out = out
        self.total = total
        self.tty = out.isatty()
        self._last_tenth = -1

    def show(self, phase, ended, up, failed, queued, running):
        fill = BAR_WIDTH * ended // max(self.total, 1)
        line = (f"{phase:9} [{'#' * fill}{'.' * (BAR_WIDTH - fill)}] "
                f"{ended}/{self.total} ended, {up} Up, {failed} failed, "
                f"{queued} queued, {running} running")
        if self.tty:
            self.out.write("\r" + line + "\x1b[K")
            self.out.flush()
            return
        tenth = 10 * ended // max(self.total, 1)
        if tenth != self._last_tenth:
            self._last_tenth = tenth
            print(line, file=self.out, flush=True)

    def done(self):
        if self.tty:
            self.out.write("\n")


def run(vms=500, workers=4, uri=None, queue_size=1000, mem_mib=64,
        mix=None, keep=False, out=sys.stdout, poll_interval=0.1, seed=0):
    """Run the load test and print its summary; returns the figures."""
    counts = split(vms, mix or {"create": 1})
    config = Config(uri=uri, workers=workers, queue_size=queue_size)
    state_dir = tempfile.mkdtemp(prefix="vmjobs-loadtest-")
    try:
        with API(config) as api:
            target = api.hv.uri if uri is not None else \
                "a private instance of libvirt's test driver"
            modes = ", ".join(f"{n} {mode}" for mode, n in counts.items()
                              if n)
            print(f"vmjobs loadtest: {vms} VMs ({modes}), {workers} "
                  f"workers, queue {queue_size}, on {target}", file=out,
                  flush=True)
            storm = Storm(api, mem_mib, state_dir, random.Random(seed))
            storm.prepare(counts)
            figures = storm.run(out, poll_interval)
            _print_summary(figures, out)
            if not keep:
                started = time.monotonic()
                for vm_id in figures["up_ids"]:
                    api.VM.destroy(vm_id)
                figures["destroy_s"] = time.monotonic() - started
                print(f"destroyed {len(figures['up_ids'])} VMs in "
                      f"{figures['destroy_s']:.2f} s", file=out)
            return figures
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


class Storm:
    """The requests of one load test, and what came of them."""

    def __init__(self, api, mem_mib, state_dir, rng):
        self.api = api
        self.mem_mib = mem_mib
        self.state_dir = state_dir
        self.rng = rng
        self.requests = []   # (mode, vm_id, what the mode needs)

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
                                        self.api.hv.guest)
            self.requests.append(("migration", vm_id, (params, domain_xml)))
        self.rng.shuffle(self.requests)

    def run(self, out, poll_interval):
        progress = Progress(out, len(self.requests))
        job_modes, latency = {}, []
        retried = {"ResourceExhausted": 0, "migrateLimit": 0}
        source = _SimulatedSource(self.api.hv)
        started = time.monotonic()
        for mode, vm_id, what in self.requests:
            backoff = 0.001
            while True:
                t0 = time.perf_counter()
                try:
                    job_id = self._request(mode, vm_id, what)
                except (ResourceExhausted, MigrateLimit) as exc:
                    # What an engine does: try again a little later.
                    retried[type(exc).name] += 1
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 0.1)
                    continue
                latency.append(time.perf_counter() - t0)
                job_modes[job_id] = mode
                if mode == "migration":
                    source.migrate(what[1])
                break
        infos = self._wait(list(job_modes), progress, poll_interval)
        total = time.monotonic() - started
        source.stop()
        progress.done()
        return _figures(infos, job_modes, total, latency, retried,
                        self.api.pool.workers)

    def _request(self, mode, vm_id, what):
        if mode == "create":
            return self.api.VM.create(vmID=vm_id, vmParams=what)["jobId"]
        if mode == "restore":
            return self.api.VM.create(vmID=vm_id, vmParams={
                "vmId": vm_id, "restoreState": what})["jobId"]
        params, domain_xml = what
        return self.api.VM.migrationCreate(
            vmID=vm_id, params={**params, "xml": domain_xml})[
                "params"]["jobId"]

    def _wait(self, job_ids, progress, poll_interval):
        while True:
            infos = self.api.Host.getJobs(job_ids=job_ids)
            ended = [i for i in infos.values() if i["status"] in ENDED]
            pool = self.api.pool.stats()
            up = sum(1 for i in ended if i["status"] == "done")
            progress.show("starting", len(ended), up, len(ended) - up,
                          pool["queued"], pool["running"])
            if len(ended) == len(job_ids):
                return infos
            time.sleep(poll_interval)

    def _params(self, vm_id):
        return {"vmId": vm_id, "vmName": f"loadtest-{vm_id}",
                "memSize": self.mem_mib, "smp": 1}

    def _hibernated(self, n):
        """n VMs created and hibernated through the verbs (not timed)."""
        made = []
        for _ in range(n):
            vm_id = str(uuid.uuid4())
            job_id = _retrying(lambda: self.api.VM.create(
                vmID=vm_id, vmParams=self._params(vm_id))["jobId"])
            made.append((vm_id, job_id))
        self._wait_jobs([job_id for _, job_id in made])
        hibernations, result = [], []
        for vm_id, _ in made:
            path = f"{self.state_dir}/{vm_id}.state"
            job_id = _retrying(lambda: self.api.VM.hibernate(
                vmID=vm_id, hibernationVolHandle=path)["jobId"])
            hibernations.append(job_id)
            result.append((vm_id, path))
        self._wait_jobs(hibernations)
        return result

    def _wait_jobs(self, job_ids):
        for job_id in job_ids:
            job = self.api.jobs.get(job_id)
            job.wait()
            if job.status != "done":
                raise RuntimeError(f"preparing the storm failed: "
                                   f"{job.info()}")


class _SimulatedSource(threading.Thread):
    """Plays the source host of every incoming migration, one at a time."""

    def __init__(self, hv):
        super().__init__(name="loadtest-source", daemon=True)
        self.hv = hv
        self._todo = queue.Queue()
        self.start()

    def migrate(self, domain_xml):
        self._todo.put(domain_xml)

    def stop(self):
        self._todo.put(None)
        self.join()

    def run(self):
        while (domain_xml := self._todo.get()) is not None:
            simulation.simulate_incoming_migration(self.hv, domain_xml)


def _retrying(request):
    backoff = 0.001
    while True:
        try:
            return request()
        except ResourceExhausted:
            time.sleep(backoff)
            backoff = min(backoff * 2, 0.1)


def _figures(infos, job_modes, total, latency, retried, workers):
    done = [i for i in infos.values() if i["status"] == "done"]
    failures = [i for i in infos.values() if i["status"] != "done"]
    by_mode = {}
    for info in done:
        by_mode.setdefault(job_modes[info["id"]], []).append(
            info["ended"] - info["created"])
    return {
        "vms": len(infos),
        "workers": workers,
        "total_s": total,
        "vms_per_s": len(done) / total if total else 0.0,
        "up": len(done),
        "failed": len(failures),
        "refused_retried": retried["ResourceExhausted"],
        "migrate_limit_retried": retried["migrateLimit"],
        "time_to_up": [i["ended"] - i["created"] for i in done],
        "time_to_up_by_mode": by_mode,
        "queue_wait": [i["started"] - i["created"] for i in infos.values()
                       if "started" in i],
        "create_latency": latency,
        "errors": [i.get("error", {}).get("message", i["status"])
                   for i in failures],
        "up_ids": [i["vm_id"] for i in done],
    }


def _ms(seconds):
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _pcts(values, *pcts):
    return "  ".join(f"p{p} {_ms(percentile(values, p))}" for p in pcts)


def _print_summary(f, out):
    print(f"total        {f['total_s']:.2f} s, {f['vms_per_s']:.1f} VMs/s",
          file=out)
    print(f"Up           {f['up']}/{f['vms']}, failures {f['failed']}, "
          f"refused and retried {f['refused_retried']}", file=out)
    print(f"time-to-Up   {_pcts(f['time_to_up'], 50, 95, 99)}", file=out)
    if len(f["time_to_up_by_mode"]) > 1:
        for mode, values in sorted(f["time_to_up_by_mode"].items()):
            print(f"  {mode:10} {len(values):5} Up  "
                  f"{_pcts(values, 50, 95, 99)}", file=out)
        print(f"migrateLimit retried {f['migrate_limit_retried']}", file=out)
    print(f"queue wait   {_pcts(f['queue_wait'], 50, 99)}", file=out)
    print(f"verb call    {_pcts(f['create_latency'], 50, 99)}", file=out)
    for message in sorted(set(f["errors"]))[:5]:
        print(f"  failure: {message}", file=out)
