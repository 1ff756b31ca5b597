"""Migration destination: prepare, wait for the incoming domain, make it
persistent and ours, commit. Its reservation also checks, before the
verb answers, that no domain with the VM's UUID is here yet, but the VM's
own stopped definition (what a hibernation interrupted by a crash leaves,
when the state file is then restored on another host), which the guest
arrives over.

The domain is brought here by the source host's libvirt, not by us: the
job only waits for it (Job.wait_for, parked): it holds no worker while
it waits, stays `running` in step wait-arrival, and can be aborted. It is
woken by libvirt's lifecycle events for the VM's UUID and every
`check_interval` seconds as a safety net (an event can be lost with a
connection); the wait ends on arrival, abort or timeout.

"Arrived" is "the migration finished", hypervisor.has_arrived's rule (a VM
paused on the source arrives paused, with a SUSPENDED event). Before
arrival the source still holds the guest, and removing what is here only
makes the source's migration fail; from arrival on, the domain here may be
the guest's only copy. So:

- before arrival, any end but a commit removes what it finds with the
  UUID (a transfer under way), even if the job never ran (the end
  handling does it, not run()); never what its look did not see, which
  may have arrived since (_remove_unarrived);
- from arrival on, nothing destroys the domain: the job commits it, or
  leaves it running and ours for recovery, and says so in its error.

A guest that arrives after its job ended (the source's libvirtd began
only after a timeout or an abort here, and a destination libvirtd takes
it without asking vmjobs) is never destroyed: the source's job has ended
done and dropped its copy. A vmjobs source's libvirtd sends it with its
vmjobs metadata (the domain's XML whole; measured on two daemons), so it
is ours, and on a daemon it is adopted at once by a recover job
(arrivals.LateArrivals, told by the job's end that the guest may still
come): public here, as the engine was told. Once the job's end found
nothing here, a domain with the UUID that carries no vmjobs metadata is
not ours (may_have_left_unmarked): an operator's or another tool's, or a
guest sent late by a source that is not vmjobs, which neither the
adoption nor recovery takes."""

import dataclasses
import logging
import time

import workers
from workers import JobAborted, JobStatus

from .. import ownership
from ..errors import MigrateError, VdsmError
from ..hypervisor import DomainState, HypervisorError, has_arrived
from ..registry import PUBLIC_STATUS, VmStatus
from .base import StartupJob, over_a_stopped_definition

log = logging.getLogger("vmjobs.flows.incoming")


class MigrationDestinationJob(StartupJob):
    job_type = "migration-destination"
    # Ahead of queued creations and restores: a guest that arrives is
    # committed at once, not after the whole queue (workers/lanes.py says
    # why a creation still cannot starve).
    priority = workers.Priority.HIGH
    staged_status = VmStatus.MIGRATION_DESTINATION
    error_class = MigrateError

    def __init__(self, spec, hypervisor, registry, arrival_timeout,
                 check_interval, incoming_limit, late_arrivals, **kwargs):
        # The domain XML was needed only by the verb's checks (its UUID,
        # the host paths it holds): the source sends the domain.
        super().__init__(dataclasses.replace(spec, xml=None), hypervisor,
                         registry, **kwargs)
        # At most this many migrations in at once (migration.max_incoming,
        # or less if the caller asked).
        self.staging_limit = incoming_limit
        self.arrival_timeout = arrival_timeout
        self.check_interval = check_interval
        # The subscription to the VM's lifecycle events while it waits.
        self._events = None
        # When the domain arrived (monotonic), set once by the job's thread
        # before any later step: from then on nothing destroys it.
        self.arrived_at = None
        # Whether a domain of this VM may be here without vmjobs' mark
        # (metadata) because of this job: until its end has either marked
        # what arrived (_make_ours) or found nothing arrived and removed
        # what came (_remove_unarrived). A vmId whose job ended with it
        # True stays ours while the job is listed (ownership.Ownership): an
        # arrived guest it could not mark, a removal that failed. One whose
        # end confirmed nothing is not: a domain with its UUID made later
        # is someone else's (an operator's virsh define), or a guest a
        # vmjobs source sent late, which carries its source's mark.
        self.may_have_left_unmarked = True
        # Set by reserve(): the VM's own stopped definition was here (a
        # hibernation's, whose state was restored on another host). The
        # guest arrives over it, as libvirt lets a migration do; an end
        # before arrival leaves it as it was.
        self.over_stopped_definition = False
        # The host's arrivals.LateArrivals (None: the test driver, which
        # cannot migrate), told when the job's end found nothing here: the
        # source's libvirtd may still send the guest.
        self._late_arrivals = late_arrivals
        # Set by the end once it found no guest arrived here: one that
        # comes now came late.
        self._may_come_late = False

    def reserve(self):
        """Stage the vmId, refusing (MigrateLimit) beyond the incoming
        limit, then check that no domain has the UUID yet: the source starts
        sending once it has the verb's answer, so the job cannot check it
        later; and once the vmId is staged no job of ours can make a domain
        with it."""
        super().reserve()
        try:
            self.over_stopped_definition = over_a_stopped_definition(
                self.hv, self.vm_id, MigrateError)
        except (VdsmError, HypervisorError) as exc:
            self.release()
            raise MigrateError(str(exc)) from None

    def run(self):
        self.step("prepare")
        # Every lifecycle event of the VM wakes the job (a wake before it
        # parks is not lost: it looks again at once).
        self._events = self.hv.subscribe(
            self.vm_id, lambda event, detail: self.wake())
        # Looked at first, then each time the job is woken (an event, the
        # safety-net interval, the deadline, an abort).
        # Not abortable by the wait itself: an arrived domain is committed
        # even when an abort came meanwhile (_arrival).
        return self.wait_for(
            "wait-arrival", self._arrival,
            self._arrived, poll=self.check_interval,
            deadline=time.monotonic() + self.arrival_timeout,
            expired=self._not_arrived, abortable=False)

    def _arrival(self):
        """The arrived domain's status; before arrival, an abort while
        parked lands here. After it, an abort is too late (_arrived)."""
        status = self._arrived_status()
        if status is None:
            self.check_abort()
        return status

    def _not_arrived(self):
        raise MigrateError(f"VM {self.vm_id} did not arrive within "
                           f"{self.arrival_timeout:g} s")

    def _arrived(self, status):
        """The domain arrived (Up or Paused): from now on nothing destroys
        it; make it ours and commit."""
        self.arrived_at = time.monotonic()
        try:
            self.step("persist")
            self._make_ours()
            self.step("commit")
            self.commit(status)
        except JobAborted:
            # Too late to abort: the source's migration has completed (its
            # job may have ended done), and this may be the guest's only
            # copy. It is listed here all the same, and the job says so.
            raise MigrateError(self._commit_despite_abort(status)) from None
        except Exception as exc:   # a failure
            why = str(exc) or type(exc).__name__
            raise MigrateError(self._keep_for_recovery(why)) from None

    def on_ended(self):
        if self._events is not None:
            self.hv.unsubscribe(self.vm_id, self._events)
        try:
            if self.status is not JobStatus.DONE and self.arrived_at is None:
                kept = self._remove_unarrived(f"job {self.status}")
                if kept is not None:
                    self.set_end_error(self.error_class.code, kept)
        except Exception as exc:
            self.set_end_error(
                self.error_class.code,
                f"removing incoming domain {self.vm_id} failed ({exc}): "
                "Host.getStats counts it in unowned_domains; VM.destroy "
                "removes it")
        finally:
            super().on_ended()
        # Unstaged now: a guest that arrives from here on, or that arrived
        # while the job ended, is adopted (arrivals.py).
        if self._may_come_late and self._late_arrivals is not None:
            self._late_arrivals.expect(self.vm_id)

    # -- the rules of arrival ---------------------------------------------

    def _arrived_status(self):
        """The public status (Up, Paused) of the incoming domain once its
        migration has finished; None while it has not (no domain, a
        transfer still running, or a domain that does not run)."""
        state, reason = self.hv.state_reason(self.vm_id)
        if not has_arrived(state, reason):
            return None
        return PUBLIC_STATUS[state]

    def _make_ours(self):
        """Make the arrived domain persistent and ours (vmjobs metadata,
        live and in its definition), so that it is known as ours once it
        stops, and recovered after a restart. Over the VM's stopped
        definition, its own replaces it (a source that does not ask libvirt
        to persist it would leave the old one)."""
        self.hv.persist(self.vm_id, replace=self.over_stopped_definition)
        ownership.mark(self.hv, self.vm_id, self.spec.params)
        self.may_have_left_unmarked = False

    def _keep_for_recovery(self, why):
        """An arrived domain that will not be committed (`why`): leave it
        running, made ours if that can be done, and return what became of
        it (for the job's error)."""
        try:
            self._make_ours()
        except Exception as exc:
            where = ("left running here without vmjobs metadata "
                     f"({exc}): Host.getStats counts it in unowned_domains")
        else:
            where = ("left running here with vmjobs metadata: the next "
                     "recovery adopts it")
        message = (f"VM {self.vm_id} arrived but was not committed ({why}); "
                   f"it is {where}; VM.destroy removes it")
        log.error("%s", message)
        return message

    def _commit_despite_abort(self, status):
        """An abort reached the job of an arrived domain (JobAborted at its
        commit): commit the VM to the registry all the same, outside the
        job's own commit, so that once the source's job ended the guest is
        public on one host; returns what became of it (the job's error). If
        that fails too, it is kept for recovery."""
        try:
            self._make_ours()
            self.registry.commit(self.vm_id, status, self)
        except Exception as exc:
            return self._keep_for_recovery(
                f"aborted after arrival, then {exc}")
        message = (f"too late to abort: VM {self.vm_id} had arrived; it is "
                   f"listed here, {status}")
        log.warning("%s", message)
        return message

    def _remove_unarrived(self, why):
        """The end of a job that did not commit, whenever it comes (even
        while the job is queued): an arrived domain is kept for recovery;
        a transfer still under way is removed (the source keeps the guest:
        its migration fails); over the VM's stopped definition, only what
        runs over it is stopped, the definition left as it was. Returns
        None if nothing was kept, else what _keep_for_recovery said.

        Only what the look saw is removed. Nothing seen (no domain, or
        nothing running over the stopped definition) is nothing removed: a
        removal by UUID would destroy whatever came since the look, and a
        whole transfer may complete in between (the source's libvirtd
        needs no one here), the source's copy then killed by its Confirm:
        the guest lost. What comes from now on is a late arrival
        (arrivals.py). The removal of a transfer seen under way keeps a
        window libvirt gives no way to close (docs/recovery.md)."""
        state, reason = self.hv.state_reason(self.vm_id)
        if has_arrived(state, reason):
            return self._keep_for_recovery(why)
        # From here on a guest that comes is a late arrival.
        self._may_come_late = True
        nothing_seen = state is None or (
            state is DomainState.SHUTOFF and self.over_stopped_definition)
        if not nothing_seen and self.hv.remove(
                self.vm_id, keep_definition=self.over_stopped_definition):
            log.info("incoming domain %s %s: %s", self.vm_id,
                     "stopped" if self.over_stopped_definition
                     else "removed", why)
        # Nothing of this migration is here any more (but the VM's own
        # stopped definition, which carries the mark).
        self.may_have_left_unmarked = False
        return None

    def stuck_since(self):
        # Waiting for the source is not being stuck: arrival_timeout bounds
        # the wait, and jobs.timeout counts from the arrival.
        return self.arrived_at
