"""Migration destination: prepare, wait for the incoming domain, make it
persistent, commit. Its reservation also checks, before the verb answers,
that no domain with the VM's UUID is here yet.

The domain is brought here by the source host's libvirt, not by us: the
job only waits for it, parked (workers/park.py): it holds no worker while
it waits, stays `running` in step wait-arrival, and can be aborted. It is
woken by libvirt's lifecycle events for the VM's UUID, and every
`check_interval` seconds as a safety net (an event can be lost with a
connection); the wait ends on arrival, abort or timeout."""

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
        # The subscription to the VM's lifecycle events, while it waits.
        self._events = None
        self._deadline = None

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

    def run(self):
        self.step("prepare")
        # Every lifecycle event of the VM wakes the job (a wake before it
        # parks is not lost: it looks again at once).
        self._events = self.hv.subscribe(
            self.vm_id, lambda event, detail: self.wake())
        self._deadline = time.monotonic() + self.arrival_timeout
        return self._look()

    def _look(self, reason=None):
        """Look for the incoming domain: at first (`reason` None: the job
        enters step wait-arrival), then each time the job is woken (an
        event, the safety-net interval, the deadline, or an abort). Not there yet: park again, holding no worker. Arrived: make
        it persistent and ours, and commit. Anything else first removes
        whatever arrived."""
        vm_id = self.vm_id
        with Rollback() as rollback:
            # reserve() checked that no domain had this UUID once the VM was
            # staged: whatever has the UUID now is the incoming domain, ours
            # to remove if the migration does not end in a commit.
            rollback.push(f"remove incoming domain {vm_id}", self.hv.remove,
                          vm_id)
            if reason is None:
                self.step("wait-arrival")
            else:
                self.check_abort()
            arrived = self.hv.arrival(vm_id)
            if arrived not in PUBLIC_STATUS:
                now = time.monotonic()
                if now >= self._deadline:
                    raise MigrateError(
                        f"VM {vm_id} did not arrive within "
                        f"{self.arrival_timeout:g} s")
                # Parked again in the same step (the step hooks ran once,
                # when the job entered it).
                return workers.Park(self._look, min(
                    self._deadline, now + self.check_interval))
            self.step("persist")
            self.hv.persist(vm_id)
            self.hv.set_metadata(vm_id, domxml.METADATA_NS,
                                 domxml.METADATA_PREFIX,
                                 domxml.metadata_element(vm_id,
                                                         self.spec.params))
            self.step("commit")
            self.commit(PUBLIC_STATUS[arrived])

    def on_ended(self):
        if self._events is not None:
            self.hv.unsubscribe(self.vm_id, self._events)
        super().on_ended()
