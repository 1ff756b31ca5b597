"""A hostile caller over the wire: what HTTP parsers get wrong, sent to a
real `vmjobs serve` on each of its transports (a Unix socket, plain TCP
on loopback with --insecure, mutual TLS), byte for byte.

What runs is read off the service itself: a request calls `Wire.probe`,
a method no verb has, so a request the dispatcher took is answered -32601
with its id and counted in vmjobs_refused_total{code="-32601"} (GET
/metrics); a request it did not take is not counted. A call that must
run, the positive control beside each refusal, is a `Host.ping` answered
true, or the probe answered with its own id.
"""

import json
import socket
import ssl

import pytest

from serve import ServeProcess
from test_server_tls import make_ca, make_cert

WAIT = 60
# The servers' request deadline: a request the server waits on for ever
# (wrongly) costs that much before it fails, not the default 30 s.
REQUEST_TIMEOUT = 10
TRANSPORTS = ("unix", "tcp", "tls")


class Wire:
    """One served process and how to reach it, byte for byte."""

    def __init__(self, kind, tmp):
        self.kind = kind
        config = f"[rpc]\nrequest_timeout = {REQUEST_TIMEOUT}\n"
        self.context = None
        if kind == "unix":
            args = ("--listen", f"unix:{tmp}/vmjobs.sock")
        elif kind == "tcp":
            args = ("--listen", "127.0.0.1:0", "--insecure")
        else:
            make_ca(tmp, "ca")
            make_cert(tmp, "server", "ca", server=True)
            make_cert(tmp, "engine", "ca")
            config += (f"tls_cert = {tmp}/server.pem\n"
                       f"tls_key = {tmp}/server.key\ntls_ca = {tmp}/ca.pem\n")
            args = ("--listen", "127.0.0.1:0")
            self.context = ssl.create_default_context(
                cafile=str(tmp / "ca.pem"))
            self.context.check_hostname = False
            self.context.load_cert_chain(str(tmp / "engine.pem"),
                                         str(tmp / "engine.key"))
        self.server = ServeProcess(*args, "--state-dir", str(tmp),
                                   config=config, tmp_path=tmp)

    def connect(self):
        address = self.server.address
        if self.kind == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(WAIT)
            sock.connect(address[len("unix:"):])
            return sock
        host, port = address.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=WAIT)
        if self.context is not None:
            sock = self.context.wrap_socket(sock)
        return sock

    def exchange(self, data):
        """Send `data` on a new connection; every byte the server sends
        until it closes the connection."""
        with self.connect() as sock:
            sock.sendall(data)
            return read_to_end(sock)

    def probes(self):
        """How many requests the dispatcher took and answered -32601."""
        status, body = answers(self.exchange(
            b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n"
            b"Connection: close\r\n\r\n"))[-1]
        assert status == 200, body
        for line in body.decode().splitlines():
            if line.startswith('vmjobs_refused_total{code="-32601"}'):
                return int(float(line.split()[-1]))
        return 0

    def stop(self):
        status, out, err = self.server.stop()
        assert status == 0, err
        assert "staged=0" in out


def read_to_end(sock):
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, ssl.SSLEOFError):
        pass   # what was read before the reset is the answer
    return data


def answers(data):
    """The answers in `data`, in order: [(status, body)], 1xx skipped."""
    found = []
    while data:
        head, sep, data = data.partition(b"\r\n\r\n")
        assert sep, head
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        if 100 <= status < 200:
            continue
        length = next(int(line.split(b":", 1)[1]) for line in lines[1:]
                      if line.lower().startswith(b"content-length:"))
        found.append((status, data[:length]))
        data = data[length:]
    return found


def call_body(method, request_id=1):
    return json.dumps({"jsonrpc": "2.0", "id": request_id,
                       "method": method}).encode()


def post(body, fields=b"", length=None, close=True):
    """A POST of `body` with its Content-Length (or `length`, bytes)."""
    length = b"%d" % len(body) if length is None else length
    return (b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
            b"application/json\r\nContent-Length: " + length + b"\r\n" +
            fields + (b"Connection: close\r\n" if close else b"") +
            b"\r\n" + body)


def ran(data):
    """The JSON answers in `data`."""
    return [json.loads(body) for status, body in answers(data)
            if status == 200]


@pytest.fixture(scope="module", params=TRANSPORTS)
def wire(request, tmp_path_factory):
    served = Wire(request.param, tmp_path_factory.mktemp(request.param))
    yield served
    served.stop()


# -- Content-Length ---------------------------------------------------------

def test_a_content_length_of_any_number_of_digits_is_answered(wire):
    """A length of more digits than int() converts (4300) raised in the
    connection's thread: the connection closed with no answer at all, a
    valid length written with 5000 leading zeros included. Now the one
    is read as its value and runs (the control: the same call with its
    plain length), the other is too large (413) and nothing runs."""
    ping = call_body("Host.ping")
    plain = ran(wire.exchange(post(ping)))
    assert plain == [{"jsonrpc": "2.0", "id": 1, "result": True}]
    zeros = wire.exchange(post(ping, length=b"0" * 5000 + b"%d" % len(ping)))
    assert ran(zeros) == plain, zeros
    before = wire.probes()
    huge = wire.exchange(post(call_body("Wire.probe"), length=b"9" * 5000))
    assert [status for status, _ in answers(huge)] == [413], huge
    # A request that takes no body: its body cannot be read, the
    # connection ends with the answer.
    get = wire.exchange(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
                        b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n")
    assert [status for status, _ in answers(get)] == [200], get
    assert wire.probes() == before


# -- the body's bytes -------------------------------------------------------

NOT_UTF_8 = {
    "utf-16": lambda text: text.encode("utf-16"),
    "utf-16-le": lambda text: text.encode("utf-16-le"),
    "utf-16-be": lambda text: text.encode("utf-16-be"),
    "utf-32": lambda text: text.encode("utf-32"),
    # A surrogate written as UTF-8 bytes (CESU-8): no UTF-8 at all.
    "encoded-surrogate": lambda text: text.replace(
        '"id": 1', '"id": "\ud800"').encode("utf-8", "surrogatepass"),
    "latin-1": lambda text: text.replace('"id": 1', '"id": "caf\u00e9"')
    .encode("latin-1"),
}


@pytest.mark.parametrize("encoding", NOT_UTF_8)
def test_a_body_that_is_not_utf_8_is_a_parse_error(wire, encoding):
    """JSON between systems is UTF-8 (RFC 8259, 8.1): a body in other
    bytes is -32700 and runs nothing. Python's json.loads(bytes) reads
    UTF-16 and UTF-32 too, and UTF-8-encoded surrogates: each ran its
    verb (Host.ping answered true; what a proxy or an audit of the bytes
    reads as UTF-8 is not what ran)."""
    body = NOT_UTF_8[encoding](call_body("Host.ping").decode())
    answer, = ran(wire.exchange(post(body)))
    assert "result" not in answer, answer
    assert answer["error"]["code"] == -32700, answer
    probe = NOT_UTF_8[encoding](call_body("Wire.probe").decode())
    before = wire.probes()
    assert ran(wire.exchange(post(probe)))[0]["error"]["code"] == -32700
    assert wire.probes() == before


def test_a_utf_8_body_runs_with_or_without_a_bom(wire):
    """The control: the same call in UTF-8, with letters beyond ASCII,
    runs; a byte order mark before it is ignored, as RFC 8259 lets a
    parser do (it reads the same either way)."""
    body = json.dumps({"jsonrpc": "2.0", "id": "caf\u00e9 \U0001f600",
                       "method": "Host.ping"}, ensure_ascii=False).encode()
    for data in (body, b"\xef\xbb\xbf" + body):
        assert ran(wire.exchange(post(data))) == [
            {"jsonrpc": "2.0", "id": "caf\u00e9 \U0001f600",
             "result": True}]


# -- Expect: 100-continue ---------------------------------------------------

def read_head(sock):
    """Bytes up to the end of the first answer's head."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("request_line,status", [
    (b"GET /healthz HTTP/1.1", 200), (b"PUT / HTTP/1.1", 405),
    (b"POST / HTTP/1.1", 200)])   # the control: a POST's body is wanted
def test_expect_100_continue_is_answered_before_the_body(
        wire, request_line, status):
    """A client that asks `Expect: 100-continue` waits for 100 (or a
    final answer) before it sends its body (RFC 9110, 10.1.1: the server
    MUST send one or the other). A request that takes no body, whose
    body the server reads and drops, got neither: the server waited for
    the body, the client for the server, until the request's deadline
    closed the connection unanswered. The body, a whole POST here, never
    runs; the connection serves its next request."""
    smuggled = post(call_body("Wire.probe", 2), close=False)
    body = smuggled if request_line != b"POST / HTTP/1.1" else \
        call_body("Wire.probe", 3)
    before = wire.probes()
    with wire.connect() as sock:
        sock.sendall(request_line + b"\r\nHost: localhost\r\nContent-Type: "
                     b"application/json\r\nExpect: 100-continue\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        first = read_head(sock)
        assert first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), first
        sock.sendall(body + post(call_body("Host.ping", 4)))
        got = answers(first + read_to_end(sock))
    assert [s for s, _ in got] == [status, 200], got
    assert json.loads(got[-1][1]) == {"jsonrpc": "2.0", "id": 4,
                                      "result": True}
    assert wire.probes() == before + (request_line == b"POST / HTTP/1.1")


# -- the head's size --------------------------------------------------------

def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


PAD = b"X-Pad: " + b"a" * (40 * 1024) + b"\r\n"


def test_a_head_is_bounded_in_all_not_per_line(wire):
    """Each header line was bounded (64 KiB) and so was their number
    (100), but not their sum: 64 connections, each sending 99 lines of
    64 KiB and then waiting, made the service hold 656 MB more (a Unix
    socket; 260 MB for 64 bodies of the 4 MiB a body may have), all of
    it kept until the request's deadline. Now a head's fields are at most
    64 KiB in all: more is 431, the connection closed, nothing run; the
    control, a head of one 40 KiB line, runs."""
    probe = call_body("Wire.probe")
    before = wire.probes()
    one = wire.exchange(post(probe, fields=PAD))
    assert ran(one)[0]["error"]["code"] == -32601, one
    two = wire.exchange(post(probe, fields=PAD + PAD))
    assert [status for status, _ in answers(two)] == [431], two
    assert wire.probes() == before + 1
    pid = wire.server.process.pid
    rss = rss_bytes(pid)
    line = b"X-Pad: " + b"a" * (64 * 1024 - 16) + b"\r\n"
    held = []
    try:
        for _ in range(64):
            sock = wire.connect()
            held.append(sock)
            try:
                sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\n" +
                             line * 99)
            except OSError:
                pass   # refused before it was all sent
        grown = rss_bytes(pid) - rss
    finally:
        for sock in held:
            sock.close()
    assert grown < 64 * 1024 * 1024, grown
    assert wire.probes() == before + 1
