"""Domain lifecycle events: libvirt's event loop (one thread per process),
and the events of one adapter handed to subscribers by the domain's UUID.
A subscriber's callback runs on the event-loop thread: it must not block.

On a daemon the events come on a connection of their own, so that a
broken one can be replaced without waiting for a borrower; on the test
driver, on its one shared connection."""

import logging
import threading

import libvirt

from .connections import alive
from .errors import translated

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
        self._watchers = {}      # token -> callback of every domain's
        # Guards _conn and _id (set by the first subscribe(), then only
        # replaced by another connection).
        self._conn_lock = threading.Lock()
        self._conn = None
        self._id = None
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

    def watch(self, callback):
        """Call `callback(uuid, event, detail)` on every lifecycle event of
        every domain from now on, from libvirt's event thread (so it must
        not block). Every event then costs its wake-up of this process
        (the class docstring). Returns a token for unwatch()."""
        self._start_listening()
        token = object()
        with self._subscribers_lock:
            self._watchers[token] = callback
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

    def reconnect_if_lost(self):
        """Listen on a new connection if ours broke (the daemon stopped or
        restarted)."""
        with self._conn_lock:
            if self._conn is not None and not alive(self._conn):
                log.warning("events connection lost: opening a new one")
                self._listen(self._connections.open())

    def close(self):
        with self._conn_lock:
            if self._conn is not None:
                try:
                    self._conn.domainEventDeregisterAny(self._id)
                except libvirt.libvirtError:
                    pass

    def _listen(self, conn):
        # Caller holds _conn_lock.
        with translated("events"):
            self._id = conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                self._on_lifecycle, None)
        self._conn = conn

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
        for watcher in watchers:
            try:
                watcher(uuid, event, detail)
            except Exception:
                log.exception("lifecycle watcher failed on %s", uuid)
