"""The main job, `vmjobs loadtest`, run as a user would: it starts the VMs,
prints the summary, destroys what it made and exits 0."""

import io
import os
import re
import subprocess
import sys

import pytest

from vmjobs.tools import loadtest, mix, report


def test_loadtest_command(tmp_path):
    log = tmp_path / "loadtest.log"
    result = subprocess.run(
        [sys.executable, "-m", "vmjobs", "loadtest", "--vms", "300",
         "--workers", "3", "--queue-size", "50", "--log-file", str(log)],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Up           300/300, failures 0, retried: ResourceExhausted" \
        in out
    assert re.search(r"total +[\d.]+ s, [\d.]+ VMs/s", out)
    assert re.search(r"time-to-Up +p50 [\d.]+ ms +p95 [\d.]+ ms +p99", out)
    assert re.search(r"queue wait +p50 [\d.]+ ms +p99", out)
    assert "destroyed 300 VMs" in out
    assert log.stat().st_size > 0


def test_loadtest_retries_refusals_and_counts_them(tmp_path):
    figures = loadtest.run(vms=200, workers=1, queue_size=1,
                           out=io.StringIO())
    assert figures["up"] == 200 and figures["failed"] == 0
    assert figures["retried"]["ResourceExhausted"] > 0
    assert len(figures["time_to_up"]) == 200


@pytest.mark.parametrize("values,pct,expected", [
    ([], 50, None), ([5], 99, 5), ([1, 2, 3, 4], 50, 2),
    (list(range(1, 101)), 95, 95), (list(range(1, 101)), 99, 99)])
def test_percentile(values, pct, expected):
    assert report.percentile(values, pct) == expected


def test_loadtest_mixes_the_startup_modes():
    out = io.StringIO()
    figures = loadtest.run(vms=100, workers=4,
                           mix=mix.parse_mix(
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
        mix.parse_mix(text)


def test_split_gives_every_vm_a_mode():
    assert mix.split(10, {"create": 70, "restore": 20,
                               "migration": 10}) == {
        "create": 7, "restore": 2, "migration": 1}
    assert sum(mix.split(7, {"create": 1, "restore": 1}).values()) == 7


def test_json_report_and_plot(tmp_path):
    saved, png = tmp_path / "storm.json", tmp_path / "storm.png"
    summary = loadtest.run(vms=60, workers=2, json_path=str(saved),
                           plot_path=str(png), out=io.StringIO())
    records, again = report.load(str(saved))
    assert len(records) == 60
    assert {"vm_id", "mode", "job_id", "status", "enqueued", "started",
            "ended", "verb_latency"} <= set(records[0])
    assert again["time_to_up"] == summary["time_to_up"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = subprocess.run(
        [sys.executable, "-m", "vmjobs", "report", str(saved), "--plot",
         str(tmp_path / "again.png")], capture_output=True, text=True,
        timeout=120, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert result.returncode == 0, result.stderr
    assert "Up           60/60" in result.stdout
    assert (tmp_path / "again.png").stat().st_size > 0


def test_adaptive_storm_plots_its_admission_limit(tmp_path):
    png = tmp_path / "storm.png"
    summary = loadtest.run(vms=40, workers=3, adaptive=True,
                           plot_path=str(png), out=io.StringIO())
    assert summary["failed"] == 0
    limits = summary["admission_limits"]
    assert limits and all(1 <= limit <= 3 for _, limit in limits)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_timeline_counts():
    records = [
        {"enqueued": 10.0, "started": 11.0, "ended": 12.0, "status": "done"},
        {"enqueued": 10.5, "started": 11.5, "ended": 13.0,
         "status": "failed"},
        {"enqueued": 10.5, "started": None, "ended": 11.0,
         "status": "aborted"}]
    points = report.timeline(records)
    assert points[-1] == (3.0, 0, 0, 1)
    assert max(p[1] for p in points) == 3      # all three queued at 10.5
    assert max(p[2] for p in points) == 2


def test_rate_paces_the_requests(tmp_path):
    saved = tmp_path / "paced.json"
    loadtest.run(vms=20, workers=2, rate=200.0, json_path=str(saved),
                 out=io.StringIO())
    records, _ = report.load(str(saved))
    enqueued = sorted(r["enqueued"] for r in records)
    # 20 requests at 200/s: the last one at least 19/200 s after the first.
    assert enqueued[-1] - enqueued[0] >= 19 / 200 - 0.005


def test_loadtest_against_a_server(tmp_path):
    from serve import ServeProcess
    server = ServeProcess("--listen", "127.0.0.1:0", "--insecure",
                          "--workers", "3", "--state-dir", str(tmp_path),
                          tmp_path=tmp_path)
    try:
        out = io.StringIO()
        summary = loadtest.run(vms=80, server=server.address, out=out,
                               mix=mix.parse_mix("create=3,restore=1"),
                               state_root=str(tmp_path))
        assert summary["up"] == 80 and summary["failed"] == 0
        assert "3 workers, queue 1000, served at" in out.getvalue()
        with pytest.raises(ValueError, match="--uri"):
            loadtest.run(vms=5, server=server.address, out=out,
                         mix=mix.parse_mix("migration=1"))
    finally:
        status, stopped, err = server.stop()
    assert status == 0, err
    assert "public=0 staged=0 vmjobs_domains_running=0" in stopped


def storm_records(modes, per_mode=6):
    """A made-up storm's records: `per_mode` VMs of each mode, Up at
    different times, one failed."""
    records = []
    for m, mode in enumerate(modes):
        for i in range(per_mode):
            records.append({"mode": mode, "enqueued": 100.0 + 0.01 * i,
                            "started": 100.5 + i, "ended": 101.0 + i + m,
                            "status": "done"})
    records[-1]["status"] = "failed"
    return records


def test_plot_legend_below_the_storm_and_integer_counts():
    import matplotlib.pyplot as plt
    figure = report.draw(storm_records(["create"]))
    try:
        storm, spread = figure.axes   # no admission-limit axis
        legend = storm.get_legend()
        # Outside the axes (below them), so it covers no curve.
        anchor = legend.get_bbox_to_anchor().transformed(
            storm.transAxes.inverted())
        assert anchor.y1 <= 0
        assert [t.get_text() for t in legend.get_texts()] == [
            "staged (queued)", "running", "Up"]
        figure.canvas.draw()
        for axis in (storm, spread):
            ticks = [t for t in axis.get_yticks()
                     if axis.get_ylim()[0] <= t <= axis.get_ylim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks)
        assert spread.get_legend() is None
    finally:
        plt.close(figure)


def test_plot_draws_the_admission_limit_only_when_it_moved():
    import matplotlib.pyplot as plt
    records = storm_records(["create"])
    fixed = report.draw(records, [(100.0, 4)])
    moved = report.draw(records, [(100.0, 1), (101.0, 2), (102.0, 4)])
    try:
        assert len(fixed.axes) == 2
        assert len(moved.axes) == 3
        assert moved.axes[2].get_ylabel() == "admission limit"
        labels = [t.get_text()
                  for t in moved.axes[0].get_legend().get_texts()]
        assert labels[-1] == "admission limit"
    finally:
        plt.close(fixed)
        plt.close(moved)


def test_plot_splits_a_mixed_storm_by_mode():
    import matplotlib.pyplot as plt
    single = report.draw(storm_records(["create"]))
    mixed = report.draw(storm_records(["create", "restore", "migration"]))
    try:
        storm, spread = mixed.axes
        assert [t.get_text() for t in spread.get_legend().get_texts()] == [
            "create", "migration", "restore"]
        labels = [t.get_text() for t in storm.get_legend().get_texts()]
        assert {"Up: create", "Up: migration", "Up: restore"} <= set(labels)
        assert spread.get_title() == "time to Up by mode"
        assert not any(label.startswith("Up: ") for label in
                       [t.get_text() for t in
                        single.axes[0].get_legend().get_texts()])
    finally:
        plt.close(single)
        plt.close(mixed)
