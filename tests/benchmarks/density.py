"""Benchmark 5, density: 300 real QEMU VMs (TCG, 32 MiB, no disk) started
by the load test on one machine, all Up, then destroyed, with no failure;
the peak memory the host used on the way.

    python tests/benchmarks/density.py [--vms 300] [--workers 4]

Memory is sampled from /proc/meminfo (MemTotal - MemAvailable) every
0.2 s by a thread, against the same reading before the storm."""

import argparse
import io
import tempfile
import threading

from common import table, write_json
from vmjobs.tools import loadtest
from vmjobs.tools.sandbox import Sandbox


def used_mib():
    fields = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, value = line.split(":", 1)
            fields[key] = int(value.split()[0])
    return (fields["MemTotal"] - fields["MemAvailable"]) / 1024


class PeakMemory(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.peak = used_mib()
        self._done = threading.Event()
        self.start()

    def run(self):
        while not self._done.wait(0.2):
            self.peak = max(self.peak, used_mib())

    def stop(self):
        self._done.set()
        self.join()
        return self.peak


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=300)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--mem", type=int, default=32)
    args = parser.parse_args()
    sandbox = Sandbox(tempfile.mkdtemp(prefix="vmjobs-density-")).start()
    try:
        before = used_mib()
        sampler = PeakMemory()
        out = io.StringIO()
        summary = loadtest.run(vms=args.vms, workers=args.workers,
                               uri=sandbox.uri, mem_mib=args.mem,
                               domain_type="qemu", out=out)
        peak = sampler.stop()
        print(out.getvalue())
        left = sandbox.qemu_pids()
    finally:
        sandbox.stop()
    rows = [("VMs Up", f"{summary['up']}/{args.vms}"),
            ("failures", summary["failed"]),
            ("total", f"{summary['total_s']:.1f} s"),
            ("host memory before", f"{before:.0f} MiB"),
            ("host memory at peak", f"{peak:.0f} MiB"),
            ("peak per VM", f"{(peak - before) / max(args.vms, 1):.1f} MiB"),
            ("QEMU processes left after destroy", len(left))]
    table(f"density: {args.vms} real VMs (TCG, {args.mem} MiB), "
          f"{args.workers} workers", ["what", "figure"], rows)
    write_json("density", {"args": vars(args), "up": summary["up"],
                           "failed": summary["failed"],
                           "total_s": summary["total_s"],
                           "used_before_mib": before, "peak_mib": peak,
                           "left_after_destroy": len(left)})


if __name__ == "__main__":
    main()
