"""Hibernation: save a public VM's state to a file, undefine its domain,
and take it out of the public registry.

Not a startup flow but the inverse of restore, and the only job that runs
on a public VM. Until the state is saved the VM stays public and running
if anything fails; once saved, a failure or an abort brings it back from
the file."""

import logging
import os

from ..errors import MigrateError
from .base import Rollback, VmJob

log = logging.getLogger("vmjobs.flows.hibernate")


class HibernateJob(VmJob):
    job_type = "hibernate"
    # VDSM hibernates through its migration machinery.
    error_class = MigrateError

    def __init__(self, vm_id, path, hypervisor, registry, **kwargs):
        super().__init__(vm_id, hypervisor, registry, **kwargs)
        self.path = path
        self.previous_status = None   # set by the verb when it claims the VM

    def run(self):
        vm_id, path = self.vm_id, self.path
        with Rollback() as rollback:
            self.step("prepare")
            if os.path.lexists(path):
                raise MigrateError(f"{path} exists: refusing to overwrite it")
            self.step("save")
            try:
                self.hv.save(vm_id, path)
            except Exception:
                _remove_partial(path)
                raise
            rollback.push(f"bring VM {vm_id} back from {path}",
                          self._bring_back)
            self.step("undefine")
            self.hv.remove(vm_id)
            self.step("commit")
            self.complete(
                lambda: self.registry.unpublish_claimed(vm_id, self))
            log.info("VM %s hibernated to %s", vm_id, path)

    def on_ended(self):
        # Not committed: the VM stays public, as it was before.
        self.registry.release(self.vm_id, self, self.previous_status)

    def _bring_back(self):
        paused = self.previous_status == "Paused"
        self.hv.restore(self.path, self.vm_id, paused=paused)
        self.hv.persist(self.vm_id)
        # Only once the VM runs again is the state file ours to drop.
        os.unlink(self.path)


def _remove_partial(path):
    """A failed save may leave a partial file: it was not there before
    (checked), so it is ours, and useless."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
