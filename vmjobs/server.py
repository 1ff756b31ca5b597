"""The JSON-RPC server: HTTP POST / on TCP or a Unix socket, optionally
with mutual TLS.

Requests are read by the server's own threads, one per connection, never by
the job pool: a full pool never stops Host.getJobs from answering. Each
connection has `request_timeout` seconds to send its request (and finish
the TLS handshake), so a slow or half-sent request cannot hold a thread;
at most `max_connections` are served at once, more are closed at once; a
body over `max_request_bytes` is refused without being read.
"""

import http.server
import logging
import os
import socket
import socketserver
import ssl
import threading

from . import metrics
from .audit import caller_of
from .config import parse_listen
from .rpc import Dispatcher

log = logging.getLogger("vmjobs.server")


def tls_context(cert, key, ca):
    """A server context that requires a client certificate signed by ca."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.load_verify_locations(ca)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "vmjobs"
    sys_version = ""

    def setup(self):
        self.timeout = self.server.request_timeout
        super().setup()

    def do_POST(self):
        if self.path != "/":
            return self._send(404, b"not found: POST to /\n")
        length = self.headers.get("Content-Length")
        if length is None:
            return self._send(411, b"Content-Length required\n", close=True)
        if not length.isdigit():
            return self._send(400, b"bad Content-Length\n", close=True)
        if int(length) > self.server.max_request_bytes:
            # Refused unread: the connection is closed with the body unread.
            return self._send(413, b"request body too large\n", close=True)
        body = self.rfile.read(int(length))
        if len(body) < int(length):
            self.close_connection = True
            return   # the client went away mid-body
        response = self.server.dispatcher.handle(
            body, caller_of(self.connection, self.client_address))
        if response is None:
            return self._send(204, b"")
        self._send(200, response, content_type="application/json")

    def _other(self):
        self._send(405, b"method not allowed: POST to /\n",
                   extra={"Allow": "POST"})

    def do_GET(self):
        if self.path != "/metrics":
            return self._other()
        self._send(200, self.server.dispatcher.api.metrics.render(),
                   content_type=metrics.CONTENT_TYPE)

    do_PUT = do_DELETE = do_PATCH = do_HEAD = _other

    def _send(self, status, body, content_type="text/plain", close=False,
              extra=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def address_string(self):
        if isinstance(self.client_address, tuple) and self.client_address:
            return str(self.client_address[0])
        return "unix"

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.address_string(), fmt % args)


class _ServerMixin(socketserver.ThreadingMixIn):
    daemon_threads = True

    def configure(self, dispatcher, config, context):
        self.dispatcher = dispatcher
        self.request_timeout = config.request_timeout
        self.max_request_bytes = config.max_request_bytes
        self.ssl_context = context
        # Free connection slots; a connection beyond them is closed at once.
        self._slots = threading.BoundedSemaphore(config.max_connections)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            log.warning("too many connections: closing one at once")
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(self, request, client_address):
        if self.ssl_context is None:
            return super().finish_request(request, client_address)
        # The handshake runs here, in the connection's thread and under its
        # timeout, so a client that never finishes it holds no one else up.
        request.settimeout(self.request_timeout)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.info("TLS handshake refused: %s", exc)
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()

    def handle_error(self, request, client_address):
        log.debug("connection error", exc_info=True)


class _TCPServer(_ServerMixin, http.server.HTTPServer):
    allow_reuse_address = True

    def server_bind(self):
        if ":" in self.server_address[0]:
            self.address_family = socket.AF_INET6
            self.socket = socket.socket(self.address_family, self.socket_type)
        socketserver.TCPServer.server_bind(self)   # no getfqdn lookup


class _UnixServer(_ServerMixin, socketserver.UnixStreamServer):
    def server_bind(self):
        _remove_stale_socket(self.server_address)
        # Created 0600 from the start: no window where others may connect.
        old = os.umask(0o177)
        try:
            super().server_bind()
        finally:
            os.umask(old)


def _remove_stale_socket(path):
    """A socket file nobody accepts on is left by a server that died: it
    may go. One that accepts belongs to a running server: refuse."""
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise OSError(f"{path}: another server is listening there")


class Server:
    """Serves `api` on config.listen until stop()."""

    def __init__(self, api, config):
        kind, address = parse_listen(config.listen)
        context = None
        if config.tls_cert:
            context = tls_context(config.tls_cert, config.tls_key,
                                  config.tls_ca)
        cls = _UnixServer if kind == "unix" else _TCPServer
        self._unix_path = address if kind == "unix" else None
        self._server = cls(address, _Handler)
        self._server.configure(Dispatcher(api), config, context)
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
        self._thread.start()
        log.info("serving JSON-RPC on %s%s", self.address,
                 " (mutual TLS)" if self.tls else "")

    def stop(self):
        """Stop accepting; the socket file of a Unix socket is removed."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
        if self._unix_path is not None:
            try:
                os.unlink(self._unix_path)
            except FileNotFoundError:
                pass
