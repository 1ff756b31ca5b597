"""The server's limits: oversize bodies refused unread, slow or half-sent
requests timed out without holding anyone up, and a full job pool never
stopping Host.getJobs from answering."""

import socket
import stat
import uuid

from serve import ServeProcess, post, rpc, wait_job_info
from vmjobs.config import Config
from vmjobs.server import Server

CONFIG = """
[pool]
workers = 1
queue_size = 1

[rpc]
max_request_bytes = 1000
request_timeout = 1.0
"""


def test_limits(tmp_path):
    server = ServeProcess("--listen", "127.0.0.1:0", "--insecure",
                          config=CONFIG,
                          tmp_path=tmp_path)
    try:
        oversize_is_refused_unparsed(server)
        only_a_wanted_body_is_invited(server)
        half_sent_request_does_not_block_others(server)
        full_pool_still_answers_get_jobs(server)
    finally:
        status, out, err = server.stop()
    assert status == 0, err
    assert "staged=0" in out


def oversize_is_refused_unparsed(server):
    vm_id = str(uuid.uuid4())
    body = {"jsonrpc": "2.0", "method": "VM.create", "id": 1, "params": {
        "vmID": vm_id, "vmParams": {"vmId": vm_id, "vmName": "big",
                                    "memSize": 64, "pad": "x" * 2000}}}
    status, _ = post(server.url, body)
    assert status == 413
    assert rpc(server.url, "Host.getJobs")["result"] == {}


def only_a_wanted_body_is_invited(server):
    """`Expect: 100-continue` (curl sends it for large bodies): an
    oversize body is refused at once, never invited first; a body within
    the limit is invited, then answered."""
    host, port = server.address.rsplit(":", 1)

    def first_answers(length, body=b""):
        with socket.create_connection((host, int(port)), timeout=30) as s:
            s.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\n"
                      b"Content-Type: application/json\r\n"
                      b"Expect: 100-continue\r\n"
                      b"Content-Length: %d\r\n\r\n" % length)
            reader = s.makefile("rb")
            first = reader.readline()
            if not body:
                return [first]
            while reader.readline() not in (b"\r\n", b""):
                pass   # the interim answer's (empty) header block
            s.sendall(body)
            return [first, reader.readline()]

    assert first_answers(5000) == [b"HTTP/1.1 413 Request Entity Too "
                                   b"Large\r\n"]
    ping = b'{"jsonrpc": "2.0", "method": "Host.ping", "id": 1}'
    assert first_answers(len(ping), ping) == [b"HTTP/1.1 100 Continue\r\n",
                                              b"HTTP/1.1 200 OK\r\n"]


def half_sent_request_does_not_block_others(server):
    host, port = server.address.rsplit(":", 1)
    slow = socket.create_connection((host, int(port)))
    slow.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\n"
                 b"Content-Type: application/json\r\n"
                 b"Content-Length: 500\r\n\r\n{\"jso")
    # Meanwhile the server answers others at once.
    assert rpc(server.url, "Host.ping")["result"] is True
    # And closes the half-sent one when its time is up.
    slow.settimeout(30)
    assert slow.recv(100) == b""
    slow.close()


def full_pool_still_answers_get_jobs(server):
    # A migration whose destination never answers holds the only worker
    # (an incoming migration would not: it waits parked).
    migrating = str(uuid.uuid4())
    created = rpc(server.url, "VM.create", [migrating, {
        "vmId": migrating, "vmName": "m", "memSize": 64}])["result"]
    wait_job_info(server, created["jobId"],
                  lambda info: info["status"] == "done")
    silent = socket.socket()   # listens, never accepts nor answers
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        host, port = silent.getsockname()
        job_id = rpc(server.url, "VM.migrate", [migrating, {
            "dst": f"{host}:{port}", "dstUri": "qemu+tcp://127.0.0.1/system",
            "timeout": 120}])["result"]["jobId"]
        # Until the worker took it, the migration job is the one queued.
        wait_job_info(server, job_id,
                      lambda info: info["step"] == "prepare-destination")
        queued = str(uuid.uuid4())
        assert "result" in rpc(server.url, "VM.create", [queued, {
            "vmId": queued, "vmName": "q", "memSize": 64}])
        refused = str(uuid.uuid4())
        answer = rpc(server.url, "VM.create", [refused, {
            "vmId": refused, "vmName": "r", "memSize": 64}])
        assert answer["error"]["code"] == 1100
        jobs = rpc(server.url, "Host.getJobs")["result"]
        assert sorted(i["vm_id"] for i in jobs.values()) == sorted(
            [migrating, migrating, queued])
        stats = rpc(server.url, "Host.getStats")["result"]
        assert (stats["running"], stats["queued"]) == (1, 1)
    finally:
        # The destination goes away: the migration fails, the VM stays,
        # the queued job runs.
        silent.close()
    assert wait_job_info(server, job_id, lambda info: info["status"] in (
        "done", "failed", "aborted"))["status"] == "failed"
    for vm_id in (migrating, queued):
        assert rpc(server.url, "VM.destroy", [vm_id])["result"] is True


def test_the_default_run_directory_is_made_private(make_api, run_dirs):
    """API.md: the default listener, unix:/run/vmjobs/vmjobs.sock, is
    created 0600, its directory 0700. That directory is the service's own:
    one already there and more open (a tmpfs mounted over /run/vmjobs is
    1777) is made 0700 too; it was left 1777. The control: an existing
    directory elsewhere that a socket is configured in (it may be /tmp)
    is left as it is."""
    run, shared = run_dirs
    api = make_api()
    for directory, mode in ((run, 0o700), (shared, 0o755)):
        server = Server(api, Config(listen=f"unix:{directory}/vmjobs.sock"))
        try:
            assert stat.S_IMODE(directory.stat().st_mode) == mode
            assert stat.S_IMODE(
                (directory / "vmjobs.sock").stat().st_mode) == 0o600
        finally:
            server.stop()


def test_unix_socket(tmp_path):
    path = tmp_path / "vmjobs.sock"
    server = ServeProcess("--listen", f"unix:{path}", tmp_path=tmp_path)
    try:
        assert server.address == f"unix:{path}"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(path))
        body = b'{"jsonrpc": "2.0", "method": "Host.ping", "id": 7}'
        client.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                       b"application/json\r\nContent-Length: " +
                       str(len(body)).encode() + b"\r\nConnection: close"
                       b"\r\n\r\n" + body)
        answer = b""
        while chunk := client.recv(4096):
            answer += chunk
        client.close()
        assert answer.startswith(b"HTTP/1.1 200")
        assert answer.endswith(b'{"jsonrpc": "2.0", "id": 7, '
                               b'"result": true}')
    finally:
        status, _, err = server.stop()
    assert status == 0, err
    assert not path.exists()


def test_an_unread_answer_is_held_once(make_api):
    """A hostile-caller audit, round 13 (memory): a client that does not
    read its answer holds the connection's thread in its write until
    rpc.request_timeout, and what that thread holds meanwhile. It held
    the answer three times: the request's body (a batch's echoed ids are
    as long as its answer), the answer, and the answer copied after its
    head for one write. 8 such connections of 4 MB answers held 96 MB of
    the service; now a large answer is written after its head, not copied,
    and the body is let go: 32 MB."""
    import json
    import tracemalloc

    api = make_api()
    server = Server(api, Config(listen="127.0.0.1:0", insecure=True))
    server.start()
    host, port = server.address.rsplit(":", 1)
    body = json.dumps([{"jsonrpc": "2.0", "id": "x" * 40000,
                        "method": "Host.ping"} for _ in range(100)]).encode()
    request = (b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
               b"application/json\r\nContent-Length: " +
               str(len(body)).encode() + b"\r\n\r\n" + body)
    held = []
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(8):
            s = socket.create_connection((host, int(port)), timeout=60)
            held.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(request)
        for s in held:
            # Its answer has begun: the server's thread is in its write,
            # which the unread socket holds.
            assert s.recv(1, socket.MSG_PEEK) == b"H"
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        for s in held:
            s.close()
        server.stop()
    answer = len(body) + 1000   # each answer echoes the ids
    assert grown < 8 * answer * 1.5, f"{grown >> 20} MiB held"
