"""Benchmark 3, a real storm: tiny VMs (TCG, 32 MiB, no disk) on a private
libvirtd with QEMU, started by vmjobs with pools of 1, 2, 4 and 8 workers,
by as many plain libvirt threads, by a thread per VM, and by VDSM's model
(a thread per VM behind a semaphore of 4).

    python tests/benchmarks/real_storm.py [--vms 100] [--dir DIR]

Every configuration defines and starts the same guests on the same
daemon (vmjobs' flow also looks the UUID up before and checks the state
after: it must not redefine a domain it did not make, nor report Up one
that died), one after the other, each pool size next to as many plain
threads, which of the two goes first alternating, after an untimed
warm-up storm; each storm starts from an empty host and is destroyed
before the next. The ratio of a pool to as many plain threads is the
pool's own cost. Figures:
total time, time-to-Up p50/p95/p99 (from the storm's start), for vmjobs
the VM.create latency p99 during the storm, and the CPU the daemon and
its QEMU processes used per VM, which bounds what any configuration can
do on this machine: CPU per VM x N / cores."""

import argparse
import os
import tempfile
import threading
import time
import uuid

import libvirt

from common import cpu_seconds, daemon_pid, ms, percentile, table, write_json
from vmjobs import domxml
from vmjobs.api import API
from vmjobs.config import Config
from vmjobs.hypervisor import Hypervisor
from vmjobs.params import parse_create
from vmjobs.tools.sandbox import Sandbox

MEM_MIB = 32
SIZES = (1, 2, 4, 8)   # pool sizes, each against as many plain threads
WARM_UP = 8


def params(vm_id):
    return {"vmId": vm_id, "vmName": f"storm-{vm_id}", "memSize": MEM_MIB}


def storm_vmjobs(sandbox, n, workers):
    with API(Config(uri=sandbox.uri, workers=workers, queue_size=n,
                    domain_type="qemu")) as api:
        ids = [str(uuid.uuid4()) for _ in range(n)]
        latencies = []
        started = time.time()
        for vm_id in ids:
            t0 = time.perf_counter()
            api.VM.create(vm_id, params(vm_id))
            latencies.append(time.perf_counter() - t0)
        assert api.pool.wait_idle(3600)
        total = time.time() - started
        infos = api.Host.getJobs().values()
        assert all(i["status"] == "done" for i in infos), \
            [i for i in infos if i["status"] != "done"][:1]
        ups = [i["ended"] - started for i in infos]
    return total, ups, latencies


def storm_raw(sandbox, n, threads, semaphore=None, interval=None):
    """Plain libvirt: `threads` threads share the VMs (or one thread per
    VM, behind `semaphore` if given: VDSM's model). A VM is Up when its
    start returned and libvirt says it runs. With `interval`, a thread per
    VM is started at storm start + i x interval (KubeVirt's protocol), and
    each VM's time-to-Up counts from its own request; without, all are
    requested at once and it counts from the storm's start. Returns
    (total seconds, the times-to-Up, None)."""
    with Hypervisor(sandbox.uri, domain_type="qemu") as hv:
        work = []
        for _ in range(n):
            vm_id = str(uuid.uuid4())
            work.append(domxml.compose(parse_create(vm_id, params(vm_id)),
                                       hv.guest))
        ups, lock = [], threading.Lock()
        conns = [libvirt.open(sandbox.uri) for _ in range(min(threads, 32))]
        requested = [None] * n   # when each VM was requested
        started = time.monotonic()

        def start_one(conn, i):
            dom = conn.defineXML(work[i])
            dom.createWithFlags(0)
            assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
            with lock:
                ups.append(time.monotonic() - (requested[i] or started))

        def worker(which, items):
            conn = conns[which % len(conns)]
            for i in items:
                if semaphore is None:
                    start_one(conn, i)
                else:
                    with semaphore:
                        start_one(conn, i)

        if semaphore is None and threads < n:
            runners = [threading.Thread(target=worker,
                                        args=(i, range(i, n, threads)))
                       for i in range(threads)]
        else:
            runners = [threading.Thread(target=worker, args=(i, [i]))
                       for i in range(n)]
        if interval is not None and len(runners) != n:
            raise ValueError("a schedule needs a thread per VM")
        for i, runner in enumerate(runners):
            if interval is not None:
                pause_until(started + i * interval)
                requested[i] = time.monotonic()
            runner.start()
        for runner in runners:
            runner.join()
        total = time.monotonic() - started
        for conn in conns:
            conn.close()
    return total, ups, None


def pause_until(deadline):
    """Sleep until time.monotonic() reaches `deadline` (a steady schedule:
    a late request does not delay the ones after it)."""
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def destroy_all(sandbox):
    conn = libvirt.open(sandbox.uri)
    doms = conn.listAllDomains(0)
    threads = [threading.Thread(target=lambda d=d: (d.destroy(),
                                                    d.undefine()))
               for d in doms]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conn.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--dir", default=None,
                        help="sandbox directory (default: a temp dir)")
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    n = args.vms
    configs = []
    for i, size in enumerate(SIZES):
        pair = [(f"vmjobs, {size} worker{'s' if size > 1 else ''}",
                 lambda s, k=size: storm_vmjobs(s, n, k)),
                (f"plain threads, {size}",
                 lambda s, k=size: storm_raw(s, n, k))]
        configs += pair if i % 2 == 0 else pair[::-1]
    configs += [
        ("plain threads, one per VM", lambda s: storm_raw(s, n, n)),
        ("VDSM model (thread per VM, semaphore 4)",
         lambda s: storm_raw(s, n, n, threading.Semaphore(4))),
    ]
    directory = args.dir or tempfile.mkdtemp(prefix="vmjobs-bench-")
    sandbox = Sandbox(directory).start()
    rows, data = [], {"args": vars(args), "configs": {}}
    try:
        # Untimed: the first guests on a fresh daemon load QEMU and its
        # firmware from disk; whichever configuration came first paid it.
        storm_raw(sandbox, WARM_UP, WARM_UP)
        destroy_all(sandbox)
        for name, storm in configs:
            cpu_before = cpu_seconds([daemon_pid(sandbox)])
            total, ups, latencies = storm(sandbox)
            cpu = (cpu_seconds([daemon_pid(sandbox)] + sandbox.qemu_pids())
                   - cpu_before)
            destroy_all(sandbox)
            result = {
                "total_s": total,
                "up_p50_s": percentile(ups, 50),
                "up_p95_s": percentile(ups, 95),
                "up_p99_s": percentile(ups, 99),
                "cpu_per_vm_s": cpu / n,
                "create_p99_ms": ms(percentile(latencies, 99))
                if latencies else None,
            }
            data["configs"][name] = result
            rows.append((name, total, result["up_p50_s"], result["up_p95_s"],
                         result["up_p99_s"], result["cpu_per_vm_s"],
                         "-" if latencies is None else
                         f"{result['create_p99_ms']:.2f}"))
            print(f"{name}: {total:.1f} s", flush=True)
    finally:
        sandbox.stop()
    cores = os.cpu_count()
    cpu_per_vm = min(c["cpu_per_vm_s"] for c in data["configs"].values())
    limit = cpu_per_vm * n / cores
    best_raw = min(c["total_s"] for name, c in data["configs"].items()
                   if not name.startswith("vmjobs"))
    best_vmjobs = min(c["total_s"] for name, c in data["configs"].items()
                      if name.startswith("vmjobs"))
    vdsm = data["configs"]["VDSM model (thread per VM, semaphore 4)"][
        "total_s"]
    same_size = {}
    for size in SIZES:
        ours = [c for name, c in data["configs"].items()
                if name.startswith(f"vmjobs, {size} worker")][0]
        theirs = data["configs"][f"plain threads, {size}"]
        same_size[size] = ours["total_s"] / theirs["total_s"]
    data.update(cores=cores, physical_limit_s=limit,
                vmjobs_to_plain_same_size=same_size,
                best_vmjobs_to_best_raw=best_vmjobs / best_raw,
                best_vmjobs_to_vdsm=best_vmjobs / vdsm)
    table(f"real storm: {n} VMs (TCG, {MEM_MIB} MiB, no disk), private "
          f"libvirtd, {cores} cores",
          ["configuration", "total s", "Up p50 s", "Up p95 s", "Up p99 s",
           "CPU s/VM", "VM.create p99 ms"], rows)
    print(f"physical limit: {cpu_per_vm:.3f} CPU s per VM x {n} / {cores} "
          f"cores = {limit:.1f} s")
    print(f"best vmjobs / best plain threads: {best_vmjobs / best_raw:.2f}; "
          f"best vmjobs / VDSM model: {best_vmjobs / vdsm:.2f}")
    print("vmjobs / plain threads at the same size (the pool's own "
          "cost): " + ", ".join(f"{size}: {r:.2f}"
                                for size, r in same_size.items()))
    write_json("real_storm", data)


if __name__ == "__main__":
    main()
