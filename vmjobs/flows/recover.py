"""Recovery: take back a VM found in libvirt at start-up. Read the vmId and
params from the domain's metadata, map its state to a status, commit.

Recovery never changes a domain: a running one becomes public as it is; a
stopped one is left alone for the engine to decide; on failure nothing is
undone, because nothing was done.

A domain caught migrating (the service stopped or was killed while a
migration ran, which libvirt carries on alone) is looked at once the
migration has ended, as VDSM's recovery does: if it left, there is nothing
to recover here (it is the destination's); if it arrived, or stayed
because the migration failed, it is recovered as it then is. Committing it
earlier could list a VM that is about to leave, or one that never
arrives."""

import logging

import workers

from .. import domxml
from ..errors import CreateError
from ..hypervisor import DomainState
from ..registry import VmStatus
from .base import StartupJob
from .steps import PUBLIC_STATUS

log = logging.getLogger("vmjobs.flows.recover")


class RecoverJob(StartupJob):
    # Ahead of anything queued: the verbs wait for recovery to end.
    priority = workers.Priority.HIGH
    job_type = "recover"
    # Never seen through the verbs: they answer `recovery` meanwhile.
    staged_status = VmStatus.WAIT_FOR_LAUNCH
    error_class = CreateError

    # Seconds between looks while a domain migrates (lifecycle events wake
    # the job sooner).
    migration_check_interval = 0.5

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The subscription to the VM's lifecycle events while it waits for
        # a migration to end, and the VM's params read from its metadata.
        self._events = None
        self._params = None

    def run(self):
        vm_id = self.vm_id
        self.step("read-metadata")
        metadata = self.hv.metadata(vm_id, domxml.METADATA_NS)
        try:
            meta_vm_id, params = domxml.read_metadata(metadata)
        except domxml.BadDomainXML as exc:
            raise CreateError(f"domain {vm_id}: {exc}") from None
        if meta_vm_id != vm_id:
            raise CreateError(f"domain {vm_id} carries the metadata of VM "
                              f"{meta_vm_id}")
        self._params = params
        self.step("inspect")
        if self.hv.migrating(vm_id):
            # Every lifecycle event of the VM wakes the job (subscribed
            # before the first look: none is lost).
            self._events = self.hv.subscribe(
                vm_id, lambda event, detail: self.wake())
            return self.wait_for(
                "wait-migration", lambda: not self.hv.migrating(vm_id),
                self._migration_ended, poll=self.migration_check_interval)
        return self._recover()

    def _migration_ended(self, _ended):
        self.hv.unsubscribe(self.vm_id, self._events)
        self._events = None
        if self.hv.state(self.vm_id) is None:
            log.info("VM %s migrated away while we were down", self.vm_id)
            self.step("migrated-away")
            return None
        return self._recover()

    def _recover(self):
        vm_id, params = self.vm_id, self._params
        state = self.hv.state(vm_id)
        if state == DomainState.SHUTOFF:
            log.info("VM %s is defined but not running: left alone for the "
                     "engine to decide", vm_id)
            self.step("left-stopped")
            return
        if state not in PUBLIC_STATUS:
            raise CreateError(f"domain {vm_id} is {state or 'gone'}")
        self.step("commit")
        self.commit(PUBLIC_STATUS[state], params=params)

    def on_ended(self):
        if self._events is not None:
            self.hv.unsubscribe(self.vm_id, self._events)
        self._params = None
        super().on_ended()
