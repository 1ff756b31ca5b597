"""Benchmark 6, adaptive admission: storms of tiny real VMs on a private
libvirtd with fixed pools and with the adaptive limit, side by side, in
three cases.

    python tests/benchmarks/adaptive.py [--vms 100] [--cases ceiling,
        neighbour,storage] [--rounds 1] [--plot DIR]

- ceiling: `--vms` VMs with workers = 4, 8, 16 and 32, adaptive off and
  on (in alternating order), `--rounds` times (each configuration's
  median run is its figure);
- neighbour: twice `--vms` VMs; when half are Up a CPU hog (one busy
  process per core) starts, and it stops `--hog-seconds` later. Adaptive
  (workers 16) against fixed 4 and fixed 8 under the same hog;
- storage: `--vms` VMs, each with a disk of its own on a throttled block
  device: a loop device (ext4) whose reads and writes a cgroup v1 blkio
  throttle caps at `--iops`, with QEMU's cache off (O_DIRECT) so every
  read reaches it. Adaptive (workers 16) against fixed 4, 8 and 16.
  (device-mapper's `delay` target is not available: this kernel has no
  device-mapper.)

Figures: total time per configuration and its ratio to the best fixed
one of the same case. `--plot DIR` draws, for each case, the admission
limit over time against the rate of completed starts."""

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import libvirt

from common import daemon_pid, pyplot, save_plot, table, write_json
from real_storm import MEM_MIB, WARM_UP, destroy_all, storm_raw
from vmjobs import domxml
from vmjobs.api import API
from vmjobs.config import Config
from vmjobs.params import parse_create
from vmjobs.tools.sandbox import Sandbox

PRIVATE_MOUNTS = "VMJOBS_BENCH_PRIVATE_MOUNTS"
RATE_WINDOW = 3.0   # seconds: completed starts per second over this


def params(vm_id, xml=None):
    p = {"vmId": vm_id, "vmName": f"adaptive-{vm_id}", "memSize": MEM_MIB}
    if xml is not None:
        p["xml"] = xml
    return p


def storm(sandbox, n, workers, adaptive, disk_dir=None, during=None):
    """One storm through the verbs. Returns its figures: total seconds,
    the limit over time and the ends of the starts (both from the storm's
    start), and what `during(api, started)` returned."""
    config = Config(uri=sandbox.uri, workers=workers, queue_size=n,
                    domain_type="qemu", adaptive=adaptive)
    if disk_dir is not None:
        config.image_dirs = [disk_dir]   # where the guests' disks may be
    with API(config) as api:
        requests = []
        for _ in range(n):
            vm_id = str(uuid.uuid4())
            xml = None if disk_dir is None else \
                with_disk(api.hv, vm_id, disk_dir)
            requests.append((vm_id, params(vm_id, xml)))
        limits, stop = [], threading.Event()
        started = time.time()

        def watch_limit():
            while not stop.is_set():
                limit = api.pool.stats()["admission_limit"]
                if not limits or limits[-1][1] != limit:
                    limits.append((time.time() - started, limit))
                stop.wait(0.1)

        watcher = threading.Thread(target=watch_limit, daemon=True)
        watcher.start()
        for vm_id, p in requests:
            api.VM.create(vm_id, p)
        extra = during(api, started) if during else None
        assert api.pool.wait_idle(3600)
        total = time.time() - started
        stop.set()
        watcher.join()
        infos = api.Host.getJobs().values()
        failed = [i for i in infos if i["status"] != "done"]
        assert not failed, failed[:1]
        ends = sorted(i["ended"] - started for i in infos)
    limits.append((total, limits[-1][1]))
    return {"total_s": total, "limits": limits, "ends": ends,
            "extra": extra}


def rate_curve(ends, step=0.5):
    """[(t, completed starts per second over the RATE_WINDOW before t)]."""
    if not ends:
        return []
    points, t, i, j = [], 0.0, 0, 0
    while t <= ends[-1] + step:
        while j < len(ends) and ends[j] <= t:
            j += 1
        while i < j and ends[i] <= t - RATE_WINDOW:
            i += 1
        points.append((t, (j - i) / RATE_WINDOW))
        t += step
    return points


# -- the neighbour ---------------------------------------------------------

def neighbour(half, seconds):
    """A `during` hook: once `half` starts are done, one busy process per
    core for `seconds` (or until the storm ends). Returns (start, end) of
    the hog, from the storm's start."""
    def during(api, started):
        api.pool.wait_stats(lambda stats: stats["done"] >= half)
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(os.cpu_count())]
        hog_start = time.time() - started
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline and \
                    not api.pool.wait_idle(0.1):
                pass
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
        return hog_start, time.time() - started
    return during


# -- slow storage ----------------------------------------------------------

class ThrottledDisk:
    """A loop device with ext4, mounted at `dir`, whose I/O a cgroup v1
    blkio throttle caps at `iops` for every process in the cgroup (the
    daemon, and the QEMU processes it forks once it is in it)."""

    def __init__(self, base, iops, size_mib=2048):
        self.dir = os.path.join(base, "disks")
        self.image = os.path.join(base, "disks.img")
        self.iops = iops
        self.cgroup = f"/sys/fs/cgroup/blkio/vmjobs-bench-{os.getpid()}"
        os.makedirs(self.dir)
        with open(self.image, "wb") as f:
            f.truncate(size_mib << 20)
        self.loop = _run("losetup", "--find", "--show", self.image).strip()
        try:
            _run("mkfs.ext4", "-q", self.loop)
            _run("mount", self.loop, self.dir)
        except BaseException:
            _run("losetup", "-d", self.loop)
            raise
        st = os.stat(self.loop)
        self.device = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"

    def throttle(self, pid):
        """Cap the I/O of `pid` and of what it forks from now on."""
        os.makedirs(self.cgroup, exist_ok=True)
        for name in ("read_iops_device", "write_iops_device"):
            _write(f"{self.cgroup}/blkio.throttle.{name}",
                   f"{self.device} {self.iops}")
        _write(f"{self.cgroup}/cgroup.procs", str(pid))

    def serviced(self):
        """I/O requests the cgroup made on the device so far."""
        with open(f"{self.cgroup}/blkio.throttle.io_serviced") as f:
            for line in f:
                fields = line.split()
                if fields[0] == self.device and fields[1] == "Total":
                    return int(fields[2])
        return 0

    def close(self, pid):
        if os.path.isdir(self.cgroup):
            try:
                _write("/sys/fs/cgroup/blkio/cgroup.procs", str(pid))
            except OSError:
                pass   # the daemon is gone
            os.rmdir(self.cgroup)
        _run("umount", self.dir)
        _run("losetup", "-d", self.loop)
        os.unlink(self.image)


def with_disk(hv, vm_id, disk_dir):
    """The minimal guest's XML with a 64 MiB raw disk of its own, read
    with the host's cache off (so every read reaches the device). Its
    first MiB is written: ext4 answers reads of a hole (or of fallocated
    space) with zeros without reading the device."""
    path = os.path.join(disk_dir, f"{vm_id}.raw")
    with open(path, "wb") as f:
        f.write(bytes(1 << 20))
        f.truncate(64 << 20)
    xml = domxml.compose(parse_create(vm_id, params(vm_id)), hv.guest)
    disk = (f"<disk type='file' device='disk'><driver name='qemu' "
            f"type='raw' cache='none'/><source file='{path}'/>"
            f"<target dev='vda' bus='virtio'/></disk>")
    return xml.replace("<devices>", "<devices>" + disk, 1)


def _run(*argv):
    return subprocess.run(argv, check=True, capture_output=True,
                          text=True).stdout


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _drop_caches():
    os.sync()
    _write("/proc/sys/vm/drop_caches", "3")


# -- the cases -------------------------------------------------------------

def name(workers, adaptive):
    return f"workers {workers}, " + ("adaptive" if adaptive else "fixed")


def run_case(sandbox, configs, run):
    results = {}
    for workers, adaptive in configs:
        label = name(workers, adaptive)
        results[label] = run(workers, adaptive)
        destroy_all(sandbox)
        print(f"  {label}: {results[label]['total_s']:.1f} s", flush=True)
    return results


def ceiling(sandbox, args):
    configs = []
    for i, workers in enumerate(args.sizes):
        pair = [(workers, False), (workers, True)]
        configs += pair if i % 2 == 0 else pair[::-1]
    rounds = []
    for round_ in range(args.rounds):
        if args.rounds > 1:
            print(f" round {round_ + 1}", flush=True)
        # Every other round backwards: no configuration always runs
        # first or always follows the same one.
        rounds.append(run_case(
            sandbox, configs if round_ % 2 == 0 else configs[::-1],
            lambda w, a: storm(sandbox, args.vms, w, a)))
    return median_runs(rounds)


def median_runs(rounds):
    """Per configuration, its median run (by total time) of the rounds,
    with every round's total beside it: one round's differences between
    configurations are the size of the noise on a real daemon."""
    merged = {}
    for label in rounds[0]:
        runs = sorted((r[label] for r in rounds), key=lambda r: r["total_s"])
        median = dict(runs[(len(runs) - 1) // 2])
        median["rounds_s"] = [r[label]["total_s"] for r in rounds]
        merged[label] = median
    return merged


def neighbour_case(sandbox, args):
    n = 2 * args.vms
    hook = neighbour(n // 2, args.hog_seconds)
    configs = [(4, False), (16, True), (8, False)]
    return run_case(sandbox, configs, lambda w, a: storm(
        sandbox, n, w, a, during=hook))


def storage_case(sandbox, args, disk):
    configs = [(4, False), (16, True), (8, False), (16, False)]

    def run(workers, adaptive):
        _drop_caches()
        before = disk.serviced()
        result = storm(sandbox, args.vms, workers, adaptive,
                       disk_dir=disk.dir)
        result["extra"] = {"io_per_vm": (disk.serviced() - before) /
                           args.vms}
        for entry in os.listdir(disk.dir):
            if entry.endswith(".raw"):
                os.unlink(os.path.join(disk.dir, entry))
        return result
    return run_case(sandbox, configs, run)


def summarize(case, results):
    best_fixed = min(r["total_s"] for label, r in results.items()
                     if label.endswith("fixed"))
    rows = []
    for label, r in results.items():
        r["to_best_fixed"] = r["total_s"] / best_fixed
        limits = [limit for _, limit in r["limits"]]
        rows.append((label, r["total_s"], r["to_best_fixed"],
                     f"{min(limits)}-{max(limits)}",
                     " ".join(f"{t:.1f}" for t in r.get("rounds_s", ()))))
    table(f"{case}: total time, and its ratio to the best fixed pool",
          ["configuration", "total s", "/ best fixed", "limit range",
           "each round"], rows)
    for label, r in results.items():
        extra = r.get("extra")
        if extra:
            print(f"  {label}: {extra}")


def plot(cases, directory):
    plt = pyplot()
    if plt is None:
        return
    os.makedirs(directory, exist_ok=True)
    for case, results in cases.items():
        figure, axes = plt.subplots(len(results), 1, sharex=True,
                                    figsize=(9, 2.2 * len(results)),
                                    squeeze=False)
        for ax, (label, r) in zip(axes[:, 0], results.items(), strict=True):
            curve = rate_curve(r["ends"])
            ax.plot([t for t, _ in curve], [v for _, v in curve],
                    color="tab:blue", label="completed starts/s")
            ax.set_ylabel("starts/s")
            limit_ax = ax.twinx()
            limit_ax.step([t for t, _ in r["limits"]],
                          [v for _, v in r["limits"]], where="post",
                          color="black", linestyle=":",
                          label="admission limit")
            limit_ax.set_ylabel("limit")
            limit_ax.set_ylim(0, max(v for _, v in r["limits"]) + 1)
            extra = r.get("extra")
            if case == "neighbour" and extra:
                ax.axvspan(extra[0], extra[1], color="tab:red", alpha=0.15,
                           label="CPU hog")
            ax.set_title(f"{label}: {r['total_s']:.1f} s", fontsize=9)
            ax.legend(loc="upper left", fontsize=7)
            limit_ax.legend(loc="upper right", fontsize=7)
        axes[-1, 0].set_xlabel("seconds since the storm's start")
        save_plot(plt, figure, os.path.join(directory, f"adaptive-{case}.png"),
                  dpi=90)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--cases", default="ceiling,neighbour,storage")
    parser.add_argument("--sizes", default=(4, 8, 16, 32),
                        type=lambda text: [int(w) for w in text.split(",")],
                        help="the ceiling case's pool sizes (4,8,16,32)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="the ceiling case this many times; its "
                        "figures are each configuration's median run")
    parser.add_argument("--hog-seconds", type=float, default=60.0)
    parser.add_argument("--iops", type=int, default=40)
    parser.add_argument("--plot", metavar="DIR", default=None)
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    wanted = args.cases.split(",")
    if "storage" in wanted and not os.environ.get(PRIVATE_MOUNTS):
        # Mount the disk in a mount namespace of our own: mounted in the
        # host's, it would be copied into every namespace made meanwhile
        # (other sandboxes') and its loop device held until they end.
        os.environ[PRIVATE_MOUNTS] = "1"
        os.execvp("unshare", ["unshare", "--mount", "--propagation",
                              "private", sys.executable, *sys.argv])
    base = tempfile.mkdtemp(prefix="vmjobs-bench-adaptive-")
    # The disk is mounted before the daemon starts: its mount namespace
    # is private, later mounts would not reach it.
    disk = ThrottledDisk(base, args.iops) if "storage" in wanted else None
    sandbox = Sandbox(os.path.join(base, "sandbox"))
    pid, cases = None, {}
    try:
        sandbox.start()
        pid = daemon_pid(sandbox)
        # Untimed: the first guests on a fresh daemon load QEMU and its
        # firmware from disk; whichever configuration came first paid it.
        storm_raw(sandbox, WARM_UP, WARM_UP)
        destroy_all(sandbox)
        if "ceiling" in wanted:
            print(f"ceiling: {args.vms} VMs", flush=True)
            cases["ceiling"] = ceiling(sandbox, args)
        if "neighbour" in wanted:
            print(f"neighbour: {2 * args.vms} VMs, hog of "
                  f"{args.hog_seconds:.0f} s at half", flush=True)
            cases["neighbour"] = neighbour_case(sandbox, args)
        if disk is not None:
            print(f"storage: {args.vms} VMs, a disk each, {args.iops} "
                  f"IOPS", flush=True)
            disk.throttle(pid)
            cases["storage"] = storage_case(sandbox, args, disk)
    finally:
        sandbox.stop()
        if disk is not None:
            disk.close(pid)
    for case, results in cases.items():
        summarize(case, results)
    write_json("adaptive", {"args": vars(args), "cases": cases})
    if args.plot:
        plot(cases, args.plot)


if __name__ == "__main__":
    main()
