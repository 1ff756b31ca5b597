"""The load test plays the engine with events (tools/follow.py), in process
and against a server: each VM's time-to-Up ends at its Up event, the
total at the last VM's Up (not at the next poll), and the timeline is
built from the events."""

import io
import json

import pytest

from conftest import WAIT
from test_event_stream import serve  # noqa: F401 (a fixture)
from vmjobs.notifications import Notifications
from vmjobs.tools import follow, loadtest, report
from waits import subscribers


def check_figures(path, summary):
    saved = json.loads(path.read_text())
    records = saved["vms"]
    assert len(records) == 50 and summary["up"] == 50
    for r in records:
        # Staged from its event, Up from its event: before its job's end
        # (the conversion to wall time may differ by a few microseconds).
        assert r["enqueued"] - 0.002 <= r["staged"] <= r["up"]
        assert r["up"] <= r["ended"] + 0.001
    # The total ends at the last Up: from the first request (just before
    # the first job was created) to the last Up event, within the first
    # verb call's latency and the notify_time's millisecond.
    first = min(records, key=lambda r: r["enqueued"])
    span = max(r["up"] for r in records) - first["enqueued"]
    assert span - 0.002 <= summary["total_s"] <= \
        span + first["verb_latency"] + 0.002
    assert sorted(summary["time_to_up"]) == pytest.approx(
        sorted(r["up"] - r["enqueued"] for r in records))
    # The timeline ends with all 50 Up, at the last Up.
    points = report.timeline(records)
    assert points[-1][1:] == (0, 0, 50)


def test_in_process_figures_come_from_the_events(tmp_path):
    path = tmp_path / "run.json"
    summary = loadtest.run(vms=50, workers=4, out=io.StringIO(),
                           json_path=str(path))
    check_figures(path, summary)


def test_against_a_server_figures_come_from_its_events(serve,  # noqa: F811
                                                       tmp_path):
    api, server = serve()
    path = tmp_path / "run.json"
    summary = loadtest.run(vms=50, server=server.address,
                           out=io.StringIO(), json_path=str(path),
                           state_root=str(tmp_path))
    check_figures(path, summary)
    # It subscribed, and left (seen by the service within a second).
    subscribers(api, 0)


def test_a_cut_follower_resumes_and_resyncs(serve, tmp_path):  # noqa: F811
    """With a buffer of 5 events the load test's stream falls behind and
    is cut again and again during a storm; it resumes, is told to resync,
    and takes what it missed from Host.getJobs: every VM is still
    counted, Up, once."""
    api, server = serve(events_buffer=5, workers=4)
    path = tmp_path / "run.json"
    summary = loadtest.run(vms=50, server=server.address,
                           out=io.StringIO(), json_path=str(path),
                           state_root=str(tmp_path))
    records = json.loads(path.read_text())["vms"]
    assert summary["up"] == 50 and summary["failed"] == 0, \
        [(r["status"], r.get("error")) for r in records
         if r["status"] != "done"]
    assert sorted(r["vm_id"] for r in records) == sorted(
        {r["vm_id"] for r in records})
    assert all(r["status"] == "done" and r["up"] <= r["ended"] + 0.001
               for r in records)
    print("cut:", api.notifications.stats()["cut"])


@pytest.mark.filterwarnings(
    "ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_follower_whose_resubscription_fails_still_tells_its_end():
    """A stream cut off, then a resubscription that fails (the service
    stopped meanwhile): the follower's reader is told the end (None) and
    does not wait for ever. Before, the resubscription ran in the handler
    of the cut, so its error escaped the handler for other errors beside
    it (and, while the load test closed, a RemoteDisconnected killed the
    thread) and the end was never put."""
    feed = Notifications(buffer=1)
    cut = feed.subscribe(None)
    feed.vm_changed("a", "Up", False)
    feed.vm_changed("b", "Up", False)   # "a" leaves the buffer: cut off
    feed.close()                        # every subscribe now refuses
    subscriptions = iter([cut])
    follower = follow.Follower(
        lambda last_id: next(subscriptions, None) or feed.subscribe(last_id),
        lambda: None, precise=True)
    assert follower.queue.get(timeout=WAIT) is None
    follower.join(WAIT)
    assert not follower.is_alive()
