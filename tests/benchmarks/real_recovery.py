"""Benchmark 18, recovery with real VMs: the time from an API's start to
the end of `recovering` with N vmjobs guests running on a private
libvirtd, with the default config's workers and with 1 worker (VDSM's
model: it recovers one VM at a time), side by side in the same run.

    python tests/benchmarks/real_recovery.py [--sizes 25,100,300]
        [--rounds 3] [--plot PATH] [--dir DIR]

The guests are real_storm.py's (TCG, 32 MiB, no disk), started through
vmjobs by a first API that then stops, leaving them running (as
full_host.py does on the test driver); the host grows from one size to
the next. At each size each worker count recovers them `--rounds`
times, which of the two goes first alternating; the figure is the
median. Everything is destroyed at the end, and no QEMU process of the
daemon may be left. `--plot` draws recovery time against domain count
when matplotlib is installed."""

import argparse
import os
import tempfile
import time
import uuid

import libvirt

from common import percentile, pyplot, save_plot, table, write_json
from real_storm import MEM_MIB, WARM_UP, destroy_all, params, storm_raw
from vmjobs.api import API
from vmjobs.config import Config, default_workers
from vmjobs.tools.procfs import alive
from vmjobs.tools.sandbox import Sandbox

WAIT = 3600


def add_guests(sandbox, count):
    """Start `count` more vmjobs guests, then stop that API: they stay."""
    with API(Config(uri=sandbox.uri, queue_size=max(count, 1),
                    domain_type="qemu")) as api:
        assert api.wait_recovered(WAIT)
        for _ in range(count):
            vm_id = str(uuid.uuid4())
            api.VM.create(vm_id, params(vm_id))
        assert api.pool.wait_idle(WAIT)
        failed = [i for i in api.Host.getJobs().values()
                  if i["status"] != "done"]
        assert not failed, failed[:1]


def recovery_seconds(sandbox, workers, expected):
    """Seconds from a new API's start to the end of `recovering`."""
    t0 = time.perf_counter()
    with API(Config(uri=sandbox.uri, workers=workers,
                    queue_size=max(expected, 1), domain_type="qemu")) as api:
        assert api.wait_recovered(WAIT)
        seconds = time.perf_counter() - t0
        assert api.Host.getStats()["public"] == expected
    return seconds


def plot(sizes, medians, path):
    plt = pyplot()
    if plt is None:
        return
    figure, ax = plt.subplots(figsize=(7, 4))
    for name, by_size in medians.items():
        ax.plot(sizes, [by_size[n] for n in sizes], marker="o", label=name)
    ax.set_xlabel("vmjobs domains running (TCG, 32 MiB)")
    ax.set_ylabel("start to end of recovering (s)")
    ax.set_title(f"Recovery with real VMs, private libvirtd, "
                 f"{os.cpu_count()} cores", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_plot(plt, figure, path)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="25,100,300")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--plot", metavar="PATH", default=None)
    parser.add_argument("--dir", default=None,
                        help="sandbox directory (default: a temp dir)")
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    default = default_workers()
    names = {f"vmjobs, {default} workers (default)": default,
             "1 worker (VDSM's one at a time)": 1}
    medians = {name: {} for name in names}
    data = {"args": vars(args), "sizes": {}}
    directory = args.dir or tempfile.mkdtemp(prefix="vmjobs-bench-")
    sandbox = Sandbox(directory).start()
    qemu = []
    try:
        # Untimed: the first guests on a fresh daemon load QEMU and its
        # firmware from disk.
        storm_raw(sandbox, WARM_UP, WARM_UP)
        destroy_all(sandbox)
        running = 0
        for n in sizes:
            t0 = time.perf_counter()
            add_guests(sandbox, n - running)
            running = n
            qemu = sandbox.qemu_pids()
            assert len(qemu) == n, (len(qemu), n)
            print(f"{n} guests running ({time.perf_counter() - t0:.0f} s "
                  f"to start the new ones)", flush=True)
            times = {name: [] for name in names}
            load = os.getloadavg()[0]
            for r in range(args.rounds):
                order = list(names) if r % 2 == 0 else list(names)[::-1]
                for name in order:
                    times[name].append(
                        recovery_seconds(sandbox, names[name], n))
            for name in names:
                medians[name][n] = percentile(times[name], 50)
            data["sizes"][n] = {"seconds": times, "load_1min": load}
            print(f"{n}: " + ", ".join(
                f"{name} {medians[name][n]:.2f} s" for name in names)
                + f" (load {load:.1f})", flush=True)
    finally:
        sandbox.stop()
        left = [pid for pid in qemu if alive(pid)]
        print(f"QEMU processes left: {len(left)}")
    default_name, one_name = names
    rows = [(str(n), medians[default_name][n], medians[one_name][n],
             f"{medians[one_name][n] / medians[default_name][n]:.2f}",
             f"{data['sizes'][n]['load_1min']:.1f}") for n in sizes]
    table(f"recovery with real VMs: start to the end of `recovering` "
          f"(median of {args.rounds}; TCG, {MEM_MIB} MiB; "
          f"{os.cpu_count()} cores)",
          ["vmjobs domains", f"{default} workers s", "1 worker s",
           "1 worker / default", "load"], rows)
    data.update(medians_s=medians, qemu_left=len(left),
                load_after=os.getloadavg())
    write_json("real_recovery", data)
    if args.plot:
        plot(sizes, medians, args.plot)


if __name__ == "__main__":
    main()
