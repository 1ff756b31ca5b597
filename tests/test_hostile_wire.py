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

import errno
import json
import socket
import ssl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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

    def send_all_of(self, data):
        """Send `data`, end the connection's sending side, and return
        every byte the server sends until it closes (a Unix socket or
        plain TCP only)."""
        with self.connect() as sock:
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass   # refused before it was all sent: read the answer
            except OSError as exc:
                # Reset before the shutdown (ENOTCONN): read the answer.
                if exc.errno != errno.ENOTCONN:
                    raise
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
    return [(status, body) for status, body, _ in typed_answers(data)]


def typed_answers(data):
    """The answers in `data`: [(status, body, Content-Type)]."""
    found = []
    while data:
        head, sep, data = data.partition(b"\r\n\r\n")
        assert sep, head
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        if 100 <= status < 200:
            continue
        fields = dict(line.lower().split(b":", 1) for line in lines[1:])
        length = int(fields[b"content-length"])
        found.append((status, data[:length],
                      fields[b"content-type"].strip()))
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
    """The JSON-RPC answers in `data`."""
    return [json.loads(body) for status, body, content_type
            in typed_answers(data)
            if status == 200 and content_type == b"application/json"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The module's servers, one per transport, each started once."""
    made = {}

    def get(kind):
        if kind not in made:
            made[kind] = Wire(kind, tmp_path_factory.mktemp(kind))
        return made[kind]
    yield get
    for one in made.values():
        one.stop()


@pytest.fixture(params=TRANSPORTS)
def wire(request, served):
    return served(request.param)


@pytest.fixture(params=("unix", "tcp"))
def half_closed_wire(request, served):
    """A transport whose client may end its side and still read (TLS has
    no half close): what it sent is all there is, so the server answers
    or closes at once, never waits for the rest of a head."""
    return served(request.param)


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


# -- any head: a call runs only when its head keeps the rules ---------------

# Bounded, and the same examples each run (derandomize): about 10 s in all.
PROPERTY = settings(max_examples=150, deadline=None, database=None,
                    derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

# The fields the server reads at most once (request_head.ONCE, restated:
# what the test expects, not what the code says).
ONCE = {b"host", b"content-length", b"content-type", b"connection",
        b"expect", b"last-event-id"}


class Part:
    """A piece of a request's head: its bytes, whether it keeps HTTP's
    syntax and the service's rules, and, for a field, its name."""

    def __init__(self, data, good, name=None):
        self.data, self.good, self.name = data, good, name


def field(line, good=True):
    """A header line that is well-formed (name: value) with its name."""
    return Part(line, good, line.split(b":", 1)[0].lower())


def malformed(line):
    return Part(line, False)


METHODS = [Part(b"POST", True), Part(b"post", False), Part(b"GET", False),
           Part(b"PUT", False), Part(b"POST\x00", False),
           Part(b"P(ST", False)]
TARGETS = [Part(b"/", True), Part(b"http://localhost/", False),
           Part(b"//", False), Part(b"/?a", False), Part(b"*", False),
           Part(b"/\x80", False), Part(b"", False), Part(b"/ /", False)]
VERSIONS = [Part(b"HTTP/1.1", True), Part(b"HTTP/1.0", True),
            Part(b"HTTP/1.9", True),      # a later minor reads as 1.1
            Part(b"HTTP/2.0", False), Part(b"http/1.1", False),
            Part(b"HTTP/1.1 ", False), Part(b"HTTP/1", False),
            Part(b"HTTP/1.1\x00", False)]
SPACES = [Part(b" ", True), Part(b"  ", False), Part(b"\t", False)]
LINE_ENDS = [Part(b"\r\n", True), Part(b"\n", True),   # a bare LF: allowed
             Part(b"\r", False), Part(b"\r\x00\n", False)]
HEAD_ENDS = [Part(b"\r\n", True), Part(b"\n", True)]


def hosts(loopback_only):
    """Host lines; on plain TCP only a loopback Host is served."""
    return [field(b"Host: localhost"), field(b"host:127.0.0.1:1"),
            field(b"Host: [::1]:2"), field(b"HOST:  LOCALHOST. \t"),
            field(b"Host: evil.example", good=not loopback_only),
            field(b"Host: localhost.evil.example", good=not loopback_only),
            malformed(b"Host : localhost"), malformed(b" Host: localhost")]


CONTENT_TYPES = [field(b"Content-Type: application/json"),
                 field(b"content-type: Application/JSON; charset=utf-8"),
                 field(b"Content-Type: text/plain", good=False),
                 field(b"Content-Type: application/jsonp", good=False),
                 malformed(b"Content-Type: application/json\x00")]


def lengths(n):
    """Content-Length lines for a body of n bytes: right, or not."""
    return [field(b"Content-Length: %d" % n),
            field(b"Content-Length: 0%d" % n),
            field(b"content-length:\t%d \t" % n),
            field(b"Content-Length: " + b"0" * 5000 + b"%d" % n),
            field(b"Content-Length: +%d" % n, good=False),
            field(b"Content-Length: %d, %d" % (n, n), good=False),
            field(b"Content-Length: %d" % (n - 1), good=False),
            field(b"Content-Length: %d" % (n + 1), good=False),
            field(b"Content-Length: 99999999999", good=False),
            field(b"Content-Length: \xd9\xa1", good=False),
            malformed(b"Content-Length : %d" % n)]


EXTRAS = [field(b"X-A: b"), field(b"X-A:"), field(b"X-A: \x80\xff"),
          field(b"X-A: a\tb"), field(b"Expect: 100-continue"),
          field(b"Connection: keep-alive"), field(b"Connection: close"),
          field(b"Accept: */*"), field(b"Host: localhost"),
          field(b"Transfer-Encoding: chunked", good=False),
          field(b"Transfer-Encoding: identity", good=False),
          malformed(b"X-A: a\x00"), malformed(b"X-A: a\rb"),
          malformed(b"X-A b"), malformed(b"X A: b"), malformed(b": b"),
          malformed(b"X-A: a\r\n b"),        # obs-fold
          malformed(b"X-A: a\r\n\tb"), malformed(b"X-A: \x7f")]


class Request:
    """One generated request: its bytes, whether its call must run, and
    whether its connection goes on after its answer."""

    def __init__(self, data, runs, goes_on):
        self.data, self.runs, self.goes_on = data, runs, goes_on


def probe_body(request_id):
    return call_body("Wire.probe", request_id)


def mostly_good(draw, parts):
    """One of `parts`: a good one nine times in ten, else any (so that
    about a third of the requests run, each other broken in a part or
    two)."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(parts))
    return draw(st.sampled_from([p for p in parts if p.good]))


def mostly_there(draw, parts):
    """A field of `parts`, or (one time in twenty) none."""
    return None if draw(st.integers(0, 19)) == 0 else mostly_good(draw,
                                                                  parts)


@st.composite
def requests(draw, request_id, loopback_only):
    """A POST of a probe whose every part is drawn from the good and the
    bad forms above; it must run if and only if every part is good, the
    fields it needs are there, and none the server reads is given
    twice."""
    body = probe_body(request_id)
    line = [mostly_good(draw, parts) for parts in (
        METHODS, SPACES, TARGETS, SPACES, VERSIONS)]
    fields = [mostly_there(draw, hosts(loopback_only)),
              mostly_there(draw, CONTENT_TYPES),
              mostly_there(draw, lengths(len(body))),
              *[mostly_good(draw, EXTRAS)
                for _ in range(draw(st.integers(0, 3)))]]
    fields = draw(st.permutations([f for f in fields if f is not None]))
    ends = [mostly_good(draw, LINE_ENDS) for _ in range(len(fields) + 1)]
    head_end = draw(st.sampled_from(HEAD_ENDS))
    data = b"".join(p.data for p in line) + ends[0].data + b"".join(
        f.data + end.data for f, end in zip(fields, ends[1:], strict=True)) \
        + head_end.data + body
    names = [f.name for f in fields if f.name is not None]
    runs = all(p.good for p in (*line, *fields, *ends)) and \
        not any(names.count(name) > 1 for name in ONCE) and \
        {b"content-type", b"content-length"} <= set(names) and \
        (b"host" in names or not loopback_only)
    connection = [f.data.lower() for f in fields if f.name == b"connection"]
    if line[4].data == b"HTTP/1.0":
        goes_on = connection == [b"connection: keep-alive"]
    else:
        goes_on = connection != [b"connection: close"]
    return Request(data, runs, goes_on)


def probed(data):
    """The ids of the probes answered in `data` (-32601), in order."""
    return [answer["id"] for answer in ran(data)
            if answer.get("error", {}).get("code") == -32601]


@PROPERTY
@given(data=st.data())
def test_a_head_runs_its_call_only_when_it_keeps_the_rules(
        half_closed_wire, data):
    """Any POST of a call, each part of its head drawn from well-formed
    and broken forms (the request line, Host, Content-Type, a
    Content-Length right or wrong, ambiguous or huge, Transfer-Encoding,
    obs-fold, bare CR, NUL, a bare LF, Expect, HTTP/1.0, fields twice):
    its call runs, answered with its id, if and only if the head keeps
    the rules; and the service answers the next request (GET /metrics)."""
    wire = half_closed_wire
    request = data.draw(requests(1, wire.kind == "tcp"))
    before = wire.probes()
    got = wire.send_all_of(request.data)
    assert probed(got) == ([1] if request.runs else []), got
    assert wire.probes() == before + request.runs


@PROPERTY
@given(head=st.binary(max_size=400))
def test_any_bytes_as_a_head_run_nothing(half_closed_wire, head):
    """Any bytes as a request's head, a call's body after them: nothing
    runs (no random bytes make a POST the service takes), and the service
    answers the next request."""
    before = half_closed_wire.probes()
    got = half_closed_wire.send_all_of(head + probe_body(1))
    assert probed(got) == [], got
    assert half_closed_wire.probes() == before


def smuggler(request_id):
    """A GET whose body is a whole POST of a probe: answered 200 ("ready"),
    its body read and dropped, never run."""
    inner = post(probe_body(request_id), close=False)
    return Request(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(inner) + inner,
                   runs=False, goes_on=True)


@PROPERTY
@given(data=st.data())
def test_pipelined_requests_are_answered_in_order_and_only_when_well_formed(
        half_closed_wire, data):
    """Two to four requests sent at once on one connection, each drawn
    as above (or a GET whose body is a whole POST): every call answered
    is one whose head keeps the rules, answered with its own id, in the
    order sent; each well-formed one runs until a request that is not, or
    one that ends the connection; no call runs unanswered."""
    wire = half_closed_wire
    count = data.draw(st.integers(2, 4))
    sent = [data.draw(requests(i, wire.kind == "tcp") | st.just(
        smuggler(100 + i))) for i in range(1, count + 1)]
    before = wire.probes()
    got = probed(wire.send_all_of(b"".join(r.data for r in sent)))
    assert wire.probes() == before + len(got)
    # Until the first that does not run, or ends the connection, each
    # runs in turn.
    expected = []
    for request_id, request in enumerate(sent, 1):
        if not request.runs:
            break
        expected.append(request_id)
        if not request.goes_on:
            break
    assert got[:len(expected)] == expected, (got, sent)
    # Past it, only well-formed ones, in order (a 415 or a 404 goes on).
    runnable = [i for i, r in enumerate(sent, 1) if r.runs]
    rest = iter(runnable[len(expected):])
    assert all(request_id in rest for request_id in got[len(expected):]), \
        (got, runnable)
