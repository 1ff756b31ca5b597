"""Benchmark: a full host on libvirt's test driver.
The verbs' cost as the host fills (100, 1,000, 4,096 VMs), a destroy in a
full host, recovery at start-up with that many vmjobs domains present,
and the memory one public VM and one ended job cost at the largest size.

    python tests/benchmarks/full_host.py [--sizes 100,1000,4096] [--external 16]

`--external` domains without vmjobs metadata (another tool's) sit on the
host beside ours, so that Host.getStats has something to count. Each
figure is the median (p50) of repeated calls, VM.create the p99 of the
storm's calls; the ratio column compares the largest host with the
smallest: 1.0 is flat. Memory is Python's own (tracemalloc), measured by
difference, in a run of its own (tracing slows everything)."""

import argparse
import gc
import time
import tracemalloc
import uuid

from common import ms, percentile, table, write_json
from vmjobs import domxml
from vmjobs.api import API
from vmjobs.config import Config
from vmjobs.hypervisor import Hypervisor
from vmjobs.hypervisor.adapter import metadata_of

WAIT = 600
ROUNDS = 30
DESTROYS = 30

EXTERNAL_XML = ("<domain type='test'><name>other-{i}</name>"
                "<memory unit='MiB'>64</memory>"
                "<os><type>hvm</type></os></domain>")


def create_all(api, n):
    """n VM.create calls; returns (vmIds, each call's latency)."""
    ids = [str(uuid.uuid4()) for _ in range(n)]
    calls = []
    for vm_id in ids:
        t0 = time.perf_counter()
        api.VM.create(vm_id, {"vmId": vm_id, "vmName": f"full-{vm_id}",
                              "memSize": 64, "owner": "bench"})
        calls.append(time.perf_counter() - t0)
    api.pool.wait_idle()
    return ids, calls


def p50_of(call, rounds=ROUNDS):
    values = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        call()
        values.append(time.perf_counter() - t0)
    return percentile(values, 50)


def counted_as_before(api):
    """What Host.getStats did for its domain counts before (the baseline,
    run side by side): two libvirt requests (state, metadata) per domain
    on the host, ours included, and a scan of the whole job table."""
    known = api.registry.known_ids()
    received = {job.vm_id for job in api.jobs.jobs()
                if job.job_type == "migration-destination"}
    count = 0
    for dom in api.hv.shared_connection.listAllDomains(0):
        uuid_ = dom.UUIDString()
        dom.state()
        metadata = metadata_of(dom, domxml.METADATA_NS)
        if uuid_ not in known and metadata is None and \
                uuid_ not in received:
            count += 1
    return count


def add_external(hv, count):
    for i in range(count):
        hv.shared_connection.defineXML(EXTERNAL_XML.format(i=i))


def verbs_at(n, args):
    """The verbs' figures on a host holding n public VMs."""
    with Hypervisor() as hv, \
            API(Config(workers=args.workers, queue_size=n + DESTROYS),
                hypervisor=hv) as api:
        assert api.wait_recovered(WAIT)
        add_external(hv, args.external)
        ids, calls = create_all(api, n)
        assert len(api.Host.getVMList()) == n
        stats = api.Host.getStats()
        assert stats["external_domains"] == args.external, stats
        assert counted_as_before(api) == args.external
        figures = {
            "VM.create p99": percentile(calls, 99),
            "Host.getStats": p50_of(api.Host.getStats),
            "  its counts, as before": p50_of(lambda: counted_as_before(api)),
            "Host.getVMList": p50_of(api.Host.getVMList),
            "Host.getAllVmStats": p50_of(api.Host.getAllVmStats),
            "Host.getJobs": p50_of(api.Host.getJobs),
        }
        destroys = []
        for vm_id in ids[:DESTROYS]:
            t0 = time.perf_counter()
            assert api.VM.destroy(vm_id) is True
            destroys.append(time.perf_counter() - t0)
        figures["VM.destroy"] = percentile(destroys, 50)
        return figures


def recovery_at(n, args):
    """Seconds from the API's start to the end of `recovering`, with n
    vmjobs domains running (left by a first API, stopped leaving them)."""
    with Hypervisor() as hv:
        with API(Config(workers=args.workers, queue_size=n),
                 hypervisor=hv) as api:
            create_all(api, n)
        t0 = time.perf_counter()
        with API(Config(workers=args.workers, queue_size=n),
                 hypervisor=hv) as api:
            assert api.wait_recovered(WAIT)
            seconds = time.perf_counter() - t0
            assert api.Host.getStats()["public"] == n
        return seconds


def traced():
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def memory_at(n, args):
    warm = 50   # VMs first: what is allocated once is not growth
    with API(Config(uri=None, workers=args.workers,
                    queue_size=max(n, warm))) as api:
        assert api.wait_recovered(WAIT)
        create_all(api, warm)
        tracemalloc.start()
        base = traced()
        ids, _ = create_all(api, n)
        full = traced()
        for vm_id in ids:
            api.VM.destroy(vm_id)
        jobs_only = traced()
        tracemalloc.stop()
        return {"bytes_per_public_vm": (full - jobs_only) / n,
                "bytes_per_ended_job": (jobs_only - base) / n}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,1000,4096")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--external", type=int, default=16)
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    data = {"args": vars(args), "verbs_ms": {}, "recovery_s": {}}

    by_size = {n: verbs_at(n, args) for n in sizes}
    names = list(by_size[sizes[0]])
    rows = []
    for name in names:
        first, last = by_size[sizes[0]][name], by_size[sizes[-1]][name]
        rows.append([name] + [f"{ms(by_size[n][name]):.3f}" for n in sizes]
                    + [f"{last / first:.2f}"])
        data["verbs_ms"][name] = {n: ms(by_size[n][name]) for n in sizes}
    table(f"verbs as the host fills (ms; {args.external} external "
          f"domains; {args.workers} workers)",
          ["verb"] + [f"{n} VMs" for n in sizes]
          + [f"{sizes[-1]}/{sizes[0]}"], rows)

    recovery = {n: recovery_at(n, args) for n in sizes}
    data["recovery_s"] = recovery
    table("recovery at start-up: start to the end of `recovering`",
          ["vmjobs domains", "seconds", "domains/s"],
          [(str(n), f"{s:.2f}", f"{n / s:.0f}") for n, s in recovery.items()])

    if not args.no_memory:
        memory = memory_at(sizes[-1], args)
        data["memory"] = memory
        table(f"memory at {sizes[-1]} VMs (tracemalloc)", ["what", "bytes"],
              [("per public VM", f"{memory['bytes_per_public_vm']:.0f}"),
               ("per ended job", f"{memory['bytes_per_ended_job']:.0f}")])
    write_json("full_host", data)


if __name__ == "__main__":
    main()
