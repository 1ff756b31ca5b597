"""Large requests are handled a few at a time (server.REQUEST_ROOM): a
4 MiB VM.create takes about ten times its bytes while it is parsed,
checked and composed, and 64 connections handled them all at once (a
hostile-caller audit, round 14: a `vmjobs serve` of the test driver
peaked at 664 MB for 64 refused ones, 1.6 GB before their values were let
go at once). Past its first 64 KiB a request takes room from
REQUEST_ROOM requests of rpc.max_request_bytes while it is handled; one
that finds none waits. Beside the controls: a small request is answered
meanwhile, and every large one is answered once room is given back."""

import json
import socket
import threading

from conftest import WAIT
from vmjobs.config import Config
from vmjobs.server import FREE_REQUEST_BYTES, REQUEST_ROOM, Server

BOUND = 1024 * 1024       # rpc.max_request_bytes in this test


def _post(path, body):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(WAIT)
    s.connect(path)
    with s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                  b"application/json\r\nConnection: close\r\n"
                  b"Content-Length: " + str(len(body)).encode() +
                  b"\r\n\r\n" + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


def test_large_requests_are_handled_a_few_at_a_time(make_api, tmp_path):
    api = make_api()
    entered = []
    changed = threading.Condition()   # guards entered
    release = threading.Event()
    answer = api.answer

    def gated(method, params):
        # Host.ping waits here, its request counted as handled.
        if method == "Host.ping":
            with changed:
                entered.append(method)
                changed.notify_all()
            assert release.wait(WAIT)
        return answer(method, params)

    api.answer = gated
    path = str(tmp_path / "vmjobs.sock")
    server = Server(api, Config(listen=f"unix:{path}",
                                max_request_bytes=BOUND))
    server.start()
    room = server._server.request_room
    assert room.total == REQUEST_ROOM * BOUND
    body = json.dumps({"jsonrpc": "2.0", "id": "x" * (BOUND - 200),
                       "method": "Host.ping"}).encode()
    fit = room.total // (len(body) - FREE_REQUEST_BYTES)
    answers = []
    clients = [threading.Thread(target=lambda: answers.append(
        _post(path, body))) for _ in range(fit + 2)]
    try:
        for client in clients:
            client.start()
        # Two wait for room, as many as it holds are handled.
        assert room.wait_waiting(2, WAIT)
        with changed:
            assert changed.wait_for(lambda: len(entered) >= fit, WAIT)
            assert len(entered) == fit
        # The control: a small request is answered meanwhile.
        small = json.dumps({"jsonrpc": "2.0", "id": 1,
                            "method": "Host.getVMList"}).encode()
        assert _post(path, small)["result"] == []
    finally:
        release.set()
        for client in clients:
            client.join(WAIT)
        server.stop()
    # The control: every large one answered, once room was given back.
    assert [a["result"] for a in answers] == [True] * (fit + 2)
    assert len(entered) == fit + 2
    assert room.held == 0


def test_a_request_that_finds_no_room_in_time_is_answered_503(make_api,
                                                              tmp_path):
    """Room held past rpc.request_timeout by a request whose verb is held:
    the next large request is answered 503 with Retry-After, nothing run;
    the control: once room is given back, the same request runs."""
    api = make_api()
    entered = threading.Event()
    release = threading.Event()
    ran = []
    answer = api.answer

    def gated(method, params):
        ran.append(method)
        if method == "Host.ping" and not entered.is_set():
            entered.set()
            assert release.wait(WAIT)
        return answer(method, params)

    api.answer = gated
    path = str(tmp_path / "vmjobs.sock")
    server = Server(api, Config(listen=f"unix:{path}",
                                max_request_bytes=BOUND,
                                request_timeout=1.0))
    server.start()
    room = server._server.request_room
    # One request that takes the whole room.
    whole = json.dumps({"jsonrpc": "2.0", "id": "x" * (BOUND - 200),
                        "method": "Host.ping"}).encode()
    server._server.request_room.total = len(whole) - FREE_REQUEST_BYTES
    held = threading.Thread(target=lambda: _post(path, whole))
    try:
        held.start()
        assert entered.wait(WAIT)
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(WAIT)
        s.connect(path)
        with s:
            s.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                      b"application/json\r\nContent-Length: " +
                      str(len(whole)).encode() + b"\r\n\r\n" + whole)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        assert head[0] == b"HTTP/1.1 503 Service Unavailable"
        assert b"Retry-After: 1" in head
        assert ran == ["Host.ping"]          # the held one only
    finally:
        release.set()
        held.join(WAIT)
    try:
        assert room.wait_held(0, WAIT)
        # The control: with room, the same request runs.
        assert _post(path, whole)["result"] is True
        assert ran == ["Host.ping", "Host.ping"]
    finally:
        server.stop()
