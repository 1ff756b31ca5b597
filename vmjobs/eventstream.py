"""GET /events: the notifications (notifications.py) as a Server-Sent
Events stream on one connection of the JSON-RPC server, after the same
checks as a verb (the listener's authentication, the Host header on plain
TCP: server.py makes them before it hands the connection here).

A stream does not count against rpc.max_connections: it gives its
connection slot back and takes one of `events.max_subscribers` instead
(one more is answered 503, Retry-After). The body is chunked, so a client
tells a clean end (the last chunk, sent when the service stops) from a
cut (the connection closed without it: the subscriber fell
`events.buffer` notifications behind, and resumes with Last-Event-ID).
A write that cannot go on (a subscriber that reads nothing) holds its own
thread only; every WRITE_POLL seconds it looks whether it was cut.
"""

import logging
import select
import socket
import ssl
import threading
import time

from . import sse
from .notifications import SubscriptionCut

# Seconds between keep-alive comments on an idle stream.
KEEPALIVE_INTERVAL = 15.0
# Seconds between two looks, on an idle stream, whether the subscriber
# closed its end (so that its slot is free again soon).
GONE_POLL = 1.0
# Seconds a stream waits, once a notification came, for those that follow
# it in the same burst: one write and one wake-up for many, at the cost
# of that much latency (a storm publishes thousands a second).
LINGER = 0.001
# Seconds a blocked write waits before it looks whether it was cut.
WRITE_POLL = 0.25
# Seconds a stop waits for the streams to send their end.
STOP_WAIT = 5.0
RETRY_AFTER = 1

log = logging.getLogger("vmjobs.server")


class Streams:
    """The event streams of one server, at most `max_subscribers`."""

    def __init__(self, notifications, max_subscribers):
        self._notifications = notifications
        self._slots = threading.BoundedSemaphore(max_subscribers)
        # Guards _open and _stopping; _ended is notified as one ends.
        self._lock = threading.Lock()
        self._ended = threading.Condition(self._lock)
        self._open = set()     # subscriptions being streamed
        self._stopping = False

    def serve(self, handler):
        """Answer GET /events on `handler`'s connection, until the stream
        ends (the service stops, the subscriber is cut or goes away)."""
        handler.close_connection = True   # the stream is the last answer
        last_id = handler.headers.get("Last-Event-ID")
        if last_id is not None:
            try:
                last_id = int(last_id.strip())
            except ValueError:
                return handler._send(400, b"Last-Event-ID must be the id "
                                     b"of an event (an integer)\n")
        if not self._slots.acquire(blocking=False):
            return _busy(handler, b"too many event streams: retry later\n")
        try:
            with self._lock:
                subscription = None if self._stopping else \
                    self._notifications.subscribe(last_id)
                if subscription is not None:
                    self._open.add(subscription)
            if subscription is None:
                return _busy(handler, b"the service is stopping\n")
            handler.server.leave_connection_slots()
            try:
                _stream(handler, subscription)
            finally:
                subscription.close()
                with self._lock:
                    self._open.discard(subscription)
                    self._ended.notify_all()
        finally:
            self._slots.release()

    def stop(self, timeout=STOP_WAIT):
        """End every stream cleanly (its last chunk sent), waiting up to
        `timeout` seconds for them; no new stream opens."""
        with self._lock:
            self._stopping = True
            for subscription in self._open:
                subscription.close()
            self._ended.wait_for(lambda: not self._open, timeout)


def _busy(handler, text):
    handler._send(503, text, close=True,
                  extra={"Retry-After": str(RETRY_AFTER)})


def _stream(handler, subscription):
    sock = handler.connection
    sock.settimeout(handler.server.request_timeout)
    handler.send_response(200)
    handler.send_header("Content-Type", sse.CONTENT_TYPE)
    handler.send_header("Cache-Control", "no-cache")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.send_header("Connection", "close")
    handler.end_headers()
    sock.settimeout(WRITE_POLL)
    idle = 0.0
    try:
        while True:
            events = subscription.get(GONE_POLL)
            if events is None:
                _write(sock, b"0\r\n\r\n", subscription)
                return
            if not events:
                idle += GONE_POLL
                if _gone(sock):
                    return
                if idle < KEEPALIVE_INTERVAL:
                    continue
            idle = 0.0
            if events:
                time.sleep(LINGER)
                events += subscription.get(0) or []
            data = b"".join(map(sse.frame, events)) if events \
                else sse.KEEPALIVE
            if not _write(sock, b"%x\r\n%s\r\n" % (len(data), data),
                          subscription):
                return
    except SubscriptionCut as cut:
        log.warning("event stream cut off: the subscriber fell behind "
                    "(after event %d)", cut.last_id)
    except OSError as exc:
        log.debug("event stream ended by the subscriber: %s", exc)


def _gone(sock):
    """True if the subscriber closed its end. It sends nothing after its
    request, so anything readable is its end (or bytes it had no business
    sending, which end the stream too)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        sock.settimeout(0)
        try:
            sock.recv(1)   # b"": its end; anything else: a stray byte
            return True
        finally:
            sock.settimeout(WRITE_POLL)
    except ssl.SSLWantReadError:
        return False   # a TLS record that was no data (e.g. a ticket)
    except OSError:
        return True


def _write(sock, data, subscription):
    """Send all of `data`; False if the subscriber was cut off while it
    waited, or the stream was closed (a stop) and it still waits
    STOP_WAIT seconds later."""
    view = memoryview(data)
    waits_closed = 0
    while view:
        try:
            view = view[sock.send(view):]
        except socket.timeout:
            if subscription.was_cut:
                return False
            if subscription.closed:
                waits_closed += 1
                if waits_closed * WRITE_POLL >= STOP_WAIT:
                    return False
    return True
