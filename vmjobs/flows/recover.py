"""Recovery: take back a VM found in libvirt at start-up. Read the vmId and
params from the domain's metadata, and the host paths it holds
(hostpaths.py) from its XML, so that no new VM takes them; map its state
to a status, commit.

Recovery never changes a domain: a running one becomes public as it is; a
stopped one is left alone for the engine to decide (one shut off because
its guest migrated away is said so: it is the destination's); on failure nothing is
undone, because nothing was done.

A domain caught migrating or being saved (the service stopped or was
killed while a migration or a hibernation ran, which libvirt carries on
alone) is looked at once that has ended, as VDSM's recovery does: if it
left, there is nothing to recover here (it is the destination's); if it
arrived, or stayed because the migration failed, it is recovered as it
then is; a saved one is shut off, and left for the engine to restore.
Committing it earlier could list a VM that is about to leave, one that
never arrives, or one whose domain is about to vanish. Which of these is
under way is libvirt's job info's to say (hypervisor.Activity), not the
pause reason's: a domain restored paused has the pause reason of an
arriving migration. The wait has a bound (settle_timeout): past it the job
fails, the domain is left as it is (counted by Host.getStats), and the rest
of the host does not wait for it any longer."""

import logging
import time

import workers

from .. import domxml, policy
from ..errors import CreateError
from ..hypervisor import Activity, DomainState
from ..registry import PUBLIC_STATUS, VmStatus
from .base import StartupJob

log = logging.getLogger("vmjobs.flows.recover")


class RecoverJob(StartupJob):
    # Ahead of anything queued: the verbs wait for recovery to end.
    priority = workers.Priority.HIGH
    job_type = "recover"
    # Never seen through the verbs: they answer `recovery` meanwhile.
    staged_status = VmStatus.WAIT_FOR_LAUNCH
    error_class = CreateError

    # Seconds between looks while libvirt carries a migration or a save
    # on (lifecycle events wake the job sooner). Not the configured
    # migration.check_interval, the destination's.
    settle_check_interval = 0.5

    def __init__(self, *args, settle_timeout=120.0, **kwargs):
        super().__init__(*args, **kwargs)
        # The subscription to the VM's lifecycle events while it waits for
        # a migration or a save to end, and the VM's params read from its
        # metadata.
        self._events = None
        self._params = None
        # How long a domain may stay migrating or saving before recovery
        # gives up on it (recovery.settle_timeout).
        self.settle_timeout = settle_timeout

    def run(self):
        vm_id = self.vm_id
        # One read of the domain (one libvirt call: recovery makes one per
        # domain of the host at start-up) for its vmId and params and for
        # the host paths it holds. Held whoever else holds them: the domain
        # has them already. Until the VM leaves the registry: its domain
        # gone, or this job ended without a commit (a domain left stopped,
        # or not settled in time).
        self.step("read-domain")
        domain_xml = self.hv.domain_xml(vm_id)
        try:
            root = domxml.parse_untrusted(domain_xml)
            found = domxml.metadata_of(root)
            if found is None:
                raise domxml.BadDomainXML("it carries no vmjobs metadata")
            meta_vm_id, params = found
            paths = policy.paths_held(root)
        except domxml.BadDomainXML as exc:
            raise CreateError(f"domain {vm_id}: {exc}") from None
        if meta_vm_id != vm_id:
            raise CreateError(f"domain {vm_id} carries the metadata of VM "
                              f"{meta_vm_id}")
        self._params = params
        self.registry.hold(vm_id, self, paths)
        self.step("inspect")
        activity = self.hv.activity(vm_id)
        if activity is not Activity.SETTLED:
            # Every lifecycle event of the VM wakes the job (subscribed
            # before the first look: none is lost).
            self._events = self.hv.subscribe(
                vm_id, lambda event, detail: self.wake())
            return self.wait_for(
                f"wait-{activity}",
                lambda: self.hv.activity(vm_id) is Activity.SETTLED,
                self._settled,
                deadline=time.monotonic() + self.settle_timeout,
                expired=self._unsettled, poll=self.settle_check_interval)
        return self._recover()

    def _settled(self, _ended):
        self.hv.unsubscribe(self.vm_id, self._events)
        self._events = None
        if self.hv.state(self.vm_id) is None:
            log.info("VM %s left while we were down", self.vm_id)
            self.step("migrated-away")
            return None
        return self._recover()

    def _unsettled(self):
        raise CreateError(
            f"domain {self.vm_id} still {self.hv.activity(self.vm_id)} after "
            f"{self.settle_timeout:g} s: its state cannot be settled; left "
            "as it is (Host.getStats counts it in unowned_domains until a "
            "restart recovers it or VM.destroy removes it)")

    def _recover(self):
        vm_id, params = self.vm_id, self._params
        state = self.hv.state(vm_id)
        if state == DomainState.SHUTOFF:
            if self.hv.migrated_away(vm_id):
                # Its guest runs on the migration's destination: this is
                # the source's leftover (undefined a moment after a
                # migration ends, if it undefines its source), not a
                # guest stopped here.
                log.info("VM %s migrated away: its domain here is what "
                         "the migration left", vm_id)
                self.step("migrated-away")
                return
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
