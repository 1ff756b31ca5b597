"""VM.destroy (bz912390): destroy a VM whatever works on it.

A VM that a job works on (its startup job while staged, a hibernation
while public) is that job's: only the job touches its domain. Destroy then
aborts the job and waits until it rolled back; a startup job leaves
nothing behind, a hibernation leaves the VM public again, and destroy looks
again. A public VM nobody works on is claimed by a `Destruction` (so no
job can start on it meanwhile), its domain removed, and it leaves the
public registry.

A job that does not end within `JOB_WAIT` seconds of its abort (stuck
behind libvirt: a migration QEMU cannot cancel, a hung call) does not hold
destroy back: its domain is destroyed by force (virDomainDestroy, as VDSM
does), which ends whatever libvirt was doing with it, and destroy waits for
the job once more, then drops the VM as above.

Not a job: it runs in the verb's thread, is never queued, has no id, and
is not undone.
"""

import logging
import threading

import workers

from .errors import GeneralException, NoVM, VmExists
from .hypervisor import DomainNotFound, HypervisorError
from .registry import VmBusy, VmStatus

log = logging.getLogger("vmjobs.destroy")


class Destruction:
    """A VM.destroy's claim on a public VM while it removes the domain. A
    second VM.destroy that finds it waits for it to end."""

    def __init__(self, vm_id):
        self.vm_id = vm_id
        self._ended = threading.Event()

    def wait(self, timeout=None):
        return self._ended.wait(timeout)

    def run(self, hv, registry, graceful_attempts=0):
        """Remove the claimed VM's domain (after `graceful_attempts`
        graceful destroys, as VDSM's) and drop the VM; if the removal
        fails, whatever the failure, give the VM back as it was (a later
        destroy must find it free, not wait on a claim nobody ends)."""
        log.info("VM.destroy %s: destroying the public VM", self.vm_id)
        try:
            try:
                hv.remove(self.vm_id, graceful_attempts)
            except BaseException as exc:
                registry.end_claim(self.vm_id, self)
                if isinstance(exc, HypervisorError):
                    raise GeneralException(
                        f"destroy of VM {self.vm_id} failed: {exc}") \
                        from None
                raise
            registry.drop_claimed(self.vm_id, self)
        finally:
            self._ended.set()

    def remove_in_no_registry(self, hv, registry, owner):
        """VM `vm_id` is in neither registry: remove its domain if it is
        ours (`owner`, an ownership.Ownership, says). True if it removed
        one, False if there is none (a domain not ours is never touched),
        None if a job staged the vmId first."""
        try:
            registry.stage(self.vm_id, VmStatus.DOWN, {}, self)
        except VmExists:
            self._ended.set()
            return None
        try:
            try:
                if not owner.owns(self.vm_id):
                    return False
            except DomainNotFound:
                return False
            log.info("VM.destroy %s: removing its domain, in neither "
                     "registry", self.vm_id)
            try:
                hv.remove(self.vm_id)
            except HypervisorError as exc:
                raise GeneralException(
                    f"destroy of VM {self.vm_id} failed: {exc}") from None
            return True
        finally:
            registry.unstage(self.vm_id, self)
            self._ended.set()

    def __str__(self):
        return f"VM.destroy of VM {self.vm_id}"


# Seconds VM.destroy waits for an aborted job before it destroys the
# domain by force, and again after.
JOB_WAIT = 30.0


def destroy(hv, registry, vm_id, graceful_attempts=0, *, owner):
    """Destroy VM `vm_id` (raises NoVM if there is none), its domain asked
    `graceful_attempts` times to stop gracefully first; returns True once
    it is gone. `owner`: the ownership.Ownership that says whether a
    domain in neither registry is ours."""
    found = False   # the VM was in a registry when we looked
    # The job that held the public VM when its abort was asked, once it
    # ended by itself: if the VM is gone then, that job took it away (a
    # migration past its switch-over, a hibernation that could not be
    # undone), and nothing was destroyed.
    taken_by = None
    while True:
        try:
            vm = registry.get(vm_id, placeholder=True)
        except NoVM:
            removed = Destruction(vm_id).remove_in_no_registry(
                hv, registry, owner)
            if removed is None:
                continue   # a job took the vmId meanwhile: look again
            if removed:
                return True
            if taken_by is not None:
                raise NoVM(f"VM {vm_id} is not here: job {taken_by.id} "
                           f"({taken_by.job_type}) took it away before its "
                           f"abort could stop it ({taken_by.status}); it "
                           "was not destroyed") from None
            if found:
                return True   # its startup job's rollback removed it
            raise
        found = True
        if isinstance(vm.job, Destruction):
            vm.job.wait()   # another VM.destroy: see what it left
        elif vm.job is not None:
            log.info("VM.destroy %s: aborting job %s", vm_id, vm.job.id)
            try:
                vm.job.abort()
            except workers.JobEnded:
                pass   # it is ending on its own
            if vm.job.wait(JOB_WAIT):
                taken_by = None if vm.staging else vm.job
            else:
                taken_by = None
                force_destroy(hv, vm_id, vm.job)
                registry.destroyed_under(vm_id, vm.job)
                if not vm.job.wait(JOB_WAIT):
                    raise GeneralException(
                        f"destroy of VM {vm_id}: its domain was destroyed, "
                        f"but job {vm.job.id} has not ended {2 * JOB_WAIT:g}"
                        " s after its abort; the VM leaves the registry "
                        "when it ends")
        else:
            destruction = Destruction(vm_id)
            try:
                # With the status it has at the claim, not `vm`'s: the
                # guest may have been paused or resumed since the look.
                registry.claim(vm_id, None, destruction)
            except VmBusy:
                continue   # a job got there first: look again
            destruction.run(hv, registry, graceful_attempts)
            return True


def force_destroy(hv, vm_id, job):
    """The job working on VM `vm_id` did not end after its abort: destroy
    its domain by force, keeping the definition (the job's rollback and
    the next look of destroy() remove the rest)."""
    log.warning("VM.destroy %s: job %s has not ended after its abort: "
                "destroying the domain by force", vm_id, job.id)
    try:
        hv.remove(vm_id, keep_definition=True)
    except HypervisorError as exc:
        raise GeneralException(
            f"destroy of VM {vm_id} failed: job {job.id} did not end after "
            f"its abort, and the forced destroy failed: {exc}") from None
