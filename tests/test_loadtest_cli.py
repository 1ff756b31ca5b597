"""The main job, `vmjobs loadtest`, run as a user would: it starts the VMs,
prints the summary, destroys what it made and exits 0."""

import io
import os
import re
import subprocess
import sys

import pytest

from vmjobs import loadtest


def test_loadtest_command(tmp_path):
    log = tmp_path / "loadtest.log"
    result = subprocess.run(
        [sys.executable, "-m", "vmjobs", "loadtest", "--vms", "300",
         "--workers", "3", "--queue-size", "50", "--log-file", str(log)],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Up           300/300, failures 0" in out
    assert re.search(r"total +[\d.]+ s, [\d.]+ VMs/s", out)
    assert re.search(r"time-to-Up +p50 [\d.]+ ms +p95 [\d.]+ ms +p99", out)
    assert re.search(r"queue wait +p50 [\d.]+ ms +p99", out)
    assert "destroyed 300 VMs" in out
    assert log.stat().st_size > 0


def test_loadtest_retries_refusals_and_counts_them(tmp_path):
    figures = loadtest.run(vms=200, workers=1, queue_size=1,
                           out=io.StringIO())
    assert figures["up"] == 200 and figures["failed"] == 0
    assert figures["refused_retried"] > 0
    assert len(figures["time_to_up"]) == 200


@pytest.mark.parametrize("values,pct,expected", [
    ([], 50, None), ([5], 99, 5), ([1, 2, 3, 4], 50, 2),
    (list(range(1, 101)), 95, 95), (list(range(1, 101)), 99, 99)])
def test_percentile(values, pct, expected):
    assert loadtest.percentile(values, pct) == expected


def test_loadtest_mixes_the_startup_modes():
    out = io.StringIO()
    figures = loadtest.run(vms=100, workers=4,
                           mix=loadtest.parse_mix(
                               "create=50,restore=30,migration=20"),
                           out=out)
    assert figures["up"] == 100 and figures["failed"] == 0
    assert {mode: len(values) for mode, values in
            figures["time_to_up_by_mode"].items()} == {
        "create": 50, "restore": 30, "migration": 20}
    assert "restore       30 Up" in out.getvalue()
    assert "destroyed 100 VMs" in out.getvalue()


@pytest.mark.parametrize("text,error", [
    ("create=1,reboot=2", "unknown mode"), ("create=x", "integer"),
    ("create=0", "no weight"), ("create=-1", ">= 0")])
def test_bad_mix_is_refused(text, error):
    with pytest.raises(ValueError, match=error):
        loadtest.parse_mix(text)


def test_split_gives_every_vm_a_mode():
    assert loadtest.split(10, {"create": 70, "restore": 20,
                               "migration": 10}) == {
        "create": 7, "restore": 2, "migration": 1}
    assert sum(loadtest.split(7, {"create": 1, "restore": 1}).values()) == 7
