"""The command line (root, on a hypervisor host) against a server that
answers without end: every answer is bounded in size and in time, and the
command says so in one line (a hostile-caller audit: `vmjobs call` read an
endless answer until MemoryError at 2.4 GB, `--timeout 3` waited on for a
trickled one, and `vmjobs events` grew without end on an endless line).
Each case sits beside a well-formed answer from the same fake server, and
each command runs with its memory bounded (1 GiB), so that a regression
fails the test, not the machine."""

import os
import re
import resource
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import WAIT
from serve import ROOT
from vmjobs import sse
from vmjobs.cli_call import MAX_ANSWER_BYTES

PONG = b'{"jsonrpc": "2.0", "id": 1, "result": true}'


def answer(conn, mode):
    """Read the request (its head, then the body its Content-Length
    says), then answer it as `mode` says. Read whole: a server that
    answered and closed after the head alone made the client's sending of
    its body fail (EPIPE) whenever the two went in separate writes."""
    request = b""
    while b"\r\n\r\n" not in request:
        data = conn.recv(65536)
        if not data:
            return
        request += data
    head, _, body = request.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    while length and len(body) < int(length.group(1)):
        data = conn.recv(65536)
        if not data:
            return
        body += data
    if mode == "pong":
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(PONG) + PONG)
    elif mode == "endless":      # chunks, no end, no length stated
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 65536
        while True:
            conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    elif mode == "huge":         # a length past the bound, stated
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % (MAX_ANSWER_BYTES + 1))
        while True:
            conn.sendall(b" " * 65536)
    elif mode == "trickle":      # a header line a while, without end
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while True:
            conn.sendall(b"X-Wait: a\r\n")
            time.sleep(0.3)      # the trickle's pace: the thing under test
    elif mode in ("event-line", "event-frame", "event", "event-odd",
                  "event-bad-id"):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")

        def chunk(data):
            conn.sendall(b"%x\r\n%s\r\n" % (len(data), data))
        if mode == "event":
            chunk(b'id: 7\nevent: |virt|VM_status|x\ndata: {"jsonrpc": '
                  b'"2.0", "method": "|virt|VM_status|x", "params": '
                  b'{"x": {"vmId": "x", "status": "Up", "staging": '
                  b'false}}}\n\n')
            chunk(b"")
        elif mode == "event-bad-id":   # ids that are no event's, then one
            up = (b'event: |virt|VM_status|x\ndata: {"jsonrpc": "2.0", '
                  b'"method": "|virt|VM_status|x", "params": {"x": '
                  b'{"vmId": "x", "status": "%s", "staging": false}}}\n\n')
            for bad in ("\u00b2".encode(), b"9" * 5000, b"+7", b"1_0"):
                chunk(b"id: %s\n" % bad + up % b"Paused")
            chunk(b"id: 6\ndata: \xff\xfe not UTF-8\n\n")
            chunk(b"id: 7\n" + up % b"Up")
            chunk(b"")
        elif mode == "event-odd":      # of a shape API.md does not give
            chunk(b'id: 8\nevent: |virt|VM_status|x\ndata: {"jsonrpc": '
                  b'"2.0", "method": "|virt|VM_status|x", "params": '
                  b'{"x": 1}}\n\n')
            chunk(b"")
        elif mode == "event-line":     # one line that never ends
            chunk(b"data: ")
            while True:
                chunk(b"y" * 65536)
        else:                          # short lines, one endless frame
            while True:
                chunk(b"data: " + b"z" * 1000 + b"\n")


@pytest.fixture
def fake_server(tmp_path):
    """fake_server(mode) -> the --server address of a server answering
    every connection as `mode`."""
    listeners = []

    def start(mode):
        path = str(tmp_path / f"{mode}.sock")
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(path)
        listener.listen()
        listeners.append(listener)

        def serve():
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return          # closed: the test ended
                with conn:
                    try:
                        answer(conn, mode)
                    except OSError:
                        pass        # the client went away
        threading.Thread(target=serve, daemon=True).start()
        return f"unix:{path}"
    yield start
    for listener in listeners:
        listener.close()


def bounded_memory():
    limit = 1 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def vmjobs(*args):
    try:
        return subprocess.run(
            [sys.executable, "-m", "vmjobs", *args], capture_output=True,
            text=True, cwd=ROOT, timeout=WAIT, preexec_fn=bounded_memory,
            env=dict(os.environ, PYTHONPATH=ROOT))
    except subprocess.TimeoutExpired:
        pytest.fail(f"vmjobs {' '.join(args)} did not end within {WAIT} s")


def test_an_answer_is_taken_whole_and_bounded(fake_server):
    ok = vmjobs("call", "Host.ping", "--server", fake_server("pong"))
    assert (ok.returncode, ok.stdout.strip()) == (0, "true"), ok.stderr
    for mode in ("endless", "huge"):
        result = vmjobs("call", "Host.ping", "--server", fake_server(mode))
        assert result.returncode == 2, (mode, result.stderr)
        assert "answered what this command does not take" in \
            result.stderr and "bytes, more than the" in result.stderr, \
            result.stderr
        assert "Traceback" not in result.stderr


def test_the_timeout_bounds_the_whole_call(fake_server):
    result = vmjobs("call", "--timeout", "1", "Host.ping", "--server",
                    fake_server("trickle"))
    assert result.returncode == 2, result.stderr
    assert "no answer in time" in result.stderr, result.stderr


@pytest.mark.parametrize("mode", ["event-line", "event-frame"])
def test_an_event_stream_is_read_frame_by_bounded_frame(fake_server, mode):
    ok = vmjobs("events", "--server", fake_server("event"))
    assert ok.returncode == 0, ok.stderr
    assert "VM x Up" in ok.stdout, ok.stdout
    result = vmjobs("events", "--server", fake_server(mode))
    assert result.returncode == 2, result.stderr
    assert f"longer than {sse.MAX_FRAME_BYTES} bytes" in result.stderr, \
        result.stderr
    assert "resuming" not in result.stderr


def test_an_id_that_is_no_event_id_is_skipped_not_a_crash(fake_server):
    """A frame whose id is not ASCII digits ('\u00b2', which isdigit()
    takes and int() refuses; '+7' and '1_0', which int() takes) or is
    longer than any id (5,000 digits, past what int() converts) is no
    event: skipped, as SSE skips what a client does not understand; so is
    a frame whose data is not UTF-8 (decoded as SSE says, bad bytes
    replaced, it is no JSON). The command took the ValueError of the
    first two, and of the bytes, for a cut and resumed without end
    against such a server. The control: the frame after them is shown."""
    result = vmjobs("events", "--server", fake_server("event-bad-id"))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "VM x Up" in result.stdout, result.stdout
    assert "Paused" not in result.stdout, result.stdout


def test_an_event_of_another_shape_is_shown_as_it_came(fake_server):
    """Not a bug of the command (it was: KeyError, with a traceback)."""
    result = vmjobs("events", "--server", fake_server("event-odd"))
    assert result.returncode == 0, result.stderr
    assert '|virt|VM_status|x {"x": 1}' in result.stdout, result.stdout
