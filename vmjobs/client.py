"""A JSON-RPC client for vmjobs' server: over TCP or a Unix socket,
optionally with a client certificate. In the core because a migration's
source calls its destination with it; the command line uses it too."""

import http.client
import itertools
import json
import socket
import ssl
import threading

from . import sse
from .config import parse_listen
from .notifications import SubscriptionCut

DEFAULT_SERVER = "unix:/run/vmjobs/vmjobs.sock"


# A kept connection the server closed, as http.client reports it.
CLOSED = (http.client.RemoteDisconnected, ConnectionResetError,
          BrokenPipeError)


class RemoteError(Exception):
    """The server answered with a JSON-RPC error."""

    def __init__(self, code, message, data=None):
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.data = data


class AnswerTooLarge(http.client.HTTPException):
    """An answer longer than the client takes (or of a length it does not
    say): left unread."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class Client:
    def __init__(self, server=DEFAULT_SERVER, cert=None, key=None, ca=None,
                 timeout=60.0, whole_call=False, max_answer_bytes=None):
        """`timeout`: seconds each read of the socket may wait; with
        `whole_call`, each call's too, from its connect to its answer's
        last byte (a peer that trickles its answer gains nothing).
        `max_answer_bytes`: the longest answer taken (None: any), for a
        peer that is not trusted to be what it says (a migration's
        destination): a longer one, or one of no stated length, is
        refused unread (AnswerTooLarge)."""
        self._call_timeout = timeout if whole_call else None
        self._max_answer_bytes = max_answer_bytes
        self._timed_out = False
        kind, address = parse_listen(server)
        if kind == "unix":
            self._connection = _UnixConnection(address, timeout)
        elif ca is not None:
            context = ssl.create_default_context(cafile=ca)
            context.check_hostname = False   # the CA is the identity
            if cert is not None:
                context.load_cert_chain(cert, key)
            self._connection = http.client.HTTPSConnection(
                *address, timeout=timeout, context=context)
        else:
            self._connection = http.client.HTTPConnection(*address,
                                                          timeout=timeout)
        self._ids = itertools.count(1)
        # The connection was answered before: the server may have closed
        # it since (idle past its deadline, or to make room at its cap).
        self._kept = False
        self._stream_socket = None   # the socket of events(), once called
        # Guards _interrupted, set by interrupt() from another thread.
        self._interrupt_lock = threading.Lock()
        self._interrupted = False

    def call(self, method, params=None):
        """The verb's result; raises RemoteError with its code."""
        request = {"jsonrpc": "2.0", "method": method,
                   "id": next(self._ids)}
        if params is not None:
            request["params"] = params
        response = self.post(json.dumps(request).encode())
        if "error" in response:
            error = response["error"]
            raise RemoteError(error["code"], error["message"],
                              error.get("data"))
        return response["result"]

    def post(self, body):
        """POST raw bytes; the decoded JSON answer."""
        if self._call_timeout is None:
            return self._post(body)
        # The whole call's bound: past it, interrupted (its socket shut
        # down), whatever read it waits in.
        timer = threading.Timer(self._call_timeout, self._time_out)
        timer.daemon = True
        timer.start()
        try:
            return self._post(body)
        except (OSError, http.client.HTTPException):
            if self._timed_out:
                raise TimeoutError(f"no whole answer within "
                                   f"{self._call_timeout:g} s") from None
            raise
        finally:
            timer.cancel()

    def _time_out(self):
        self._timed_out = True
        self.interrupt()

    def _post(self, body):
        kept, self._kept = self._kept, False
        try:
            response = self._send(body)
        except CLOSED:
            if not kept:
                raise
            # The server closes a kept connection only before it read a
            # request (never one whose verb runs): send it again, once.
            self._connection.close()
            response = self._send(body)
        self._kept = not response.will_close
        data = self._read(response)
        if response.status != 200:
            raise RemoteError(response.status,
                              f"HTTP {response.status}: {data[:200]!r}")
        return json.loads(data)

    def _read(self, response):
        limit = self._max_answer_bytes
        if limit is None:
            return response.read()
        if response.length is None or response.length > limit:
            self._connection.close()
            self._kept = False
            raise AnswerTooLarge(
                f"an answer of {response.length or 'unstated'} bytes, more "
                f"than the {limit} taken")
        return response.read()

    def _send(self, body):
        # Connected here, not by request(), so that an interrupt() finds
        # the socket to shut down, or (while connecting) is seen after.
        self._check_interrupted()
        if self._connection.sock is None:
            self._connection.connect()
            self._check_interrupted()
        self._connection.request("POST", "/", body=body, headers={
            "Content-Type": "application/json"})
        return self._connection.getresponse()

    def events(self, last_event_id=None):
        """GET /events: the notifications (notifications.Notification, with
        the time each was read) after `last_event_id` (None: the live ones
        only), until the service ends the stream. Raises SubscriptionCut if
        the stream is cut short (the subscriber fell behind, or the
        connection broke): resume from its last_id. The client's
        connection is the stream's from now on."""
        headers = {"Accept": sse.CONTENT_TYPE}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self._connection.request("GET", "/events", headers=headers)
        self._stream_socket = self._connection.sock
        response = self._connection.getresponse()
        if response.status != 200:
            data = response.read()
            raise RemoteError(response.status,
                              f"HTTP {response.status}: {data[:200]!r}")
        return _events(response, last_event_id)

    def close(self):
        """Close the connection; a stream read in another thread ends (its
        reader gets SubscriptionCut)."""
        if self._stream_socket is not None:
            try:
                self._stream_socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._connection.close()

    def _check_interrupted(self):
        with self._interrupt_lock:
            if self._interrupted:
                raise ConnectionAbortedError("the call was interrupted")

    def interrupt(self):
        """From another thread: the call in flight fails at once (OSError
        or http.client's HTTPException; one still connecting, once
        connected), and so does every later one; the connection stays its
        owner's to close."""
        with self._interrupt_lock:
            self._interrupted = True
            sock = self._connection.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _events(response, last_id):
    lines = _lines(response)
    where = [last_id]   # the last id the stream set: where it is
    try:
        yield from sse.read(lambda: next(lines, b""), where)
    except sse.FrameTooLarge:
        raise       # the server's, not a cut: resuming would repeat it
    except (http.client.HTTPException, OSError, ValueError) as exc:
        # (http.client reports some bodies cut short as a chunk size
        # that is no number.)
        raise SubscriptionCut(where[0]) from exc
    finally:
        response.close()


def _lines(response):
    """The lines of a response's body as they come. read1() raises
    IncompleteRead on a chunked body cut short (readline() would take it
    for the end): the cut is told apart from the last chunk."""
    pending = b""
    while data := response.read1(65536):
        *lines, pending = (pending + data).split(b"\n")
        for line in lines:
            yield line + b"\n"
        if len(pending) > sse.MAX_FRAME_BYTES:
            raise sse.FrameTooLarge(f"a line of the event stream longer "
                                    f"than {sse.MAX_FRAME_BYTES} bytes")
    if pending:
        yield pending
