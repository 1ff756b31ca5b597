"""Migration source: hand a public VM over to another vmjobs host.

    wait-slot -> prepare -> prepare-destination -> migrate
        -> confirm-destination -> commit

VM.migrate claims the public VM (status Migration Source) and queues this
job. The job waits for an outgoing slot (OutgoingSlots: at most
`migration.max_outgoing` migrate at once, the others wait their turn in
the order they were called), asks the destination service to expect the VM
(VM.migrationCreate, retried with backoff while the destination is busy,
within the timeout), then has this host's libvirtd migrate the domain
live, peer to peer, following the transfer in libvirt's job stats. Every
wait (for a slot, for a busy destination, for the transfer) is
Job.wait_for: the job is parked and holds no worker; libvirt's migration
call runs on a thread of its own (_Transfer) that wakes the job when it
returns.

- Success: the domain left; once the destination lists the VM as public
  (its job committed it: confirm-destination, at most CONFIRM_WAIT), the
  VM leaves this host's public registry.
- Anything else (a refusal, a failed transfer, the timeout, Job.abort,
  VM.destroy): libvirt's job is aborted, the destination's staged copy is
  destroyed (VM.destroy there) and the VM stays public here, in its
  previous status; unless its guest stopped meanwhile: it then leaves
  (`Down`), its domain shut off for VM.destroy, as guests.py has a guest
  stopped outside vmjobs leave.

Never twice: the destination's copy is destroyed only once the domain is
known to run here still, and the job does not end while libvirt's
migration call runs, unless libvirt has not ended it `cancel_timeout` after
its abort (a migration QEMU cannot cancel): the job then fails rather than
wait for ever. A migration that completed although its call failed, or that an
abort reached too late, is a migration: the VM is on the destination."""

import http.client
import logging
import threading
import time

import workers
from workers import JobAborted, JobStatus

from ..client import RemoteError
from ..errors import MigrateError, NoVM, VdsmError
from ..hypervisor import DomainState, HypervisorError
from ..registry import VmStatus
from .base import ClaimJob, Rollback

log = logging.getLogger("vmjobs.flows.outgoing")

# The destination's answers that mean "not now": migrateLimit,
# ResourceExhausted, and HTTP 503 (all its connections busy).
BUSY = (82, 1100, 503)

# What the destination holds of this VM, as far as this job knows: nothing
# (not asked yet, or it refused), perhaps (a VM.migrationCreate interrupted
# by an abort, or cut: it may have staged the VM), or its staged copy.
# Unsettled: its staged copy, asked to settle after the migration call
# failed, may hold the guest's only running copy: it is never destroyed.
NOTHING, PERHAPS, STAGED, UNSETTLED = \
    "nothing", "perhaps", "staged", "unsettled"
# Seconds a call to the destination service may take at the most (less
# if the job's deadline comes first): one that does not answer holds a
# worker no longer.
CALL_WAIT = 60.0
# Seconds the rollback tries to destroy a copy the destination perhaps
# has: past them (a destination that does not answer) it is left to the
# destination's own arrival timeout, and the abort is not held up longer.
PERHAPS_DESTROY_WAIT = 5.0
# Seconds the job waits, once the guest has left, for the destination to
# list the VM as public (its job's commit), looking every CONFIRM_POLL
# (another service's registry, asked by a verb: no stream of its events
# is kept open to each destination): past them (a destination that does
# not answer, a job there that will not commit) it ends all the same, the
# guest there its job's or its recovery's. Short: a VM.destroy here waits
# for the job meanwhile.
CONFIRM_WAIT = 10.0
CONFIRM_POLL = 0.1
# Seconds the job waits, once its migration call failed with the domain
# still here while the destination holds the VM staged, for the
# destination to settle it (its job asked to end: a guest that arrived is
# committed there, one still in transfer removed). Past them, neither copy
# is destroyed nor resumed: the guest's only running copy may be either.
SETTLE_WAIT = 30.0

# What the destination answers of this VM once the migration call failed:
# public (its job committed the arrived guest), absent (no VM of that id:
# nothing arrived, or its job ended and removed what came), or else the id
# of the job that holds it staged (str), or None (no answer, or a staged
# VM without a job).
PUBLIC, ABSENT = "public", "absent"


class DestinationRefused(VdsmError):
    """The destination refused the VM; the job's error carries its code."""
    name = "destination"

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class OutgoingSlots:
    """The outgoing migrations in the order VM.migrate was called, until
    each job ends: the first `limit` (migration.max_outgoing) have a slot,
    the others wait for one, parked."""

    def __init__(self, limit):
        self.limit = limit
        self._lock = threading.Lock()   # guards _order
        self._order = []

    def join(self, job):
        with self._lock:
            self._order.append(job)

    def has_slot(self, job):
        with self._lock:
            return job in self._order[:self.limit]

    def leave(self, job):
        """`job` ended (or never runs): the next in line gets its slot."""
        with self._lock:
            if job not in self._order:
                return
            self._order.remove(job)
            holders = self._order[:self.limit]
        for waiting in holders:    # outside the lock: wake takes the job's
            waiting.wake()


class MigrationSourceJob(ClaimJob):
    # Ahead of queued creations and restores, as the destination's job.
    priority = workers.Priority.HIGH
    job_type = "migration-source"
    error_class = MigrateError
    claimed_status = VmStatus.MIGRATION_SOURCE
    refusal = "cannot migrate"
    # Seconds between looks at libvirt's job while the transfer runs (for
    # the progress, and to repeat an abort libvirt could not take yet).
    monitor_interval = 0.2
    # Backoff while the destination is busy (VDSM waits 10 s each time).
    retry_first, retry_max = 0.25, 10.0
    # Seconds libvirt has to end its migration once the job aborted it (on
    # Job.abort, VM.destroy or the timeout); past it the job fails and the
    # domain is left to libvirt, as it is (docs/recovery.md, "A migration
    # libvirt cannot cancel").
    cancel_timeout = 30.0

    def __init__(self, vm_id, target, hypervisor, registry, connect,
                 default_timeout, slots, **kwargs):
        """`target`: a params.MigrationTarget; `connect(dst, timeout)`: a
        client of the destination service (with call(method, params));
        `slots`: the host's OutgoingSlots."""
        super().__init__(vm_id, hypervisor, registry, **kwargs)
        self.target = target
        self.migration_timeout = target.timeout or default_timeout
        self.slots = slots
        self._connect = connect
        # Set once the destination's job that holds the VM staged was
        # asked to settle it (_settled_on_destination).
        self._settle_asked = False
        # Set by the job's continuations, one after the other: the undo
        # of what it made, its deadline (from its slot on), the domain XML,
        # the next backoff, the transfer and how its following went.
        self._rollback = Rollback()
        self._deadline = None
        self._xml = None
        self._delay = self.retry_first
        self._transfer = None
        self._aborting = self._timed_out = False
        # The domain left for the destination (read in on_ended, after
        # run() returned).
        self._migrated = False
        # The destination's copy is known destroyed (set by the rollback);
        # until when libvirt may take to end an aborted migration.
        self._destination_cleared = False
        self._on_destination = NOTHING
        self._cancel_deadline = None
        # Guards _call_in_flight: the client of the destination a worker
        # waits on now, which an abort interrupts (so that a destination
        # that never answers holds neither the job nor a worker).
        self._call_lock = threading.Lock()
        self._call_in_flight = None

    def abort(self):
        super().abort()
        with self._call_lock:
            peer = self._call_in_flight
        if peer is not None:
            peer.interrupt()   # its call fails at once: _call_destination

    def reserve(self):
        """Claim the public VM, Migration Source meanwhile, and take a
        place in line for an outgoing slot (raises NoVM; MigrateError if
        another job works on it)."""
        super().reserve()
        self.slots.join(self)

    def release(self):
        self._leave_slot()
        super().release()

    def _leave_slot(self):
        # A slot bounds libvirt's migration calls (each holds a connection
        # of its own, Connections.own, and a thread): one this job gave up
        # on (cancel_timeout) keeps it until the call returns (_Transfer).
        if self._transfer is None or not self._transfer.keeps_slot():
            self.slots.leave(self)

    def run(self):
        return self.wait_for("wait-slot", lambda: self.slots.has_slot(self),
                             self._guarded(self._prepare))

    def _guarded(self, continuation):
        """`continuation`, run so that a failure or an abort in it undoes
        what the job made (newest first)."""
        def guarded(*args):
            with self._rollback:
                return continuation(*args)
        return guarded

    def _prepare(self, _slot):
        self._deadline = time.monotonic() + self.migration_timeout
        self.step("prepare")
        # Persistent first, if an operator undefined it (virsh undefine of
        # a running guest: transient): a transient domain whose guest stops
        # is gone, not shut off, and "gone" is what tells this job that its
        # guest left (VIR_MIGRATE_UNDEFINE_SOURCE). A guest killed during
        # the transfer was taken for migrated: the job ended done, the VM
        # public on neither host (round 13).
        self.hv.persist(self.vm_id)
        self._xml = self.hv.migratable_xml(self.vm_id)
        self.step("prepare-destination")
        # Undone newest first: the guest is resumed here only once its copy
        # there is destroyed. Pushed before the first VM.migrationCreate:
        # one interrupted by an abort, or cut, may have staged the VM there
        # (found by a chaos run: that copy then held the vmId there until
        # the destination's timeout, hours by default).
        self._rollback.push(f"resume VM {self.vm_id} if the migration "
                            "stopped it", self._resume_if_stopped)
        self._rollback.push(f"destroy VM {self.vm_id} on {self.target.dst}",
                            self._destroy_on_destination)
        return self._create_on_destination()

    def _migrate(self):
        self.step("migrate")
        self._transfer = _Transfer(self)
        self._transfer.start()
        # Not abortable: an abort is handed to libvirt (_follow_transfer)
        # and the job ends only once the migration call has returned.
        return self.wait_for(None, self._guarded(self._follow_transfer),
                             self._transferred, poll=self.monitor_interval,
                             abortable=False)

    def _transferred(self, _done):
        with self._rollback:
            settle = self._check_transfer()
        if settle:
            # The call failed, the domain is still here, and the
            # destination holds the VM staged: arriving or not arrived,
            # which only its job can tell (its rule: an arrived guest is
            # committed whatever ends the job). Until it has, neither
            # copy is destroyed or resumed.
            # (In step migrate still: its end is what is being read.)
            return self.wait_for(
                None, self._settled_on_destination,
                self._settled, deadline=time.monotonic() + SETTLE_WAIT,
                poll=CONFIRM_POLL, expired=self._unsettled,
                abortable=False)
        return self._left()

    def _left(self):
        # The domain runs on the destination now: whatever happens next,
        # this host lets the VM go.
        self._migrated = True
        # Once this job ends the VM must be public on the destination
        # (API.md: never lost). libvirt's call returns as soon as the
        # guest runs there, and the destination's job commits it only
        # then, on a worker of its own: this job ended first, and for that
        # while the VM was public on neither host. Not abortable: the
        # guest has left; an abort meanwhile is answered "too late".
        return self.wait_for(
            "confirm-destination", self._listed_on_destination,
            self._leave, deadline=time.monotonic() + CONFIRM_WAIT,
            poll=CONFIRM_POLL, expired=self._leave_unconfirmed,
            abortable=False)

    def _listed_on_destination(self):
        """True once the destination lists the VM as public (its job
        committed it), else None (unreachable, or not yet its public VM):
        looked at again at the next poll."""
        return True if self._held_on_destination() == PUBLIC else None

    def _held_on_destination(self):
        """What the destination holds of the VM now: PUBLIC, ABSENT, the
        id of the job that holds it staged, or None (no answer)."""
        try:
            stats = self._call_destination(
                "VM.getStats", {"vmID": self.vm_id},
                time.monotonic() + CONFIRM_POLL)
        except RemoteError as exc:
            return ABSENT if exc.code == NoVM.code else None
        except MigrateError:
            return None   # unreachable: no answer
        if not isinstance(stats, dict):
            return None
        if stats.get("staging") is False:
            return PUBLIC
        job_id = stats.get("jobId")
        return job_id if isinstance(job_id, str) else None

    def _settled_on_destination(self):
        """PUBLIC or ABSENT once the destination settled the VM it held
        staged, else None (looked at again at the next poll). The job
        that holds it, a migration's running there, is asked once to end
        (Job.abort): one still queued is waited for (its end while queued
        keeps an arrived guest unlisted, for recovery), another's (a
        recovery's adoption) is left to commit."""
        held = self._held_on_destination()
        if held in (PUBLIC, ABSENT):
            return held
        if self._settle_asked or held is None:
            return None
        job_id = held
        try:
            infos = self._call_destination(
                "Host.getJobs", {"job_ids": [job_id]},
                time.monotonic() + CONFIRM_POLL)
            info = infos.get(job_id) if isinstance(infos, dict) else None
            if not isinstance(info, dict) or \
                    info.get("job_type") != "migration-destination":
                self._settle_asked = True   # not a migration's: it commits
            elif info.get("status") == "running":
                log.info("VM %s: the migration call failed (%s) and %s "
                         "holds it staged: its job %s asked to settle it",
                         self.vm_id, self._transfer.error, self.target.dst,
                         job_id)
                self._call_destination("Job.abort", {"jobId": job_id},
                                       time.monotonic() + CONFIRM_POLL)
                self._settle_asked = True
        except RemoteError:
            self._settle_asked = True   # ended meanwhile: look again
        except MigrateError:
            pass   # unreachable: ask again at the next poll
        return None

    def _settled(self, held):
        if held == ABSENT:
            # Nothing arrived there (or its job removed what came): the
            # migration did not happen; the rollback resumes the guest.
            with self._rollback:
                raise self._absent(self._transfer.error)
        log.warning("VM %s: the migration call failed (%s) but %s settled "
                    "it public: it migrated; its copy here, if any, is "
                    "removed", self.vm_id, self._transfer.error,
                    self.target.dst)
        self._remove_left_copy()
        return self._left()

    def _unsettled(self):
        if self._look_here() is None:
            # Gone here, and the destination cannot say: gone is what a
            # migration leaves, by far the likeliest (as before round 14).
            log.warning("VM %s: the migration call failed (%s), its domain "
                        "left, and %s did not settle it within %g s: taken "
                        "for migrated", self.vm_id, self._transfer.error,
                        self.target.dst, SETTLE_WAIT)
            return self._left()
        with self._rollback:
            self._on_destination = UNSETTLED
            raise self._unsettled_failure()

    def _look_here(self):
        """The domain's state here, or "unknown" if it cannot be read."""
        try:
            return self.hv.state(self.vm_id)
        except HypervisorError as exc:
            log.warning("VM %s: cannot read its state: %s", self.vm_id, exc)
            return "unknown"

    def _unsettled_failure(self):
        return MigrateError(
            f"migration of VM {self.vm_id} failed "
            f"({self._transfer.error}), and {self.target.dst} did not "
            f"settle its staged copy within {SETTLE_WAIT:g} s: the guest "
            "may run there or here; neither copy is destroyed or resumed")

    def _remove_left_copy(self):
        """Remove the copy here of a guest that migrated, as libvirt's
        Confirm would have. A failure is logged, never rolled back: the
        guest runs on the destination."""
        try:
            self.hv.remove(self.vm_id)
        except HypervisorError as exc:
            log.error("VM %s migrated, but removing its copy here failed "
                      "(%s): Host.getStats counts it; VM.destroy removes "
                      "it", self.vm_id, exc)

    def _leave_unconfirmed(self):
        log.warning("VM %s migrated to %s, which does not list it %.0f s "
                    "later: its job there, or its recovery, has the guest",
                    self.vm_id, self.target.dst, CONFIRM_WAIT)
        self._leave(None)

    def _leave(self, _listed):
        try:
            self.step("commit")
            self.commit()
        except JobAborted:
            raise MigrateError(
                f"too late to abort: VM {self.vm_id} had already migrated "
                f"to {self.target.dst}") from None
        log.info("VM %s migrated to %s", self.vm_id, self.target.dst)

    def on_ended(self):
        try:
            if self._migrated:
                self.slots.leave(self)
                if self.status is not JobStatus.DONE:
                    self.registry.drop_claimed(self.vm_id, self)
            elif self._guest_stopped():
                # Not migrated, and its guest stopped meanwhile (its QEMU
                # killed mid-transfer, a crash): it leaves, `Down`, as a guest
                # stopped outside vmjobs does (guests.py), its domain left shut
                # off for VM.destroy; not put back in its previous status
                # first, which listed a dead guest `Up` until the guest watch
                # looked.
                log.warning("VM %s: its guest stopped during its migration",
                            self.vm_id)
                self._leave_slot()
                self.registry.drop_claimed(self.vm_id, self)
            else:
                # Not migrated: the VM stays public, as it was before.
                self.release()
        finally:
            self._xml = None   # the domain XML it sent, or would have
            super().on_ended()

    def _guest_stopped(self):
        """Is the VM's domain shut off, or gone? False if libvirt cannot
        say: the VM then stays, and the guest watch (guests.py) tells."""
        return self._look_here() in (DomainState.SHUTOFF, None)

    # -- the destination service --------------------------------------------

    def _call_destination(self, method, params, deadline, abortable=False):
        """`method` on the destination service. `abortable`: an abort
        interrupts the call and the job ends aborted (never a call of the
        rollback, which must reach the destination)."""
        timeout = max(1.0, min(CALL_WAIT, deadline - time.monotonic()))
        try:
            with self._connect(self.target.dst, timeout) as peer:
                if not abortable:
                    return peer.call(method, params)
                with self._call_lock:
                    self._call_in_flight = peer
                try:
                    self.check_abort()   # an abort before it was in flight
                    return peer.call(method, params)
                finally:
                    with self._call_lock:
                        self._call_in_flight = None
        except (OSError, http.client.HTTPException) as exc:
            if abortable:
                # Interrupted by an abort: the job ends aborted, not failed
                # (its rollback destroys what the destination perhaps
                # staged meanwhile: _destroy_on_destination).
                self.check_abort()
            raise MigrateError(f"cannot reach the destination "
                               f"{self.target.dst}: {exc}") from None

    def _create_on_destination(self):
        """VM.migrationCreate on the destination; while it is busy, again
        after a backoff (parked), within the deadline."""
        # The VM's params as the claim found them: the destination keeps
        # them.
        params = {**self.vm_before_claim.params, "vmId": self.vm_id,
                  "xml": self._xml}
        self._on_destination = PERHAPS
        try:
            self._call_destination("VM.migrationCreate", {
                "vmID": self.vm_id, "params": params}, self._deadline,
                abortable=True)
        except RemoteError as exc:
            # Refused (its own VM of that id included): nothing of ours
            # there to destroy.
            self._on_destination = NOTHING
            remaining = self._deadline - time.monotonic()
            if exc.code not in BUSY or remaining <= 0:
                raise DestinationRefused(
                    exc.code, f"the destination {self.target.dst} "
                    f"refused VM {self.vm_id}: {exc.message}") from None
            delay, self._delay = self._delay, min(self._delay * 2,
                                                  self.retry_max)
            log.info("destination %s busy (%s): trying again in %.2f s",
                     self.target.dst, exc.code, delay)
            return self.wait_for(
                None, lambda: None, None,
                deadline=time.monotonic() + min(delay, remaining),
                expired=self._guarded(self._create_on_destination))
        self._on_destination = STAGED
        return self._migrate()

    def _destroy_on_destination(self):
        if self._on_destination == NOTHING:
            return
        if self._on_destination == UNSETTLED:
            raise MigrateError(f"VM {self.vm_id}: its copy on "
                               f"{self.target.dst} is kept: it may run there")
        # Kept only on evidence that the guest left: its domain is gone
        # here (a migration that succeeds undefines it,
        # VIR_MIGRATE_UNDEFINE_SOURCE). A domain still defined here that
        # does not run is a guest whose QEMU ended during the transfer
        # (a crash, the OOM killer): nothing arrived there, and its staged
        # copy would hold one of the destination's max_incoming places
        # until its arrival timeout, hours (a hostile-caller audit filled
        # them so).
        if self.hv.state(self.vm_id) is None:
            raise MigrateError(f"VM {self.vm_id} is gone here: its copy on "
                               "the destination is kept")
        perhaps = self._on_destination == PERHAPS
        deadline = time.monotonic() + (
            PERHAPS_DESTROY_WAIT if perhaps else CALL_WAIT)
        try:
            self._call_destination("VM.destroy", {"vmID": self.vm_id},
                                   deadline)
        except MigrateError as exc:
            if not perhaps:
                raise
            # Unreachable: what it may hold ends at its arrival timeout.
            log.warning("VM %s: its copy on %s, if any, is left to the "
                        "destination's timeout: %s", self.vm_id,
                        self.target.dst, exc)
            return
        except RemoteError as exc:
            if exc.code != NoVM.code:
                raise MigrateError(f"VM.destroy on {self.target.dst}: "
                                   f"{exc.message}") from None
        self._destination_cleared = True

    def _resume_if_stopped(self):
        # An end after the switch-over began leaves the vCPUs here stopped
        # (QEMU's postmigrate): resumed if it ran before and its copy on
        # the destination is gone (never twice).
        if not self._destination_cleared:
            return
        if self.vm_before_claim.status == VmStatus.PAUSED:
            self._pause_anew()
            return
        if self.vm_before_claim.status != VmStatus.UP:
            return
        if self.hv.resume_if_stopped_by_migration(self.vm_id):
            log.warning("VM %s: its migration had stopped its vCPUs: "
                        "resumed", self.vm_id)
            if self.hv.state(self.vm_id) != DomainState.RUNNING:
                raise MigrateError(f"VM {self.vm_id} was resumed after its "
                                   "failed migration but does not run")

    def _pause_anew(self):
        # A paused guest whose migration failed after its QEMU had sent it
        # whole (libvirt's Finish failed on the destination) is left in
        # QEMU's postmigrate: listed Paused, but QEMU refuses every later
        # migration and save of it, and libvirt resumes only a guest that
        # ran. As a failed hibernation's (flows/hibernate.py): run a moment
        # and paused again, once libvirt was asked to migrate it.
        if self._transfer is not None and self.hv.pause_anew(self.vm_id):
            log.warning("VM %s: its migration failed; its guest was resumed "
                        "and paused again, so that QEMU can migrate it "
                        "later", self.vm_id)

    # -- the transfer ---------------------------------------------------------

    def _follow_transfer(self):
        """True once libvirt's migration call returned. Until then, each
        look (woken by the call's end, an abort, or the poll) reads the
        progress; on Job.abort, or past the deadline, aborts libvirt's job,
        again at every look: libvirt refuses an abort until its migration
        job has begun."""
        if self._transfer.done:
            return True
        self._aborting = self._aborting or self.abort_requested()
        self._timed_out = self._timed_out or \
            time.monotonic() > self._deadline
        if (self._aborting or self._timed_out) and \
                self._cancel_deadline is None:
            self._cancel_deadline = time.monotonic() + self.cancel_timeout
        if self._cancel_deadline is not None and \
                time.monotonic() > self._cancel_deadline:
            raise uncancellable(self.vm_id, self.cancel_timeout,
                                self.hv.state(self.vm_id))
        try:
            if self._aborting or self._timed_out:
                self.hv.abort_job(self.vm_id)
            else:
                progress = self.hv.migration_progress(self.vm_id)
                if progress is not None:
                    self.set_progress(progress)
        except HypervisorError as exc:
            log.warning("VM %s: following the migration: %s",
                        self.vm_id, exc)
        return False

    def _check_transfer(self):
        """False if the domain left; True if the call failed with the
        domain still here while the destination holds the VM staged, or
        does not answer (it must settle it first:
        _settled_on_destination); else raise why it did not leave."""
        self._transfer.join()
        error = self._transfer.error
        if error is None:
            self.set_progress(100)
            return False
        here = self.hv.state(self.vm_id)
        # A domain gone here left (VIR_MIGRATE_UNDEFINE_SOURCE), or was
        # transient and stopped: an operator's virsh undefine after the
        # job's persist (round 14: taken for "it left", the job ended
        # done, the VM public on neither host). The destination tells
        # these apart as it tells a domain still here (below).
        # The call fails all the same after
        # libvirt's Finish succeeded on the destination when this host's
        # libvirtd dies in the migration's last phase (Confirm, which
        # kills this copy and undefines it): restarted, libvirt kills the
        # copy and keeps its definition, or, its phase PERFORM3_DONE,
        # leaves it paused for "a third party to check", which is this
        # job. The destination tells: a VM it lists as public arrived
        # (seed 3403, round 13: the rollback destroyed it there, its only
        # copy); one it holds staged may be arriving, its job's commit
        # not made yet (round 14); one it does not know did not arrive.
        held = self._held_on_destination()
        if held == PUBLIC:
            log.warning("VM %s: the migration call failed (%s) but %s "
                        "lists the VM: it migrated; its copy here, if "
                        "any, is removed", self.vm_id, error,
                        self.target.dst)
            if here is not None:
                self._remove_left_copy()
            self.set_progress(100)
            return False
        if held == ABSENT:
            raise self._absent(error)
        return True   # staged there, or no answer: asked again meanwhile

    def _absent(self, error):
        """The destination holds nothing of the VM (nothing arrived, or
        its job removed what came): the migration did not happen, and
        there is nothing there to destroy. Returns the job's failure."""
        self._on_destination = NOTHING
        self._destination_cleared = True
        if self._look_here() is None:
            return MigrateError(
                f"migration of VM {self.vm_id} to {self.target.dst_uri} "
                f"failed ({error}), and its domain is gone here: its guest "
                "stopped (transient: undefined by someone else)")
        return self._failure(error)

    def _failure(self, error):
        """Why the migration did not happen, its call failed with `error`."""
        if self._aborting or self.abort_requested():
            return JobAborted("aborted during the transfer")
        if self._timed_out:
            return MigrateError(f"VM {self.vm_id} did not migrate "
                                f"within {self.migration_timeout:g} s")
        return MigrateError(f"migration of VM {self.vm_id} to "
                            f"{self.target.dst_uri} failed: {error}")


def uncancellable(vm_id, cancel_timeout, state):
    # A migration libvirt did not end in time after its abort.
    return MigrateError(
        f"libvirt did not end the migration of VM {vm_id} within "
        f"{cancel_timeout:g} s of its abort: the job gives up; the domain is "
        f"left to libvirt as it is ({state or 'gone'}), the VM stays listed "
        "here and its copy on the destination is destroyed; VM.destroy "
        "destroys it by force")


class _Transfer(threading.Thread):
    """libvirt's migration call, which lasts as long as the transfer, on a
    thread of its own (not a worker), so that the job can follow it and
    abort it; it wakes the job when the call returns."""

    def __init__(self, job):
        super().__init__(name=f"migrate-{job.vm_id[:8]}", daemon=True)
        self.job = job
        self.error = None
        self._lock = threading.Lock()   # guards done, _leaves_slot
        self.done = False
        # The job ended while the call ran: the slot is left by this
        # thread, once the call returned (keeps_slot).
        self._leaves_slot = False

    def keeps_slot(self):
        """At the job's end: True if libvirt's call still runs, and so
        keeps the job's outgoing slot until it returns (a hostile-caller
        audit, round 13: a migration given up gave its slot to the next,
        whose call ran beside it, each one more connection)."""
        with self._lock:
            if self.done:
                return False
            self._leaves_slot = True
            return True

    def run(self):
        job = self.job
        try:
            if job.abort_requested():
                self.error = "aborted before it began"
            else:
                job.hv.migrate(job.vm_id, job.target.dst_uri,
                               job.target.migration_uri,
                               job.target.max_bandwidth)
        except HypervisorError as exc:
            self.error = exc
        except Exception as exc:   # reported by the job, not lost here
            log.exception("VM %s: migration call failed", job.vm_id)
            self.error = exc
        finally:
            with self._lock:
                self.done = True
                leaves_slot = self._leaves_slot
            if leaves_slot:
                log.warning("VM %s: the migration call given up on has "
                            "returned: its slot is free", job.vm_id)
                job.slots.leave(job)
            job.wake()
