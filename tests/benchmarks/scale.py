"""Benchmark 4, scale on libvirt's test driver: 10,000 VMs through the
verbs; Host.getJobs over 10,000 jobs; the memory one ended job and one
public VM cost; and that jobs.max_ended caps what ended jobs cost.

    python tests/benchmarks/scale.py [--vms 10000]

Memory is Python's own (tracemalloc), measured by difference: with the
VMs public and their jobs kept, after destroying the VMs (jobs kept), and
after deleting the jobs."""

import argparse
import gc
import time
import tracemalloc
import uuid

from common import ms, percentile, table, write_json
from vmjobs.api import API
from vmjobs.config import Config

GOAL_GET_JOBS_MS = 20
GOAL_BYTES_PER_JOB = 5 * 1024


def traced():
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def storm(api, n):
    ids = [str(uuid.uuid4()) for _ in range(n)]
    started = time.perf_counter()
    for vm_id in ids:
        api.VM.create(vm_id, {"vmId": vm_id, "vmName": f"scale-{vm_id}",
                              "memSize": 64, "owner": "bench"})
    api.pool.wait_idle()
    return ids, time.perf_counter() - started


def latencies(call, rounds):
    values = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        call()
        values.append(time.perf_counter() - t0)
    return values


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    n = args.vms
    rows, data = [], {"args": vars(args)}

    with API(Config(uri=None, workers=args.workers, queue_size=n)) as api:
        ids, elapsed = storm(api, n)
        assert len(api.Host.getVMList()) == n
        data["vms_per_s"] = n / elapsed
        rows.append(("VMs through the verbs", f"{n / elapsed:.0f} VMs/s",
                     f"{n} VMs in {elapsed:.1f} s"))

        all_jobs = latencies(api.Host.getJobs, 20)
        one = next(iter(api.Host.getJobs()))
        one_job = latencies(lambda: api.Host.getJobs(job_ids=[one]), 200)
        vm_list = latencies(api.Host.getVMList, 20)
        data["get_jobs_ms"] = {"p50": ms(percentile(all_jobs, 50)),
                               "p99": ms(percentile(all_jobs, 99))}
        rows.append((f"Host.getJobs, {n} jobs",
                     f"p50 {ms(percentile(all_jobs, 50)):.1f} ms",
                     f"p99 {ms(percentile(all_jobs, 99)):.1f} ms (goal < "
                     f"{GOAL_GET_JOBS_MS} ms)"))
        rows.append(("Host.getJobs, one job_id",
                     f"p50 {ms(percentile(one_job, 50)) * 1000:.0f} us",
                     f"p99 {ms(percentile(one_job, 99)) * 1000:.0f} us"))
        rows.append((f"Host.getVMList, {n} VMs",
                     f"p50 {ms(percentile(vm_list, 50)):.1f} ms",
                     f"p99 {ms(percentile(vm_list, 99)):.1f} ms"))

    # Memory, in a second run traced from its start (a freed object counts
    # only if its allocation was traced; tracing slows everything down, so
    # the latencies above come from the untraced run).
    with API(Config(uri=None, workers=args.workers, queue_size=n)) as api:
        tracemalloc.start()
        base = traced()
        ids, _ = storm(api, n)
        with_all = traced()
        before = traced()
        for vm_id in ids:
            api.VM.destroy(vm_id)
        jobs_only = traced()
        for job_id in list(api.Host.getJobs()):
            api.Job.delete(job_id)
        nothing = traced()
        tracemalloc.stop()
        per_vm = (before - jobs_only) / n
        per_job = (jobs_only - nothing) / n
        data.update(bytes_per_public_vm=per_vm, bytes_per_ended_job=per_job,
                    bytes_per_vm_and_job=(with_all - base) / n)
        rows.append(("memory per public VM", f"{per_vm:.0f} B",
                     "its record; params are counted with its job"))
        rows.append(("memory per ended job", f"{per_job:.0f} B",
                     f"goal < {GOAL_BYTES_PER_JOB} B"))

    cap = max(1, n // 10)
    with API(Config(uri=None, workers=args.workers, queue_size=n,
                    max_ended=cap)) as api:
        tracemalloc.start()
        base = traced()
        ids, _ = storm(api, n)
        for vm_id in ids:
            api.VM.destroy(vm_id)
        kept = len(api.Host.getJobs())
        capped = traced() - base
        tracemalloc.stop()
        data.update(max_ended=cap, jobs_kept=kept, capped_bytes=capped)
        rows.append((f"max_ended = {cap}, {n} jobs run",
                     f"{kept} jobs kept",
                     f"{capped / 1024:.0f} KiB left in all"))

    table(f"scale: {n} VMs on the test driver, {args.workers} workers",
          ["what", "figure", "note"], rows)
    write_json("scale", data)


if __name__ == "__main__":
    main()
