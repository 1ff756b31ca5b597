"""The adapter's connections to libvirt, and how a call gets one.

- on a daemon, a small set of connections that callers borrow one at a
  time (drivers.Daemon says why); one found broken after a failed call
  (the daemon stopped or restarted) is dropped, the failure reported as
  ConnectionLost, and the next borrower opens a new one in its place,
  waiting up to `reconnect_wait` for a restarting daemon to come back
  (opening a connection has no effect to undo, so waiting is safe; failing
  instead made every job that started during a restart fail);
- on the test driver, one connection lent to every caller at once
  (drivers.TestDriver says why);
- every new connection (the first ones, a migration's own, a reconnect,
  the events') opened only with OPEN_HEADROOM descriptors free, else
  refused: at its descriptor limit the process fails that call (a
  migration fails; a reconnect waits for descriptors as for a restarting
  daemon) instead of being aborted by GLib (open_connection).

How many, on a daemon: the API opens `workers` + 1 (one per worker, one
for the verbs that look, recovery's listing and the undos), the events one
of their own, and each outgoing migration one for its call (at most
`max_outgoing`). A borrowed connection carries one call at a time, so no
connection ever has more than one request in flight, well under the 5
libvirtd serves per client by default (max_client_requests), beyond which
its keepalive replies queue behind the calls. More callers than
connections (the RPC server's threads, the workers, recovery) wait for an
idle one here, not in libvirtd's queue
(tests/test_real_connection_bound.py).
"""

import errno
import logging
import os
import queue
import resource
import threading
import time

import libvirt

from .drivers import driver_of
from .errors import ConnectionLost, HypervisorError, translated

log = logging.getLogger("vmjobs.hypervisor")

# File descriptors that must be free before a new libvirt connection is
# opened. libvirt (9.0, with GLib) takes 2 for one (its socket, and its
# main context's wakeup eventfd), and with only 1 free GLib aborts the
# whole process ("Creating pipes for GWakeup: Too many open files",
# SIGTRAP; with 0 free libvirt fails cleanly, reading its configuration):
# measured, and a chaos run's service died so as a migration opened its
# own connection (round 12, seed 3305). The rest is for the other threads
# that may take one between this count and the open (an accept, a state
# file, a log file): none of them is serialized with it.
OPEN_HEADROOM = 16


class Connections:
    def __init__(self, uri, count):
        """Open `count` connections to `uri` (one on the test driver)."""
        self.uri = uri
        first = open_connection(uri)
        self.driver = driver_of(first)
        # Called (with no argument, outside any lock of ours) once a lost
        # connection was replaced: the events may have lost theirs too.
        self.on_reconnect = None
        # Seconds a borrower waits for a lost daemon to come back before
        # its call fails (ConnectionLost): the adapter's one reconnect
        # policy (an undo, Hypervisor.remove, retries within it too).
        self.reconnect_wait = 60.0
        self._lock = threading.Lock()   # guards _all (every open connection)
        self._all = [first]
        # Connections not in use (None: one to open anew); callers borrow
        # one per call.
        self._idle = queue.LifoQueue()
        if self.driver.shares_one_connection:
            self.shared = first   # the test driver's one connection
            self._lend_shared = _Shared(first)
        else:
            self.shared = self._lend_shared = None
            self._idle.put(first)
            for _ in range(count - 1):
                self._idle.put(self.open())

    def __len__(self):
        with self._lock:
            return len(self._all)

    def lend(self):
        """`with connections.lend() as conn:` a connection for one call."""
        if self._lend_shared is not None:
            return self._lend_shared
        return _Borrowed(self)

    def own(self):
        """`with connections.own() as conn:` a connection for one long
        call, all its own, closed after it (on the test driver, the one
        connection: it is the whole host)."""
        if self._lend_shared is not None:
            return self._lend_shared
        return _Own(self.uri)

    def open(self, wait=False):
        """A new connection, not lent to callers (the events' own); closed
        by close(). `wait`: as soon as the daemon answers again, within
        reconnect_wait (it is restarting), else ConnectionLost."""
        if wait:
            conn = self._open_when_back()
        else:
            conn = open_connection(self.uri)
        with self._lock:
            self._all.append(conn)
        return conn

    def take(self):
        """An idle connection, all the caller's until give_back() or
        drop(); a new one in place of one dropped before, or of one
        libvirt already knows is closed (the daemon restarted while it sat
        idle: a call that changes something is never made twice, so it
        must not be lent to fail one)."""
        conn = self._idle.get()
        if conn is not None and not alive(conn):
            log.warning("connection to %s lost while idle", self.uri)
            self.forget(conn)
            conn = None
        if conn is None:
            try:
                conn = self._reconnect()
            except BaseException:
                self._idle.put(None)
                raise
        return conn

    def give_back(self, conn):
        self._idle.put(conn)

    def drop(self, conn):
        """`conn` (taken) is broken: close it; the next taker opens a new
        one in its place."""
        log.warning("connection to %s lost", self.uri)
        self.forget(conn)
        self._idle.put(None)

    def forget(self, conn):
        """Close `conn` (broken, or replaced: the events' old one) and
        forget it; nothing takes its place."""
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)
        try:
            conn.close()
        except libvirt.libvirtError:
            pass

    def close(self):
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except libvirt.libvirtError:
                pass

    def _reconnect(self):
        """A new connection in place of a lost one, opened as soon as the
        daemon answers again (within reconnect_wait)."""
        conn = self.open(wait=True)
        if self.on_reconnect is not None:
            self.on_reconnect()
        log.info("reconnected to %s", self.uri)
        return conn

    def _open_when_back(self):
        started = time.monotonic()
        while True:
            try:
                return open_connection(self.uri)
            except HypervisorError as exc:
                # reconnect_wait read at each look: a stop that sets it to
                # 0 ends the waits already under way. (Out of descriptors
                # too: other threads may give some back meanwhile.)
                if time.monotonic() - started >= self.reconnect_wait:
                    raise ConnectionLost("reconnect", exc.code,
                                         exc.message) from None
            time.sleep(0.2)   # the daemon is (re)starting: look again


def open_connection(uri):
    """A new libvirt connection to `uri`; refused (HypervisorError, call
    "open") while fewer than OPEN_HEADROOM descriptors are free, so that
    a process at its limit fails the one call instead of dying."""
    free = free_descriptors()
    if free is not None and free < OPEN_HEADROOM:
        raise HypervisorError(
            "open", libvirt.VIR_ERR_SYSTEM_ERROR,
            f"{free} file descriptors free below this process's limit "
            f"(RLIMIT_NOFILE); a new libvirt connection is opened with "
            f"{OPEN_HEADROOM} free at least (GLib aborts the process when "
            "it has none for it): refused")
    with translated("open"):
        return libvirt.open(uri)


def free_descriptors():
    """How many more descriptors this process may open now (the numbers
    below its soft RLIMIT_NOFILE that none holds: a new one takes the
    lowest free), or None if it cannot tell (no limit, no /proc). Counted
    high by one: the listing's own, closed by then."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        held = os.listdir("/proc/self/fd")
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            return 0   # not even one for the listing
        return None
    return soft - sum(1 for fd in held if int(fd) < soft)


def alive(conn):
    try:
        return conn.isAlive() == 1
    except libvirt.libvirtError:
        return False


class _Shared:
    """The test driver's one connection, lent to every caller at once."""
    __slots__ = ("conn",)

    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        return self.conn

    def __exit__(self, *exc_info):
        return False


class _Own:
    """A connection of its own for one call, closed after it."""
    __slots__ = ("uri", "conn")

    def __init__(self, uri):
        self.uri = uri

    def __enter__(self):
        self.conn = open_connection(self.uri)
        return self.conn

    def __exit__(self, *exc_info):
        try:
            self.conn.close()
        except libvirt.libvirtError:
            pass
        return False


class _Borrowed:
    """A daemon connection, lent to one caller at a time, and dropped if
    it is found broken after a failed call."""
    __slots__ = ("connections", "conn")

    def __init__(self, connections):
        self.connections = connections

    def __enter__(self):
        self.conn = self.connections.take()
        return self.conn

    def drop(self):
        """The connection was found broken inside the block, and the
        caller goes on without it: drop it now (the next taker opens a new
        one); the block's end then has nothing to give back."""
        self.connections.drop(self.conn)
        self.conn = None

    def __exit__(self, exc_type, exc, tb):
        if self.conn is None:
            return False   # dropped inside the block
        if exc_type is not None and not alive(self.conn):
            self.connections.drop(self.conn)
            if isinstance(exc, HypervisorError):
                raise ConnectionLost(exc.call, exc.code, exc.message) \
                    from None
            return False
        self.connections.give_back(self.conn)
        return False
