"""A service near its descriptor limit (systemd's LimitNOFILE reached by a
leak or a storm of connections) must refuse what needs a new libvirt
connection, not die: libvirt (9.0, with GLib) aborts the whole process
when it opens a connection with one descriptor free ("GLib-ERROR **:
Creating pipes for GWakeup: Too many open files", SIGTRAP; the fd-limit
chaos mix, round 12, seed 3305: a service died as a migration opened its
own connection). Each case runs in a child process of its own, on the
private real daemon, its soft limit lowered by the chaos run's own
helper (chaos_fdlimit.lower)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WAIT = 120

CHILD = """
import os, sys
from vmjobs.hypervisor import HypervisorError, connections
from vmjobs.tools import chaos_fdlimit

conns = connections.Connections(sys.argv[1], 2)
conns.reconnect_wait = 0.0   # a reconnect refused fails at once


def open_both(slack):
    said = []
    before = chaos_fdlimit.lower(os.getpid(), slack)
    try:
        # A migration's own connection.
        try:
            with conns.own() as conn:
                conn.getLibVersion()
            said.append("own opened")
        except HypervisorError as exc:
            said.append(f"own refused: {exc}")
        # A reconnect in place of a connection dropped as broken.
        conns.drop(conns.take())
        try:
            conns.give_back(conns.take())
            said.append("reconnect opened")
        except HypervisorError as exc:
            said.append(f"reconnect refused: {exc}")
    finally:
        chaos_fdlimit.give_back(os.getpid(), before)
    return said


said = open_both(40) + open_both(0) + open_both(40)
print("\\n".join(said))
"""


def test_a_libvirt_connection_is_refused_not_aborted_at_the_limit(daemon):
    """With a few descriptors free (the limit lowered so that 0 more fit
    but the one listing /proc/self/fd had: one free, as in seed 3305) a
    new connection, a migration's own or a reconnect, is refused with a
    HypervisorError that says why; the process lives on, and with 40 free
    (before and after) both open (the control)."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, daemon.uri], capture_output=True,
        text=True, timeout=WAIT, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT))
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    said = done.stdout.splitlines()
    assert said[:2] == ["own opened", "reconnect opened"], said
    assert said[2].startswith("own refused: open: "), said
    assert said[3].startswith("reconnect refused: reconnect: "), said
    assert "descriptors" in said[2] and "descriptors" in said[3], said
    assert said[4:] == ["own opened", "reconnect opened"], said
