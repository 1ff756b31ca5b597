"""Hibernation: save a public VM's state to a file, undefine its domain,
and take it out of the public registry.

Not a startup flow but the inverse of restore; like a migration's source,
it claims a public VM (a ClaimJob). Its reservation creates the state
file, empty and exclusively (O_EXCL), then claims the VM (Saving State):
an existing file is never overwritten, two hibernations can never share
one, and the file's inode is remembered, so the job only ever removes the
very file it created. Until the state is saved the VM stays public and
running if anything fails; once saved, a failure or an abort brings it
back from the file. A save or restore whose reply is lost may have taken
effect: the job then looks at the domain instead of assuming."""

import logging

from workers import JobStatus

from .. import statefiles
from ..errors import MigrateError, VdsmError
from ..hypervisor import DomainState, HypervisorError
from ..registry import VmStatus
from .base import ClaimJob, Rollback

log = logging.getLogger("vmjobs.flows.hibernate")


class HibernateJob(ClaimJob):
    job_type = "hibernate"
    # VDSM hibernates through its migration machinery.
    error_class = MigrateError
    claimed_status = VmStatus.SAVING_STATE
    refusal = "cannot hibernate"

    def __init__(self, vm_id, path, hypervisor, registry, **kwargs):
        super().__init__(vm_id, hypervisor, registry, **kwargs)
        self.path = path
        self._file = None               # (st_dev, st_ino) once created
        # Where the flow got to; read in on_ended, after run() returned.
        self._ran = False
        self._save_asked = False        # libvirt was asked to save
        self._saved = False             # the file may hold the VM's state
        self._brought_back = False      # ... and the VM runs again anyway

    def reserve(self):
        """Before the job is visible: create the state file, then claim the
        public VM (raises MigrateError, or NoVM), leaving nothing behind if
        either fails."""
        # A vmId neither staged nor public is noVM (1) whatever the file,
        # as VDSM looks the VM up first; the claim below still decides
        # (the VM may leave meanwhile: NoVM then, the file removed).
        self.registry.get(self.vm_id)
        self._file = statefiles.create(self.path, MigrateError)
        try:
            super().reserve()
        except VdsmError:
            statefiles.remove_own(self.path, self._file)
            raise

    def release(self):
        # The file first: once its claim ends, another hibernation may
        # claim it, and may want the same path.
        statefiles.remove_own(self.path, self._file)
        super().release()

    def run(self):
        vm_id = self.vm_id
        self._ran = True
        with Rollback() as rollback:
            rollback.push(f"undo the hibernation of VM {vm_id}", self._undo)
            self.step("prepare")
            state = self.hv.state(vm_id)
            if state not in (DomainState.RUNNING, DomainState.PAUSED):
                raise MigrateError(f"VM {vm_id} is {state or 'gone'}: "
                                   "nothing to save")
            # Persistent first, if an operator undefined it (virsh undefine
            # of a running guest: transient): libvirt removes a transient
            # domain it saved, where it leaves a persistent one shut off,
            # reason SAVED (round 13: a save whose reply was lost was
            # taken for a guest stopped outside, and the file that held
            # its only state removed). An undefine after this persist
            # leaves the same: was_saved reads the file, not the domain
            # alone (round 14).
            self.hv.persist(vm_id)
            self.step("save")
            self._save()
            self.step("undefine")
            self.hv.remove(vm_id)
            self.step("commit")
            self.commit()
            log.info("VM %s hibernated to %s", vm_id, self.path)

    def on_ended(self):
        try:
            if self.status is JobStatus.DONE:
                pass   # committed: the VM left the public registry
            elif not self._ran:
                # Ended while queued: the file it created is still empty.
                self.release()
            elif self._saved and not self._brought_back:
                # The rollback could not bring the VM back: it is hibernated
                # after all, its only state in the file (kept), and a restore
                # is what brings it back. Listing it Up would be a lie.
                log.error("VM %s could not be brought back: it stays "
                          "hibernated in %s", self.vm_id, self.path)
                self.registry.drop_claimed(self.vm_id, self)
            elif not self._saved and \
                    self._domain_state() in (DomainState.SHUTOFF, None):
                # Not committed, and its guest stopped meanwhile (its QEMU
                # killed as the save began): it leaves, `Down`, as a guest
                # stopped outside vmjobs does (guests.py), its domain left for
                # VM.destroy; not put back `Up` first.
                log.warning("VM %s: its guest stopped during its hibernation",
                            self.vm_id)
                self.registry.drop_claimed(self.vm_id, self)
            else:
                # Not committed: the VM stays public, as it was before.
                self.registry.end_claim(self.vm_id, self)
        finally:
            super().on_ended()

    def _save(self):
        self._save_asked = True
        try:
            self.hv.save(self.vm_id, self.path)
        except HypervisorError:
            # The reply may be lost after libvirt saved: the domain is then
            # shut off, reason SAVED. Stopped another way (its QEMU killed
            # during the save, a crash), the file holds no whole state, and
            # a restore of it fails: not saved (a chaos run: such a VM was
            # said to stay hibernated in a file cut short). Nor is a
            # domain an operator saved first (virsh managedsave, virsh
            # save: reason SAVED too, its state elsewhere, our file empty:
            # hv.was_saved reads the file). If we cannot tell, the file
            # may hold the only state, and is kept.
            self._saved = self._look(
                lambda vm_id: self.hv.was_saved(vm_id, self.path), True)
            raise
        self._saved = True

    def _undo(self):
        if self._saved:
            # The file may hold the VM's only state: it goes only once the
            # VM runs again and is persistent (if this raises, it stays).
            self._bring_back()
            self._brought_back = True
            self.hv.persist(self.vm_id)
        statefiles.remove_own(self.path, self._file)
        if self._save_asked and not self._saved:
            self._pause_anew()

    def _pause_anew(self):
        # A guest paused before its save, whose save failed after QEMU had
        # sent its state (the file's write failed: ENOSPC), is left in
        # QEMU's `postmigrate`: listed Paused, but QEMU refuses every later
        # save and migration of it (a chaos run: its VM could be neither
        # hibernated nor migrated again). libvirt resumes only a guest it
        # paused for the save. Whether QEMU got that far is not told
        # without its monitor, so a guest paused at someone's request runs
        # a moment and is paused again after every failed save; one paused
        # by libvirt or QEMU (an I/O error...) is left as it is.
        if self.hv.pause_anew(self.vm_id):
            log.warning("VM %s: its save failed; its guest was resumed and "
                        "paused again, so that QEMU can save it later",
                        self.vm_id)

    def _bring_back(self):
        paused = self.vm_before_claim.status == VmStatus.PAUSED
        try:
            # The file libvirt has just written of our running domain: its
            # own XML, none given.
            self.hv.restore(self.path, self.vm_id, None, paused=paused)
        except HypervisorError:
            # Its reply may be lost after libvirt restored; or the save
            # never took effect: either way a running domain is back.
            if self._domain_state() not in (DomainState.RUNNING,
                                            DomainState.PAUSED):
                raise
            log.warning("VM %s: restore failed but its domain runs",
                        self.vm_id)

    def _domain_state(self):
        """The domain's state, or 'unknown' if it cannot be read."""
        return self._look(self.hv.state, "unknown")

    def _look(self, read, unknown):
        """read(vm_id), or `unknown` if libvirt cannot say."""
        try:
            return read(self.vm_id)
        except HypervisorError as exc:
            log.warning("VM %s: cannot read its state: %s", self.vm_id, exc)
            return unknown
