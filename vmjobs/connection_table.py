"""The connections the server serves at once, at most `rpc.max_connections`,
and who makes room at the cap, so that no caller locks the others out.

A connection is evictable while it waits for a request or reads one:
idle keep-alive connections, and requests still arriving (trickled ones
included). At the cap, a new connection first takes the slot of one
whose client has already closed it (its end of stream waits to be
read): in a burst of short-lived connections these fill the table, and
the client of one still finishing its verb may already have its answer
(the slot is marked idle just after the answer is written). Such a busy
one is not closed: its slot is freed and its thread ends as it would
(at most `limit` of these at once). Else the new connection closes the
evictable one that has gone longest without completing a request (since
it was accepted or last answered), and takes its slot: trickling bytes
does not count as progress, only a complete request does. A connection in its first GRACE
seconds that was never answered goes last: its client just connected and
is about to send its request (in a burst of new connections, the ones
already answered and closing make room first). A connection whose
request has been read is never closed for another (its verb runs, its
answer is written): so a closed connection never had a request run, and
its client may send it again on a new connection. Only when every slot
runs a verb is a new connection turned away (the server answers it 503
with Retry-After).
"""

import ctypes
import errno
import select
import socket
import threading
import time

# Seconds after its accept during which a connection never answered is
# closed for another only if no other can be (see above).
GRACE = 1.0


class Connection:
    """One connection's slot. Its fields are guarded by the table's lock."""

    def __init__(self, sock):
        self.sock = sock          # what to shut down to evict it
        self.accepted = time.monotonic()
        self.since = self.accepted      # accepted or last answered
        self.answered = False     # at least one request answered
        self.busy = False         # a request was read: not evictable
        self.evicted = False
        # Its slot was freed while busy (its client had closed it): it
        # runs no further request.
        self.freed = False


class ConnectionTable:
    def __init__(self, limit, grace=GRACE):
        self.limit = limit
        self.grace = grace
        # Guards _open, _finishing and every Connection's fields. Held
        # across the shutdown(2) of an evicted socket (never blocks), so
        # the socket cannot be closed, and its descriptor reused, meanwhile.
        self._lock = threading.Lock()
        self._open = set()
        self._finishing = 0   # busy connections freed, not yet left
        self.evictions = 0

    def admit(self, sock):
        """A slot for `sock` (a Connection), making room if need be; None
        when every slot is busy."""
        with self._lock:
            if len(self._open) >= self.limit and not self._free_closed():
                idle = [c for c in self._open if not c.busy]
                if not idle:
                    return None   # answered 503: retry after a second
                young = time.monotonic() - self.grace
                victim = min(idle, key=lambda c: (
                    not c.answered and c.accepted > young, c.since))
                self._evict(victim)
            connection = Connection(sock)
            self._open.add(connection)
            return connection

    def _free_closed(self):
        # Caller holds _lock. The slot of a connection its client closed,
        # if there is one: True if freed.
        for connection in self._open:
            if connection.busy and self._finishing >= self.limit:
                continue
            if _closed_by_client(connection.sock):
                if connection.busy:
                    connection.freed = True   # its thread finishes alone
                    self._finishing += 1
                    self._open.discard(connection)
                else:
                    self._evict(connection)
                return True
        return False

    def _evict(self, connection):
        connection.evicted = True
        self._open.discard(connection)
        self.evictions += 1
        try:
            # The base class' shutdown, not SSLSocket's (which would
            # touch the TLS state its own thread is using): the thread
            # blocked reading it sees the end of the stream.
            socket.socket.shutdown(connection.sock, socket.SHUT_RDWR)
        except OSError:
            pass                  # already gone

    def rebind(self, connection, sock):
        """The connection is now read through `sock` (its TLS layer)."""
        with self._lock:
            connection.sock = sock

    def start_request(self, connection):
        """Its request was read: not evictable from now on. False if it
        was evicted first (the request must then not run)."""
        with self._lock:
            if connection.evicted or connection.freed:
                return False
            connection.busy = True
            return True

    def end_request(self, connection):
        """Answered: evictable again, idle from now."""
        with self._lock:
            connection.busy = False
            connection.answered = True
            connection.since = time.monotonic()

    def leave(self, connection):
        """The connection is about to be closed: its slot is free. Called
        before the socket is closed (see the lock's comment)."""
        with self._lock:
            self._open.discard(connection)
            if connection.freed:
                connection.freed = False
                self._finishing -= 1

    def __len__(self):
        with self._lock:
            return len(self._open)


def _closed_by_client(sock):
    """True if the client closed (or reset) `sock`: its end of stream is
    what is there to read. Looked at without reading or waiting (poll(2)
    first: a socket with a timeout waits in recv() whatever its flags),
    on the socket under any TLS layer (a TLS client's close_notify comes
    first, so a TLS connection is not told apart here: it goes by the
    other rules)."""
    fd = sock.fileno()
    if fd < 0:
        return False   # detached for a moment, while TLS wraps it (rebind)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    ready = poller.poll(0)
    if not ready:
        return False   # open, nothing sent since
    if ready[0][1] & (select.POLLHUP | select.POLLERR):
        return True
    # Peeked with libc's recv(2), not socket.recv: on a socket with a
    # timeout, Python waits for data (up to what is left of the request's
    # deadline, 30 s) whatever the flags, and the connection's own thread
    # may have read what poll saw meanwhile: the accept thread then held
    # the table's lock that long, and every connection with it (found by
    # a contract audit: 30 s stalls at the cap).
    byte = ctypes.c_char()
    peeked = _libc_recv(fd, ctypes.byref(byte), 1,
                        socket.MSG_PEEK | socket.MSG_DONTWAIT)
    if peeked != -1:
        return peeked == 0   # its end of stream; else a request arriving
    # EAGAIN: what poll saw was read meanwhile by its own thread (open);
    # else the client reset it.
    return ctypes.get_errno() not in (errno.EAGAIN, errno.EWOULDBLOCK,
                                      errno.EINTR)


# recv(2) from the process' own symbols (libc); never waits (MSG_DONTWAIT).
_libc_recv = ctypes.CDLL(None, use_errno=True).recv
_libc_recv.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t,
                       ctypes.c_int)
_libc_recv.restype = ctypes.c_ssize_t
