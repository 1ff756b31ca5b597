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

Every stream of a server is written in flushes, one at a time, with
non-blocking sends: a flush writes each stream once with all that was
posted since the last, however many streams there are, and a subscriber
that reads nothing holds nobody up. Such a stream takes nothing more from
the feed until what it was given is sent, so it stays behind and the feed
cuts it off. (The connection's own thread only waits for its stream's
end.)

Who flushes: the dispatcher, a thread of the server's, LINGER after a
notification (the rest of its burst goes with it). Under a storm the
pool's workers do: after each job's turn a worker flushes if the last
flush is FLUSH_DUE old (`flush_if_due`, run by
workers.Pool.run_between_turns), so the notifications leave at once,
where the dispatcher, woken, waited for a core and the GIL behind the
workers (milliseconds; docs/benchmarks.md, section 14). The dispatcher
still makes every flush no worker makes: the end of a burst, a stream's
opening, keep-alives and the looks for subscribers gone.

What a stream has taken from the feed and not sent yet it holds as the
notifications themselves (shared by every stream and the feed's buffer),
and only WINDOW_BYTES of them at a time as bytes of its own: a resumed
stream whose subscriber reads nothing held its whole backlog as one
chunk, a copy of the buffer (a hostile-caller audit: sixteen such
streams, resumed from the oldest id after failed jobs had filled the
buffer with 4 KiB errors, held 1.2 GB of the service's memory).
"""

import collections
import ctypes
import errno
import logging
import os
import select
import socket
import ssl
import threading
import time

from . import sse
from .notifications import SubscriptionCut

# Seconds between keep-alive comments on an idle stream.
KEEPALIVE_INTERVAL = 15.0
# Seconds between two looks whether the subscribers of idle streams closed
# their end (so that their slots are free again soon).
GONE_POLL = 1.0
# Seconds the dispatcher waits, once a notification came, for those that
# follow it in the same burst: one write for many, at that much latency.
LINGER = 0.001
# Seconds after a flush when a worker between jobs makes the next
# (flush_if_due): under a burst, one write for many as above, with no
# wake-up to wait for.
FLUSH_DUE = 0.001
# Seconds between two tries of a stream whose subscriber has not read
# what it was sent: soon while it may just be slow, then less often (its
# subscriber reads nothing: it waits to be cut off).
WRITE_RETRY = 0.005
SLOW = 1.0
WRITE_POLL = 0.25
# Seconds a stop waits for the streams to send their end.
STOP_WAIT = 5.0
# Seconds a GET /events at the cap waits for the dispatcher's look whether
# a subscriber left, and then for the slot that subscriber's stream gives
# back (its connection's thread releases it once the stream has ended).
RECLAIM_WAIT = 1.0
# The most bytes of notifications a stream frames at once (at least one
# notification): what it holds of its own beyond references to the
# feed's notifications, whatever its backlog.
WINDOW_BYTES = 256 * 1024

log = logging.getLogger("vmjobs.server")


class Streams:
    """The event streams of one server, at most `max_subscribers`."""

    def __init__(self, notifications, max_subscribers):
        self._notifications = notifications
        self._slots = threading.BoundedSemaphore(max_subscribers)
        # Guards everything below; _changed is notified as a stream opens
        # or ends, at a stop, and when a look asked for at the cap is done.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._open = set()       # subscriptions of the connections served
        self._streams = set()    # their _Streams, once answered
        self._stopping = None    # time.monotonic() of the stop
        self._dispatcher = None
        # Looks whether subscribers left, asked for at the cap (a count),
        # the count the dispatcher's last look answered, and how many
        # streams that look found gone.
        self._looks_asked = 0
        self._looks_done = 0
        self._found_gone = 0
        # A stream opened since the dispatcher last looked: its backlog
        # (a resume, a resync) goes at once, not after the next
        # notification or look (GONE_POLL) on an idle service.
        self._opened = threading.Event()
        # Set by the stop: the dispatcher's linger ends at once.
        self._stop_asked = threading.Event()
        # Held for a flush (_flush), the dispatcher's or a worker's
        # (flush_if_due): one at a time. Guards the _Streams (their sockets
        # and what they have to send) and the two fields below, written by
        # each flush; read without it as a hint whether to make one.
        self._flushing = threading.Lock()
        self._flushed_at = float("-inf")   # time.monotonic() of the last
        self._flushed_id = None            # the feed's newest id as it began

    def serve(self, handler):
        """Answer GET /events on `handler`'s connection, until the stream
        ends (the service stops, the subscriber is cut or goes away)."""
        handler.close_connection = True   # the stream is the last answer
        last_id = handler.headers.get("Last-Event-ID")
        if last_id is not None:
            try:
                last_id = int(last_id.strip())
            except ValueError:
                return handler.answer(400, b"Last-Event-ID must be the "
                                      b"id of an event (an integer)\n",
                                      close=True)
        if not self._slots.acquire(blocking=False) and not self._reclaim():
            return handler.answer_busy(
                b"too many event streams: retry later\n")
        try:
            with self._lock:
                try:
                    subscription = None if self._stopping else \
                        self._notifications.subscribe(last_id)
                except RuntimeError:   # closed: the service stops
                    subscription = None
                if subscription is not None:
                    self._open.add(subscription)
            if subscription is None:
                return handler.answer_busy(b"the service is stopping\n")
            handler.server.leave_connection_slots()
            try:
                stream = _open_stream(handler, subscription)
                with self._lock:
                    self._streams.add(stream)
                    self._start_dispatcher()
                    self._changed.notify_all()
                self._opened.set()
                self._notifications.wake()
                stream.done.wait()
            finally:
                subscription.close()
                with self._lock:
                    self._open.discard(subscription)
                    self._changed.notify_all()
        finally:
            self._slots.release()

    def stop(self, timeout=STOP_WAIT):
        """End every stream cleanly (what was posted, then its last
        chunk), waiting up to `timeout` seconds for them; no new stream
        opens."""
        with self._lock:
            self._stopping = time.monotonic()
            self._stop_asked.set()
            for subscription in self._open:
                subscription.close()
            self._changed.notify_all()
            self._changed.wait_for(lambda: not self._open, timeout)

    def _reclaim(self):
        """At the cap: have the dispatcher look at once whether a
        subscriber closed its end (it looks by itself only every
        GONE_POLL), and take the slot such a stream gives back; True if
        taken. A client that closes its stream and opens another (an
        engine reconnecting) is then served, not refused for the second
        the service takes to notice (the clean-room run against API.md:
        "at most events.max_subscribers streams open at once")."""
        with self._lock:
            if self._dispatcher is None or self._stopping:
                return False
            self._looks_asked += 1
            asked = self._looks_asked
        # Wakes the dispatcher's wait for a notification (as a new stream
        # does); set after the count, so the flush that clears it sees it.
        self._opened.set()
        self._notifications.wake()
        with self._lock:
            if not self._changed.wait_for(
                    lambda: self._looks_done >= asked or self._stopping,
                    RECLAIM_WAIT):
                return False
            found = self._found_gone
        return bool(found) and self._slots.acquire(timeout=RECLAIM_WAIT)

    def _start_dispatcher(self):
        # Caller holds _lock.
        if self._dispatcher is None:
            self._dispatcher = threading.Thread(
                target=self._dispatch, name="vmjobs-events", daemon=True)
            self._dispatcher.start()

    def _dispatch(self):
        """Write every stream until the stop has ended them all."""
        seen = None
        gone_due = time.monotonic() + GONE_POLL
        while True:
            with self._lock:
                self._changed.wait_for(
                    lambda: self._streams or self._stopping, None)
                if not self._streams:
                    self._dispatcher = None
                    return
                streams = list(self._streams)
            with self._flushing:
                now = time.monotonic()
                blocked = [s.sock for s in streams if s.pending]
                slow = any(now - (s.blocked_since or now) < SLOW
                           for s in streams if s.pending)
            if slow or len(blocked) == len(streams):
                try:
                    _ready(blocked, select.POLLOUT,
                           WRITE_RETRY if slow else WRITE_POLL)
                except (OSError, ValueError):
                    pass   # a socket closed under it: its flush ends it
            else:
                # A notification, a stream's end (a stop), or time to look.
                seen = self._notifications.wait_past(
                    seen, GONE_POLL, unless=self._opened.is_set)
                self._stop_asked.wait(LINGER)   # the rest of the burst
            with self._lock:
                asked = self._looks_asked
                look_asked = asked > self._looks_done
                stopping = self._stopping
            now = time.monotonic()
            look = now >= gone_due or look_asked
            if not (look or stopping or self._opened.is_set()) and \
                    now - self._flushed_at < LINGER:
                # A worker flushed meanwhile: what was posted before it
                # began is sent; wait for what came after.
                seen = self._flushed_id
                continue
            self._opened.clear()
            if look:
                gone_due = now + GONE_POLL
            with self._flushing:
                gone = self._flush(look)
            if look:
                with self._lock:   # answers the looks asked at the cap
                    self._looks_done = asked
                    self._found_gone = gone
                    self._changed.notify_all()

    def flush_if_due(self):
        """Flush in the caller's thread if notifications wait for it and
        the last flush is FLUSH_DUE old; run by each of the pool's workers
        after each job's turn (it holds no lock then)."""
        if not self._streams or \
                self._notifications.newest == self._flushed_id or \
                time.monotonic() - self._flushed_at < FLUSH_DUE or \
                not self._flushing.acquire(blocking=False):
            return
        try:
            self._flush(look=False)
        finally:
            self._flushing.release()

    def _flush(self, look):
        """Send each stream what was posted since its last flush; end the
        streams that are over (`look`: and those whose subscriber left).
        Caller holds _flushing. Returns how many ended."""
        self._flushed_id = self._notifications.newest   # before any takes
        with self._lock:   # those opened meanwhile take this flush too
            streams = list(self._streams)
            stopping = self._stopping
        now = self._flushed_at = time.monotonic()
        gone = 0
        # This flush's chunks, by (first, last notification, chunked).
        chunks = {}
        for stream in streams:
            try:
                going_on = stream.flush(now, look, chunks) and not (
                    stopping and now - stopping > STOP_WAIT)
            except Exception:   # a bug: end this stream, not all
                log.exception("event stream failed")
                going_on = False
            if not going_on:
                gone += 1
                with self._lock:
                    self._streams.discard(stream)
                stream.done.set()
        return gone


class _Stream:
    """One subscriber's stream: its socket (non-blocking) and what is to
    be sent on it. Used by a flush only (Streams._flushing)."""

    def __init__(self, sock, subscription, chunked=True):
        self.sock = sock
        self.subscription = subscription
        self.chunked = chunked     # HTTP/1.1's chunks, or bare (HTTP/1.0)
        # Where the stream starts (a client cut off before any event
        # resumes from there), sent in its first flush before its backlog.
        self._opening = self._chunk(sse.position(subscription.last_id))
        # Bytes to send, of which pending[sent:] are not sent yet: at most
        # WINDOW_BYTES of notifications (or one larger), framed from the
        # backlog, the notifications taken from the feed and not framed
        # yet (shared objects, not copies).
        self.pending = b""
        self.sent = 0
        self.backlog = collections.deque()
        self._send = _sender(sock)
        self.ending = False              # its last chunk is in pending
        self.sent_at = time.monotonic()  # for the keep-alives
        self.blocked_since = None        # pending, its socket full
        self.done = threading.Event()    # it ended (the connection goes)

    def flush(self, now, look, chunks):
        """Take what was posted (once all given before is sent) and
        send what the socket takes, a window at a time. False when the
        stream is over: sent its end, cut off, or its subscriber is gone.
        `chunks`: the chunks the flush's other streams made, by the first
        and last notification of the backlog they were made from (the
        objects: a resync has the id of a real one), with how many
        notifications each holds: the streams that keep up read the same
        notifications, made into one chunk once."""
        if not self.pending and not self.backlog and not self.ending:
            try:
                events = self.subscription.get(0)
            except SubscriptionCut as cut:
                log.warning("event stream cut off: the subscriber fell "
                            "behind (after event %d)", cut.last_id)
                if not self._opening:
                    return False
                # Cut before its first flush: it still learns where it
                # started, to resume from there (and be told to resync).
                events, self.ending = [], True
            chunk = b""
            if events is None:
                chunk = b"0\r\n\r\n" if self.chunked else b""
                self.ending = True
            elif events:
                self.backlog.extend(events)
            elif now - self.sent_at >= KEEPALIVE_INTERVAL:
                chunk = self._chunk(sse.KEEPALIVE)
            elif look and not self._opening and _gone(self.sock):
                return False
            if self._opening:
                chunk, self._opening = self._opening + chunk, b""
            if chunk:
                self._queue(chunk)
        elif self.pending and self.subscription.was_cut:
            log.warning("event stream cut off: the subscriber reads nothing")
            return False
        try:
            while self.pending or self.backlog:
                if not self.pending:
                    self._queue(self._window(chunks))
                self.sent += self._send(self.pending, self.sent)
                if self.sent == len(self.pending):
                    self.pending, self.sent = b"", 0
                self.sent_at = now
            self.blocked_since = None
        except (BlockingIOError, ssl.SSLWantWriteError):
            if self.blocked_since is None:
                self.blocked_since = now
            return True   # its subscriber has not read yet
        except OSError as exc:
            log.debug("event stream ended by the subscriber: %s", exc)
            return False
        return not self.ending

    def _window(self, chunks):
        """The next chunk of the backlog: its first notifications, as
        many as fit in WINDOW_BYTES (at least one). Made once per flush for
        every stream whose backlog spans the same notifications (the
        streams that keep up took the same ones): the other streams only
        drop as many from their backlog. A backlog is a run of the feed,
        so its first and last notification say all it holds."""
        backlog = self.backlog
        span = (backlog[0], backlog[-1], self.chunked)
        made = chunks.get(span)
        if made is None:
            frames, size = [], 0
            for event in backlog:
                data = sse.frame(event)
                if frames and size + len(data) > WINDOW_BYTES:
                    break
                frames.append(data)
                size += len(data)
            made = chunks[span] = (self._chunk(b"".join(frames)),
                                   len(frames))
        chunk, count = made
        if count == len(backlog):
            backlog.clear()
        else:
            for _ in range(count):
                backlog.popleft()
        return chunk

    def _chunk(self, data):
        return b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data

    def _queue(self, data):
        self.pending, self.sent = data, 0


def _sender(sock):
    """How a flush sends on `sock`: send(data, offset) sends what
    the socket takes of data[offset:] and returns how much it took.

    On a plain socket (Unix, TCP), libc's send(2) through ctypes.PyDLL,
    which keeps the GIL: socket.send lets go of it for the call, and under
    a storm getting it back costs a wait behind the workers (milliseconds,
    measured) for each stream of each flush, where the send itself,
    non-blocking, takes a microsecond or two (docs/benchmarks.md,
    section 14). A TLS stream encrypts in the ssl module, so it uses that
    module's send."""
    if isinstance(sock, ssl.SSLSocket):
        return lambda data, offset: sock.send(memoryview(data)[offset:])
    fd = sock.fileno()

    def send(data, offset):
        # data is bytes, alive for the call: its buffer's address is
        # c_void_p's conversion of it, and the socket copies what it takes.
        address = ctypes.cast(data, ctypes.c_void_p).value + offset
        while (taken := _libc_send(fd, address, len(data) - offset,
                                   _SEND_FLAGS)) < 0:
            error = ctypes.get_errno()
            if error in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise BlockingIOError(error, os.strerror(error))
            if error != errno.EINTR:
                raise OSError(error, os.strerror(error))
        return taken
    return send


# send(2) from the process' own symbols (libc), called with the GIL held.
_libc_send = ctypes.PyDLL(None, use_errno=True).send
_libc_send.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t,
                       ctypes.c_int)
_libc_send.restype = ctypes.c_ssize_t
# Never wait (the socket is non-blocking anyway), never SIGPIPE: a
# subscriber that went away is an EPIPE, as with socket.send.
_SEND_FLAGS = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL


def _open_stream(handler, subscription):
    """Answer 200 with the stream's headers (in the connection's thread,
    under the request's timeout); the stream, from then on non-blocking."""
    sock = handler.connection
    sock.settimeout(handler.server.request_timeout)
    handler.send_response(200)
    handler.send_header("Content-Type", sse.CONTENT_TYPE)
    handler.send_header("Cache-Control", "no-cache")
    # HTTP/1.0 has no chunks: its stream is the bare events, ended by
    # the connection's close (it always closes after a stream).
    chunked = handler.request_version == "HTTP/1.1"
    if chunked:
        handler.send_header("Transfer-Encoding", "chunked")
    handler.send_header("Connection", "close")
    handler.end_headers()
    sock.setblocking(False)
    return _Stream(sock, subscription, chunked)


def _gone(sock):
    """True if the subscriber closed its end. It sends nothing after its
    request, so anything readable is its end (or bytes it had no business
    sending, which end the stream too)."""
    if not _ready([sock], select.POLLIN, 0):
        return False
    try:
        sock.recv(1)   # b"": its end; anything else: a stray byte
    except (BlockingIOError, ssl.SSLWantReadError):
        return False   # a TLS record that was no data (e.g. a ticket)
    except OSError:
        pass
    return True


def _ready(socks, events, timeout):
    """Whether any of `socks` is ready for `events` (poll(2) flags; a
    closed or reset one is ready for anything) within `timeout` seconds.
    poll, not select: select cannot take a descriptor past 1023, and a
    stream on one was ended at its first look, or spun the dispatcher
    (a hostile-caller audit, round 7: an operator's larger open-files
    limit and rpc.max_connections give streams such descriptors)."""
    poller = select.poll()
    for sock in socks:
        poller.register(sock, events)
    return bool(poller.poll(timeout * 1000))
