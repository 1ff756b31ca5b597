"""Migration destination: prepare, wait for the incoming domain, make it
persistent, commit. Its reservation also checks, before the verb answers,
that no domain with the VM's UUID is here yet.

The domain is brought here by the source host's libvirt, not by us: the
job only waits for it. Waiting is driven by libvirt's lifecycle events for
the VM's UUID, with a lookup every `check_interval` seconds as a safety net
(an event can be lost with a connection), and ends on arrival, abort or
timeout."""

import threading
import time

import workers

from .. import domxml
from ..errors import MigrateError, VdsmError
from ..hypervisor import HypervisorError
from ..registry import VmStatus
from .base import Rollback, StartupJob
from .steps import PUBLIC_STATUS, ensure_no_domain


class MigrationDestinationJob(StartupJob):
    # Ahead of queued creations and restores: a guest that arrives is
    # committed at once, not after the whole queue (workers/lanes.py says
    # why a creation still cannot starve).
    priority = workers.Priority.HIGH
    job_type = "migration-destination"
    staged_status = VmStatus.MIGRATION_DESTINATION
    error_class = MigrateError

    def __init__(self, spec, hypervisor, registry, arrival_timeout,
                 check_interval=1.0, incoming_limit=None, **kwargs):
        super().__init__(spec, hypervisor, registry, **kwargs)
        # At most this many migrations in at once (None: no limit).
        self.staging_limit = incoming_limit
        self.arrival_timeout = arrival_timeout
        self.check_interval = check_interval
        # Set on every lifecycle event of the VM and on abort: the waiting
        # job then looks again.
        self._wake = threading.Event()

    def reserve(self):
        """Stage the vmId, refusing (MigrateLimit) beyond the incoming
        limit, then check that no domain has the UUID yet: the source starts
        sending once it has the verb's answer, so the job cannot check it
        later; and once the vmId is staged no job of ours can make a domain
        with it."""
        super().reserve()
        try:
            ensure_no_domain(self.hv, self.vm_id, MigrateError)
        except (VdsmError, HypervisorError) as exc:
            self.release()
            raise MigrateError(str(exc)) from None

    def abort(self):
        super().abort()
        self._wake.set()

    def run(self):
        vm_id = self.vm_id
        with Rollback() as rollback:
            self.step("prepare")
            # reserve() checked that no domain had this UUID once the VM was
            # staged: whatever has the UUID now is the incoming domain, ours
            # to remove if the migration does not end in a commit.
            rollback.push(f"remove incoming domain {vm_id}", self.hv.remove,
                          vm_id)
            self.step("wait-arrival")
            arrived = self._wait_for_arrival()
            self.step("persist")
            self.hv.persist(vm_id)
            self.hv.set_metadata(vm_id, domxml.METADATA_NS,
                                 domxml.METADATA_PREFIX,
                                 domxml.metadata_element(vm_id,
                                                         self.spec.params))
            self.step("commit")
            self.commit(PUBLIC_STATUS[arrived])

    def _wait_for_arrival(self):
        """Return the domain's state (running, or paused: a guest paused on
        the source arrives paused) once its migration has ended here; raise
        on abort or timeout."""
        token = self.hv.subscribe(self.vm_id,
                                  lambda event, detail: self._wake.set())
        try:
            deadline = time.monotonic() + self.arrival_timeout
            while True:
                # Clear before looking, so an event during the look is not
                # lost: it makes the next wait return at once.
                self._wake.clear()
                self.check_abort()
                arrived = self.hv.arrival(self.vm_id)
                if arrived in PUBLIC_STATUS:
                    return arrived
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise MigrateError(
                        f"VM {self.vm_id} did not arrive within "
                        f"{self.arrival_timeout:g} s")
                self._wake.wait(min(remaining, self.check_interval))
        finally:
            self.hv.unsubscribe(self.vm_id, token)
