"""Migration destination: prepare, wait for the incoming domain, make it
persistent, commit. (VM.migrationCreate checks, before it answers, that no
domain with the VM's UUID is here yet.)

The domain is brought here by the source host's libvirt, not by us: the
job only waits for it. Waiting is driven by libvirt's lifecycle events for
the VM's UUID, with a lookup every `check_interval` seconds as a safety net
(an event can be lost with a connection), and ends on arrival, abort or
timeout."""

import threading
import time

from .. import domxml, registry
from ..errors import MigrateError
from ..hypervisor import PAUSED, RUNNING
from .base import Rollback, StartupJob
from .steps import PUBLIC_STATUS


class MigrationDestinationJob(StartupJob):
    job_type = "migration-destination"
    staged_status = registry.MIGRATION_DESTINATION
    error_class = MigrateError

    def __init__(self, spec, hypervisor, registry, arrival_timeout,
                 check_interval=1.0, **kwargs):
        super().__init__(spec, hypervisor, registry, **kwargs)
        self.arrival_timeout = arrival_timeout
        self.check_interval = check_interval
        # Set on every lifecycle event of the VM and on abort: the waiting
        # job then looks again.
        self._wake = threading.Event()

    def abort(self):
        super().abort()
        self._wake.set()

    def run(self):
        vm_id = self.vm_id
        with Rollback() as rollback:
            self.step("prepare")
            # VM.migrationCreate checked that no domain had this UUID before
            # it staged the VM (the source may start sending as soon as it
            # has the answer, so the job cannot check it later): whatever
            # has the UUID now is the incoming domain, ours to remove if the
            # migration does not end in a commit.
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
                if arrived in (RUNNING, PAUSED):
                    return arrived
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise MigrateError(
                        f"VM {self.vm_id} did not arrive within "
                        f"{self.arrival_timeout:g} s")
                self._wake.wait(min(remaining, self.check_interval))
        finally:
            self.hv.unsubscribe(self.vm_id, token)
