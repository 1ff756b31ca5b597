"""The JSON-RPC server: HTTP POST / on a Unix socket (the default), or on
TCP with mutual TLS (plain TCP only on loopback, when asked: listener.py).

Requests are read by the server's own threads, one per connection, never by
the job pool: a full pool never stops Host.getJobs from answering. A
request's head is read by request_head.py's rules, strictly: one that
breaks them is answered 4xx or 5xx and the connection closed. Each
request has one deadline, `request_timeout` seconds, for the TLS handshake,
its headers and its body together, so a client that trickles bytes is cut
off; at most `max_connections` are served at once: at the cap the one that
has gone longest without a complete request is closed to make room
(connection_table.py), and only when every slot runs a verb is one more
answered 503 with Retry-After; a body over `max_request_bytes` is refused
unread.

Each answer leaves in one write (status line, headers and body), and TCP
sockets have TCP_NODELAY: an answer never waits for the client's delayed
ACK of an earlier piece (Nagle), which cost 40 ms a keep-alive call.
"""

import errno
import http.server
import io
import logging
import os
import socket
import socketserver
import ssl
import threading
import time

from . import eventstream, health, listener, request_head
from .audit import caller_of
from .budget import Budget
from .config import parse_listen
from .connection_table import ConnectionTable
from .rpc import Dispatcher

# The main listener's paths, each with the one method it takes.
PATHS = {"/": "POST", "/metrics": "GET", "/healthz": "GET",
         "/events": "GET"}
# The answer to notifications alone: nothing to answer.
NO_CONTENT = 204
# Seconds a client turned away (503) is asked to wait.
RETRY_AFTER = 1
# An answer's body up to this size leaves in one write with its head;
# a larger one is written after it, not copied into one buffer with it.
ONE_WRITE_BYTES = 64 * 1024
# A request takes no room for its first bytes: an engine's (a VM.create's
# XML is 10 to 50 KB) is never held up by large ones.
FREE_REQUEST_BYTES = 64 * 1024
# The room, in requests of max_request_bytes, that the requests being
# handled share past their first FREE_REQUEST_BYTES; a request that finds
# none waits for it, up to request_timeout (then 503). A 4 MiB VM.create
# of ASCII and one emoji takes about 40 MB while it is parsed, checked and
# composed: 64 of them at once grew a `vmjobs serve` to 2.8 GB (a
# hostile-caller audit, round 14).
REQUEST_ROOM = 4
# The answer to a connection taken at the descriptor limit (its request
# unread: no verb ran), written by the accepting thread itself.
_NO_DESCRIPTORS = b"out of file descriptors: retry later\n"
_NO_DESCRIPTORS_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: " + str(len(_NO_DESCRIPTORS)).encode() + b"\r\n"
    b"Retry-After: " + str(RETRY_AFTER).encode() + b"\r\n"
    b"Connection: close\r\n\r\n" + _NO_DESCRIPTORS)
# Seconds such a connection may take to send its request and read the
# answer (the accepting thread serves it: it has nothing else to do).
TURN_AWAY_BOUND = 1.0

log = logging.getLogger("vmjobs.server")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "vmjobs"
    expects_continue = False    # the request's head asked "100 Continue"
    _peer = None                # the audit's caller, read once (_caller)

    def version_string(self):
        # The base class appends " " + sys_version: a trailing space.
        return self.server_version

    def setup(self):
        super().setup()
        # Every read of the request runs against one deadline (set by the
        # server at accept, then anew for each further request).
        self.deadline = self.server.connection_deadline()
        self.rfile = io.BufferedReader(request_head.DeadlineReader(self),
                                       io.DEFAULT_BUFFER_SIZE)

    def parse_request(self):
        """The request's head, read by request_head.py's rules (in place
        of http.server's own reading): False, the refusal answered and the
        connection closed, if it breaks them."""
        self.command = None      # (the refusal is no answer to a HEAD)
        self.request_version = "HTTP/1.1"   # a refusal has a status line
        self.requestline = str(self.raw_requestline,
                               "iso-8859-1").rstrip("\r\n")
        try:
            head = request_head.read(self.raw_requestline,
                                     self.rfile.readline)
        except request_head.Refused as refused:
            self.answer(refused.status, refused.text.encode() + b"\n",
                        close=True)
            return False
        if head is None:
            self.close_connection = True
            return False
        self.command, self.path = head.method, head.target
        self.head_has_body = head.has_body
        self.request_version, self.headers = head.version, head.headers
        self.close_connection = not head.keep_alive
        # "100 Continue" is sent by do_POST, once the body is known to be
        # wanted: a body refused unread is never invited first.
        self.expects_continue = head.expects_continue
        return True

    def handle_one_request(self):
        super().handle_one_request()
        self.server.request_ended()
        self.deadline = time.monotonic() + self.server.request_timeout

    def do_POST(self):
        if self.server.dispatcher is None:
            # The metrics listener: it has no dispatcher, no verb runs.
            return self.answer(405, b"method not allowed: this listener "
                               b"serves GET /metrics and /healthz only\n",
                               close=True, extra={"Allow": "GET"})
        length = self.headers.get("Content-Length")
        if length is None:
            return self.answer(411, b"Content-Length required\n", close=True)
        length = request_head.parse_content_length(length)
        if length is None:
            return self.answer(400, b"bad Content-Length\n", close=True)
        if length > self.server.max_request_bytes:
            # Refused unread: the connection is closed with the body unread.
            return self.answer(413, b"request body too large\n", close=True)
        if self.expects_continue:
            self.handle_expect_100()
        # Read even when it is refused below: closing on unread bytes would
        # send the client a reset, perhaps before it read the answer.
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            return   # the client went away mid-body
        if self._refused():
            return
        if self.path != "/":
            return self._not_served()
        if not listener.content_type_allowed(self.headers.get(
                "Content-Type")):
            return self.answer(415, b"Content-Type must be application/json"
                               b"\n")
        if self._overloaded() or not self._started():
            return
        # A large request is handled only while the others being handled
        # leave room: parsed, checked and composed, one takes up to ten
        # times its bytes (server.REQUEST_ROOM).
        room = max(0, len(body) - FREE_REQUEST_BYTES)
        if not self.server.request_room.take_waiting(
                room, self.server.request_timeout):
            return self.answer_busy(b"too many large requests at once: "
                                    b"retry later\n")
        try:
            response = self.server.dispatcher.handle(body, self._caller())
        finally:
            self.server.request_room.give(room)
        # Not held while the answer is written, which lasts as long as the
        # client takes to read it (up to request_timeout).
        del body
        if response is None:
            return self.answer(NO_CONTENT, b"")
        try:
            self.answer(200, response, content_type="application/json")
        finally:
            # Written, or its client gone: its room for others (rpc.py).
            self.server.dispatcher.answered(response)

    def _caller(self):
        # Who is on the other end is fixed for the connection: a Unix
        # peer's credentials are those of its connect(), a TLS peer's
        # certificate that of the handshake (listener.tls_context allows
        # no renegotiation). Read once, not per request: a getsockopt per
        # request let go of the GIL and waited behind the workers.
        if self._peer is None:
            self._peer = caller_of(self.connection, self.client_address)
        return self._peer

    def _refused(self):
        """Answer 403 to a rebinding Host on plain TCP; True if refused."""
        if self.server.check_host and not listener.host_header_allowed(
                self.headers.get("Host")):
            self.answer(403, b"Host must be localhost or a loopback address"
                        b"\n", close=True)
            return True
        return False

    def _started(self):
        """The request was read: its connection keeps its slot until it is
        answered. False (and the connection closed, the request not run)
        if another connection took the slot first."""
        if self.server.request_started():
            return True
        self.close_connection = True
        return False

    def _overloaded(self):
        """Answer 503 on a connection over max_connections; True if so."""
        if self.server.overloaded():
            self.answer_busy(b"too many connections: retry later\n")
            return True
        return False

    def _drop_body(self):
        """A request other than a POST takes no body: one it carries is read
        and dropped, so that the connection's next request starts where
        this one ends. Left unread, its bytes would be read as the next
        request (a smuggled one: a contract audit's GET whose body was a
        POST ran it). A body too large to read, chunked or of a bad length
        is not read: the connection ends with the answer. A client that
        asked "100 Continue" is sent it before the body is read (RFC 9110,
        10.1.1): it waits for that, or for the answer, before it sends the
        body, and the server waited for the body until the deadline."""
        if self.command == "POST" or not self.head_has_body:
            return
        length = request_head.parse_content_length(
            self.headers.get("Content-Length"))
        if self.headers.get("Transfer-Encoding") is not None or \
                length is None or length > self.server.max_request_bytes:
            self.close_connection = True
            return
        if self.expects_continue:
            self.handle_expect_100()
        if len(self.rfile.read(length)) < length:
            self.close_connection = True   # the client went away

    def _other(self):
        """A method no handler of ours takes: its body dropped, refused."""
        self._drop_body()
        self._not_served()

    def _not_served(self):
        """Refuse a request (its body already dropped, once: dropped
        again, the next request's first bytes went with it) that no path
        serves: 404 for a path the listener does not serve (whatever the
        method: a GET of one was 405, Allow: POST), 405 naming the methods
        of one it serves. The metrics listener answers 405 to all."""
        if self._refused():
            return
        if self.server.dispatcher is None:
            return self.answer(405, b"method not allowed: GET /metrics or "
                               b"/healthz\n", extra={"Allow": "GET"})
        allowed = PATHS.get(self.path.partition("?")[0])
        if allowed is None or self.command == allowed:
            # (POST /?x: "/" with a query is no path of ours.)
            return self.answer(404, b"not found: POST /, GET /metrics, "
                               b"/healthz or /events\n")
        self.answer(405, f"method not allowed: {allowed} only\n".encode(),
                    extra={"Allow": allowed})

    def do_GET(self):
        """GET /metrics (Prometheus text) and /healthz (200 once ready, 503
        while recovering or stopping), under the same rules as a POST: Host
        header, authentication (the listener's), connection cap; GET /events
        on the main listener only."""
        self._drop_body()
        # The path alone: a query names no other resource (a Prometheus
        # scrape job's `params` add one to every scrape of /metrics).
        path = self.path.partition("?")[0]
        if path == "/events" and self.server.dispatcher is not None:
            # eventstream.py, with its own cap
            return self._refused() or self.server.streams.serve(self)
        if path not in ("/metrics", "/healthz"):
            return self._not_served()
        if self._refused() or self._overloaded() or not self._started():
            return
        if path == "/healthz":
            ready, text = health.state(self.server.api)
            return self.answer(200 if ready else 503, text.encode() + b"\n")
        body, content_type = self.server.api.metrics.exposition(
            self.headers.get("Accept"))
        self.answer(200, body, content_type=content_type)

    do_PUT = do_DELETE = do_PATCH = do_HEAD = _other

    def answer(self, status, body, content_type="text/plain", close=False,
               extra=None):
        """Answer `status` with `body`, headers `extra` too; `close`: the
        connection ends after it. Every plain answer of the server, and
        GET /events' refusals (eventstream.py), is written here."""
        # Writing has its own bound: a client that reads nothing holds the
        # thread no longer than a request may take.
        self.connection.settimeout(self.server.request_timeout)
        self.send_response(status)
        if status != NO_CONTENT:
            # A 204 carries neither (RFC 9110, 8.6: no Content-Length in
            # one): the answer to notifications alone.
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        if close or self.close_connection:
            self.send_header("Connection", "close")
            self.close_connection = True
        # One write for the whole answer (not end_headers' flush, then the
        # body): two small writes wait on the client's delayed ACK. A large
        # body goes in a write of its own, not copied after its head: a
        # client that does not read its answer holds it until the write's
        # deadline, and a copy held it twice (a hostile-caller audit,
        # round 13).
        self._headers_buffer.append(b"\r\n")
        if self.command == "HEAD":
            body = b""
        if len(body) <= ONE_WRITE_BYTES:
            self._headers_buffer.append(body)
            body = b""
        head = b"".join(self._headers_buffer)
        self._headers_buffer = []
        self.wfile.write(head)
        if body:
            self.wfile.write(body)

    def answer_busy(self, body):
        """Answer 503 with `body`, asking the client to come back in
        RETRY_AFTER seconds, and close the connection (a refusal of the
        server's or of GET /events, eventstream.py)."""
        self.answer(503, body, close=True,
                    extra={"Retry-After": str(RETRY_AFTER)})

    def address_string(self):
        if isinstance(self.client_address, tuple) and self.client_address:
            return str(self.client_address[0])
        return "unix"

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.address_string(), fmt % args)


class _ServerMixin:
    """One thread per connection, within the connection slots."""

    def configure(self, api, dispatcher, config, context, check_host):
        self.api = api
        self.dispatcher = dispatcher   # None: metrics and health only
        self.request_timeout = config.request_timeout
        self.max_request_bytes = config.max_request_bytes
        self.request_room = Budget(REQUEST_ROOM * config.max_request_bytes)
        self.ssl_context = context
        self.check_host = check_host
        # The backlog holds a burst of max_connections clients at once.
        self.request_queue_size = max(128, 2 * config.max_connections)
        # The connection slots; at the cap the longest idle makes room.
        self.connections = ConnectionTable(config.max_connections)
        # When every slot runs a verb, a connection beyond them is still
        # read (so closing it sends no reset) and answered 503, by one of
        # as many again overflow slots; beyond those it is closed at once.
        self._overflow = threading.BoundedSemaphore(config.max_connections)
        # Per connection thread: its deadline, and its Connection (None
        # for an overflow connection).
        self._local = threading.local()
        # A descriptor held in reserve for the accept at the process's
        # descriptor limit (get_request).
        self._spare = _reserve()
        self._shed = 0   # connections turned away at the limit, in a row

    def connection_deadline(self):
        return self._local.deadline

    def overloaded(self):
        return self._local.overflow

    def request_started(self):
        connection = self._local.connection
        return connection is None or self.connections.start_request(
            connection)

    def request_ended(self):
        if self._local.connection is not None:
            self.connections.end_request(self._local.connection)

    def leave_connection_slots(self):
        """An event stream is bounded by events.max_subscribers instead: its
        connection leaves the table (or the 503 overflow) now."""
        self._leave()
        self._local.connection = None
        if self._local.overflow:
            self._local.overflow = False
            self._overflow.release()

    def get_request(self):
        """The next connection. At the process's descriptor limit (EMFILE,
        or the system's: ENFILE) the kernel keeps it in the backlog and
        the listener stays readable: serve_forever, which takes a failed
        accept for a passing one, tried again at once for as long as the
        limit held, a whole core spent (2.99 s of CPU in 3 s, the chaos
        run's fd-limit mix) while the caller waited unanswered. Instead
        the descriptor held in reserve is given up, the connection taken
        with it, its request read and answered 503 with Retry-After (no
        verb ran) and closed (_answer_turned_away), and the reserve taken
        again: each caller is told at once, the backlog drains, and the
        loop waits for the next connection. Should the reserve be lost
        (another thread took the freed descriptor first), the next accept
        at the limit takes it back once one is free, and spins only until
        then."""
        try:
            request = super().get_request()
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            self._turn_away(exc)
            raise
        if self._shed:
            log.warning("descriptors again: %d connections were turned "
                        "away", self._shed)
            self._shed = 0
        return request

    def _turn_away(self, exc):
        if self._spare is None:
            self._spare = _reserve()
            if self._spare is None:
                return
        os.close(self._spare)
        self._spare = None
        try:
            request, _ = self.socket.accept()
        except OSError:
            request = None
        if request is not None:
            with request:
                self._answer_turned_away(request)
            if not self._shed:
                log.warning("out of file descriptors (%s): turning "
                            "connections away (503)", exc.strerror)
            self._shed += 1
        self._spare = _reserve()

    def _answer_turned_away(self, request):
        """Read the request (it arrives with the connection, or a moment
        after), answer 503, and close only once the client has (a
        lingering close): a socket closed with bytes still coming is
        reset, and a reset can reach the client before the answer does.
        All within TURN_AWAY_BOUND seconds, in the accepting thread (it
        could accept nothing else meanwhile: it has no descriptor)."""
        deadline = time.monotonic() + TURN_AWAY_BOUND
        try:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                request.settimeout(max(0.001, deadline - time.monotonic()))
                data = request.recv(65536)
                if not data:
                    break
                head += data
            if self.ssl_context is None:
                request.settimeout(max(0.001, deadline - time.monotonic()))
                request.sendall(_NO_DESCRIPTORS_ANSWER)
            request.shutdown(socket.SHUT_WR)
            while True:
                request.settimeout(max(0.001, deadline - time.monotonic()))
                if not request.recv(65536):
                    break
        except OSError:
            pass

    def server_close(self):
        super().server_close()
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None

    def process_request(self, request, client_address):
        if request.family in (socket.AF_INET, socket.AF_INET6):
            # Each answer is one write; this makes sure no piece of it
            # waits for the ACK of an earlier one either.
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        before = self.connections.evictions
        connection = self.connections.admit(request)
        if connection is None and not self._overflow.acquire(
                blocking=False):
            log.warning("too many connections: closing one at once")
            self.shutdown_request(request)
            return
        if self.connections.evictions != before:
            log.debug("at the connection cap: closed the longest idle one")
        t = threading.Thread(target=self._serve_connection,
                             args=(request, client_address, connection),
                             daemon=True)
        t.start()

    def _serve_connection(self, request, client_address, connection):
        self._local.deadline = time.monotonic() + self.request_timeout
        self._local.connection = connection
        # Not in the table: answered 503, holding one of the overflow's.
        self._local.overflow = connection is None
        if connection is None:
            log.warning("too many connections, every one busy: answering "
                        "503")
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self._leave()
            self.shutdown_request(request)
            if self._local.overflow:
                self._overflow.release()

    def _leave(self):
        """Give the slot back, before the socket is closed."""
        if self._local.connection is not None:
            self.connections.leave(self._local.connection)

    def finish_request(self, request, client_address):
        if self.ssl_context is None:
            return super().finish_request(request, client_address)
        # The handshake runs here, in the connection's thread, under the
        # request's deadline (CPython's handshake takes its timeout as one
        # deadline), so a client that never finishes it holds no one up.
        request.settimeout(max(0.001, self._local.deadline -
                               time.monotonic()))
        try:
            tls = self.ssl_context.wrap_socket(
                request, server_side=True, do_handshake_on_connect=False)
        except (ssl.SSLError, OSError) as exc:
            log.info("TLS handshake refused: %s", exc)
            return
        try:
            if self._local.connection is not None:
                # Evictable during the handshake too.
                self.connections.rebind(self._local.connection, tls)
            try:
                tls.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                log.info("TLS handshake refused: %s", exc)
                return
            super().finish_request(tls, client_address)
        finally:
            self._leave()
            tls.close()

    def handle_error(self, request, client_address):
        log.debug("connection error", exc_info=True)


def _reserve():
    """A descriptor to give up at the limit (None: none free now)."""
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


class _TCPServer(_ServerMixin, http.server.HTTPServer):
    allow_reuse_address = True

    def server_bind(self):
        if ":" in self.server_address[0]:
            self.address_family = socket.AF_INET6
            self.socket = socket.socket(self.address_family, self.socket_type)
        socketserver.TCPServer.server_bind(self)   # no getfqdn lookup


class _UnixServer(_ServerMixin, socketserver.UnixStreamServer):
    def server_bind(self):
        if self.dispatcher is None:
            # Metrics only: any local user may connect (connecting needs
            # write permission on the socket), and reach its directory.
            listener.prepare_unix_socket(self.server_address, 0o755)
            umask = 0o111
        else:
            listener.prepare_unix_socket(self.server_address)
            umask = 0o177
        # Created with its mode from the start: no window where others may
        # connect to the verbs' socket.
        old = os.umask(umask)
        try:
            super().server_bind()
        finally:
            os.umask(old)


class Server:
    """Serves `api` on config.listen until stop(); with metrics_only, serves
    GET /metrics and /healthz on config.metrics_listen, and no verb."""

    def __init__(self, api, config, metrics_only=False):
        if metrics_only:
            listener.check_metrics_listener(config)
            kind, address = parse_listen(config.metrics_listen)
        else:
            listener.check_listener(config)
            kind, address = parse_listen(config.listen)
        self.metrics_only = metrics_only
        context = None
        if config.tls_cert and not metrics_only:
            context = listener.tls_context(config.tls_cert, config.tls_key,
                                           config.tls_ca)
        cls = _UnixServer if kind == "unix" else _TCPServer
        self._unix_path = address if kind == "unix" else None
        self._server = cls(address, _Handler, bind_and_activate=False)
        dispatcher = None if metrics_only else Dispatcher(
            api, config.max_batch, config.max_response_bytes)
        self._server.configure(api, dispatcher, config, context,
                               check_host=kind == "tcp" and context is None)
        self._server.streams = eventstream.Streams(api.notifications,
                                                   config.max_subscribers)
        self._pool = None if metrics_only else api.pool
        self._flush_streams = self._server.streams.flush_if_due
        try:
            self._server.server_bind()
            self._server.server_activate()
        except BaseException:
            self._server.server_close()
            raise
        self._thread = None
        self.tls = context is not None

    @property
    def address(self):
        """Where it listens, as a --listen value (the real port if 0)."""
        if self._unix_path is not None:
            return f"unix:{self._unix_path}"
        host, port = self._server.server_address[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="vmjobs-rpc", daemon=True)
        if self._pool is not None:   # its workers send what they posted
            self._pool.run_between_turns(self._flush_streams)
        self._thread.start()
        if self.metrics_only:
            log.info("serving metrics and health on %s", self.address)
            return
        log.info("serving JSON-RPC on %s%s", self.address,
                 " (mutual TLS)" if self.tls else "")

    def stop(self):
        """Stop accepting, end the event streams; a Unix socket's file goes."""
        self._server.streams.stop()
        if self._pool is not None:
            self._pool.stop_between_turns(self._flush_streams)
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
        if self._unix_path is not None:
            try:
                os.unlink(self._unix_path)
            except FileNotFoundError:
                pass
