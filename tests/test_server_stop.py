"""SIGTERM or SIGINT during a 200-VM storm: the server stops accepting,
every job reaches a safe end (aborted and rolled back, or drained), public
VMs keep running, nothing stays staged, and the process exits 0. A stop
takes no job from a connection kept open since before it, and a drain
that cannot end within its bound aborts what is left."""

import re
import signal
import threading

import pytest

from conftest import WAIT, new_id, vm_params
from serve import ServeProcess, storm
from test_migration_destination import incoming
from vmjobs.client import Client, RemoteError
from vmjobs.sdnotify import messages, notify_socket

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


def test_a_drain_aborts_what_outlives_it_and_takes_no_new_job(tmp_path):
    """Draining, an incoming migration whose guest never comes would wait
    for its arrival for hours: it is aborted (and its rollback run) once
    the drain reaches its bound, stop_timeout less its last half at most,
    and the service exits 0. Meanwhile a VM.create on a connection kept
    open since before the stop is refused (1100) and stages nothing."""
    notify_path = str(tmp_path / "notify")
    notify = notify_socket(notify_path, WAIT)
    server = ServeProcess("--listen", "127.0.0.1:0", "--insecure",
                          "--stop-mode", "drain",
                          config="[service]\nstop_timeout = 4\n",
                          tmp_path=tmp_path,
                          env={"NOTIFY_SOCKET": notify_path})
    try:
        assert messages(notify)["READY"] == "1"
        migrating, late = new_id(), new_id()
        with Client(server.address) as kept:
            job_id = kept.call("VM.migrationCreate", {
                "vmID": migrating,
                "params": incoming(migrating)})["params"]["jobId"]
            server.process.send_signal(signal.SIGTERM)
            assert messages(notify)["STOPPING"] == "1"
            with pytest.raises(RemoteError) as refused:
                kept.call("VM.create", {"vmID": late,
                                        "vmParams": vm_params(late)})
            assert refused.value.code == 1100
            assert "stopping" in refused.value.message
            assert kept.call("Host.getStats")["staged"] == 1   # migrating
            assert kept.call("Host.getJobs", {"job_ids": [job_id]})[
                job_id]["status"] == "running"
        out, err = server.process.communicate(timeout=60)
        assert server.process.returncode == 0, err
        assert "stopped; public=0 staged=0" in out
    finally:
        server.kill()
        notify.close()
    log = (tmp_path / "serve.log").read_text()
    assert "after 2 s of draining: aborting them" in log
    assert f"job {job_id} aborted: aborted in step 'wait-arrival'" in log
    assert "Traceback" not in log
