"""Benchmark 17, KubeVirt's storm protocol on a real daemon: 100 VMs
requested 100 ms apart, and the distribution (p50/p95/p99/max) of each
VM's time from its request to its `Up`, for vmjobs (in process, the
default config's workers), plain libvirt threads (a thread per request)
and VDSM's model (a thread per VM behind a semaphore of 4), side by side.

    python tests/benchmarks/kubevirt_protocol.py [--vms 100] [--interval 0.1]
        [--rounds 2] [--plot PATH] [--dir DIR]

The requests keep a steady schedule: request i is made at t0 + i x
interval, whatever the earlier ones took. vmjobs' time-to-Up ends at the
VM's `Up` notification (api.subscribe, the in-process event feed; its
time is when the registry published it), the plain threads' when
createWithFlags returned and libvirt says the domain runs. The guests are
real_storm.py's (TCG, 32 MiB, no disk) on one private libvirtd; after an
untimed warm-up, each round runs the three configurations, in an order
that rotates from round to round, each from an empty host and destroyed
after. `--plot` draws the three distributions (CDF) when matplotlib is
installed."""

import argparse
import os
import tempfile
import threading
import time
import uuid

import libvirt

from common import percentile, pyplot, save_plot, table, write_json
from real_storm import MEM_MIB, WARM_UP, destroy_all, params, storm_raw
from vmjobs.api import API
from vmjobs.config import Config
from vmjobs.notifications import VM_STATUS
from vmjobs.tools.loadtest import pause_until
from vmjobs.tools.sandbox import Sandbox

VMJOBS = "vmjobs (default workers)"
PLAIN = "plain threads, one per request"
VDSM = "VDSM model (thread per VM, semaphore 4)"
WAIT = 3600


def paced_vmjobs(sandbox, n, interval):
    """VM.create for n VMs, request i at t0 + i x interval; each VM's
    seconds from its request to its `Up` notification."""
    with API(Config(uri=sandbox.uri, queue_size=n,
                    domain_type="qemu")) as api:
        assert api.wait_recovered(WAIT)
        ups = {}   # vmId: when its Up was published (time.monotonic())
        subscription = api.subscribe()

        def follow():
            for notification in subscription:
                if not notification.method.startswith(VM_STATUS):
                    continue
                body = next(v for k, v in notification.params.items()
                            if k != "notify_time")
                if body["status"] == "Up":
                    ups.setdefault(body["vmId"], notification.time)

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        requested = {}
        t0 = time.monotonic()
        for i in range(n):
            vm_id = str(uuid.uuid4())
            pause_until(t0 + i * interval)
            requested[vm_id] = time.monotonic()
            api.VM.create(vm_id, params(vm_id))
        # A VM's Up is published before its job ends: once the pool is
        # idle, every Up there will be is in the feed.
        assert api.pool.wait_idle(WAIT)
        subscription.close()
        follower.join()
        failed = [i for i in api.Host.getJobs().values()
                  if i["status"] != "done"]
        assert not failed, failed[:1]
        return [ups[vm_id] - at for vm_id, at in requested.items()]


def run(name, sandbox, n, interval):
    if name == VMJOBS:
        ups = paced_vmjobs(sandbox, n, interval)
    elif name == PLAIN:
        ups = storm_raw(sandbox, n, n, interval=interval)[1]
    else:
        ups = storm_raw(sandbox, n, n, threading.Semaphore(4),
                        interval=interval)[1]
    assert len(ups) == n, f"{name}: {len(ups)} of {n} VMs Up"
    return ups


def summary(ups):
    return {"p50_s": percentile(ups, 50), "p95_s": percentile(ups, 95),
            "p99_s": percentile(ups, 99), "max_s": max(ups)}


def plot(samples, n, interval, path):
    plt = pyplot()
    if plt is None:
        return
    figure, ax = plt.subplots(figsize=(7, 4))
    for name, ups in samples.items():
        ordered = sorted(ups)
        ax.plot(ordered, [(i + 1) / len(ordered) * 100
                          for i in range(len(ordered))],
                label=name, drawstyle="steps-post")
    ax.set_xlabel("request to Up (s)")
    ax.set_ylabel("VMs Up (%)")
    ax.set_title(f"KubeVirt's protocol: {n} VMs requested "
                 f"{interval * 1000:.0f} ms apart (TCG, {MEM_MIB} MiB, "
                 f"{os.cpu_count()} cores)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save_plot(plt, figure, path)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.1,
                        help="seconds between requests")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--plot", metavar="PATH", default=None)
    parser.add_argument("--dir", default=None,
                        help="sandbox directory (default: a temp dir)")
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    n, names = args.vms, [VMJOBS, PLAIN, VDSM]
    samples = {name: [] for name in names}   # every round's, pooled
    data = {"args": vars(args), "rounds": [], "load": {}}
    directory = args.dir or tempfile.mkdtemp(prefix="vmjobs-bench-")
    sandbox = Sandbox(directory).start()
    try:
        # Untimed: the first guests on a fresh daemon load QEMU and its
        # firmware from disk.
        storm_raw(sandbox, WARM_UP, WARM_UP)
        destroy_all(sandbox)
        for r in range(args.rounds):
            order = names[r % 3:] + names[:r % 3]
            this_round = {}
            for name in order:
                load = os.getloadavg()[0]
                ups = run(name, sandbox, n, args.interval)
                destroy_all(sandbox)
                samples[name] += ups
                this_round[name] = dict(summary(ups), load_1min=load)
                print(f"round {r + 1}, {name}: p50 "
                      f"{this_round[name]['p50_s']:.1f} s, p95 "
                      f"{this_round[name]['p95_s']:.1f} s (load {load:.1f})",
                      flush=True)
            data["rounds"].append({"order": order, "configs": this_round})
    finally:
        sandbox.stop()
    figures = {name: summary(ups) for name, ups in samples.items()}
    data.update(configs=figures, samples_s=samples, cores=os.cpu_count(),
                load_after=os.getloadavg())
    table(f"KubeVirt's protocol: {n} VMs requested "
          f"{args.interval * 1000:.0f} ms apart, request to Up "
          f"({args.rounds} rounds pooled; TCG, {MEM_MIB} MiB, no disk; "
          f"{os.cpu_count()} cores)",
          ["configuration", "p50 s", "p95 s", "p99 s", "max s"],
          [(name, f["p50_s"], f["p95_s"], f["p99_s"], f["max_s"])
           for name, f in figures.items()])
    ratios = {}
    for base in (PLAIN, VDSM):
        ratios[base] = {k: figures[VMJOBS][k] / figures[base][k]
                        for k in ("p50_s", "p95_s", "p99_s", "max_s")}
        print(f"vmjobs / {base}: " + ", ".join(
            f"{k[:-2]} {v:.2f}" for k, v in ratios[base].items()))
    data["ratios"] = ratios
    print("load average after: " + " ".join(
        f"{v:.1f}" for v in data["load_after"]))
    write_json("kubevirt_protocol", data)
    if args.plot:
        plot(samples, n, args.interval, args.plot)


if __name__ == "__main__":
    main()
