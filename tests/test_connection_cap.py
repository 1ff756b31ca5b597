"""No caller locks the others out (API.md, Transport), with the DEFAULT
limits (64 connections, a 30 s request deadline): while 64 hostile
connections sit idle, ping now and then on a kept connection, or trickle a
request, a new caller is answered (200, the verb's result) well within the
request deadline: at the cap the connection that has gone longest
without a complete request is closed to make room (vmjobs.connection_table).

Each case first shows that the hostile connections really hold every slot
(the positive control: a 65th connection is served by closing one of
them; were a slot free it would be served with none closed). A caller is
a well-behaved client: on 503 (every slot running a verb) it waits
Retry-After and tries again. The bound asserted is 10 s: the contract's 5 s with a
margin for a loaded machine, and far below the 30 s deadline that freed
the slots before (so the old behaviour fails it).
"""

import http.client
import json
import select
import socket
import threading
import time

import pytest

from serve import ServeProcess, insecure_tcp
from test_server_tls import make_ca, make_cert
from vmjobs.client import Client, RemoteError
from vmjobs.config import Config
from vmjobs.connection_table import ConnectionTable
from vmjobs.notifications import Notifications
from vmjobs.server import Server
from waits import retry_after

HOSTILE = 64                # rpc.max_connections' default
BOUND = 10.0                # seconds: see above
WAIT = 60
PING = json.dumps({"jsonrpc": "2.0", "id": 1,
                   "method": "Host.ping"}).encode()
HEADERS = {"Content-Type": "application/json"}


@pytest.fixture
def server(tmp_path):
    yield from insecure_tcp(tmp_path)


def address(server):
    host, port = server.address.rsplit(":", 1)
    return host, int(port)


def ask_once(server):
    """One ping on a new connection: the HTTP status."""
    conn = http.client.HTTPConnection(*address(server), timeout=WAIT)
    try:
        conn.request("POST", "/", PING, HEADERS)
        response = conn.getresponse()
        body = response.read()
        if response.status == 200:
            assert json.loads(body)["result"] is True
        return response.status
    finally:
        conn.close()


def answered_within(server, bound=BOUND):
    """A caller that honours Retry-After: True once it got its verb's
    answer, within `bound` seconds."""
    return retry_after(lambda: ask_once(server) == 200 or None,
                       bound) is not None


def open_hostile(server, opener):
    """HOSTILE connections made by `opener(server)`, each confirmed open."""
    return [opener(server) for _ in range(HOSTILE)]


def idle(server):
    """Connects and sends nothing."""
    return socket.create_connection(address(server), timeout=WAIT)


def pinger(server):
    """A kept connection that was answered once."""
    conn = http.client.HTTPConnection(*address(server), timeout=WAIT)
    conn.request("POST", "/", PING, HEADERS)
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    return conn


def trickler(server):
    """Sends the start of a request's headers; more follows below."""
    s = socket.create_connection(address(server), timeout=WAIT)
    s.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
    return s


def one_closed(socks, timeout):
    """True if the server closed one of `socks` within `timeout` (none of
    them is sent anything else: readable means closed)."""
    readable, _, _ = select.select(socks, [], [], timeout)
    for s in readable:
        try:
            if s.recv(1, socket.MSG_DONTWAIT) == b"":
                return True
        except ConnectionResetError:
            return True
        except BlockingIOError:
            pass
    return False


def control(server, socks):
    """The positive control: the hostile connections hold every slot."""
    assert ask_once(server) == 200
    assert one_closed(socks, WAIT), "served, yet no slot was taken"


def test_idle_connections_do_not_lock_a_caller_out(server):
    held = open_hostile(server, idle)
    control(server, held)
    assert answered_within(server)
    for s in held:
        s.close()


def test_keep_alive_pingers_do_not_lock_a_caller_out(server):
    held = open_hostile(server, pinger)
    control(server, [conn.sock for conn in held])
    stop = threading.Event()

    def ping_now_and_then():
        # Every pinger sends one complete request every few tenths of a
        # second (an eager poller); one closed for the caller stops.
        while not stop.wait(0.2):
            for conn in held:
                try:
                    conn.request("POST", "/", PING, HEADERS)
                    conn.getresponse().read()
                except (OSError, http.client.HTTPException):
                    conn.close()

    thread = threading.Thread(target=ping_now_and_then)
    thread.start()
    try:
        assert answered_within(server)
    finally:
        stop.set()
        thread.join(WAIT)
        for conn in held:
            conn.close()


def test_tricklers_do_not_lock_a_caller_out(server):
    """The slow loris with the default limits: 64 connections each
    sending a header byte every 0.1 s, never finishing."""
    held = open_hostile(server, trickler)
    control(server, held)
    stop = threading.Event()

    def trickle():
        while not stop.wait(0.1):   # the pace of the attack, not a wait
            for s in held:
                try:
                    s.sendall(b"a")
                except OSError:
                    pass            # cut: it made room

    thread = threading.Thread(target=trickle)
    thread.start()
    try:
        assert answered_within(server)
    finally:
        stop.set()
        thread.join(WAIT)
        for s in held:
            s.close()


class SlowVerbs:
    """The verbs, as the server sees them, with one that runs until
    released: what holds a slot busy (a real verb answers too fast to
    catch it running)."""

    metrics = None
    pool = None   # no jobs: no worker takes the event streams' turns

    def __init__(self):
        self.notifications = Notifications()   # GET /events' source
        self.release = threading.Event()
        self.running = threading.Semaphore(0)

    def call(self, method, params):
        self.running.release()
        assert self.release.wait(WAIT)
        return True


def test_a_connection_running_a_verb_is_never_closed_for_another():
    """Only when every slot runs a verb is a new caller turned away (503,
    Retry-After); the busy ones are answered, none closed."""
    verbs = SlowVerbs()
    server = Server(verbs, Config(listen="127.0.0.1:0", insecure=True,
                                  max_connections=2))
    server.start()
    host, port = server.address.rsplit(":", 1)
    answers = []

    def busy():
        conn = http.client.HTTPConnection(host, int(port), timeout=WAIT)
        conn.request("POST", "/", PING, HEADERS)
        response = conn.getresponse()
        answers.append((response.status, json.loads(response.read())))
        conn.close()

    threads = [threading.Thread(target=busy) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        for _ in threads:
            assert verbs.running.acquire(timeout=WAIT)
        conn = http.client.HTTPConnection(host, int(port), timeout=WAIT)
        conn.request("POST", "/", PING, HEADERS)
        response = conn.getresponse()
        response.read()
        conn.close()
        assert (response.status, response.getheader("Retry-After")) == (
            503, "1")
    finally:
        verbs.release.set()
        for t in threads:
            t.join(WAIT)
        server.stop()
    assert [status for status, _ in answers] == [200, 200]
    assert all(answer["result"] is True for _, answer in answers)


def test_over_mutual_tls_handshakes_never_finished_do_not_lock_out(
        tmp_path):
    """64 connections that never finish (or begin) their TLS handshake:
    evictable during the handshake too; an engine with its certificate
    is answered."""
    make_ca(tmp_path, "ca")
    make_cert(tmp_path, "server", "ca", server=True)
    make_cert(tmp_path, "engine", "ca")
    served = ServeProcess("--listen", "127.0.0.1:0", config=(
        f"[rpc]\ntls_cert = {tmp_path}/server.pem\n"
        f"tls_key = {tmp_path}/server.key\ntls_ca = {tmp_path}/ca.pem\n"),
        tmp_path=tmp_path)
    held = []
    try:
        for i in range(HOSTILE):
            s = idle(served)
            if i % 2:
                s.sendall(b"\x16\x03\x01\x40\x00")   # a record begun
            held.append(s)
        def ping():
            with Client(served.address, cert=f"{tmp_path}/engine.pem",
                        key=f"{tmp_path}/engine.key",
                        ca=f"{tmp_path}/ca.pem", timeout=WAIT) as client:
                try:
                    return client.call("Host.ping")
                except RemoteError as exc:
                    assert exc.code == 503      # (every slot busy)
                    return None
        assert retry_after(ping, BOUND) is True
        assert one_closed(held, WAIT)           # one made room for it
    finally:
        for s in held:
            s.close()
        status, _, err = served.stop()
    assert status == 0, err


def test_at_the_cap_a_connection_its_client_closed_makes_room_first():
    """A burst of short-lived connections fills the table with slots whose
    clients have closed them (the server has not read their end yet): one
    of these makes room, not a client still waiting for its answer, even
    one accepted long before (a loaded server that has not read its
    request yet). The control: with no closed one, the oldest goes."""
    table = ConnectionTable(limit=2, grace=0.0)
    pairs = [socket.socketpair() for _ in range(4)]
    try:
        waiting, closed = pairs[0], pairs[1]
        waiting[1].sendall(PING)            # sent, not read yet
        first = table.admit(waiting[0])
        second = table.admit(closed[0])
        table.start_request(second)
        table.end_request(second)           # answered...
        closed[1].close()                   # ...and closed by its client
        assert table.admit(pairs[2][0]) is not None
        assert second.evicted and not first.evicted
        # The control: nobody closed, the oldest without a request goes.
        assert table.admit(pairs[3][0]) is not None
        assert first.evicted
    finally:
        for pair in pairs:
            for sock in pair:
                sock.close()


def test_at_the_cap_a_busy_connection_its_client_closed_gives_its_slot():
    """The client of a connection still finishing its verb may already
    have its answer and have closed it (the slot is marked idle just after
    the answer is written): its slot goes to the new connection, before
    any other's, and it is not shut down (its thread ends as it would,
    and it runs no further request); its leave() then frees nothing
    twice."""
    table = ConnectionTable(limit=2, grace=0.0)
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        waiting, finishing = pairs[0], pairs[1]
        first = table.admit(waiting[0])
        second = table.admit(finishing[0])
        assert table.start_request(second)   # its verb runs...
        finishing[1].close()                 # ...its client has gone
        third = table.admit(pairs[2][0])
        assert third is not None and len(table) == 2
        # Freed, not evicted (evicting is what shuts a socket down).
        assert second.freed and not second.evicted and not first.evicted
        table.end_request(second)
        assert table.start_request(second) is False
        table.leave(second)
        table.leave(second)
        assert len(table) == 2
    finally:
        for pair in pairs:
            for sock in pair:
                sock.close()


def test_a_look_at_a_connection_whose_bytes_were_just_read_never_waits(
        monkeypatch):
    """At the cap, poll(2) may see a connection's request arriving and its
    own thread read it before the look that follows: the look must say
    "open" at once. Python's socket.recv waited up to the socket's timeout
    whatever MSG_DONTWAIT said, under the table's lock (a contract audit
    saw every connection stall 30 s), then called the connection closed.
    Simulated: poll reports bytes that are no longer there."""
    from vmjobs import connection_table

    class ReadyPoll:
        def register(self, fd, events):
            self.fd = fd

        def poll(self, timeout):
            return [(self.fd, select.POLLIN)]

    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.settimeout(2)   # as a connection mid-request has
        monkeypatch.setattr(connection_table.select, "poll", ReadyPoll)
        assert connection_table._closed_by_client(ours) is False
        theirs.close()       # the control: its end of stream is seen
        assert connection_table._closed_by_client(ours) is True


def test_out_of_descriptors_a_caller_is_told_at_once_and_no_core_spins(
        server):
    """A service at its descriptor limit (found by the chaos run's
    fd-limit mix, round 12): the kernel keeps a new connection in the
    backlog, the listener stays readable and every accept fails EMFILE.
    Before, the accept loop tried again at once for as long as the limit
    held (a whole core: 2.99 s of CPU in 3 s) and the caller waited
    unanswered. Now the spare descriptor the server holds for this takes
    the connection, which is answered 503 with Retry-After (no verb ran)
    and closed, and the loop waits again; once it has descriptors the
    service serves as before."""
    import os
    import resource

    from vmjobs.tools import chaos_fdlimit, procfs
    pid = server.process.pid
    held = chaos_fdlimit.open_fds(pid)
    assert ask_once(server) == 200
    # Its connection closed on the server's side too (no gap left below
    # the limit for the next one).
    deadline = time.monotonic() + WAIT
    while chaos_fdlimit.open_fds(pid) > held:
        assert time.monotonic() < deadline
        time.sleep(0.05)   # another process's /proc: nothing notifies it
    before = chaos_fdlimit.lower(pid, 0)
    try:
        # No descriptor free below the limit, even one a connection's
        # thread closed since (a gap): lowered again until none is.
        for _ in range(100):
            time.sleep(0.05)   # another process's /proc, as above
            soft = resource.prlimit(pid, resource.RLIMIT_NOFILE)[0]
            if set(range(soft)) <= {
                    int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}:
                break
            chaos_fdlimit.lower(pid, 0)
        cpu = procfs.cpu_seconds([pid])
        for _ in range(2):   # the reserve is taken again for the next
            started = time.monotonic()
            conn = http.client.HTTPConnection(*address(server), timeout=10)
            conn.request("POST", "/", PING, HEADERS)
            response = conn.getresponse()
            assert response.status == 503
            assert response.getheader("Retry-After") == "1"
            assert b"descriptors" in response.read()
            conn.close()
            assert time.monotonic() - started < BOUND
        time.sleep(2.0)   # the span its CPU is measured over, not a wait
        spent = procfs.cpu_seconds([pid]) - cpu
        assert resource.prlimit(pid, resource.RLIMIT_NOFILE)[0] < before[0]
    finally:
        chaos_fdlimit.give_back(pid, before)
    assert spent < 0.5
    assert ask_once(server) == 200
