"""The adapter's verbs: a handful of calls by domain UUID (define, start,
state, remove, stop, save, restore, list, metadata, migrate), each on a
connection lent for the call, with libvirtError translated into
HypervisorError."""

import functools
import logging
import os
import time

import libvirt

from .activity import Activity, activity_of, resume_if_stopped_by_migration
from .connections import Connections
from .domains import (
    domain_info,
    guest_kind,
    lookup,
    metadata_of,
    remove_domain,
    set_metadata_of,
    state_and_reason_of,
    state_of,
    states_of,
)
from .drivers import TestDriver, private_test_host
from .errors import NO_DOMAIN, ConnectionLost, translated
from .events import Events, start_event_loop
from .migration import (
    MIGRATE_FLAGS,
    abort_migration,
    job_stats,
    migrate_params,
    outgoing_progress,
)

log = logging.getLogger("vmjobs.hypervisor")


def _read(method):
    """A verb that only reads: if its connection is found lost (libvirtd
    restarted since it was last used), it is made once more, on a new one.
    Nothing was changed, so nothing can be done twice; a call that changes
    something is never repeated (its caller must look, not assume)."""
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
        start_event_loop()   # before any connection that is to have events
        self._private_host = None
        if uri is None:
            uri, self._private_host = private_test_host()
        self.uri = uri
        # How long an undo (remove) waits for a lost daemon to come back.
        self.reconnect_timeout = 60.0
        self._connections = Connections(uri, connections)
        self._driver = self._connections.driver
        # libvirt's test driver: its VMs exist nowhere (the service says so).
        self.is_test_driver = self._driver is TestDriver
        # The test driver's one connection (None on a daemon): tests use it
        # to act on the host as another libvirt client would.
        self.shared_connection = self._connections.shared
        self._events = Events(self._connections)
        self.subscribe = self._events.subscribe
        self.unsubscribe = self._events.unsubscribe
        with self.connection() as conn, translated("capabilities"):
            capabilities = conn.getCapabilities()
        self.guest = guest_kind(capabilities, uri, domain_type)
        log.info("connected to %s (%d connection(s), guests: %s)",
                 uri, len(self._connections), self.guest)

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
        with self.connection() as conn, translated("state"):
            dom = lookup(conn, uuid)
            return None if dom is None else _unless_gone(state_of, dom)

    @_read
    def state_reason(self, uuid):
        """(state, reason): the domain's state, and for a paused one why
        (PAUSED_MIGRATION or PAUSED_OTHER), else None; (None, None) if
        there is no such domain."""
        with self.connection() as conn, translated("state"):
            dom = lookup(conn, uuid)
            found = None if dom is None else _unless_gone(
                state_and_reason_of, dom)
            return (None, None) if found is None else found

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
        back, up to reconnect_timeout: an undo must not be left half done.
        Returns True if there was a domain."""
        deadline = time.monotonic() + self.reconnect_timeout
        while True:
            try:
                return self._remove_once(uuid, graceful_attempts,
                                         keep_definition)
            except ConnectionLost:
                if time.monotonic() > deadline:
                    raise
                log.warning("removing domain %s: daemon lost; trying again",
                            uuid)
                time.sleep(0.2)

    def stop(self, uuid):
        """Destroy the domain if it runs, keeping its definition (as
        remove() does, retried until the daemon is back)."""
        return self.remove(uuid, keep_definition=True)

    def _remove_once(self, uuid, graceful_attempts, keep_definition):
        with self.connection() as conn, translated("remove"):
            dom = lookup(conn, uuid)
            if dom is None:
                return False
            remove_domain(dom, graceful_attempts,
                          None if keep_definition
                          else self._driver.undefine_flags)
            return True

    def save(self, uuid, path):
        """Save the running domain's state to `path`; the domain stops."""
        with self.connection() as conn, translated("save"):
            conn.lookupByUUIDString(uuid).save(path)

    @_read
    def saved_domain_xml(self, path):
        """The domain XML inside a saved-state file (the file is only read)."""
        with self.connection() as conn, translated("read saved state"):
            return conn.saveImageGetXMLDesc(path, 0)

    def restore(self, path, uuid, paused=False):
        """Restore the domain `uuid` saved in `path`, running or paused as
        asked, whatever state it was saved in. The file is read, never
        changed or removed."""
        with self.connection() as conn, translated("restore"):
            self._driver.restore(conn, path, uuid, paused)

    def persist(self, uuid):
        """Make a transient domain persistent with its current definition
        (a restored or migrated-in domain may arrive transient)."""
        with self.connection() as conn, translated("persist"):
            dom = conn.lookupByUUIDString(uuid)
            if not dom.isPersistent():
                conn.defineXML(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE))

    def set_metadata(self, uuid, metadata_ns, prefix, element_xml):
        """Set our metadata element, live and (if persistent) in the config."""
        with self.connection() as conn, translated("set metadata"):
            set_metadata_of(conn.lookupByUUIDString(uuid), metadata_ns,
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
            states = states_of(conn, domains) if domains else {}
            return [domain_info(dom, states.get(dom.UUIDString()),
                                metadata_ns) for dom in domains]

    @_read
    def metadata(self, uuid, metadata_ns):
        with self.connection() as conn, translated("metadata"):
            return metadata_of(conn.lookupByUUIDString(uuid), metadata_ns)

    # -- live migration (the test driver cannot migrate) ---------------------

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
                dst_uri, migrate_params(migration_uri, max_bandwidth),
                MIGRATE_FLAGS)

    def abort_job(self, uuid):
        """Abort the domain's running job (a migration); False if it has
        none yet or any more, or is gone."""
        with self.connection() as conn, translated("abort job"):
            dom = lookup(conn, uuid)
            return dom is not None and abort_migration(dom)

    def migration_progress(self, uuid):
        """Percent (0-99) of the domain's outgoing migration, from libvirt's
        job stats; None while there is none (not yet, or no more)."""
        with self.connection() as conn, translated("job stats"):
            return outgoing_progress(job_stats(conn, uuid))

    @_read
    def activity(self, uuid):
        """What libvirt is doing to the domain (hypervisor.Activity):
        SETTLED when nothing under way will change its state, or there is
        no such domain; ARRIVING, LEAVING or SAVING while a migration or a
        save runs (libvirt carries them on while our service is down)."""
        if not self._driver.migrates:
            return Activity.SETTLED   # the test driver's jobs are instant
        with self.connection() as conn, translated("job stats"):
            dom = lookup(conn, uuid)
            return Activity.SETTLED if dom is None else activity_of(dom)

    def resume_if_stopped_by_migration(self, uuid):
        """Resume the domain if a migration that did not complete left its
        vCPUs stopped (paused, reason MIGRATION, no job); True if it did.
        The caller must know the guest runs nowhere else."""
        with self.connection() as conn, translated("resume"):
            dom = lookup(conn, uuid)
            return dom is not None and resume_if_stopped_by_migration(dom)

    def migrating(self, uuid):
        """True while the domain migrates, in or out: its state then
        changes once the migration ends."""
        return self.activity(uuid) in (Activity.ARRIVING, Activity.LEAVING)


def _unless_gone(look, dom):
    """look(dom), or None if the domain is gone since it was looked up (a
    migration leaving, say, between the lookup and the look)."""
    try:
        return look(dom)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == NO_DOMAIN:
            return None
        raise
