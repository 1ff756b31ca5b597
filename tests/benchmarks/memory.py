"""Benchmark 6, memory: 10,000 creates each carrying 60 KiB of opaque
params, all ended and destroyed, on libvirt's test driver; Python's traced
memory (tracemalloc) before and after. The 10,000 ended jobs stay listed
(jobs.max_ended), so what is left is what an ended job keeps: its JobInfo,
not the request.

    python tests/benchmarks/memory.py [--vms 10000] [--kib 60]

(60 KiB: a VM's opaque params are at most 64 KiB of JSON,
domxml.MAX_PARAMS_BYTES.)

Side by side, in the same process: the requests themselves (what the
ended jobs would hold if they kept them) and the growth measured."""

import argparse
import gc
import os
import threading
import tracemalloc
import uuid

from common import table, write_json
from vmjobs.api import API
from vmjobs.config import Config
from vmjobs.hypervisor import Hypervisor

WAIT = 600


def params(vm_id, kib):
    # Each request its own bytes: a shared string would hide a leak.
    blob = os.urandom(kib * 512).hex()
    return {"vmId": vm_id, "vmName": f"mem-{vm_id[:8]}", "memSize": 64,
            "opaque": blob}


def create_all(api, vm_ids, kib, window=500):
    """Create every VM, at most `window` jobs outstanding (the queue is
    bounded), then destroy every one. Ends are counted by end callbacks
    (which the job drops once called), not by job.wait(), which would give
    each job a condition variable of its own to keep."""
    slots = threading.Semaphore(window)
    for vm_id in vm_ids:
        assert slots.acquire(timeout=WAIT)
        job_id = api.VM.create(vm_id, params(vm_id, kib))["jobId"]
        api.jobs.get(job_id).add_end_callback(lambda job: slots.release())
    for _ in range(window):
        assert slots.acquire(timeout=WAIT)
    for vm_id in vm_ids:
        assert api.VM.destroy(vm_id) is True


def traced():
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--kib", type=int, default=60)
    args = parser.parse_args()

    with Hypervisor() as hv, API(Config(workers=4), hypervisor=hv) as api:
        assert api.wait_recovered(WAIT)
        tracemalloc.start()
        # A few first, so that what is allocated once (caches, the first
        # job table entries, libvirt's wrappers) is not counted as growth.
        create_all(api, [str(uuid.uuid4()) for _ in range(50)], args.kib)
        before = traced()
        vm_ids = [str(uuid.uuid4()) for _ in range(args.vms)]
        create_all(api, vm_ids, args.kib)
        after = traced()
        peak = tracemalloc.get_traced_memory()[1]
        ended = api.jobs.counts()["ended"]
        assert api.Host.getVMList() == []
        # ... and once the ended jobs are gone (deleted, or expired after
        # jobs.autodelete_delay), nothing of them is left.
        for job in api.jobs.jobs():
            api.jobs.delete(job.id)
        deleted = traced()
        tracemalloc.stop()
    requests = args.vms * args.kib * 1024
    growth = after - before
    table(f"memory: {args.vms} creates of {args.kib} KiB params each, all "
          f"ended and destroyed ({ended} ended jobs still listed)",
          ["what", "MiB"],
          [("requests made (params' bytes)", requests / 2**20),
           ("traced growth after all ended", growth / 2**20),
           ("... once the ended jobs are deleted", (deleted - before) / 2**20),
           ("traced peak", peak / 2**20)])
    print(f"growth per ended job: {growth / args.vms:.0f} bytes; "
          f"growth / requests: {growth / requests:.4f}")
    write_json("memory", {"vms": args.vms, "kib": args.kib,
                          "requests_bytes": requests, "growth_bytes": growth,
                          "peak_bytes": peak, "ended_jobs": ended,
                          "after_delete_bytes": deleted - before})


if __name__ == "__main__":
    main()
