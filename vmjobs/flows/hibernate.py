"""Hibernation: save a public VM's state to a file, undefine its domain,
and take it out of the public registry.

Not a startup flow but the inverse of restore, and the only job that runs
on a public VM. Its reservation claims the VM (Saving State) and creates
the state file, empty and exclusively (O_EXCL): an existing file is never
overwritten, and two hibernations can never share one. Until the state is
saved the VM stays public and running if anything fails; once saved, a
failure or an abort brings it back from the file."""

import logging
import os

from workers import JobStatus

from .. import hostfiles
from ..errors import MigrateError
from ..hypervisor import DomainState
from ..registry import VmBusy, VmStatus
from .base import Rollback, VmJob

log = logging.getLogger("vmjobs.flows.hibernate")


def reserve_state_file(path):
    """Create `path` empty, refusing (MigrateError) if anything, even a
    dangling symlink, is there."""
    try:
        hostfiles.reserve(path)
    except FileExistsError:
        raise MigrateError(f"{path} exists: refusing to overwrite it") \
            from None
    except OSError as exc:
        raise MigrateError(f"cannot create {path}: {exc.strerror}") from None


def remove_state_file(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class HibernateJob(VmJob):
    job_type = "hibernate"
    # VDSM hibernates through its migration machinery.
    error_class = MigrateError

    def __init__(self, vm_id, path, hypervisor, registry, **kwargs):
        super().__init__(vm_id, hypervisor, registry, **kwargs)
        self.path = path                # reserved by reserve(): ours
        self.previous_status = None     # the VM's, when reserve() claimed it
        # Where the flow got to; read in on_ended, after run() returned.
        self._ran = False
        self._saved = False             # the file holds the VM's state
        self._brought_back = False      # ... and the VM runs again anyway

    def reserve(self):
        """Claim the public VM (raises NoVM, or MigrateError if another job
        works on it) and create the state file."""
        try:
            self.previous_status = self.registry.claim(
                self.vm_id, VmStatus.SAVING_STATE, self).status
        except VmBusy as exc:
            raise MigrateError(f"cannot hibernate: {exc}") from None
        try:
            reserve_state_file(self.path)
        except MigrateError:
            self.registry.release(self.vm_id, self, self.previous_status)
            raise

    def release(self):
        # The file first: once the VM is released, another hibernation may
        # claim it, and may want the same path.
        remove_state_file(self.path)
        self.registry.release(self.vm_id, self, self.previous_status)

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
            self.step("save")
            self.hv.save(vm_id, self.path)
            self._saved = True
            self.step("undefine")
            self.hv.remove(vm_id)
            self.step("commit")
            self.complete(
                lambda: self.registry.unpublish_claimed(vm_id, self))
            log.info("VM %s hibernated to %s", vm_id, self.path)

    def on_ended(self):
        if self.status is JobStatus.DONE:
            return   # committed: the VM left the public registry
        if not self._ran:
            # Ended while queued: the reserved file is still empty.
            self.release()
        elif self._saved and not self._brought_back:
            # The rollback could not bring the VM back: it is hibernated
            # after all, its only state in the file (kept), and a restore
            # is what brings it back. Listing it Up would be a lie.
            log.error("VM %s could not be brought back: it stays "
                      "hibernated in %s", self.vm_id, self.path)
            self.registry.unpublish_claimed(self.vm_id, self)
        else:
            # Not committed: the VM stays public, as it was before.
            self.registry.release(self.vm_id, self, self.previous_status)

    def _undo(self):
        if self._saved:
            # The file holds the VM's only state: it goes only once the VM
            # runs again and is persistent (if this raises, it stays).
            self.hv.restore(self.path, self.vm_id,
                            paused=self.previous_status == VmStatus.PAUSED)
            self._brought_back = True
            self.hv.persist(self.vm_id)
        remove_state_file(self.path)
