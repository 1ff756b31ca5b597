"""SIGTERM or SIGINT during a 200-VM storm: the server stops accepting,
every job reaches a safe end (aborted and rolled back, or drained), public
VMs keep running, nothing stays staged, and the process exits 0."""

import re
import signal
import threading

import pytest

from serve import ServeProcess, storm

VMS = 200


@pytest.mark.parametrize("mode,signum", [
    ("abort", signal.SIGTERM), ("drain", signal.SIGTERM),
    ("abort", signal.SIGINT)])
def test_stop_during_storm(tmp_path, mode, signum):
    server = ServeProcess("--listen", "127.0.0.1:0", "--insecure",
                          "--workers", "2",
                          "--stop-mode", mode, tmp_path=tmp_path)
    accepted, halfway = [], threading.Event()
    client = threading.Thread(target=storm, args=(
        server, VMS, accepted, halfway, VMS // 2))
    client.start()
    try:
        assert halfway.wait(60)
        status, out, err = server.stop(signum)
    finally:
        server.kill()
        client.join(60)
    assert status == 0, err
    summary = re.search(r"stopped; public=(\d+) staged=(\d+) "
                        r"vmjobs_domains_running=(\d+)", out)
    assert summary, out
    public, staged, running = map(int, summary.groups())
    assert staged == 0
    assert running == public          # no orphan, no VM without domain
    assert public <= len(accepted)
    if mode == "drain":
        assert public == len(accepted)   # every accepted job ran
    log = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in log
