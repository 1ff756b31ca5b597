"""Where VMs live: a private staging registry for VMs whose startup job
still runs, and the public registry for VMs that are fully up.

Both are guarded by one lock so that "is this vmId taken?" is checked
against both, and a VM moved from one to the other, in one atomic step:
a VM is never in both, and never in neither while its job still runs.
Records are immutable; an update replaces the record, so a record handed
out is a consistent snapshot that needs no lock to read.
"""

import dataclasses
import threading

from .errors import NoVM, VmExists

# Statuses of staged VMs, per startup mode; public VMs are Up, Paused or
# Saving State.
WAIT_FOR_LAUNCH = "WaitForLaunch"
RESTORING_STATE = "Restoring state"
MIGRATION_DESTINATION = "Migration Destination"
UP = "Up"
PAUSED = "Paused"
SAVING_STATE = "Saving State"


@dataclasses.dataclass(frozen=True)
class Vm:
    vm_id: str
    status: str
    params: dict                 # the engine's parameters; never mutated
    staging: bool
    job: object = None           # the job working on it, if any

    def stats(self):
        """VM.getStats' answer."""
        stats = {"vmId": self.vm_id, "status": self.status,
                 "staging": self.staging, "params": self.params}
        if self.job is not None:
            stats["jobId"] = self.job.id
        return stats


class VmRegistry:
    def __init__(self):
        # Guards _staged and _public. Held only for dict operations: no
        # libvirt call, no logging, no callback is made under it.
        self._lock = threading.Lock()
        self._staged = {}   # vm_id -> Vm, being started by vm.job
        self._public = {}   # vm_id -> Vm, fully up

    def stage(self, vm_id, status, params, job):
        """Reserve vm_id for `job`; raise VmExists if it is staged or public."""
        vm = Vm(vm_id, status, params, staging=True, job=job)
        with self._lock:
            if vm_id in self._staged or vm_id in self._public:
                raise VmExists(f"VM {vm_id} already exists")
            self._staged[vm_id] = vm

    def publish(self, vm_id, status, job):
        """The commit: move job's staged VM to the public registry."""
        with self._lock:
            vm = self._staged.get(vm_id)
            if vm is None or vm.job is not job:
                raise RuntimeError(f"VM {vm_id} is not staged by {job}")
            del self._staged[vm_id]
            self._public[vm_id] = dataclasses.replace(
                vm, status=status, staging=False, job=None)

    def unstage(self, vm_id, job):
        """Drop job's staged VM, if it is still there (rollback, or the end
        of a job that never committed). Returns True if it was."""
        with self._lock:
            vm = self._staged.get(vm_id)
            if vm is None or vm.job is not job:
                return False
            del self._staged[vm_id]
            return True

    def set_status(self, vm_id, status, job):
        """Change the status of the VM job works on, wherever it is."""
        with self._lock:
            for vms in (self._staged, self._public):
                vm = vms.get(vm_id)
                if vm is not None and vm.job is job:
                    vms[vm_id] = dataclasses.replace(vm, status=status)
                    return

    def unpublish(self, vm_id, vm):
        """Drop the public VM `vm` (a snapshot from get()), if it is still
        the one registered. Returns True if it was."""
        with self._lock:
            if self._public.get(vm_id) is not vm:
                return False
            del self._public[vm_id]
            return True

    def get(self, vm_id):
        """The VM, staged or public; raise NoVM if neither."""
        with self._lock:
            vm = self._staged.get(vm_id) or self._public.get(vm_id)
        if vm is None:
            raise NoVM(f"VM {vm_id} does not exist")
        return vm

    def public(self):
        with self._lock:
            return list(self._public.values())

    def staged(self):
        with self._lock:
            return list(self._staged.values())

    def known_ids(self):
        with self._lock:
            return self._staged.keys() | self._public.keys()

    def counts(self):
        with self._lock:
            return {"staged": len(self._staged), "public": len(self._public)}
