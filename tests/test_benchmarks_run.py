"""The benchmarks on libvirt's test driver still run, at tiny sizes: they
are not part of the suite's figures (they print ratios, docs/benchmarks.md),
but one broken by a change (a default that moved, a queue too small for
its own warm-up) went unnoticed until someone needed its figures. Each
must exit 0 and, where it writes one, leave its JSON under
VMJOBS_BENCH_DIR. The real-daemon benchmarks take minutes: not here."""

import json
import os
import subprocess
import sys

import pytest

from serve import ROOT

BENCHMARKS = os.path.join(ROOT, "tests", "benchmarks")
# What the benchmarks import, not benchmarks.
LIBRARIES = {"common.py", "denylist_policy.py"}

# (script, tiny arguments, the JSON it writes or None)
RUNS = [
    ("dispatch.py", ["--jobs", "2000", "--rounds", "2"], "dispatch"),
    ("framework.py", ["--vms", "50", "--rounds", "1"], "framework"),
    ("create_path.py", [], None),
    ("events.py", ["--vms", "50", "--rounds", "1", "--small", "10",
                   "--subscribers", "2"], "events"),
    ("full_host.py", ["--sizes", "10,20", "--external", "2"], "full_host"),
    ("arrival.py", ["--creations", "50", "--migrations", "5", "--rounds",
                    "1", "--incoming", "3"], "arrival"),
    ("scale.py", ["--vms", "50"], "scale"),
    ("memory.py", ["--vms", "50"], "memory"),
    ("policy_storm.py", ["--vms", "50", "--rounds", "1"], "policy_storm"),
    ("security.py", ["--rounds", "1"], "security"),
    ("keepalive.py", ["--calls", "20"], "keepalive"),
]


def test_every_test_driver_benchmark_is_listed():
    """A benchmark added later is either run here or named real-daemon."""
    real = {"adaptive.py", "density.py", "kubevirt_protocol.py",
            "real_arrival.py", "real_recovery.py", "real_storm.py",
            "stock_storm.py", "transient.py"}
    scripts = {name for name in os.listdir(BENCHMARKS)
               if name.endswith(".py") and name not in LIBRARIES}
    assert scripts - real == {script for script, _, _ in RUNS}


@pytest.mark.parametrize("script, args, result", RUNS,
                         ids=[run[0] for run in RUNS])
def test_benchmark_runs(script, args, result, tmp_path):
    done = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, script), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, VMJOBS_BENCH_DIR=str(tmp_path)))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stdout.strip()
    if result is not None:
        with open(tmp_path / f"{result}.json") as f:
            assert json.load(f)
