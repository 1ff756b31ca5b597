"""Every descriptor a caller makes the service hold is within a configured
cap, and the caps fit the process's descriptor limit (vmjobs.descriptors,
docs/security.md, round 13): at the limit libvirt aborts the whole service
as it opens a connection (docs/chaos.md, "fd-limit", seed 3305), which an
outgoing migration does as it begins.

A hostile-caller audit, round 13, served `rpc.max_connections` 250 under a
limit of 200: one caller's 200 idle connections took every descriptor, and
the next caller was answered "out of file descriptors" (on a daemon, the
next migration would have aborted the service). Now such a service raises
its soft limit to what its caps may hold, or refuses to start when the
hard limit is below it, saying which caps; the controls: the defaults fit
the usual soft limit of 1024, and a service whose limit was raised holds,
under a flood far beyond its caps, fewer descriptors than its limit, its
new callers served.
"""

import http.client
import json
import os
import resource
import socket
import time

import pytest

from serve import ServeProcess
from vmjobs import descriptors
from vmjobs.config import Config

PING = json.dumps({"jsonrpc": "2.0", "id": 1,
                   "method": "Host.ping"}).encode()
CAPS = "[rpc]\nmax_connections = 250\n"
WAIT = 60
# Seconds a new caller may wait for its answer beside the flood: well
# below rpc.request_timeout (30 s), which ends the flood's connections.
BOUND = 10.0
# The tests' own hard limit, which a child may keep (raising it needs
# CAP_SYS_RESOURCE).
HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def serve(tmp_path, nofile, config=CAPS):
    return ServeProcess("--listen", "127.0.0.1:0", "--insecure",
                        "--state-dir", str(tmp_path), config=config,
                        tmp_path=tmp_path, nofile=nofile)


def limit_of(pid):
    for line in open(f"/proc/{pid}/limits"):
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no descriptor limit")


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def ping(server):
    host, port = server.address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=WAIT)
    try:
        conn.request("POST", "/", PING, {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_the_default_caps_fit_the_usual_soft_limit():
    # 1024: the soft limit of a service run by hand on most hosts.
    assert descriptors.budget(Config(workers=16)) < 1024


def test_caps_above_the_hard_limit_refuse_to_start(tmp_path):
    try:
        started = serve(tmp_path, (200, 200))
    except RuntimeError as err:
        message = str(err)
    else:
        started.kill()
        pytest.fail("served with caps above its descriptor limit")
    assert "file descriptors, above its limit of 200" in message
    assert "rpc.max_connections (250)" in message
    # The control: the same limit with caps that fit it.
    fits = "[rpc]\nmax_connections = 16\n[events]\nmax_subscribers = 4\n" \
        "[pool]\nworkers = 2\n"
    served = serve(tmp_path, (200, 200), config=fits)
    try:
        assert limit_of(served.process.pid) == 200
        assert ping(served)[0] == 200
    finally:
        status, _, err = served.stop()
    assert status == 0, err


def test_a_flood_beyond_the_caps_leaves_descriptors_free(tmp_path):
    """The soft limit of 200 is raised (the hard one, the tests' own, lets it) to what the
    caps may hold; 300 idle connections, more than the cap, then leave
    the service below it, and a new caller is served (at the cap the
    longest idle connection makes room). Before, at 200 descriptors the
    rest of the flood waited in the listener's backlog, each turned away
    in turn (503 "out of file descriptors", up to a second each), and the
    new caller behind them was answered only once the flood's connections
    reached their request deadline: 31 s."""
    served = serve(tmp_path, (200, HARD))
    pid = served.process.pid
    try:
        host, port = served.address.rsplit(":", 1)
        flood = [socket.create_connection((host, int(port)))
                 for _ in range(300)]
        try:
            deadline = time.monotonic() + WAIT
            # Every slot taken (the flood is accepted as the table holds
            # the cap, or the limit): another process's /proc, which
            # nothing notifies of.
            while open_fds(pid) < 200:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            started = time.monotonic()
            status, body = ping(served)
            assert status == 200, body
            assert time.monotonic() - started < BOUND
            limit = limit_of(pid)
            assert limit >= descriptors.budget(Config(max_connections=250))
            assert open_fds(pid) < limit
        finally:
            for conn in flood:
                conn.close()
    finally:
        status, _, err = served.stop()
    assert status == 0, err
