"""The adapter: every call vmjobs makes on a domain. Hypervisor's verbs,
by domain UUID (define, start, state, remove, save, restore, list,
metadata, its XML, migrate, abort, job stats, resume), and the one on a
network (its bridge), each on a connection lent for the call, with
libvirtError translated into HypervisorError; a new domain's calls
(NewDomain: define, start, state) on one connection held for them; and
the module's functions they are made of, on a domain already looked up.
What the answers mean is states'."""

import dataclasses
import functools
import logging
import os
import time
import xml.etree.ElementTree as ET

import libvirt

from .connections import Connections, alive
from .drivers import TestDriver, private_test_host
from .errors import (
    NO_DOMAIN,
    OPERATION_INVALID,
    ConnectionLost,
    HypervisorError,
    ignoring,
    silence_error_printer,
    translated,
)
from .events import Events, start_event_loop
from .states import (
    PAUSED_MIGRATION,
    Activity,
    DomainState,
    activity_by_job,
    activity_by_job_error,
    activity_by_state,
    domain_state,
    has_job,
    outgoing_progress,
    pause_reason,
    paused_by_request,
)

log = logging.getLogger("vmjobs.hypervisor")


def _read(method):
    """A verb that only reads: if its connection is found lost (libvirtd
    restarted since it was last used), it is made once more, on a new one.
    Nothing was changed, so nothing can be done twice; a call that changes
    something is never repeated (its caller must look, not assume), unless
    it makes its change only once it has read it is still needed (then
    made once more, it reads again first)."""
    @functools.wraps(method)
    def read_once_more_if_lost(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except ConnectionLost:
            return method(self, *args, **kwargs)
    return read_once_more_if_lost


class Hypervisor:
    def __init__(self, uri=None, connections=1, domain_type=None):
        """Connect to `uri`; None means a private instance of libvirt's
        test driver, made for this object and removed by close().
        `domain_type` picks the guests' type (kvm, qemu, test) where the
        connection offers several; by default the fastest offered."""
        silence_error_printer()
        start_event_loop()   # before any connection that is to have events
        self._private_host = None
        if uri is None:
            uri, self._private_host = private_test_host()
        self.uri = uri
        self._connections = Connections(uri, connections)
        self._driver = self._connections.driver
        # libvirt's test driver: its VMs exist nowhere (the service says so).
        self.is_test_driver = self._driver is TestDriver
        # Others act on its domains (not the test driver's private host).
        self.shared_with_others = self._driver.shared_with_others
        # The test driver's one connection (None on a daemon): tests use it
        # to act on the host as another libvirt client would.
        self.shared_connection = self._connections.shared
        self._events = Events(self._connections)
        self.subscribe = self._events.subscribe
        self.watch = self._events.watch
        self.unwatch = self._events.unwatch
        self.unsubscribe = self._events.unsubscribe
        with self.connection() as conn, translated("capabilities"):
            capabilities = conn.getCapabilities()
        self.guest = _guest_kind(capabilities, uri, domain_type)
        log.info("connected to %s (%d connection(s), guests: %s)",
                 uri, len(self._connections), self.guest)

    def stop_waiting_for_the_daemon(self):
        """From now on a call whose daemon is gone fails at once, instead
        of waiting up to reconnect_wait for it to come back: for a stop,
        once no job needs it (an undo waits for it), so that what is left
        to do (the stop's summary) reports and exits."""
        self._connections.reconnect_wait = 0.0

    def close(self):
        self._events.close()
        self._connections.close()
        if self._private_host is not None:
            os.unlink(self._private_host)
            self._private_host = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def connection(self):
        """`with hv.connection() as conn:` a libvirt connection for one
        call (for the verbs, and for tooling that plays another client)."""
        return self._connections.lend()

    @_read
    def state(self, uuid):
        """The domain's state, or None if there is no such domain."""
        found = self._libvirt_state(uuid)
        return None if found is None else domain_state(found[0])

    @_read
    def state_reason(self, uuid):
        """(state, reason): the domain's state, and for a paused one why
        (PAUSED_MIGRATION or PAUSED_OTHER), else None; (None, None) if
        there is no such domain."""
        found = self._libvirt_state(uuid)
        if found is None:
            return None, None
        return domain_state(found[0]), pause_reason(*found)

    @_read
    def was_saved(self, uuid, path):
        """True if libvirt saved the domain into `path`: it is shut off
        with reason SAVED, or gone (a transient domain saved is removed:
        an operator's virsh undefine may come at any moment before the
        save), and `path` holds a whole saved state. False if it runs, is
        paused, or stopped another way (its QEMU killed, crashed: the file
        is cut short, and libvirt reads no state from a file it has not
        finished, "save image is incomplete"), or was saved elsewhere: an
        operator's `virsh managedsave` or `virsh save` into a file of
        their own leaves the reason SAVED too, and `path` empty."""
        found = self._libvirt_state(uuid)
        if found is not None and tuple(found[:2]) != (
                libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_SAVED):
            return False
        try:
            self.saved_domain_xml(path)
        except ConnectionLost:
            raise
        except HypervisorError:
            return False   # no saved state there: not our save
        return True

    @_read
    def migrated_away(self, uuid):
        """True if the domain is shut off because its guest migrated to
        another host (reason MIGRATED): what a migration leaves of its
        source, undefined by libvirt a moment later when the migration
        undefines its source (vmjobs' do), kept when it does not (an
        operator's `virsh migrate`). False if it runs, is paused, is gone,
        or stopped another way."""
        found = self._libvirt_state(uuid)
        return found is not None and tuple(found[:2]) == (
            libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_MIGRATED)

    def _libvirt_state(self, uuid):
        """libvirt's [state, reason] of the domain, or None if there is
        no such domain."""
        with self.connection() as conn, translated("state"):
            dom = _lookup(conn, uuid)
            return None if dom is None else _unless_gone(dom.state)

    def new_domain(self):
        """`with hv.new_domain() as new:` one connection, held for the
        calls that make one domain: new.define(xml), then new.start() and
        new.state() on the handle define returned, with no lookup (the
        calls' count, and why not fewer: docs/benchmarks.md, section 20).
        The handle is the caller's for this block only: one kept from an
        earlier job answered for a domain removed since. The connection
        still carries one request at a time; held, it is the one a worker
        has of the workers + 1 (connections.py)."""
        return NewDomain(self, self._connections.lend(), self._driver)

    def define(self, domain_xml):
        """Define a persistent domain (does not start it)."""
        with self.connection() as conn, translated("define"):
            conn.defineXML(domain_xml)

    def start(self, uuid, paused=False):
        """Start a defined domain, paused if asked."""
        with self.connection() as conn, translated("start"):
            dom = conn.lookupByUUIDString(uuid)
            if paused:
                self._driver.start_paused(dom)
            else:
                dom.create()

    def remove(self, uuid, graceful_attempts=0, keep_definition=False):
        """Destroy the domain if it runs and undefine it if it is defined
        (unless `keep_definition`); with graceful_attempts, first that many
        graceful destroys (QEMU asked to terminate, flushing its caches;
        libvirt bounds each), as VDSM's destroy does, then the forced one.
        Whatever part is already gone is fine: removal is idempotent, so
        when the daemon is lost (restarting) it is tried again until it is
        back, up to the connections' reconnect_wait: an undo must not be
        left half done.
        Returns True if there was a domain."""
        started = time.monotonic()
        while True:
            try:
                return self._remove_once(uuid, graceful_attempts,
                                         keep_definition)
            except ConnectionLost:
                # reconnect_wait read at each try, as the connections read
                # it: a stop that sets it to 0 ends this wait too.
                if time.monotonic() - started >= \
                        self._connections.reconnect_wait:
                    raise
                log.warning("removing domain %s: daemon lost; trying again",
                            uuid)
                time.sleep(0.2)   # libvirtd coming back tells no one

    def _remove_once(self, uuid, graceful_attempts, keep_definition):
        with self.connection() as conn, translated("remove"):
            dom = _lookup(conn, uuid)
            if dom is None:
                return False
            _remove_domain(dom, graceful_attempts,
                          None if keep_definition
                          else self._driver.undefine_flags)
            return True

    def save(self, uuid, path):
        """Save the running domain's state to `path`; the domain stops."""
        with self.connection() as conn, translated("save"):
            conn.lookupByUUIDString(uuid).save(path)

    @_read
    def saved_domain_xml(self, path):
        """The domain XML inside a saved-state file, whole: with its
        consoles' passwords (the secure form), since it is what a restore
        of the file is given. The file is only read."""
        with self.connection() as conn, translated("read saved state"):
            return conn.saveImageGetXMLDesc(
                path, libvirt.VIR_DOMAIN_SAVE_IMAGE_XML_SECURE)

    def restore(self, path, uuid, domain_xml, paused=False):
        """Restore the domain `uuid` saved in `path` as `domain_xml`
        describes it (libvirt takes it in place of the file's own where
        its ABI check allows; None: the file's own), running or paused as
        asked, whatever state it was saved in. The file is read, never
        changed or removed."""
        with self.connection() as conn, translated("restore"):
            self._driver.restore(conn, path, uuid, domain_xml, paused)

    def persist(self, uuid, replace=False):
        """Make a transient domain persistent with its current definition
        (a restored or migrated-in domain may arrive transient); with
        `replace`, a persistent one too (its definition becomes the
        running one's)."""
        with self.connection() as conn, translated("persist"):
            dom = conn.lookupByUUIDString(uuid)
            if replace or not dom.isPersistent():
                conn.defineXML(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE))

    def set_metadata(self, uuid, metadata_ns, prefix, element_xml):
        """Set our metadata element, live and (if persistent) in the config."""
        with self.connection() as conn, translated("set metadata"):
            _set_metadata(conn.lookupByUUIDString(uuid), metadata_ns,
                          prefix, element_xml)

    @_read
    def list_domains(self, metadata_ns, skip=frozenset()):
        """Every domain: running, paused and defined-but-stopped ones, with
        our metadata element where it carries one; but those whose UUID is
        in `skip`, left out before any call of their own (their UUID comes
        with the listing: a full host of VMs already known costs one
        listing, not two calls per domain)."""
        with self.connection() as conn, translated("list"):
            domains = [dom for dom in conn.listAllDomains(0)
                       if not skip or dom.UUIDString() not in skip]
            states = _states_of(conn, domains) if domains else {}
            return [_domain_info(dom, states.get(dom.UUIDString()),
                                 metadata_ns) for dom in domains]

    @_read
    def metadata(self, uuid, metadata_ns):
        with self.connection() as conn, translated("metadata"):
            return metadata_of(conn.lookupByUUIDString(uuid), metadata_ns)

    @_read
    def domain_xml(self, uuid):
        """The domain's XML as libvirt runs it (the live one of a running
        domain): what it names on the host."""
        with self.connection() as conn, translated("domain xml"):
            return conn.lookupByUUIDString(uuid).XMLDesc(0)

    @_read
    def network_bridge(self, name):
        """The host bridge libvirt network `name` joins its guests' taps
        to (its <bridge name>, what virNetworkGetBridgeName answers), or
        None: no such network (a guest on it does not start), or one
        without a bridge (macvtap, hostdev: its guests' NICs join none)."""
        with self.connection() as conn, translated("network"):
            try:
                network = conn.networkLookupByName(name)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
                    return None
                raise
            bridge = ET.fromstring(network.XMLDesc(0)).find("bridge")
        return None if bridge is None else bridge.get("name")

    # -- live migration (the test driver cannot migrate) ---------------------

    @_read
    def migratable_xml(self, uuid):
        """The domain's XML as a destination must receive it."""
        with self.connection() as conn, translated("migratable xml"):
            return conn.lookupByUUIDString(uuid).XMLDesc(
                libvirt.VIR_DOMAIN_XML_MIGRATABLE)

    def migrate(self, uuid, dst_uri, migration_uri=None, max_bandwidth=None):
        """Migrate the domain live, peer to peer, to the libvirtd at
        `dst_uri` (the data over `migration_uri` when given, at most
        `max_bandwidth` MiB/s); return once it runs there. The call lasts
        as long as the transfer: it has a connection of its own rather than
        hold one the other callers borrow."""
        with self._connections.own() as conn, translated("migrate"):
            conn.lookupByUUIDString(uuid).migrateToURI3(
                dst_uri, _migrate_params(migration_uri, max_bandwidth),
                _MIGRATE_FLAGS)

    def abort_job(self, uuid):
        """Abort the domain's running job (a migration); False if it has
        none yet or any more, or is gone."""
        with self.connection() as conn, translated("abort job"):
            dom = _lookup(conn, uuid)
            return dom is not None and _abort_job(dom)

    @_read
    def migration_progress(self, uuid):
        """Percent (0-99) of the domain's outgoing migration, from libvirt's
        job stats; None while there is none (not yet, or no more)."""
        with self.connection() as conn, translated("job stats"):
            return outgoing_progress(_job_stats(conn, uuid))

    @_read
    def activity(self, uuid):
        """What libvirt is doing to the domain (hypervisor.Activity):
        SETTLED when nothing under way will change its state, or there is
        no such domain; ARRIVING, LEAVING or SAVING while a migration or a
        save runs (libvirt carries them on while our service is down)."""
        if not self._driver.migrates:
            return Activity.SETTLED   # the test driver's jobs are instant
        with self.connection() as conn, translated("job stats"):
            dom = _lookup(conn, uuid)
            return Activity.SETTLED if dom is None else activity_of(dom)

    @_read   # it reads before it resumes (a chaos run's libvirtd restart)
    def resume_if_stopped_by_migration(self, uuid):
        """Resume the domain if a migration that did not complete left its
        vCPUs stopped (paused, reason MIGRATION, no job); True if it did.
        The caller must know the guest runs nowhere else."""
        with self.connection() as conn, translated("resume"):
            dom = _lookup(conn, uuid)
            return dom is not None and _resume_if_stopped_by_migration(dom)

    def pause_anew(self, uuid):
        """Resume the domain and pause it again at once, if it is paused at
        someone's request (states.paused_by_request) with no job; True if
        it did. A save or a migration that failed after QEMU had sent the
        guest's state (the file's write failed: ENOSPC; the destination's
        Finish failed) leaves a guest paused before it in QEMU's runstate
        `postmigrate` (libvirt resumes only a guest that ran), and QEMU
        then refuses every save and migration of it; a moment of its
        vCPUs is the only way out
        (measured on libvirt 9.0, QEMU 7.2: `migrate_cancel`, `stop` and a
        suspend leave it there; a resume then a suspend, 8 to 40 ms apart,
        leave it `paused`). Never made twice: resumed, then
        lost before its pause, the guest must be read, not taken for
        paused."""
        if not self._driver.runs_qemu:
            return False
        with self.connection() as conn, translated("pause anew"):
            dom = _lookup(conn, uuid)
            if dom is None or not paused_by_request(*dom.state()) or \
                    activity_of(dom) is not Activity.SETTLED:
                return False
            dom.resume()
            dom.suspend()
            return True


class NewDomain:
    """A domain being made by one caller, on a connection it holds for the
    block (Hypervisor.new_domain): define it, then start it and read its
    state on define's handle. Errors are translated as the verbs' are; a
    connection found broken at the block's end is dropped and the failure
    reported as ConnectionLost (connections._Borrowed)."""
    __slots__ = ("_hv", "_lent", "_driver", "_conn", "_dom")

    def __init__(self, hv, lent, driver):
        self._hv = hv
        self._lent = lent
        self._driver = driver
        self._conn = self._dom = None

    def __enter__(self):
        self._conn = self._lent.__enter__()
        return self

    def __exit__(self, *exc_info):
        self._conn = self._dom = None   # never used past the block
        return self._lent.__exit__(*exc_info)

    def define(self, domain_xml):
        """Define the persistent domain (does not start it)."""
        with translated("define"):
            self._dom = self._conn.defineXML(domain_xml)

    def start(self, paused=False):
        """Start the domain defined, paused if asked."""
        with translated("start"):
            if paused:
                self._driver.start_paused(self._dom)
            else:
                self._dom.create()

    def state(self):
        """The domain's state, or None if it is gone since it was defined
        (removed by another caller or tool). It only reads: if the
        connection is found lost (libvirtd restarted since the start; the
        guest runs on), it is read once more on a new one, as the verb
        Hypervisor.state is (_read), and the lost one is dropped."""
        try:
            with translated("state"):
                return _unless_gone(
                    lambda: domain_state(self._dom.state()[0]))
        except HypervisorError:
            if alive(self._conn):
                raise
        uuid = self._dom.UUIDString()
        self._lent.drop()
        self._conn = self._dom = None
        return self._hv.state(uuid)


def _unless_gone(look):
    """look(), or None if libvirt answers there is no such domain: none
    has the UUID looked up, or the one looked up is gone since (a
    migration leaving, say, between the lookup and the look)."""
    try:
        return look()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == NO_DOMAIN:
            return None
        raise


@dataclasses.dataclass(frozen=True)
class GuestKind:
    """What a new minimal guest is made of on this connection."""
    domain_type: str   # test, kvm or qemu
    arch: str
    machine: str | None


@dataclasses.dataclass(frozen=True)
class DomainInfo:
    uuid: str
    state: DomainState
    metadata: str | None   # our metadata element, if the domain has it


def _guest_kind(capabilities_xml, uri, wanted):
    """The guest to make on a connection with these capabilities: of type
    `wanted` (kvm, qemu, test), or the fastest offered; the host's own
    architecture first."""
    caps = ET.fromstring(capabilities_xml)
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
                              f"{uri} offers no hvm guest of type "
                              f"{wanted or 'kvm, qemu or test'}")
    return min(candidates, key=lambda c: c[:2])[2]


def _lookup(conn, uuid):
    """The domain with this UUID, or None if there is none."""
    return _unless_gone(lambda: conn.lookupByUUIDString(uuid))


def _remove_domain(dom, graceful_attempts, undefine_flags):
    """Stop `dom` (first `graceful_attempts` graceful destroys, then the
    forced one) and, unless `undefine_flags` is None, undefine it with
    them. A part already gone is fine: removal is idempotent, so that a
    caller may repeat it after a lost connection."""
    for attempt in range(graceful_attempts):
        try:
            dom.destroyFlags(libvirt.VIR_DOMAIN_DESTROY_GRACEFUL)
            break
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in (NO_DOMAIN, OPERATION_INVALID):
                break   # stopped already
            log.info("graceful destroy %d of %d of %s: %s",
                     attempt + 1, graceful_attempts, dom.UUIDString(), exc)
    ignoring(dom.destroy, NO_DOMAIN, OPERATION_INVALID)
    if undefine_flags is not None:
        ignoring(lambda: dom.undefineFlags(undefine_flags), NO_DOMAIN,
                 OPERATION_INVALID)


# Domains per state request: libvirt takes at most 16,384 in one.
_STATES_PER_REQUEST = 1024


def _states_of(conn, domains):
    """{uuid: DomainState} of `domains`, in one request per
    _STATES_PER_REQUEST of them rather than one each; a domain gone since
    it was listed is missing from it."""
    states = {}
    for i in range(0, len(domains), _STATES_PER_REQUEST):
        for dom, stats in conn.domainListGetStats(
                domains[i:i + _STATES_PER_REQUEST],
                libvirt.VIR_DOMAIN_STATS_STATE):
            states[dom.UUIDString()] = domain_state(stats.get("state.state"))
    return states


def _domain_info(dom, state, metadata_ns):
    """What a listing says of `dom`, whose `state` was read with the
    others' (None: it was gone by then)."""
    try:
        if state is not None:
            return DomainInfo(uuid=dom.UUIDString(), state=state,
                              metadata=metadata_of(dom, metadata_ns))
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != NO_DOMAIN:
            raise
    # Gone between the listing and this look: report it as stopped,
    # which is what is left of it.
    return DomainInfo(dom.UUIDString(), DomainState.SHUTOFF, None)


def metadata_of(dom, metadata_ns):
    """Our metadata element on `dom`, or None if it carries none."""
    try:
        return dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, metadata_ns)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
            return None
        raise


def _set_metadata(dom, metadata_ns, prefix, element_xml):
    """Set our metadata element, live and (if persistent) in the config."""
    flags = libvirt.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0
    if dom.isPersistent():
        flags |= libvirt.VIR_DOMAIN_AFFECT_CONFIG
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, element_xml,
                    prefix, metadata_ns, flags)


# -- live migration ------------------------------------------------------

# Live, peer to peer (the source libvirtd drives it, as VDSM does), the
# domain persistent on the destination (so that a destination whose service
# is down meanwhile recovers it as it is) and undefined here once it left
# (a vmjobs domain is persistent: without it a shut-off copy would stay).
_MIGRATE_FLAGS = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER |
                  libvirt.VIR_MIGRATE_PERSIST_DEST |
                  libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)

# No job stats: the domain is gone or stopped, or the driver has none.
_NO_STATS = (NO_DOMAIN, OPERATION_INVALID, libvirt.VIR_ERR_NO_SUPPORT,
             libvirt.VIR_ERR_OPERATION_UNSUPPORTED)


def _migrate_params(migration_uri, max_bandwidth):
    params = {}
    if migration_uri:
        params[libvirt.VIR_MIGRATE_PARAM_URI] = migration_uri
    if max_bandwidth:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = max_bandwidth
    return params


def _abort_job(dom):
    """Abort the domain's running job; False if it has none (not yet, or
    no more): libvirt answers OPERATION_INVALID then."""
    try:
        dom.abortJob()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == OPERATION_INVALID:
            return False
        raise
    return True


def _job_stats(conn, uuid):
    """The domain's job stats, or None if it has no job (or no stats)."""
    try:
        stats = conn.lookupByUUIDString(uuid).jobStats()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in _NO_STATS:
            return None
        raise
    return stats if has_job(stats) else None


def activity_of(dom):
    """The domain's Activity, read from its state and, when that does not
    say, its job (states' rule). A domain gone meanwhile is SETTLED: there
    is nothing left to wait for."""
    state = _unless_gone(dom.state)
    if state is None:
        return Activity.SETTLED
    code, reason = state
    activity = activity_by_state(code, reason)
    if activity is not None:
        return activity
    try:
        stats = dom.jobStats()
    except libvirt.libvirtError as exc:
        activity = activity_by_job_error(exc.get_error_code())
        if activity is None:
            raise
        return activity
    return activity_by_job(stats)


def _resume_if_stopped_by_migration(dom):
    """Resume `dom` if a migration that failed or was aborted after its
    vCPUs were stopped (the switch-over had begun: QEMU's `postmigrate`)
    left it paused for the migration with no job: the guest then runs
    nowhere. True if it was resumed. Left alone: a domain with a job (the
    migration still under way), or paused for another reason (a user's
    pause is the engine's)."""
    if pause_reason(*dom.state()) != PAUSED_MIGRATION:
        return False
    if activity_of(dom) is not Activity.SETTLED:
        return False
    dom.resume()
    return True
