"""The main job: start N VMs through the verbs, as an engine would, watch
them come up, summarise how fast, then destroy them.

Every figure comes from the jobs themselves (JobInfo's created, started
and ended times) and from timing each VM.create call.
"""

import sys
import time
import uuid

from .api import API
from .config import Config
from .errors import ResourceExhausted

BAR_WIDTH = 30


def percentile(values, pct):
    """Nearest-rank percentile of `values` (None if empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))   # ceil
    return ordered[int(rank) - 1]


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
        keep=False, out=sys.stdout, poll_interval=0.1):
    """Run the load test and print its summary; returns the figures."""
    config = Config(uri=uri, workers=workers, queue_size=queue_size)
    with API(config) as api:
        target = api.hv.uri if uri is not None else \
            "a private instance of libvirt's test driver"
        print(f"vmjobs loadtest: {vms} VMs, {workers} workers, queue "
              f"{queue_size}, on {target}", file=out, flush=True)
        figures = _storm(api, vms, mem_mib, out, poll_interval)
        _print_summary(figures, out)
        if not keep:
            started = time.monotonic()
            for vm_id in figures["up_ids"]:
                api.VM.destroy(vm_id)
            figures["destroy_s"] = time.monotonic() - started
            print(f"destroyed {len(figures['up_ids'])} VMs in "
                  f"{figures['destroy_s']:.2f} s", file=out)
        return figures


def _storm(api, vms, mem_mib, out, poll_interval):
    progress = Progress(out, vms)
    job_ids, create_latency = [], []
    refused = 0
    started = time.monotonic()
    for i in range(vms):
        vm_id = str(uuid.uuid4())
        params = {"vmId": vm_id, "vmName": f"loadtest-{i:05d}-{vm_id[:8]}",
                  "memSize": mem_mib, "smp": 1}
        backoff = 0.001
        while True:
            t0 = time.perf_counter()
            try:
                result = api.VM.create(vmID=vm_id, vmParams=params)
            except ResourceExhausted:
                # The queue is full: exactly what an engine should retry.
                refused += 1
                time.sleep(backoff)
                backoff = min(backoff * 2, 0.1)
                continue
            create_latency.append(time.perf_counter() - t0)
            job_ids.append(result["jobId"])
            break
    infos = {}
    while True:
        infos = api.Host.getJobs(job_ids=job_ids)
        ended = [i for i in infos.values()
                 if i["status"] in ("done", "failed", "aborted")]
        pool = api.pool.stats()
        up = sum(1 for i in ended if i["status"] == "done")
        progress.show("starting", len(ended), up, len(ended) - up,
                      pool["queued"], pool["running"])
        if len(ended) == len(job_ids):
            break
        time.sleep(poll_interval)
    total = time.monotonic() - started
    progress.done()
    done = [i for i in infos.values() if i["status"] == "done"]
    failures = [i for i in infos.values() if i["status"] != "done"]
    return {
        "vms": vms,
        "workers": api.pool.workers,
        "total_s": total,
        "vms_per_s": len(done) / total if total else 0.0,
        "up": len(done),
        "failed": len(failures),
        "refused_retried": refused,
        "time_to_up": [i["ended"] - i["created"] for i in done],
        "queue_wait": [i["started"] - i["created"] for i in infos.values()
                       if "started" in i],
        "create_latency": create_latency,
        "errors": [i.get("error", {}).get("message", i["status"])
                   for i in failures],
        "up_ids": [i["vm_id"] for i in done],
    }


def _ms(seconds):
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _print_summary(f, out):
    def pcts(key, *pcts_):
        return "  ".join(f"p{p} {_ms(percentile(f[key], p))}" for p in pcts_)

    print(f"total        {f['total_s']:.2f} s, {f['vms_per_s']:.1f} VMs/s",
          file=out)
    print(f"Up           {f['up']}/{f['vms']}, failures {f['failed']}, "
          f"refused and retried {f['refused_retried']}", file=out)
    print(f"time-to-Up   {pcts('time_to_up', 50, 95, 99)}", file=out)
    print(f"queue wait   {pcts('queue_wait', 50, 99)}", file=out)
    print(f"VM.create    {pcts('create_latency', 50, 99)}", file=out)
    for message in sorted(set(f["errors"]))[:5]:
        print(f"  failure: {message}", file=out)
