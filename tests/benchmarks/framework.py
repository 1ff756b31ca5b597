"""Benchmark 2, framework cost on libvirt's test driver: VMs through
vmjobs' verbs to commit, vs the same libvirt calls (look the UUID up,
define, start, check its state) made by plain threads on one connection.

    python tests/benchmarks/framework.py [--vms 5000] [--workers 4]

Each round gives both sides a fresh private test-driver host and the same
number of VMs (the driver slows down as it holds more domains, so both
must see the same counts); rounds alternate which side goes first."""

import argparse
import statistics
import threading
import time
import uuid

import libvirt

from common import table, write_json
from vmjobs import domxml
from vmjobs.api import API
from vmjobs.config import Config
from vmjobs.hypervisor import Hypervisor
from vmjobs.params import parse_create


def params(vm_id):
    return {"vmId": vm_id, "vmName": f"bench-{vm_id}", "memSize": 64}


def round_vmjobs(n, workers):
    """(seconds to the last commit, the caller's own CPU per VM.create in
    us: its thread's CPU time, which a loaded machine disturbs far less
    than wall time)."""
    with API(Config(uri=None, workers=workers, queue_size=n)) as api:
        ids = [str(uuid.uuid4()) for _ in range(n)]
        started = time.perf_counter()
        cpu_started = time.thread_time()
        for vm_id in ids:
            api.VM.create(vm_id, params(vm_id))
        caller_cpu = time.thread_time() - cpu_started
        api.pool.wait_idle()
        elapsed = time.perf_counter() - started
        assert len(api.Host.getVMList()) == n
    return elapsed, caller_cpu / n * 1e6


def round_raw(n, workers):
    """The calls vmjobs' creation flow makes, by plain threads, with the
    XML built beforehand (vmjobs builds it inside its timing)."""
    with Hypervisor() as hv:
        conn = hv.shared_connection   # the test driver's one connection
        work = []
        for _ in range(n):
            vm_id = str(uuid.uuid4())
            work.append((vm_id, domxml.compose(
                parse_create(vm_id, params(vm_id)), hv.guest)))

        def run(items):
            for vm_id, xml in items:
                try:
                    conn.lookupByUUIDString(vm_id)
                except libvirt.libvirtError:
                    pass
                dom = conn.defineXML(xml)
                dom.create()
                dom.state()

        threads = [threading.Thread(target=run, args=(work[i::workers],))
                   for i in range(workers)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        assert len(conn.listAllDomains(0)) == n
    return elapsed, None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rates = {"vmjobs verbs": [], "plain threads": []}
    caller_cpu = []
    for i in range(args.rounds):
        order = [("vmjobs verbs", round_vmjobs),
                 ("plain threads", round_raw)]
        if i % 2:
            order.reverse()
        for name, run in order:
            elapsed, cpu = run(args.vms, args.workers)
            rates[name].append(args.vms / elapsed)
            if cpu is not None:
                caller_cpu.append(cpu)
    medians = {name: statistics.median(r) for name, r in rates.items()}
    ratio = medians["vmjobs verbs"] / medians["plain threads"]
    table(f"framework cost: {args.vms} VMs per round, {args.workers} "
          f"workers/threads, {args.rounds} interleaved rounds, test driver",
          ["side", "VMs/s (median)", "VMs/s (each round)"],
          [(name, medians[name], " ".join(f"{r:.0f}" for r in rates[name]))
           for name in rates])
    print(f"ratio vmjobs / plain threads: {ratio:.2f}")
    print(f"the caller's CPU per VM.create (median): "
          f"{statistics.median(caller_cpu):.0f} us (each round: "
          f"{' '.join(f'{c:.0f}' for c in caller_cpu)})")
    write_json("framework", {"args": vars(args), "vms_per_s": rates,
                             "median": medians, "ratio": ratio,
                             "caller_cpu_us": caller_cpu})


if __name__ == "__main__":
    main()
