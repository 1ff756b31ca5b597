"""Domain lifecycle events: libvirt's event loop (one thread per process),
and the events of one adapter handed to subscribers by the domain's UUID.
A subscriber's callback runs on the event-loop thread: it must not block.

On a daemon the events come on a connection of their own, so that a
broken one can be replaced without waiting for a borrower: at once when
libvirt says it closed (the daemon stopped or restarted), as soon as the
daemon answers again; on the test driver, on its one shared connection.
What happened while no connection listened is lost: watchers are told
(`missed`) and read what they need again."""

import logging
import threading

import libvirt

from .connections import alive
from .errors import HypervisorError, translated

log = logging.getLogger("vmjobs.hypervisor")

_loop_lock = threading.Lock()   # guards _loop_thread
_loop_thread = None


def start_event_loop():
    """libvirt's default event loop, once per process: needed before any
    connection can deliver domain events. libvirt itself makes this
    global."""
    global _loop_thread
    with _loop_lock:
        if _loop_thread is not None:
            return
        libvirt.virEventRegisterDefaultImpl()

        def loop():
            while True:
                libvirt.virEventRunDefaultImpl()

        _loop_thread = threading.Thread(
            target=loop, name="libvirt-events", daemon=True)
        _loop_thread.start()


class Events:
    def __init__(self, connections):
        """Hand the lifecycle events of every domain on `connections`' host
        to subscribers and watchers, from the first subscribe() or watch()
        until close().

        Nothing listens before that: each event costs the daemon a
        message, and this process a wake-up of the event thread, a domain
        object and a turn of the GIL taken from the workers (three events
        per VM started; docs/benchmarks.md, the pool's own cost and
        section 2). So on the test driver, where nothing watches, a storm
        of creations has no listener; on a daemon the API watches every
        domain (a guest paused outside vmjobs), where a VM's start costs
        far more than its events."""
        self._connections = connections
        # Guards _subscribers and _watchers; callbacks are called after it
        # is released.
        self._subscribers_lock = threading.Lock()
        self._subscribers = {}   # uuid -> {token: callback}
        self._watchers = {}      # token -> (callback, missed) of every domain
        # Guards _conn and _id (set by the first subscribe(), then only
        # replaced by another connection) and _closed.
        self._conn_lock = threading.Lock()
        self._conn = None
        self._id = None
        self._closed = False
        connections.on_reconnect = self.reconnect_if_lost

    def subscribe(self, uuid, callback):
        """Call `callback(event, detail)` on every lifecycle event of domain
        `uuid` from now on, from libvirt's event thread (so it must not
        block). Returns a token for unsubscribe()."""
        self._start_listening()
        token = object()
        with self._subscribers_lock:
            self._subscribers.setdefault(uuid, {})[token] = callback
        return token

    def watch(self, callback, missed=None):
        """Call `callback(uuid, event, detail)` on every lifecycle event of
        every domain from now on, from libvirt's event thread (so it must
        not block), and `missed()` (if given, from any thread, not
        blocking either) once listening resumed on a new connection: the
        events in between are lost. Every event costs its wake-up of this
        process (the class docstring). Returns a token for unwatch()."""
        self._start_listening()
        token = object()
        with self._subscribers_lock:
            self._watchers[token] = (callback, missed)
        return token

    def unwatch(self, token):
        with self._subscribers_lock:
            self._watchers.pop(token, None)

    def _start_listening(self):
        if self._conn is None:
            with self._conn_lock:
                if self._conn is None:
                    self._listen(self._connections.shared or
                                 self._connections.open())

    def unsubscribe(self, uuid, token):
        with self._subscribers_lock:
            callbacks = self._subscribers.get(uuid, {})
            callbacks.pop(token, None)
            if not callbacks:
                self._subscribers.pop(uuid, None)

    def reconnect_if_lost(self, wait=False):
        """Listen on a new connection if ours broke (the daemon stopped or
        restarted); `wait` for a restarting daemon (Connections.open).
        Then tell the watchers what they missed."""
        with self._conn_lock:
            lost = self._conn
            if lost is None or self._closed or alive(lost):
                return
        log.warning("events connection lost: opening a new one")
        # Opened without the lock: waiting for a daemon must not hold
        # close() (a stop with libvirtd gone waited its reconnect_wait).
        conn = self._connections.open(wait=wait)
        with self._conn_lock:
            replaced = self._closed or self._conn is not lost
            if not replaced:
                self._listen(conn)
        # Outside the lock: a close is a call to the daemon.
        self._connections.forget(conn if replaced else lost)
        if replaced:
            return    # by a stop, or by another reconnect meanwhile
        with self._subscribers_lock:
            missed = [m for _, m in self._watchers.values() if m is not None]
        for callback in missed:
            try:
                callback()
            except Exception:
                log.exception("lifecycle watcher failed on missed events")

    def close(self):
        with self._conn_lock:
            self._closed = True
            if self._conn is not None:
                try:
                    self._conn.domainEventDeregisterAny(self._id)
                    if self._connections.shared is None:
                        self._conn.unregisterCloseCallback()
                except libvirt.libvirtError:
                    pass

    def _listen(self, conn):
        # Caller holds _conn_lock.
        with translated("events"):
            self._id = conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                self._on_lifecycle, None)
            if self._connections.shared is None:   # a daemon's, our own
                conn.registerCloseCallback(self._on_close, None)
        self._conn = conn

    def _on_close(self, conn, reason, opaque):
        # On libvirt's event-loop thread: the daemon went away (a close of
        # our own is not one). Listen again once it is back, from a thread
        # of its own: the wait must not hold the event loop.
        if reason == libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT or self._closed:
            return
        threading.Thread(target=self._listen_again, name="events-reconnect",
                         daemon=True).start()

    def _listen_again(self):
        try:
            self.reconnect_if_lost(wait=True)
        except HypervisorError as exc:
            # Not back within reconnect_wait: the next call that
            # reconnects (Connections.on_reconnect) listens again.
            log.warning("events not listened to until libvirt is back: %s",
                        exc)

    def _on_lifecycle(self, conn, dom, event, detail, opaque):
        # On libvirt's event-loop thread: hand the event on, nothing more.
        if not (self._subscribers or self._watchers):
            # Nobody listens (read without the lock: a subscriber being
            # added looks the domain up after subscribing, so an event it
            # misses here is a state it sees there).
            return
        try:
            uuid = dom.UUIDString()
        except libvirt.libvirtError:
            return
        with self._subscribers_lock:
            callbacks = list(self._subscribers.get(uuid, {}).values())
            watchers = list(self._watchers.values())
        for callback in callbacks:
            try:
                callback(event, detail)
            except Exception:
                log.exception("lifecycle subscriber of %s failed", uuid)
        for watcher, _ in watchers:
            try:
                watcher(uuid, event, detail)
            except Exception:
                log.exception("lifecycle watcher failed on %s", uuid)
