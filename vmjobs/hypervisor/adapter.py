"""The adapter's verbs: a handful of calls by domain UUID (define, start,
state, remove, save, restore, list, metadata, migrate), each on a
connection lent for the call, with libvirtError translated into
HypervisorError."""

import logging
import os
import time

import libvirt

from .connections import Connections
from .domains import (DomainState, domain_info, guest_kind, lookup,
                      metadata_of, state_of)
from .drivers import private_test_host
from .errors import (NO_DOMAIN, OPERATION_INVALID, ConnectionLost, ignoring,
                     translated)
from .events import Events, start_event_loop
from .migration import (MIGRATE_FLAGS, arrival_of, is_migration, job_stats,
                        migrate_params, outgoing_progress)

log = logging.getLogger("vmjobs.hypervisor")


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

    def state(self, uuid):
        """The domain's state, or None if there is no such domain."""
        with self.connection() as conn, translated("state"):
            dom = lookup(conn, uuid)
            return None if dom is None else state_of(dom)

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
        with self.connection() as conn, translated("remove"):
            dom = lookup(conn, uuid)
            if dom is None:
                return False
            ignoring(dom.destroy, NO_DOMAIN, OPERATION_INVALID)
            ignoring(lambda: dom.undefineFlags(self._driver.undefine_flags),
                     NO_DOMAIN, OPERATION_INVALID)
            return True

    def save(self, uuid, path):
        """Save the running domain's state to `path`; the domain stops."""
        with self.connection() as conn, translated("save"):
            conn.lookupByUUIDString(uuid).save(path)

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
            dom = conn.lookupByUUIDString(uuid)
            flags = libvirt.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0
            if dom.isPersistent():
                flags |= libvirt.VIR_DOMAIN_AFFECT_CONFIG
            dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, element_xml,
                            prefix, metadata_ns, flags)

    def list_domains(self, metadata_ns):
        """Every domain: running, paused and defined-but-stopped ones, with
        our metadata element where it carries one."""
        with self.connection() as conn, translated("list"):
            domains = conn.listAllDomains(0)
            return [domain_info(dom, metadata_ns) for dom in domains]

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
            if dom is None:
                return False
            try:
                dom.abortJob()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == OPERATION_INVALID:
                    return False
                raise
            return True

    def migration_progress(self, uuid):
        """Percent (0-99) of the domain's outgoing migration, from libvirt's
        job stats; None while there is none (not yet, or no more)."""
        with self.connection() as conn, translated("job stats"):
            return outgoing_progress(job_stats(conn, uuid))

    def migrating(self, uuid):
        """True while the domain migrates, in or out (libvirt carries a
        migration on while our service is down): its state then changes
        once the migration ends."""
        if not self._driver.migrates:
            return False
        with self.connection() as conn, translated("job stats"):
            if is_migration(job_stats(conn, uuid)):
                return True
        return self.arrival(uuid) == DomainState.INCOMING

    def arrival(self, uuid):
        """Where an incoming migration of the domain is: None (nothing here
        yet, or no more), INCOMING (the transfer runs), or RUNNING / PAUSED
        once it has ended here (a guest paused on the source arrives
        paused: "arrived" is "the migration ended", not "running")."""
        with self.connection() as conn, translated("state"):
            dom = lookup(conn, uuid)
            return None if dom is None else arrival_of(dom, self._driver)
