"""The libvirt adapter: the one module that imports libvirt.

A handful of verbs by domain UUID (define, start, state, remove, list,
metadata), libvirtError translated into HypervisorError, libvirt's stderr
error printer silenced, the event-loop thread, and the connections:

- on a daemon, a small set of connections that callers borrow one at a
  time: libvirtd serves at most 5 requests in flight per connection
  (max_client_requests), so workers sharing one connection would stall;
- on the test driver, one connection shared by all: every connection to a
  `test:///<file>` URI is a private host of its own, so per-worker
  connections would not see each other's domains.

Domain lifecycle events arrive on libvirt's event-loop thread and are
handed to subscribers by UUID; a subscriber's callback must not block.
"""

import dataclasses
import logging
import os
import queue
import tempfile
import threading
import time
import xml.etree.ElementTree as ET

import libvirt

log = logging.getLogger("vmjobs.hypervisor")

NO_DOMAIN = libvirt.VIR_ERR_NO_DOMAIN
OPERATION_INVALID = libvirt.VIR_ERR_OPERATION_INVALID
NO_SUPPORT = libvirt.VIR_ERR_NO_SUPPORT
OPERATION_UNSUPPORTED = libvirt.VIR_ERR_OPERATION_UNSUPPORTED

# Domain states as vmjobs sees them.
RUNNING = "running"
PAUSED = "paused"
SHUTOFF = "shutoff"
OTHER = "other"
# An incoming migration's domain while its transfer runs (see arrival()).
INCOMING = "incoming"

_STATES = {
    libvirt.VIR_DOMAIN_RUNNING: RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: PAUSED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: PAUSED,
    libvirt.VIR_DOMAIN_SHUTOFF: SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: SHUTOFF,
}

# Undefine also what a domain may carry beside its definition; the test
# driver knows only the first two flags.
_UNDEFINE_FLAGS_TEST = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                        libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
_UNDEFINE_FLAGS = (_UNDEFINE_FLAGS_TEST |
                   libvirt.VIR_DOMAIN_UNDEFINE_NVRAM |
                   libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)


# Live, peer to peer (the source libvirtd drives it, as VDSM does), the
# domain persistent on the destination (so that a destination whose service
# is down meanwhile recovers it as it is) and undefined here once it left.
MIGRATE_FLAGS = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER |
                 libvirt.VIR_MIGRATE_PERSIST_DEST |
                 libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
_MIGRATIONS = (libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN,
               libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT)
# Why a destination shows an incoming domain paused while it arrives.
_PAUSED_INCOMING = (libvirt.VIR_DOMAIN_PAUSED_MIGRATION,
                    libvirt.VIR_DOMAIN_PAUSED_STARTING_UP)


class HypervisorError(Exception):
    """A libvirt call failed; `code` is libvirt's error code."""
    expected = True

    def __init__(self, call, code, message):
        super().__init__(f"{call}: {message} (libvirt error {code})")
        self.call = call
        self.code = code
        self.message = message


class DomainNotFound(HypervisorError):
    pass


class ConnectionLost(HypervisorError):
    """The connection to the daemon broke (it stopped or restarted); the
    next call opens a new one."""


class _translated:
    """`with _translated(call):` turns a libvirtError into ours. (A class:
    a generator-based context manager costs several times more, and there
    are a few around every call.)"""
    __slots__ = ("call",)

    def __init__(self, call):
        self.call = call

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None or not issubclass(exc_type, libvirt.libvirtError):
            return False
        code = exc.get_error_code()
        cls = DomainNotFound if code == NO_DOMAIN else HypervisorError
        raise cls(self.call, code, exc.get_error_message() or str(exc)) \
            from None


class _Shared:
    """The test driver's one connection, lent to every caller at once."""
    __slots__ = ("conn",)

    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        return self.conn

    def __exit__(self, *exc_info):
        return False


class _Borrowed:
    """A daemon connection, lent to one caller at a time. One found broken
    after a failed call (the daemon stopped or restarted) is dropped, the
    failure reported as ConnectionLost, and the next borrower opens a new
    one in its place."""
    __slots__ = ("hv", "conn")

    def __init__(self, hv):
        self.hv = hv

    def __enter__(self):
        conn = self.hv._idle.get()
        if conn is None:
            try:
                conn = self.hv._reconnect()
            except BaseException:
                self.hv._idle.put(None)
                raise
        self.conn = conn
        return conn

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and not _alive(self.conn):
            self.hv._drop(self.conn)
            self.hv._idle.put(None)
            if isinstance(exc, HypervisorError):
                raise ConnectionLost(exc.call, exc.code, exc.message) \
                    from None
            return False
        self.hv._idle.put(self.conn)
        return False


class _Dedicated:
    """A connection of its own for one call, closed after it."""
    __slots__ = ("uri", "conn")

    def __init__(self, uri):
        self.uri = uri

    def __enter__(self):
        with _translated("open"):
            self.conn = libvirt.open(self.uri)
        return self.conn

    def __exit__(self, *exc_info):
        try:
            self.conn.close()
        except libvirt.libvirtError:
            pass
        return False


def _alive(conn):
    try:
        return conn.isAlive() == 1
    except libvirt.libvirtError:
        return False


@dataclasses.dataclass(frozen=True)
class GuestKind:
    """What a new minimal guest is made of on this connection."""
    domain_type: str   # test, kvm or qemu
    arch: str
    machine: str | None


@dataclasses.dataclass(frozen=True)
class DomainInfo:
    uuid: str
    name: str
    state: str
    persistent: bool
    metadata: str | None   # our metadata element, if the domain has it


# -- the process-wide event loop ------------------------------------------

_event_loop_lock = threading.Lock()   # guards _event_loop_thread
_event_loop_thread = None


def _start_event_loop():
    """libvirt's default event loop, once per process: needed before any
    connection can deliver domain events. libvirt itself makes this global."""
    global _event_loop_thread
    with _event_loop_lock:
        if _event_loop_thread is not None:
            return
        libvirt.registerErrorHandler(lambda ctx, err: None, None)
        libvirt.virEventRegisterDefaultImpl()

        def loop():
            while True:
                libvirt.virEventRunDefaultImpl()

        _event_loop_thread = threading.Thread(
            target=loop, name="libvirt-events", daemon=True)
        _event_loop_thread.start()


# -- the adapter -----------------------------------------------------------

class Hypervisor:
    def __init__(self, uri=None, connections=1, domain_type=None):
        """Connect to `uri`; None means a private instance of libvirt's
        test driver, made for this object and removed by close().
        `domain_type` picks the guests' type (kvm, qemu, test) where the
        connection offers several; by default the fastest offered."""
        _start_event_loop()
        self._private_host = None
        if uri is None:
            fd, self._private_host = tempfile.mkstemp(
                prefix="vmjobs-testhost-", suffix=".xml")
            with os.fdopen(fd, "w") as f:
                f.write("<node/>\n")
            uri = "test://" + self._private_host
        self.uri = uri
        # How long an undo (remove) waits for a lost daemon to come back.
        self.reconnect_timeout = 60.0
        with _translated("open"):
            first = libvirt.open(uri)
        self.is_test_driver = first.getType().lower() == "test"
        # Guards _all (every open connection) and the events connection.
        self._conns_lock = threading.Lock()
        self._all = [first]
        # Connections not in use (None: one to open anew); callers borrow
        # one per call.
        self._idle = queue.LifoQueue()
        self._shared = first if self.is_test_driver else None
        self._lend_shared = _Shared(first)
        if not self.is_test_driver:
            self._idle.put(first)
            for _ in range(connections - 1):
                with _translated("open"):
                    conn = libvirt.open(uri)
                self._all.append(conn)
                self._idle.put(conn)
        self._undefine_flags = (_UNDEFINE_FLAGS_TEST if self.is_test_driver
                                else _UNDEFINE_FLAGS)
        # Guards _subscribers; callbacks are called after it is released.
        self._subscribers_lock = threading.Lock()
        self._subscribers = {}   # uuid -> {token: callback}
        # Events come on a connection of their own on a daemon (so that a
        # broken one can be replaced without waiting for a borrower).
        self._events_conn = None
        self._events_id = None
        with self._conns_lock:
            self._open_events(first if self.is_test_driver else None)
        self.guest = self._guest_kind(domain_type)
        log.info("connected to %s (%d connection(s), guests: %s)",
                 uri, len(self._all), self.guest)

    def close(self):
        with self._conns_lock:
            if self._events_conn is not None:
                try:
                    self._events_conn.domainEventDeregisterAny(
                        self._events_id)
                except libvirt.libvirtError:
                    pass
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except libvirt.libvirtError:
                pass
        if self._private_host is not None:
            os.unlink(self._private_host)
            self._private_host = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _connection(self):
        if self._shared is not None:
            return self._lend_shared
        return _Borrowed(self)

    def _reconnect(self):
        """A new connection in place of a lost one (and a new events
        connection, if that one is lost too)."""
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            raise ConnectionLost("reconnect", exc.get_error_code(),
                                 exc.get_error_message() or str(exc)) \
                from None
        with self._conns_lock:
            self._all.append(conn)
            if not _alive(self._events_conn):
                log.warning("events connection lost: opening a new one")
                self._open_events(None)
        log.info("reconnected to %s", self.uri)
        return conn

    def _drop(self, conn):
        log.warning("connection to %s lost", self.uri)
        with self._conns_lock:
            if conn in self._all:
                self._all.remove(conn)
        try:
            conn.close()
        except libvirt.libvirtError:
            pass

    def _open_events(self, conn):
        # Caller holds _conns_lock.
        if conn is None:
            with _translated("events"):
                conn = libvirt.open(self.uri)
            self._all.append(conn)
        with _translated("events"):
            self._events_id = conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                self._on_lifecycle, None)
        self._events_conn = conn

    # -- verbs --------------------------------------------------------------

    def state(self, uuid):
        """The domain's state, or None if there is no such domain."""
        with self._connection() as conn, _translated("state"):
            try:
                dom = conn.lookupByUUIDString(uuid)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == NO_DOMAIN:
                    return None
                raise
            return _STATES.get(dom.state()[0], OTHER)

    def define(self, domain_xml):
        """Define a persistent domain (does not start it)."""
        with self._connection() as conn, _translated("define"):
            conn.defineXML(domain_xml)

    def start(self, uuid, paused=False):
        """Start a defined domain, paused if asked."""
        with self._connection() as conn, _translated("start"):
            dom = conn.lookupByUUIDString(uuid)
            if not paused:
                dom.create()
            elif self.is_test_driver:
                # The test driver refuses VIR_DOMAIN_START_PAUSED.
                dom.create()
                dom.suspend()
            else:
                dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)

    def remove(self, uuid):
        """Destroy the domain if it runs and undefine it if it is defined.
        Whatever part is already gone is fine: removal is idempotent, so
        when the daemon is lost (restarting) it is tried again until it is
        back, up to reconnect_timeout: an undo must not be left half done.
        Returns True if there was a domain."""
        deadline = time.monotonic() + self.reconnect_timeout
        while True:
            try:
                return self._remove_once(uuid)
            except ConnectionLost:
                if time.monotonic() > deadline:
                    raise
                log.warning("removing domain %s: daemon lost; trying again",
                            uuid)
                time.sleep(0.2)

    def _remove_once(self, uuid):
        with self._connection() as conn, _translated("remove"):
            try:
                dom = conn.lookupByUUIDString(uuid)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == NO_DOMAIN:
                    return False
                raise
            _ignoring(dom.destroy, NO_DOMAIN, OPERATION_INVALID)
            _ignoring(lambda: dom.undefineFlags(self._undefine_flags),
                      NO_DOMAIN, OPERATION_INVALID)
            return True

    def save(self, uuid, path):
        """Save the running domain's state to `path`; the domain stops."""
        with self._connection() as conn, _translated("save"):
            conn.lookupByUUIDString(uuid).save(path)

    def saved_domain_xml(self, path):
        """The domain XML inside a saved-state file (the file is only read)."""
        with self._connection() as conn, _translated("read saved state"):
            return conn.saveImageGetXMLDesc(path, 0)

    def restore(self, path, uuid, paused=False):
        """Restore the domain `uuid` saved in `path`, running or paused as
        asked, whatever state it was saved in. The file is read, never
        changed or removed."""
        with self._connection() as conn, _translated("restore"):
            if not self.is_test_driver:
                conn.restoreFlags(path, None, libvirt.VIR_DOMAIN_SAVE_PAUSED
                                  if paused else
                                  libvirt.VIR_DOMAIN_SAVE_RUNNING)
                return
            # The test driver takes no flag: set the state by hand.
            conn.restore(path)
            dom = conn.lookupByUUIDString(uuid)
            state = _STATES.get(dom.state()[0], OTHER)
            if paused and state == RUNNING:
                dom.suspend()
            elif not paused and state == PAUSED:
                dom.resume()

    def persist(self, uuid):
        """Make a transient domain persistent with its current definition
        (a restored or migrated-in domain may arrive transient)."""
        with self._connection() as conn, _translated("persist"):
            dom = conn.lookupByUUIDString(uuid)
            if not dom.isPersistent():
                conn.defineXML(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE))

    def set_metadata(self, uuid, metadata_ns, prefix, element_xml):
        """Set our metadata element, live and (if persistent) in the config."""
        with self._connection() as conn, _translated("set metadata"):
            dom = conn.lookupByUUIDString(uuid)
            flags = libvirt.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0
            if dom.isPersistent():
                flags |= libvirt.VIR_DOMAIN_AFFECT_CONFIG
            dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, element_xml,
                            prefix, metadata_ns, flags)

    def create_transient(self, domain_xml, paused=False):
        """Create and start a transient domain (what an incoming migration
        leaves on a destination); used to simulate one on the test driver."""
        with self._connection() as conn, _translated("create"):
            dom = conn.createXML(domain_xml, 0)
            if paused:
                dom.suspend()

    def resume(self, uuid):
        with self._connection() as conn, _translated("resume"):
            conn.lookupByUUIDString(uuid).resume()

    # -- live migration (the source side; the test driver cannot migrate) --

    def migratable_xml(self, uuid):
        """The domain's XML as a destination must receive it."""
        with self._connection() as conn, _translated("migratable xml"):
            return conn.lookupByUUIDString(uuid).XMLDesc(
                libvirt.VIR_DOMAIN_XML_MIGRATABLE)

    def migrate(self, uuid, dst_uri, migration_uri=None, max_bandwidth=None):
        """Migrate the domain live, peer to peer, to the libvirtd at
        `dst_uri` (the data over `migration_uri` when given, at most
        `max_bandwidth` MiB/s); return once it runs there. The destination gets it persistent and the source's
        definition goes (a vmjobs domain is persistent: without
        UNDEFINE_SOURCE a shut-off copy would stay here). The call lasts as
        long as the transfer, so it has a connection of its own: it must
        not hold one that other callers borrow."""
        params = {}
        if migration_uri:
            params[libvirt.VIR_MIGRATE_PARAM_URI] = migration_uri
        if max_bandwidth:
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = max_bandwidth
        with self._dedicated() as conn, _translated("migrate"):
            conn.lookupByUUIDString(uuid).migrateToURI3(
                dst_uri, params, MIGRATE_FLAGS)

    def abort_job(self, uuid):
        """Abort the domain's running job (a migration); False if it has
        none yet or any more (or is gone)."""
        with self._connection() as conn, _translated("abort job"):
            try:
                conn.lookupByUUIDString(uuid).abortJob()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() in (NO_DOMAIN, OPERATION_INVALID):
                    return False
                raise
            return True

    def migration_progress(self, uuid):
        """Percent (0-99) of an outgoing migration of the domain, from
        libvirt's job stats; None while it has no such job (not yet, or
        no more). 100 is for the caller to say, once the migration
        returned: data remaining reaches 0 before it has ended."""
        stats = self._job_stats(uuid)
        if stats is None or stats.get("operation") != \
                libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT:
            return None
        total = stats.get(libvirt.VIR_DOMAIN_JOB_DATA_TOTAL, 0)
        remaining = stats.get(libvirt.VIR_DOMAIN_JOB_DATA_REMAINING, 0)
        if not total:
            return 0
        return min(99, 100 - 100 * remaining // total)

    def migrating(self, uuid):
        """True while the domain migrates, in or out (after a restart of
        ours, say): its state will change when that ends."""
        if self.is_test_driver:
            return False
        stats = self._job_stats(uuid)
        if stats is not None and stats.get("operation") in _MIGRATIONS:
            return True
        return self.arrival(uuid) == INCOMING

    def arrival(self, uuid):
        """Where an incoming migration of the domain is: None (nothing here
        yet, or no more), INCOMING (the transfer runs: libvirt shows it
        paused for the migration), or RUNNING / PAUSED once it has ended
        (a guest paused on the source arrives paused). The test driver
        cannot migrate: there a paused domain is a simulated transfer."""
        with self._connection() as conn, _translated("state"):
            try:
                state, reason = conn.lookupByUUIDString(uuid).state()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == NO_DOMAIN:
                    return None
                raise
        state = _STATES.get(state, OTHER)
        if state == PAUSED and (self.is_test_driver or
                                reason in _PAUSED_INCOMING):
            return INCOMING
        return state

    def subscribe(self, uuid, callback):
        """Call `callback(event, detail)` on every lifecycle event of domain
        `uuid`, from libvirt's event thread (so it must not block). Returns
        a token for unsubscribe()."""
        token = object()
        with self._subscribers_lock:
            self._subscribers.setdefault(uuid, {})[token] = callback
        return token

    def unsubscribe(self, uuid, token):
        with self._subscribers_lock:
            callbacks = self._subscribers.get(uuid, {})
            callbacks.pop(token, None)
            if not callbacks:
                self._subscribers.pop(uuid, None)

    def list_domains(self, metadata_ns):
        """Every domain: running, paused and defined-but-stopped ones, with
        our metadata element where it carries one."""
        with self._connection() as conn, _translated("list"):
            domains = conn.listAllDomains(0)
            return [self._info(dom, metadata_ns) for dom in domains]

    def metadata(self, uuid, metadata_ns):
        with self._connection() as conn, _translated("metadata"):
            return _metadata(conn.lookupByUUIDString(uuid), metadata_ns)

    # -- internals ------------------------------------------------------------

    def _job_stats(self, uuid):
        """The domain's job stats; None if it has no job, is stopped or
        gone, or the driver has none (the test driver)."""
        with self._connection() as conn, _translated("job stats"):
            try:
                stats = conn.lookupByUUIDString(uuid).jobStats()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() in (NO_DOMAIN, OPERATION_INVALID,
                                            NO_SUPPORT,
                                            OPERATION_UNSUPPORTED):
                    return None
                raise
        if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == \
                libvirt.VIR_DOMAIN_JOB_NONE:
            return None
        return stats

    def _dedicated(self):
        """A connection for one long call, closed after it (the test
        driver's one connection is its whole host: shared instead)."""
        if self._shared is not None:
            return self._lend_shared
        return _Dedicated(self.uri)

    def _on_lifecycle(self, conn, dom, event, detail, opaque):
        # On libvirt's event-loop thread: hand the event on, nothing more.
        if not self._subscribers:
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
        for callback in callbacks:
            try:
                callback(event, detail)
            except Exception:
                log.exception("lifecycle subscriber of %s failed", uuid)

    def _info(self, dom, metadata_ns):
        try:
            return DomainInfo(
                uuid=dom.UUIDString(), name=dom.name(),
                state=_STATES.get(dom.state()[0], OTHER),
                persistent=bool(dom.isPersistent()),
                metadata=_metadata(dom, metadata_ns))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != NO_DOMAIN:
                raise
            # Gone between the listing and this look: report it as stopped
            # and transient, which is what is left of it.
            return DomainInfo(dom.UUIDString(), dom.name(), SHUTOFF, False,
                              None)

    def _guest_kind(self, wanted=None):
        with self._connection() as conn, _translated("capabilities"):
            caps = ET.fromstring(conn.getCapabilities())
        host_arch = caps.findtext("host/cpu/arch")
        candidates = []
        for guest in caps.findall("guest"):
            if guest.findtext("os_type") != "hvm":
                continue
            arch = guest.find("arch")
            types = {d.get("type") for d in arch.findall("domain")}
            machines = [m.text for m in arch.findall("machine")]
            for rank, kind in enumerate(("kvm", "qemu", "test")):
                if kind in types and wanted in (None, kind):
                    machine = "pc" if "pc" in machines else (
                        machines[0] if machines else None)
                    candidates.append(
                        (arch.get("name") != host_arch, rank,
                         GuestKind(kind, arch.get("name"), machine)))
        if not candidates:
            raise HypervisorError("capabilities", libvirt.VIR_ERR_NO_SUPPORT,
                                  f"{self.uri} offers no hvm guest of type "
                                  f"{wanted or 'kvm, qemu or test'}")
        return min(candidates, key=lambda c: c[:2])[2]


def _ignoring(call, *codes):
    try:
        call()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in codes:
            raise


def _metadata(dom, metadata_ns):
    try:
        return dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, metadata_ns)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
            return None
        raise
