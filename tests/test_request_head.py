"""request_head.py: each rule of the request head, a refusal beside the
head it accepts (the server's side of it is in test_hostile_caller.py)."""

import io

import pytest

from vmjobs import request_head
from vmjobs.request_head import Refused

GOOD = [b"Host: localhost\r\n", b"Content-Type: application/json\r\n",
        b"Content-Length: 2\r\n"]


def read(request_line, lines):
    return request_head.read(request_line,
                             io.BytesIO(b"".join(lines) + b"\r\n").readline)


def refusal(request_line, lines):
    with pytest.raises(Refused) as refused:
        read(request_line, lines)
    return refused.value.status


def test_a_plain_request_is_read():
    head = read(b"POST / HTTP/1.1\r\n", GOOD)
    assert (head.method, head.target, head.version) == ("POST", "/",
                                                        "HTTP/1.1")
    assert head.headers.get("content-length") == "2"
    assert head.headers.get("Host") == "localhost"
    assert head.headers.get("X-Missing", "none") == "none"
    assert head.keep_alive and not head.expects_continue


@pytest.mark.parametrize("line,status", [
    (b"GET /\r\n", 400),                      # HTTP/0.9
    (b"GET / HTTP/2.0\r\n", 505),
    (b"GET / HTTP/0.9\r\n", 400),
    (b"GET  / HTTP/1.1\r\n", 400),            # two spaces
    (b"GET / HTTP/1.1 \r\n", 400),
    (b"GET http://evil.example/ HTTP/1.1\r\n", 400),   # absolute form
    (b"GET /a b HTTP/1.1\r\n", 400),
    (b"GET /\x00 HTTP/1.1\r\n", 400),
    (b"G(T / HTTP/1.1\r\n", 400),             # not a token
    (b"GET / HTTPS/1.1\r\n", 400),
])
def test_request_lines_refused(line, status):
    assert refusal(line, GOOD) == status


@pytest.mark.parametrize("line,version,keep_alive", [
    (b"GET /metrics HTTP/1.1\r\n", "HTTP/1.1", True),
    (b"GET /metrics HTTP/1.0\r\n", "HTTP/1.0", False),
    (b"GET /metrics HTTP/1.9\n", "HTTP/1.1", True),    # a later minor
    (b"PATCH /x?y=%20 HTTP/1.1\r\n", "HTTP/1.1", True),
])
def test_request_lines_accepted(line, version, keep_alive):
    head = read(line, GOOD)
    assert head.version == version and head.keep_alive is keep_alive


@pytest.mark.parametrize("lines,status", [
    ([b"Host : localhost\r\n"], 400),            # space before the colon
    ([b"Host: localhost\r\n", b" evil.example\r\n"], 400),   # folded
    ([b"X-A: \x01\r\n"], 400),                    # control character
    ([b"X-A: a\rb\r\n"], 400),                    # a bare CR
    ([b"No colon\r\n"], 400),
    ([b": empty name\r\n"], 400),
    ([b"Content-Length: 2\r\n", b"Content-Length: 20\r\n"], 400),
    ([b"Host: localhost\r\n", b"Host: evil.example\r\n"], 400),
    ([b"host: localhost\r\n", b"HOST: localhost\r\n"], 400),
    ([b"Content-Type: application/json\r\n",
      b"Content-Type: text/plain\r\n"], 400),
    ([b"Transfer-Encoding: chunked\r\n"], 501),
    ([b"Transfer-Encoding: identity\r\n", b"Content-Length: 2\r\n"], 501),
    ([b"X-Long: " + b"a" * request_head.MAX_LINE + b"\r\n"], 431),
    ([b"X-%d: a\r\n" % i for i in range(request_head.MAX_FIELDS + 1)], 431),
])
def test_header_fields_refused(lines, status):
    assert refusal(b"POST / HTTP/1.1\r\n", lines) == status


def test_header_fields_accepted():
    head = read(b"POST / HTTP/1.1\r\n", [
        b"host:localhost\r\n",                     # no space: fine
        b"X-Twice: a\r\n", b"x-twice: b\r\n",      # joined
        b"X-Spaces: \t inner  spaces \t\r\n",
        b"X-Latin: caf\xe9\r\n",
        b"Connection: keep-alive, close\n",        # a bare LF
        *[b"X-%d: a\r\n" % i for i in range(request_head.MAX_FIELDS - 5)]])
    assert head.headers.get("HOST") == "localhost"
    assert head.headers.get("x-twice") == "a, b"
    assert head.headers.get("x-spaces") == "inner  spaces"
    assert head.headers.get("x-latin") == "caf\u00e9"
    assert not head.keep_alive


def test_expect_continue_is_seen_on_http_1_1_only():
    lines = [*GOOD, b"Expect: 100-Continue\r\n"]
    assert read(b"POST / HTTP/1.1\r\n", lines).expects_continue
    assert not read(b"POST / HTTP/1.0\r\n", lines).expects_continue


def test_a_head_cut_short_is_no_head():
    readline = io.BytesIO(b"Host: localhost\r\nContent-Le").readline
    assert request_head.read(b"POST / HTTP/1.1\r\n", readline) is None


def test_a_line_of_the_longest_length_is_read():
    value = b"a " * ((request_head.MAX_LINE - 10) // 2)
    line = b"X-A: " + value + b"\r\n"
    assert len(line) <= request_head.MAX_LINE
    head = read(b"POST / HTTP/1.1\r\n", [line])
    assert head.headers.get("x-a") == value.decode().strip()


@pytest.mark.parametrize("value,length", [
    ("0" * 5000 + "12", 12),                 # leading zeros: any number
    ("9" * 5000, 10 ** request_head.MAX_LENGTH_DIGITS),   # past int()'s
    ("1" + "0" * 18, 10 ** request_head.MAX_LENGTH_DIGITS),
    ("9" * 18, 10 ** 18 - 1), ("0", 0), ("00", 0), ("²", None),
])
def test_a_length_of_any_number_of_digits_is_read(value, length):
    assert request_head.parse_content_length(value) == length


def test_the_fields_are_bounded_in_all():
    """At most MAX_FIELDS_BYTES of field lines, each line under MAX_LINE:
    two lines of 40 KiB are too many bytes; one is read."""
    pad = b"X-Pad: " + b"a" * (40 * 1024) + b"\r\n"
    assert refusal(b"POST / HTTP/1.1\r\n", [*GOOD, pad, pad]) == 431
    lines = [*GOOD, pad]
    lines.append(b"X-B: " + b"b" * (request_head.MAX_FIELDS_BYTES - len(
        b"".join(lines)) - 7) + b"\r\n")
    assert len(b"".join(lines)) == request_head.MAX_FIELDS_BYTES
    assert read(b"POST / HTTP/1.1\r\n", lines).headers.get("x-pad")
    assert refusal(b"POST / HTTP/1.1\r\n", [*lines, b"X-C: c\r\n"]) == 431
