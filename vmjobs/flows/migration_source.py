"""Migration source: hand a public VM over to another vmjobs host.

    prepare -> prepare-destination -> migrate -> commit

VM.migrate claims the public VM (status Migration Source) and queues this
job. The job asks the destination service to expect the VM
(VM.migrationCreate, retried with backoff while the destination is busy,
within the timeout), then has this host's libvirtd migrate the domain
live, peer to peer, following the transfer in libvirt's job stats.

- Success: the domain left; the VM leaves this host's public registry (it
  is public on the destination, whose job committed it).
- Anything else (a refusal, a failed transfer, the timeout, Job.abort,
  VM.destroy): libvirt's job is aborted, the destination's staged copy is
  destroyed (VM.destroy there) and the VM stays public here, in its
  previous status.

Never twice: the destination's copy is destroyed only once the domain is
known to run here still, and the job does not end while libvirt's migration
call runs, unless libvirt has not ended it `cancel_timeout` after its abort
(a migration QEMU cannot cancel): the job then fails rather than wait for
ever. A migration that completed although its call failed, or that an
abort reached too late, is a migration: the VM is on the destination."""

import logging
import threading
import time

import workers
from workers import JobAborted, JobStatus

from ..client import RemoteError
from ..errors import MigrateError, NoVM, VdsmError
from ..hypervisor import DomainState, HypervisorError
from ..registry import VmBusy, VmStatus
from .base import Rollback, VmJob

log = logging.getLogger("vmjobs.flows.migration_source")

# The destination's answers that mean "not now": migrateLimit,
# ResourceExhausted, and HTTP 503 (all its connections busy).
BUSY = (82, 1100, 503)


class DestinationRefused(VdsmError):
    """The destination refused the VM; the job's error carries its code."""
    name = "destination"

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class MigrationSourceJob(VmJob):
    # Ahead of queued creations and restores, as the destination's job.
    priority = workers.Priority.HIGH
    job_type = "migration-source"
    error_class = MigrateError
    # Seconds between looks at libvirt's job while the transfer runs (for
    # the progress, and to repeat an abort libvirt could not take yet).
    monitor_interval = 0.2
    # Seconds libvirt has to end its migration once the job aborted it (on
    # Job.abort, VM.destroy or the timeout); past it the job fails and the
    # domain is left to libvirt, as it is (docs/recovery.md, "A migration
    # libvirt cannot cancel").
    cancel_timeout = 30.0
    # Backoff while the destination is busy (VDSM waits 10 s each time).
    retry_first, retry_max = 0.25, 10.0

    def __init__(self, vm_id, target, hypervisor, registry, connect,
                 default_timeout, outgoing_limit=None, **kwargs):
        """`target`: a params.MigrationTarget; `connect(dst, timeout)`: a
        client of the destination service (with call(method, params));
        `outgoing_limit`: at most this many VMs migrating out at once."""
        super().__init__(vm_id, hypervisor, registry, **kwargs)
        self.target = target
        self.migration_timeout = target.timeout or default_timeout
        self.outgoing_limit = outgoing_limit
        self._connect = connect
        # The VM's params, read by reserve() when it claims the VM: the
        # destination keeps them.
        self.params = {}
        # Set on abort and when the transfer ends: the monitor looks again.
        self._wake = threading.Event()
        # The domain left for the destination (read in on_ended, after
        # run() returned).
        self._migrated = False
        self.previous_status = None   # the VM's, when reserve() claimed it
        # The destination's copy is known destroyed (set by the rollback).
        self._destination_cleared = False

    def reserve(self):
        """Claim the public VM, Migration Source meanwhile (raises NoVM;
        MigrateError if another job works on it; MigrateLimit beyond the
        outgoing limit)."""
        try:
            vm = self.registry.claim(self.vm_id, VmStatus.MIGRATION_SOURCE,
                                     self, self.outgoing_limit)
        except VmBusy as exc:
            raise MigrateError(f"cannot migrate: {exc}") from None
        self.params = vm.params
        self.previous_status = vm.status

    def release(self):
        self.registry.release(self.vm_id, self)

    def abort(self):
        super().abort()
        self._wake.set()

    def run(self):
        vm_id = self.vm_id
        deadline = time.monotonic() + self.migration_timeout
        with Rollback() as rollback:
            self.step("prepare")
            domain_xml = self.hv.migratable_xml(vm_id)
            self.step("prepare-destination")
            self._create_on_destination(domain_xml, deadline)
            # Undone newest first: the guest is resumed here only once its
            # copy there is destroyed.
            rollback.push(f"resume VM {vm_id} if the migration stopped it",
                          self._resume_if_stopped)
            rollback.push(f"destroy VM {vm_id} on {self.target.dst}",
                          self._destroy_on_destination)
            self.step("migrate")
            self._transfer(deadline)
        # The domain runs on the destination now: whatever happens next,
        # this host lets the VM go.
        self._migrated = True
        try:
            self.step("commit")
            self.complete(
                lambda: self.registry.unpublish_claimed(vm_id, self))
        except JobAborted:
            raise MigrateError(
                f"too late to abort: VM {vm_id} had already migrated to "
                f"{self.target.dst}") from None
        log.info("VM %s migrated to %s", vm_id, self.target.dst)

    def on_ended(self):
        if self._migrated:
            if self.status is not JobStatus.DONE:
                self.registry.unpublish_claimed(self.vm_id, self)
        else:
            # Not migrated: the VM stays public, as it was before.
            self.release()

    # -- the destination service --------------------------------------------

    def _call_destination(self, method, params, deadline):
        timeout = max(1.0, min(60.0, deadline - time.monotonic()))
        try:
            with self._connect(self.target.dst, timeout) as peer:
                return peer.call(method, params)
        except OSError as exc:
            raise MigrateError(f"cannot reach the destination "
                               f"{self.target.dst}: {exc}") from None

    def _create_on_destination(self, domain_xml, deadline):
        """VM.migrationCreate on the destination, again while it is busy."""
        params = {**self.params, "vmId": self.vm_id, "xml": domain_xml}
        delay = self.retry_first
        while True:
            try:
                self._call_destination("VM.migrationCreate", {
                    "vmID": self.vm_id, "params": params}, deadline)
                return
            except RemoteError as exc:
                remaining = deadline - time.monotonic()
                if exc.code not in BUSY or remaining <= 0:
                    raise DestinationRefused(
                        exc.code, f"the destination {self.target.dst} "
                        f"refused VM {self.vm_id}: {exc.message}") from None
                log.info("destination %s busy (%s): trying again in "
                         "%.2f s", self.target.dst, exc.code, delay)
            # An abort ends the wait at once.
            if self.wait_abort_requested(min(delay, remaining)):
                self.check_abort()
            delay = min(delay * 2, self.retry_max)

    def _destroy_on_destination(self):
        # Only while the domain runs here: if it left, the destination's
        # copy is the VM.
        state = self.hv.state(self.vm_id)
        if state not in (DomainState.RUNNING, DomainState.PAUSED):
            raise MigrateError(f"VM {self.vm_id} is {state or 'gone'} "
                               "here: its copy on the destination is kept")
        deadline = time.monotonic() + 60.0
        try:
            self._call_destination("VM.destroy", {"vmID": self.vm_id},
                                   deadline)
        except RemoteError as exc:
            if exc.code != NoVM.code:
                raise MigrateError(f"VM.destroy on {self.target.dst}: "
                                   f"{exc.message}") from None
        self._destination_cleared = True

    def _resume_if_stopped(self):
        # An end after the switch-over began leaves the vCPUs here stopped
        # (QEMU's postmigrate): resumed if it ran before and its copy on
        # the destination is gone (never twice).
        if self.previous_status != VmStatus.UP or \
                not self._destination_cleared:
            return
        if self.hv.resume_if_stopped_by_migration(self.vm_id):
            log.warning("VM %s: its migration had stopped its vCPUs: "
                        "resumed", self.vm_id)
            if self.hv.state(self.vm_id) != DomainState.RUNNING:
                raise MigrateError(f"VM {self.vm_id} was resumed after its "
                                   "failed migration but does not run")

    # -- the transfer ---------------------------------------------------------

    def _transfer(self, deadline):
        """Migrate; return once the domain left. Abort libvirt's job on
        Job.abort or when the deadline passes, and raise once the migration
        call has returned, never before."""
        transfer = _Transfer(self)
        transfer.start()
        aborting = timed_out = False
        cancel_deadline = None
        while not transfer.done:
            aborting = aborting or self.wait_abort_requested(0)
            timed_out = timed_out or time.monotonic() > deadline
            if (aborting or timed_out) and cancel_deadline is None:
                cancel_deadline = time.monotonic() + self.cancel_timeout
            if cancel_deadline is not None and \
                    time.monotonic() > cancel_deadline:
                raise uncancellable(self.vm_id, self.cancel_timeout,
                                    self.hv.state(self.vm_id))
            try:
                if aborting or timed_out:
                    # Again at every round: libvirt refuses an abort until
                    # its migration job has begun.
                    self.hv.abort_job(self.vm_id)
                else:
                    progress = self.hv.migration_progress(self.vm_id)
                    if progress is not None:
                        self.set_progress(progress)
            except HypervisorError as exc:
                log.warning("VM %s: following the migration: %s",
                            self.vm_id, exc)
            self._wake.wait(self.monitor_interval)
            self._wake.clear()
        transfer.join()
        aborting = aborting or self.wait_abort_requested(0)
        if transfer.error is not None and self.hv.state(self.vm_id) is None:
            log.warning("VM %s: the migration call failed (%s) but the "
                        "domain left: it migrated", self.vm_id,
                        transfer.error)
        elif transfer.error is not None:
            if aborting:
                raise JobAborted("aborted during the transfer")
            if timed_out:
                raise MigrateError(f"VM {self.vm_id} did not migrate "
                                   f"within {self.migration_timeout:g} s")
            raise MigrateError(f"migration of VM {self.vm_id} to "
                               f"{self.target.dst_uri} failed: "
                               f"{transfer.error}")
        self.set_progress(100)


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
    thread of its own, so that the job can follow it and abort it."""

    def __init__(self, job):
        super().__init__(name=f"migrate-{job.vm_id[:8]}", daemon=True)
        self.job = job
        self.error = None
        self.done = False

    def run(self):
        job = self.job
        try:
            if job.wait_abort_requested(0):
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
            self.done = True
            job._wake.set()
