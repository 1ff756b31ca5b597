"""The head of an HTTP request (its request line and header fields), read
by the rules of HTTP/1.1 (RFC 9112) and accepted only when it keeps them:
what the server reads of a caller before anything else.

http.server reads the header fields with the standard library's email
parser, which takes what HTTP forbids: a field folded over two lines, a
space before the colon, a Host or a Content-Length given twice (the first
one counted, so `Host: localhost` then `Host: evil.example` passed the
DNS-rebinding check). This reader accepts:

- a request line `METHOD SP TARGET SP HTTP/1.x`: a method of token
  characters, a target in origin form (`/` then visible ASCII), HTTP/1.0
  or HTTP/1.1 (a later major version: 505; anything else, HTTP/0.9's
  two-word line too: 400);
- header lines `name: value`: the name of token characters, the colon
  right after it, the value of visible characters, spaces and tabs
  (bytes 0x80-0xFF read as latin-1, as HTTP has it), each line ended by
  CRLF or a bare LF;
- at most MAX_FIELDS fields of at most MAX_LINE bytes each, and at most
  MAX_FIELDS_BYTES in all (431 beyond): the two bounds alone let a head
  of 6.5 MB through, held by the server until its deadline (a
  hostile-caller audit: 64 connections held 656 MB);
- at most once each field the server reads (ONCE): two Hosts or two
  Content-Lengths are how one request is read as another; other fields
  given twice are joined with ", " (RFC 9110, 5.3);
- no Transfer-Encoding (501): a request's body has a Content-Length, of
  ASCII digits only, as many as the client likes (parse_content_length).

The whole request, head and body, is read against one deadline
(DeadlineReader), so a client trickling bytes gains no time.
"""

import io
import re
import time

from . import decimals

# Bytes of one line, the request line or a header field (http.client's).
MAX_LINE = 65536
# Header fields of one request (http.client's).
MAX_FIELDS = 100
# Bytes of one request's header fields in all, their line ends included:
# a client's head is a few hundred bytes.
MAX_FIELDS_BYTES = 65536
# The fields the server reads: each may come once.
ONCE = frozenset({"host", "content-length", "content-type", "connection",
                  "expect", "last-event-id"})

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(
    rb"(" + _TOKEN + rb") (/[\x21-\x7e]*) HTTP/(\d)\.(\d)\r?\n")
# The value is one character class, its outer spaces stripped after: a
# pattern with no nesting reads a 64 KiB line in one linear pass.
_FIELD = re.compile(rb"(" + _TOKEN + rb"):([\t\x20-\x7e\x80-\xff]*)\r?\n")
_END = (b"\r\n", b"\n")
# Digits of the longest Content-Length read as its value (leading zeros
# aside): a longer one is larger than any body the server takes.
MAX_LENGTH_DIGITS = 18


class Refused(Exception):
    """The head breaks a rule: answer `status` with `text`, and close."""

    def __init__(self, status, text):
        super().__init__(text)
        self.status = status
        self.text = text


class Head:
    """An accepted head. `headers.get(name)` as http.server's own."""

    def __init__(self, method, target, version, fields):
        self.method = method
        self.target = target
        self.version = version           # "HTTP/1.0" or "HTTP/1.1"
        self.headers = Fields(fields)

    @property
    def keep_alive(self):
        """Whether the connection stays open after the answer."""
        tokens = {t.strip().lower() for t in
                  self.headers.get("Connection", "").split(",")}
        if self.version == "HTTP/1.1":
            return "close" not in tokens
        return "keep-alive" in tokens

    @property
    def has_body(self):
        """Whether a body follows the head (framed by its length, or
        chunked)."""
        return self.headers.get("Transfer-Encoding") is not None or \
            self.headers.get("Content-Length", "0").strip() != "0"

    @property
    def expects_continue(self):
        return self.version == "HTTP/1.1" and \
            self.headers.get("Expect", "").lower() == "100-continue"


class Fields:
    """Header fields by name, whatever its case."""

    def __init__(self, fields):
        self._fields = fields    # lower-case name -> value

    def get(self, name, default=None):
        return self._fields.get(name.lower(), default)


def read(request_line, readline):
    """The head whose request line (bytes, with its line end) was read,
    reading its header fields with `readline(limit)`; None if the
    connection ended before the head did. Raises Refused."""
    line = _REQUEST_LINE.fullmatch(request_line)
    if line is None:
        raise Refused(400, "bad request line: METHOD /PATH HTTP/1.1 "
                      "expected")
    method, target, major, minor = line.groups()
    if major != b"1":
        raise Refused(505 if major > b"1" else 400,
                      "HTTP/1.0 and HTTP/1.1 only")
    fields = {}
    size = 0     # of the field lines read
    while True:
        raw = readline(MAX_LINE + 1)
        if len(raw) > MAX_LINE:
            raise Refused(431, "header line too long")
        if raw in _END:
            break
        size += len(raw)
        if size > MAX_FIELDS_BYTES:
            raise Refused(431, "header fields too large")
        if not raw.endswith(b"\n"):
            return None   # the client went away mid-head
        if len(fields) == MAX_FIELDS:
            raise Refused(431, "too many header fields")
        field = _FIELD.fullmatch(raw)
        if field is None:
            raise Refused(400, "bad header line: name: value expected "
                          "(no space before the colon, no folded line, "
                          "no control character)")
        name = field.group(1).decode("ascii").lower()
        value = field.group(2).strip(b" \t").decode("latin-1")
        if name in fields:
            if name in ONCE:
                raise Refused(400, f"header {name} given twice")
            value = f"{fields[name]}, {value}"
        fields[name] = value
    if "transfer-encoding" in fields:
        raise Refused(501, "Transfer-Encoding is not supported: send the "
                      "body with a Content-Length")
    # A later minor version is read as the latest we know (RFC 9110, 2.5).
    return Head(method.decode("ascii"), target.decode("ascii"),
                "HTTP/1.0" if minor == b"0" else "HTTP/1.1", fields)


def parse_content_length(value):
    """The length as an int, or None if it is not ASCII digits only
    (decimals.parse). A length of more than MAX_LENGTH_DIGITS digits,
    leading zeros aside, is read as 10 ** MAX_LENGTH_DIGITS, larger than
    any body taken (int() of the whole text once raised in the
    connection's thread, which closed it unanswered); HTTP allows any
    number of leading zeros."""
    if value is None:
        return None
    return decimals.parse(value, MAX_LENGTH_DIGITS)


class DeadlineReader(io.RawIOBase):
    """The connection's bytes, each read bounded by what is left of the
    handler's deadline: a client sending a byte now and then gains no
    time (a socket timeout alone would restart at every byte)."""

    def __init__(self, handler):
        self._handler = handler

    def readable(self):
        return True

    def readinto(self, buffer):
        left = self._handler.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request deadline passed")
        self._handler.connection.settimeout(left)
        return self._handler.connection.recv_into(buffer)
