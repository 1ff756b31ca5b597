"""GET /events (API.md "Events") on the service's own listener: the SSE
frames on the wire, resume with Last-Event-ID and resync (after the
buffer, after a restart), a stalled subscriber cut off while the service
goes on, the subscriber cap apart from the connection cap, the same
authentication as the verbs on each listener kind, and a stop that ends
every stream cleanly (curl, as the README shows it, exits 0)."""

import http.client
import json
import os
import queue
import re
import resource
import select
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

from conftest import WAIT, new_id, vm_params, wait_job
from event_order import EventOrder
from serve import ROOT, ServeProcess, wait_job_ended
from test_server_tls import pki  # noqa: F401 (a fixture)
from vmjobs import eventstream, sse
from vmjobs.client import Client, RemoteError
from vmjobs.notifications import JOB_STATUS, RESYNC, VM_STATUS, SubscriptionCut
from vmjobs.server import Server
from waits import Follower, retry_after, statuses, subscribers


@pytest.fixture
def serve(make_api, tmp_path):
    """serve(**config) -> (api, server) on a Unix socket of the test's."""
    servers = []

    def start(**config):
        api = make_api(listen=f"unix:{tmp_path}/vmjobs.sock", **config)
        server = Server(api, api.config)
        server.start()
        servers.append(server)
        return api, server

    yield start
    for server in servers:
        server.stop()


def poll_until(predicate, what):
    """Until `predicate()`, looked at every few milliseconds: only for a
    state nothing notifies (each call says which)."""
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.01)


def create(api, vm_id=None):
    vm_id = vm_id or new_id()
    return vm_id, api.VM.create(vm_id, vm_params(vm_id))["jobId"]


def test_the_frames_on_the_wire(serve):
    api, server = serve()
    # The listener's own protection: only root reaches the socket (and
    # the stream is served on it as every verb is).
    path = server.address[len("unix:"):]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    connection = http.client.HTTPConnection("localhost")
    connection.sock = socket.socket(socket.AF_UNIX)
    connection.sock.connect(server.address[len("unix:"):])
    connection.request("GET", "/events")
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/event-stream"
    vm_id, job_id = create(api)
    frames = []
    while not any(f"|virt|VM_status|{vm_id}" in f and '"Up"' in f
                  for f in frames):
        lines = []
        while (line := response.readline().decode()) != "\n":
            lines.append(line)
        frames.append("".join(lines))
    connection.close()
    # First, where the stream starts: an id alone (SSE: no event), the
    # id before the first event it sends.
    start = frames.pop(0)
    assert start.startswith("id: ") and "\n" == start[-1] and \
        start.count("\n") == 1
    assert int(start[4:]) + 1 == int(frames[0].splitlines()[0][4:])
    first = frames[0].splitlines()
    assert first[0].startswith("id: ") and int(first[0][4:]) > 0
    assert first[1] == f"event: |virt|VM_status|{vm_id}"
    assert first[2].startswith("data: ")
    message = json.loads(first[2][6:])
    assert message["jsonrpc"] == "2.0"
    assert message["method"] == f"|virt|VM_status|{vm_id}"
    assert message["params"][vm_id] == {"vmId": vm_id, "staging": True,
                                        "status": "WaitForLaunch"}
    assert isinstance(message["params"]["notify_time"], int)
    assert "id" not in message   # a notification: no answer expected
    ids = [int(f.splitlines()[0][4:]) for f in frames]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    job = [json.loads(f.splitlines()[2][6:]) for f in frames
           if f"event: |jobs|status|{job_id}" in f]
    assert job[0]["params"][job_id]["id"] == job_id


def test_an_http_1_0_stream_has_no_chunks(serve):
    """HTTP/1.0 has no chunked transfer coding: its stream is the bare
    frames, ended by the close (a contract audit saw chunks sent to an
    HTTP/1.0 client). The control, HTTP/1.1's chunks, is the test above."""
    api, server = serve()
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(server.address[len("unix:"):])
    sock.settimeout(WAIT)
    with sock:
        sock.sendall(b"GET /events HTTP/1.0\r\nHost: localhost\r\n\r\n")
        subscribers(api, 1)
        vm_id, _ = create(api)
        received = b""
        while b'"Up"' not in received:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"200"
    assert b"transfer-encoding" not in head.lower()
    assert body.startswith(b"id: ")           # a frame, no chunk size
    assert f"event: |virt|VM_status|{vm_id}".encode() in body


def test_resume_and_resync_over_http(serve):
    api, server = serve(events_buffer=30)
    first = Follower(Client(server.address).events())
    subscribers(api, 1)
    vm_id, job_id = create(api)
    first.wait_for(lambda ev: "Up" in statuses(ev, vm_id), "Up")
    middle = first.events[1].id
    resumed = Follower(Client(server.address).events(middle))
    resumed.wait_for(lambda ev: "Up" in statuses(ev, vm_id), "resumed Up")
    assert resumed.events[0].id == middle + 1
    assert [e.id for e in resumed.events] == \
        [e.id for e in first.events if e.id > middle][:len(resumed.events)]
    for _ in range(4):   # more than the buffer holds
        assert wait_job(api, create(api)[1])["status"] == "done"
    late = Follower(Client(server.address).events(middle))
    late.wait_for(lambda ev: ev, "a resync")
    assert late.events[0].method == RESYNC
    # A bad id is refused, not taken for a resync.
    with pytest.raises(RemoteError) as err:
        Client(server.address).events("yesterday")
    assert err.value.code == 400


def test_a_resumed_stream_gets_its_backlog_on_an_idle_service(
        serve, monkeypatch):
    """Its backlog goes at once, though nothing new is published: the
    stream's opening wakes the dispatcher. With its periodic look made
    hourly, a dispatcher not woken would leave the backlog unsent."""
    monkeypatch.setattr(eventstream, "GONE_POLL", 3600.0)
    api, server = serve()
    live = Follower(Client(server.address).events())   # the dispatcher runs
    subscribers(api, 1)
    assert wait_job(api, create(api)[1])["status"] == "done"
    last = api.notifications.stats()["last_id"]
    live.wait_for(lambda ev: ev and ev[-1].id == last, "the live events")
    resumed = Follower(Client(server.address).events(last - 2))
    resumed.wait_for(lambda ev: len(ev) == 2, "the backlog")
    assert [e.id for e in resumed.events] == [last - 1, last]
    resynced = Follower(Client(server.address).events(1))
    resynced.wait_for(lambda ev: ev, "the resync")
    assert resynced.events[0].method == RESYNC
    assert api.notifications.stats()["last_id"] == last   # none published


def test_streams_at_different_positions_each_get_their_own(serve):
    """The dispatcher makes one chunk for the streams of a turn that read
    the same notifications: streams resumed from different ids, live ones
    and a resync (whose id is a real notification's) read side by side
    each get exactly what follows their own position, in order."""
    api, server = serve(events_buffer=400, workers=4)
    assert wait_job(api, create(api)[1])["status"] == "done"
    last = api.notifications.stats()["last_id"]
    positions = [None, None, last - 3, last - 3, last - 1, last]
    readers = [Follower(Client(server.address).events(at))
               for at in positions]
    gone = last - 100   # out of the buffer: a resync, numbered `last`
    readers.append(Follower(Client(server.address).events(gone)))
    subscribers(api, len(readers))
    # Their backlogs, nothing new published: [last] for the reader at
    # last - 1 and [resync] (id `last`) most likely in one turn.
    for reader in readers[2:5] + readers[-1:]:
        reader.wait_for(lambda ev: ev, "the backlog")
    assert [e.method for e in readers[4].events] != [RESYNC]
    jobs = [create(api)[1] for _ in range(12)]
    for job_id in jobs:
        assert wait_job(api, job_id)["status"] == "done"
    end = api.notifications.stats()["last_id"]
    for reader in readers:
        reader.wait_for(lambda ev: ev and ev[-1].id == end, "the last event")
    for at, reader in zip(positions, readers[:-1], strict=True):
        ids = [e.id for e in reader.events]
        first = last + 1 if at is None else at + 1
        assert ids == list(range(first, end + 1)), (at, ids[:5])
        assert RESYNC not in [e.method for e in reader.events]
    resync = readers[-1].events
    assert resync[0].method == RESYNC and resync[0].id == last
    assert [e.id for e in resync[1:]] == list(range(last + 1, end + 1))
    assert RESYNC not in [e.method for e in resync[1:]]


def test_a_late_reader_gets_every_byte_in_order(serve):
    """What a full socket did not take is sent later from where it
    stopped: a subscriber that reads nothing until 200 VMs came up (about
    2,000 notifications, 0.9 MB, far beyond its socket's buffers: many
    sends take part of a chunk) then gets every notification, whole and
    in order."""
    api, server = serve(events_buffer=5000, workers=4)
    stream = Client(server.address).events()
    subscribers(api, 1)
    first = api.notifications.stats()["last_id"] + 1
    jobs = [create(api)[1] for _ in range(200)]
    for job_id in jobs:
        assert wait_job(api, job_id)["status"] == "done"
    last = api.notifications.stats()["last_id"]
    assert last - first > 1500
    reader = Follower(stream)
    reader.wait_for(lambda ev: ev and ev[-1].id == last, "the last event")
    assert [e.id for e in reader.events] == list(range(first, last + 1))
    order = EventOrder()
    order.check_all(reader.events)
    assert api.notifications.stats()["cut"] == 0


def test_a_stream_holds_a_window_of_its_backlog_not_a_copy(serve):
    """A resumed stream whose subscriber reads nothing holds, as bytes of
    its own, at most eventstream.WINDOW_BYTES of its backlog (the rest as
    references to the feed's notifications). It held its whole backlog as
    one chunk, a copy of the buffer: sixteen streams resumed from the
    oldest id, after failed jobs had filled the buffer with their 4 KiB
    errors (each 49 KB of JSON), held 1.2 GB of the service's memory (a
    hostile-caller audit). The control: read later, each gets its whole
    backlog, whole and in order."""
    api, server = serve(workers=4)
    first = api.notifications.stats()["last_id"]

    def backlog():
        return sum(len(sse.frame(n)) for n in api.notifications._kept
                   if first < n.id)

    # A VM, then creations of the same name that fail, until the backlog
    # is four windows: each failed job's error echoes the name (cut at
    # workers.MAX_ERROR_MESSAGE).
    name = "\U0001F600" * 4000
    created = False
    while backlog() <= 4 * eventstream.WINDOW_BYTES:
        vm_id = new_id()
        xml = (f"<domain type='test'><name>{name}</name><uuid>{vm_id}"
               "</uuid><memory unit='MiB'>64</memory><os><type>hvm</type>"
               "</os></domain>")
        job_id = api.VM.create(vm_id, {"vmId": vm_id, "xml": xml})["jobId"]
        assert wait_job(api, job_id)["status"] == (
            "failed" if created else "done")
        created = True
    last = api.notifications.stats()["last_id"]
    stalled = []
    for _ in range(4):
        sock = socket.socket(socket.AF_UNIX)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(server.address[len("unix:"):])
        sock.sendall(b"GET /events HTTP/1.1\r\nHost: localhost\r\n"
                     b"Last-Event-ID: %d\r\n\r\n" % first)
        stalled.append(sock)
    streams = server._server.streams
    # (The dispatcher's blocked_since: nothing notifies it.)
    poll_until(lambda: len(streams._streams) == 4 and all(
        s.blocked_since is not None for s in streams._streams),
        "four streams blocked")
    for stream in streams._streams:
        assert len(stream.pending) <= eventstream.WINDOW_BYTES + 16, \
            len(stream.pending)
    for sock in stalled:
        sock.settimeout(WAIT)
        received = b""
        while b"id: %d\n" % last not in received:
            chunk = sock.recv(1 << 20)
            assert chunk, "the stream ended early"
            received += chunk
        sock.close()
        ids = [int(i) for i in re.findall(rb"\nid: (\d+)\nevent", received)]
        assert ids == list(range(first + 1, last + 1))
    assert api.notifications.stats()["cut"] == 0


def test_a_restarted_service_answers_resync(tmp_path):
    listen = f"unix:{tmp_path}/vmjobs.sock"
    first = ServeProcess("--listen", listen, tmp_path=tmp_path)
    try:
        with Client(first.address) as c:
            vm_id = new_id()
            stream = Client(first.address).events()
            c.call("VM.create", [vm_id, vm_params(vm_id)])
            last = next(iter(stream)).id
            stream.close()
    finally:
        assert first.stop()[0] == 0
    second = ServeProcess("--listen", listen, tmp_path=tmp_path,
                          log_name="serve-2")
    try:
        resumed = Follower(Client(second.address).events(last))
        resumed.wait_for(lambda ev: ev, "a resync")
        assert resumed.events[0].method == RESYNC
        assert resumed.events[0].id > last
    finally:
        assert second.stop()[0] == 0


def test_a_stalled_stream_is_cut_and_the_service_goes_on(serve):
    """A subscriber that reads nothing fills its socket, falls
    events.buffer behind and is cut off (its connection closed without the
    stream's last chunk); meanwhile every verb answers and every VM comes
    up, and a subscriber that reads gets every event, uncut."""
    api, server = serve(events_buffer=100, workers=4)
    stalled = socket.socket(socket.AF_UNIX)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(server.address[len("unix:"):])
    stalled.sendall(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
    subscribers(api, 1)
    reader = Follower(Client(server.address).events())
    subscribers(api, 2)
    vm_ids = []
    while api.notifications.stats()["cut"] == 0:
        assert len(vm_ids) < 2000, "the stalled subscriber was never cut"
        # Four at once (about 40 events), then the reader catches up (so
        # it stays within the buffer whatever the machine's load).
        batch = [create(api) for _ in range(4)]
        for _, job_id in batch:
            assert wait_job(api, job_id)["status"] == "done"
        vm_ids += [vm_id for vm_id, _ in batch]
        # Each one's Up: the four commit in any order, and the workers
        # flush as each ends, so the last made may be read before another.
        for vm_id, _ in batch:
            reader.wait_status(vm_id, "Up")
        assert Client(server.address).call("Host.ping") is True
    # Cut: its connection ends without the stream's last chunk.
    stalled.settimeout(WAIT)
    received = b""
    while chunk := stalled.recv(65536):
        received += chunk
    assert received.startswith(b"HTTP/1.1 200")
    assert not received.endswith(b"\r\n0\r\n\r\n")
    assert api.notifications.stats()["cut"] == 1
    metrics = api.metrics.render().decode()
    assert "vmjobs_event_subscribers_cut_total 1.0" in metrics
    assert reader.ended is None   # still reading, never cut
    order = EventOrder()
    order.check_all(reader.events)
    assert all(order.statuses(vm_id) == ["WaitForLaunch", "Up"]
               for vm_id in vm_ids)


def test_the_workers_send_what_their_jobs_posted(serve, monkeypatch):
    """Under a storm the pool's workers flush the streams, each after a
    job's turn (Streams.flush_if_due), where the dispatcher, woken, would
    wait for a core and the GIL behind them: every event reaches the
    subscriber while the dispatcher lingers an hour after its first
    notification. A stop cuts the linger short and ends the stream."""
    monkeypatch.setattr(eventstream, "LINGER", 3600.0)
    monkeypatch.setattr(eventstream, "FLUSH_DUE", 0.0)
    api, server = serve(workers=2)
    reader = Follower(Client(server.address).events())
    subscribers(api, 1)
    # The stream joins the flushes just after its subscription, so a job
    # that ended before that flushed without it: the next job's flush
    # sends all it missed.
    made = []
    while not any("Up" in statuses(reader.events, vm_id) for vm_id in made):
        assert len(made) < 500, "no worker sent the stream anything"
        vm_id, job_id = create(api)
        assert wait_job(api, job_id)["status"] == "done"
        made.append(vm_id)
    batch = [create(api) for _ in range(20)]
    for vm_id, job_id in batch:
        reader.wait_status(vm_id, "Up")
        reader.wait_for(lambda events, job_id=job_id: any(
            event.method == JOB_STATUS + job_id and
            event.params[job_id]["status"] == "done" for event in events),
            f"{job_id} done")
    EventOrder().check_all(reader.events)
    server.stop()
    reader.wait_for(lambda events: reader.ended is not None, "the end")
    assert reader.ended == "clean"


@pytest.fixture
def descriptors_past_1023():
    """Descriptors 0-1099 taken (by /dev/null), the open-files limit
    raised if need be: what the process opens next is past select(2)'s
    1023. Given back after."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    if limit[0] < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (2048, limit[1]))
    fillers = [os.open("/dev/null", os.O_RDONLY)]
    while fillers[-1] < 1100:
        fillers.append(os.open("/dev/null", os.O_RDONLY))
    try:
        yield
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, limit)


@pytest.mark.parametrize("high", [False, True], ids=["low-fd", "fd-1100"])
def test_a_stream_on_a_descriptor_past_1023_is_served(serve, monkeypatch,
                                                      request, high):
    """A stream whose socket's descriptor is past select(2)'s 1023 (an
    operator's larger open-files limit and rpc.max_connections) gets its
    events, looked at for its subscriber's end at every turn, as one on
    a low descriptor does (the control). With select it was ended at its
    first look (a hostile-caller audit, round 7)."""
    monkeypatch.setattr(eventstream, "GONE_POLL", 0.0)
    api, server = serve()
    if high:
        request.getfixturevalue("descriptors_past_1023")
    reader = Follower(Client(server.address).events())
    streams = server._server.streams
    with streams._changed:     # notified as a stream is answered
        assert streams._changed.wait_for(lambda: streams._streams, WAIT)
    [stream] = streams._streams
    assert (stream.sock.fileno() > 1023) == high
    for _ in range(2):
        vm_id, job_id = create(api)
        assert wait_job(api, job_id)["status"] == "done"
        reader.wait_for(lambda ev, v=vm_id: "Up" in statuses(ev, v),
                        "its Up")
    assert reader.ended is None


def test_the_subscriber_cap_apart_from_the_connection_cap(serve):
    api, server = serve(max_subscribers=2, max_connections=1)
    streams = [Client(server.address) for _ in range(2)]
    readers = [Follower(c.events()) for c in streams]
    subscribers(api, 2)
    # The streams hold no connection slot: a verb is answered...
    assert Client(server.address).call("Host.ping") is True
    # ...but a third stream is not.
    with pytest.raises(RemoteError) as err:
        Client(server.address).events()
    assert err.value.code == 503
    # Positive control: once one ends, a new stream is taken.
    streams[0].close()
    subscribers(api, 1)
    assert retry_after(lambda: _stream_opens(server.address))
    assert readers[1].ended is None


def test_a_stream_closed_at_the_cap_leaves_its_slot_to_the_next_at_once(
        serve, tmp_path):
    """A subscriber that closes its stream at the cap and opens another
    (an engine reconnecting) is served, not answered 503 for the second
    the service takes to notice the close (found by the clean-room run
    against API.md: "at most events.max_subscribers streams open at
    once")."""
    api, server = serve(max_subscribers=2)
    path = f"{tmp_path}/vmjobs.sock"
    held = [_raw_stream(path) for _ in range(2)]
    assert [status for _, status in held] == [200, 200]
    subscribers(api, 2)
    # Positive control: while both stay open, one more is refused.
    extra, status = _raw_stream(path)
    extra.close()
    assert status == 503
    for sock, _ in held:
        sock.close()
    fresh, status = _raw_stream(path)
    fresh.close()
    assert status == 200


def _raw_stream(path):
    """GET /events on Unix socket `path`: (the socket, the status)."""
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(WAIT)
    sock.connect(path)
    sock.sendall(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(1)
        assert data, "closed before its head"
        head += data
    status = int(head.split()[1])
    if status == 200:   # the stream's opening: where it starts
        opening = b""
        while not opening.endswith(b"\n\n\r\n"):
            opening += sock.recv(1)
    return sock, status


def _stream_opens(address):
    """True once a stream opens; None if answered 503 (its slot is freed
    just after its subscriber left)."""
    try:
        Client(address).events()
    except RemoteError as exc:
        assert exc.code == 503
        return None
    return True


def test_plain_tcp_checks_the_host_header(make_api):
    api = make_api(listen="127.0.0.1:0", insecure=True)
    server = Server(api, api.config)
    server.start()
    try:
        host, port = server.address.rsplit(":", 1)
        for header, status in (("evil.example", 403), ("localhost", 200),
                               (f"127.0.0.1:{port}", 200)):
            connection = http.client.HTTPConnection(host, int(port),
                                                    timeout=WAIT)
            connection.putrequest("GET", "/events", skip_host=True)
            connection.putheader("Host", header)
            connection.endheaders()
            response = connection.getresponse()
            assert response.status == status, header
            connection.close()
    finally:
        server.stop()


def test_mutual_tls_as_for_the_verbs(pki, tmp_path):  # noqa: F811
    config = (f"[rpc]\ntls_cert = {pki}/server.pem\n"
              f"tls_key = {pki}/server.key\ntls_ca = {pki}/ca.pem\n")
    server = ServeProcess("--listen", "127.0.0.1:0", config=config,
                          tmp_path=tmp_path)
    try:
        for cert in (None, "intruder"):
            client = Client(server.address, ca=str(pki / "ca.pem"),
                            cert=cert and str(pki / f"{cert}.pem"),
                            key=cert and str(pki / f"{cert}.key"))
            with pytest.raises((OSError, http.client.HTTPException)):
                client.events()
        engine = Client(server.address, ca=str(pki / "ca.pem"),
                        cert=str(pki / "engine.pem"),
                        key=str(pki / "engine.key"))
        reader = Follower(engine.events())
        vm_id = new_id()
        with Client(server.address, ca=str(pki / "ca.pem"),
                    cert=str(pki / "engine.pem"),
                    key=str(pki / "engine.key")) as c:
            c.call("VM.create", [vm_id, vm_params(vm_id)])
        reader.wait_for(lambda ev: "Up" in statuses(ev, vm_id), "Up")
    finally:
        assert server.stop()[0] == 0
    reader.join(WAIT)
    assert reader.ended == "clean"


def test_a_stop_ends_every_stream_cleanly(tmp_path):
    """SIGTERM with streams open: each gets the stream's end (curl exits
    0, as it does not for a cut-off chunked stream) and the service
    exits 0."""
    path = tmp_path / "vmjobs.sock"
    server = ServeProcess("--listen", f"unix:{path}", tmp_path=tmp_path)
    try:
        curl = subprocess.Popen(["curl", "-sN", "--unix-socket", str(path),
                                 "http://localhost/events"],
                                stdout=subprocess.PIPE, text=True)
        reader = Follower(Client(server.address).events())
        # curl's stream is open once its first frame (an id alone) came.
        assert select.select([curl.stdout], [], [], WAIT)[0]
        opened = curl.stdout.readline()
        assert opened.startswith("id: "), opened
        vm_id = new_id()
        with Client(server.address) as c:
            c.call("VM.create", [vm_id, vm_params(vm_id)])
        reader.wait_for(lambda ev: "Up" in statuses(ev, vm_id), "Up")
        status, _, err = server.stop(signal.SIGTERM)
        assert status == 0, err
        out, _ = curl.communicate(timeout=WAIT)
    finally:
        server.kill()
    assert curl.returncode == 0, opened + out
    assert f"event: |virt|VM_status|{vm_id}" in out
    reader.join(WAIT)
    assert reader.ended == "clean"


def _metrics(path):
    return subprocess.run(["curl", "-s", "--unix-socket", str(path),
                           "http://localhost/metrics"], check=True,
                          capture_output=True).stdout


def test_vmjobs_events_prints_a_line_per_event(serve):
    api, server = serve()
    vm_id, other = new_id(), new_id()
    command = [sys.executable, "-m", "vmjobs", "events", "--server",
               server.address, "--vm", vm_id]
    env = dict(os.environ, PYTHONPATH=ROOT)
    lines = subprocess.Popen(command + ["--count", "3"], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, text=True)
    as_json = subprocess.Popen(command + ["--json", "--count", "2"],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               text=True)
    subscribers(api, 2)
    create(api, other)   # filtered out
    _, job_id = create(api, vm_id)
    assert wait_job(api, job_id)["status"] == "done"
    out, _ = lines.communicate(timeout=WAIT)
    assert lines.returncode == 0
    printed = out.splitlines()
    assert len(printed) == 3 and other not in out
    assert printed[0].endswith(f"VM {vm_id} WaitForLaunch (staged)")
    assert f"job {job_id} create pending step queued VM {vm_id}" in \
        printed[1] or f"job {job_id} create running" in printed[1]
    out, _ = as_json.communicate(timeout=WAIT)
    messages = [json.loads(line) for line in out.splitlines()]
    assert messages[0]["method"] == VM_STATUS + vm_id
    assert messages[1]["method"] == JOB_STATUS + job_id


def test_vmjobs_events_takes_a_vm_id_as_the_verbs_take_it(serve):
    """`vmjobs events --vm` takes a vmId as the verbs do, in capitals too
    (the service answers with its canonical, lower-case form): it printed
    nothing, for ever, for the VM created with that very id. A --vm that
    is no UUID is refused at once (exit 2) instead of matching nothing.
    The control: another VM's events are still left out."""
    api, server = serve()
    vm_id, other = new_id(), new_id()
    command = [sys.executable, "-m", "vmjobs", "events", "--server",
               server.address]
    env = dict(os.environ, PYTHONPATH=ROOT)
    follower = subprocess.Popen(command + ["--vm", vm_id.upper(), "--count",
                                           "1"], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, text=True)
    subscribers(api, 1)
    create(api, other)
    _, job_id = create(api, vm_id.upper())
    assert wait_job(api, job_id)["status"] == "done"
    try:
        out, _ = follower.communicate(timeout=WAIT)
    finally:
        follower.kill()
    assert follower.returncode == 0
    assert out.rstrip().endswith(f"VM {vm_id} WaitForLaunch (staged)")
    refused = subprocess.run(command + ["--vm", "db-1"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=WAIT)
    assert refused.returncode == 2
    assert "--vm: 'db-1' is not a UUID" in refused.stderr


def test_jobs_watch_follows_the_events(serve):
    """The table follows the stream, and time: on a quiet service it is
    redrawn every second, so a job that ended more than --ended-within
    ago leaves it (it stayed for good before)."""
    api, server = serve()
    # As a terminal runs it, in the foreground: ^C's default action. (A
    # suite run in a background job inherits SIGINT ignored, and so would
    # the watch: it never saw the ^C. Seen in full runs under nohup.)
    foreground = ("import runpy, signal, sys; "
                  "signal.signal(signal.SIGINT, signal.default_int_handler); "
                  "sys.argv[0] = 'vmjobs'; "
                  "runpy.run_module('vmjobs', run_name='__main__')")
    watch = subprocess.Popen(
        [sys.executable, "-c", foreground, "jobs", "--watch",
         "--ended-within", "1", "--server", server.address], cwd=ROOT,
        # (faulthandler: on SIGABRT it prints every thread's stack.)
        env=dict(os.environ, PYTHONPATH=ROOT, PYTHONFAULTHANDLER="1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = queue.Queue()

    def read():     # every line, then "" at its end
        for line in iter(watch.stdout.readline, ""):
            lines.put(line)
        lines.put("")
    threading.Thread(target=read, daemon=True).start()
    try:
        subscribers(api, 1)
        _, job_id = create(api)
        assert wait_job(api, job_id)["status"] == "done"
        seen = ""
        while not any(job_id in line and " done " in line
                      for line in seen.splitlines()):
            seen += watch_line(lines)
        # No notification comes now; the watch draws again by itself.
        while "(1 ended job(s) not shown" not in seen.rsplit(CLEAR, 1)[-1]:
            seen += watch_line(lines)
    finally:
        watch.send_signal(signal.SIGINT)
        try:
            watch.communicate(timeout=WAIT)
        except subprocess.TimeoutExpired:
            # Say where it waited.
            with open(f"/proc/{watch.pid}/status") as status:
                signals = [s for s in status if s.startswith("Sig")]
            watch.send_signal(signal.SIGABRT)
            _, err = watch.communicate(timeout=WAIT)
            pytest.fail(f"^C did not end it: {signals}\n{err}")
    assert watch.returncode == 130, watch.returncode


CLEAR = "\x1b[H\x1b[2J"     # the watch clears the screen before a table


def watch_line(lines):
    """The watch's next line (from `lines`, a queue its reader fills),
    within WAIT."""
    try:
        line = lines.get(timeout=WAIT)
    except queue.Empty:
        pytest.fail("vmjobs jobs --watch drew nothing new")
    assert line, "vmjobs jobs --watch ended"
    return line


def test_the_client_reports_a_cut(serve):
    """A stream that ends without its last chunk raises SubscriptionCut
    with the last id read, from which the client resumes."""
    api, server = serve()
    reader = Follower(Client(server.address).events())
    subscribers(api, 1)
    vm_id, _ = create(api)
    reader.wait_for(lambda ev: "Up" in statuses(ev, vm_id), "Up")
    # Cut it as the service does: the subscription is dropped, and the
    # stream's thread closes the connection at its next look.
    with api.notifications._lock:
        (subscription,) = api.notifications._subscribers
        api.notifications._subscribers.discard(subscription)
        subscription.cut_off = True
    create(api)
    reader.join(WAIT)
    assert isinstance(reader.ended, SubscriptionCut)
    assert reader.ended.last_id == reader.events[-1].id
    with Client(server.address) as c:
        rest = Follower(c.events(reader.ended.last_id))
        rest.wait_for(lambda ev: ev, "the events after the cut")
        assert rest.events[0].id == reader.ended.last_id + 1


def test_readme_events_examples_run_as_written(tmp_path):
    """The README's way for an engine to subscribe, run as written: each
    prints the events as they come and exits 0 when the service stops."""
    readme = open(os.path.join(ROOT, "README.md")).read()
    block = readme.split("<!-- events examples -->", 1)[1].split("```", 2)[1]
    examples = [line for line in block.splitlines()
                if line.startswith(("curl", "vmjobs"))]
    assert len(examples) == 2
    path = tmp_path / "vmjobs.sock"
    server = ServeProcess("--listen", f"unix:{path}", tmp_path=tmp_path)
    env = dict(os.environ, SOCK=str(path), PYTHONPATH=ROOT,
               PATH=os.path.dirname(sys.executable) + ":" +
               os.environ["PATH"])
    try:
        running = [subprocess.Popen(["bash", "-c", example], cwd=ROOT,
                                    env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
                   for example in examples]
        # (Another process's subscribers, one of which prints nothing
        # until an event: nothing notifies the test of them.)
        poll_until(lambda: b"vmjobs_event_subscribers 2.0" in
                   _metrics(path), "both subscribed")
        vm_id = new_id()
        with Client(server.address) as c:
            job_id = c.call("VM.create", [vm_id, vm_params(vm_id)])["jobId"]
        assert wait_job_ended(server, job_id) == "done"
        assert server.stop()[0] == 0
        outputs = [p.communicate(timeout=WAIT) for p in running]
    finally:
        server.kill()
    for example, process, (out, err) in zip(examples, running, outputs,
                                            strict=True):
        assert process.returncode == 0, (example, err)
        assert vm_id in out and "Up" in out, (example, out)
