"""Benchmark 3, a real storm: tiny VMs (TCG, 32 MiB, no disk) on a private
libvirtd with QEMU, started by vmjobs with pools of 1, 2, 4 and 8 workers
(`--sizes`), by as many plain libvirt threads, by vmjobs with adaptive
admission up to the default `workers`, by a thread per VM, and by VDSM's
model (a thread per VM behind a semaphore of 4).

    python tests/benchmarks/real_storm.py [--vms 100] [--sizes 1,2,4,8]
        [--rounds 1] [--plot PATH] [--dir DIR]

Every configuration defines and starts the same guests on the same
daemon (vmjobs' flow also looks the UUID up before and checks the state
after: it must not redefine a domain it did not make, nor report Up one
that died), one after the other, each pool size next to as many plain
threads, which of the two goes first alternating, after an untimed
warm-up storm; each storm starts from an empty host and is destroyed
before the next. With `--rounds`, the whole sequence runs again (every
other round backwards) and the figures are each configuration's median:
one round's differences are the size of the noise. The ratio of a pool
to as many plain threads is the pool's own cost; the default's (the
default `workers`, adaptive off) to the best plain threads is how much a
host left at its defaults loses. Figures: total time, time-to-Up p50/p99
(from the storm's start), for vmjobs the VM.create latency p99 during the
storm, and the CPU the daemon and its QEMU processes used per VM, which
bounds what any configuration can do on this machine: CPU per VM x N /
cores. `--plot` draws the total time against the pool size."""

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid

import libvirt

from common import (
    daemon_pid,
    ms,
    percentile,
    pyplot,
    save_plot,
    table,
    write_json,
)
from vmjobs import domxml
from vmjobs.api import API
from vmjobs.config import Config
from vmjobs.hypervisor import Hypervisor
from vmjobs.params import parse_create
from vmjobs.tools.loadtest import pause_until
from vmjobs.tools.procfs import cpu_seconds
from vmjobs.tools.sandbox import Sandbox

MEM_MIB = 32
WARM_UP = 8


def params(vm_id):
    return {"vmId": vm_id, "vmName": f"storm-{vm_id}", "memSize": MEM_MIB}


def storm_vmjobs(sandbox, n, workers, adaptive=False):
    with API(Config(uri=sandbox.uri, workers=workers, queue_size=n,
                    domain_type="qemu", adaptive=adaptive)) as api:
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


def configurations(n, sizes, default_workers):
    """(name, storm) in the order of one round: each pool size next to as
    many plain threads (which goes first alternating by size), the
    default with adaptive admission on, a thread per VM, VDSM's model."""
    configs = []
    for i, size in enumerate(sizes):
        pair = [(vmjobs_name(size), lambda s, k=size: storm_vmjobs(s, n, k)),
                (plain_name(size), lambda s, k=size: storm_raw(s, n, k))]
        configs += pair if i % 2 == 0 else pair[::-1]
    configs += [
        (adaptive_name(default_workers),
         lambda s: storm_vmjobs(s, n, default_workers, adaptive=True)),
        (ONE_PER_VM, lambda s: storm_raw(s, n, n)),
        (VDSM, lambda s: storm_raw(s, n, n, threading.Semaphore(4))),
    ]
    return configs


def vmjobs_name(size):
    return f"vmjobs, {size} worker{'s' if size > 1 else ''}"


def plain_name(size):
    return f"plain threads, {size}"


def adaptive_name(workers):
    return f"vmjobs, adaptive up to {workers}"


ONE_PER_VM = "plain threads, one per VM"
VDSM = "VDSM model (thread per VM, semaphore 4)"


def plot(sizes, medians, rounds, default_workers, path):
    """Total time against pool size, vmjobs and plain threads (the median,
    and each round), with the configurations that have no size as lines."""
    plt = pyplot()
    if plt is None:
        return
    figure, ax = plt.subplots(figsize=(7, 4))
    for label, name_of, marker in (("vmjobs", vmjobs_name, "o"),
                                   ("plain threads", plain_name, "s")):
        ax.plot(sizes, [medians[name_of(k)] for k in sizes], marker=marker,
                label=f"{label} (median)")
        for k in sizes:
            ax.scatter([k] * len(rounds[name_of(k)]), rounds[name_of(k)],
                       s=8, alpha=0.4, color=ax.lines[-1].get_color())
    for name, style in ((adaptive_name(default_workers), ":"),
                        (ONE_PER_VM, "--"), (VDSM, "-.")):
        ax.axhline(medians[name], linestyle=style, color="grey",
                   label=f"{name}: {medians[name]:.1f} s")
    ax.axvline(default_workers, color="green", alpha=0.3,
               label=f"default workers ({default_workers})")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(k) for k in sizes])
    ax.set_xlabel("workers (vmjobs) / threads (plain)")
    ax.set_ylabel("storm total, s")
    ax.set_title(f"real storm: time against parallelism, {len(next(iter(rounds.values())))} round(s)")
    ax.legend(fontsize=7)
    save_plot(plt, figure, path)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--sizes", default="1,2,4,8",
                        help="pool sizes, each against as many plain threads")
    parser.add_argument("--rounds", type=int, default=1,
                        help="every configuration this many times, "
                        "interleaved; the figures are the medians")
    parser.add_argument("--plot", metavar="PATH", default=None,
                        help="draw the curve: total time against pool size")
    parser.add_argument("--dir", default=None,
                        help="sandbox directory (default: a temp dir)")
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    n = args.vms
    sizes = sorted({int(k) for k in args.sizes.split(",")})
    default_workers = Config().workers
    configs = configurations(n, sizes, default_workers)
    directory = args.dir or tempfile.mkdtemp(prefix="vmjobs-bench-")
    sandbox = Sandbox(directory).start()
    results = {name: [] for name, _ in configs}
    try:
        # Untimed: the first guests on a fresh daemon load QEMU and its
        # firmware from disk; whichever configuration came first paid it.
        storm_raw(sandbox, WARM_UP, WARM_UP)
        destroy_all(sandbox)
        for round_ in range(args.rounds):
            # Odd rounds run backwards: no configuration always follows
            # the same one (a daemon warmed, a page cache filled).
            for name, storm in configs if round_ % 2 == 0 else configs[::-1]:
                cpu_before = cpu_seconds([daemon_pid(sandbox)])
                total, ups, latencies = storm(sandbox)
                cpu = (cpu_seconds([daemon_pid(sandbox)]
                                   + sandbox.qemu_pids()) - cpu_before)
                destroy_all(sandbox)
                results[name].append({
                    "total_s": total,
                    "up_p50_s": percentile(ups, 50),
                    "up_p95_s": percentile(ups, 95),
                    "up_p99_s": percentile(ups, 99),
                    "cpu_per_vm_s": cpu / n,
                    "create_p99_ms": ms(percentile(latencies, 99))
                    if latencies else None,
                })
                print(f"round {round_ + 1}, {name}: {total:.1f} s",
                      flush=True)
    finally:
        sandbox.stop()

    def median(name, key):
        values = [r[key] for r in results[name] if r[key] is not None]
        return statistics.median(values) if values else None

    medians = {name: median(name, "total_s") for name in results}
    rounds = {name: [r["total_s"] for r in runs]
              for name, runs in results.items()}
    rows = [(name, medians[name], " ".join(f"{t:.1f}" for t in rounds[name]),
             median(name, "up_p50_s"), median(name, "up_p99_s"),
             median(name, "cpu_per_vm_s"),
             "-" if median(name, "create_p99_ms") is None
             else f"{median(name, 'create_p99_ms'):.2f}")
            for name, _ in configs]
    cores = os.cpu_count()
    cpu_per_vm = min(median(name, "cpu_per_vm_s") for name in results)
    limit = cpu_per_vm * n / cores
    best_raw = min(t for name, t in medians.items()
                   if not name.startswith("vmjobs"))
    best_vmjobs = min(t for name, t in medians.items()
                      if name.startswith("vmjobs"))
    default = medians[vmjobs_name(default_workers)] \
        if default_workers in sizes else None
    adaptive = medians[adaptive_name(default_workers)]
    same_size = {size: medians[vmjobs_name(size)]
                 / medians[plain_name(size)] for size in sizes}
    data = {"args": vars(args), "cores": cores,
            "default_workers": default_workers, "configs": results,
            "median_total_s": medians, "physical_limit_s": limit,
            "vmjobs_to_plain_same_size": same_size,
            "best_vmjobs_to_best_raw": best_vmjobs / best_raw,
            "best_vmjobs_to_vdsm": best_vmjobs / medians[VDSM],
            "default_to_best_raw": default and default / best_raw,
            "adaptive_to_best_raw": adaptive / best_raw}
    table(f"real storm: {n} VMs (TCG, {MEM_MIB} MiB, no disk), private "
          f"libvirtd, {cores} cores, {args.rounds} round(s), medians",
          ["configuration", "total s", "each round", "Up p50 s", "Up p99 s",
           "CPU s/VM", "VM.create p99 ms"], rows)
    print(f"physical limit: {cpu_per_vm:.3f} CPU s per VM x {n} / {cores} "
          f"cores = {limit:.1f} s")
    print(f"best vmjobs / best plain threads: {best_vmjobs / best_raw:.2f}; "
          f"best vmjobs / VDSM model: {best_vmjobs / medians[VDSM]:.2f}")
    if default is not None:
        print(f"the default ({default_workers} workers, adaptive off) / "
              f"best plain threads: {default / best_raw:.2f}")
    print(f"adaptive up to {default_workers} / best plain threads: "
          f"{adaptive / best_raw:.2f}")
    print("vmjobs / plain threads at the same size (the pool's own "
          "cost): " + ", ".join(f"{size}: {r:.2f}"
                                for size, r in same_size.items()))
    write_json("real_storm", data)
    if args.plot:
        plot(sizes, medians, rounds, default_workers, args.plot)


if __name__ == "__main__":
    main()
