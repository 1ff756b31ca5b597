"""Where VMs live: a private staging registry for VMs whose startup job
still runs, and the public registry for VMs that are fully up; and which
of them the list verbs show (the publish mode, API.md "Publish mode").

Both are guarded by one lock so that "is this vmId taken?" is checked
against both, and a VM moved from one to the other, in one atomic step:
a VM is never in both, and never in neither while its job still runs.
Records are immutable; an update replaces the record, so a record handed
out is a consistent snapshot that needs no lock to read.

The host paths a VM holds (hostpaths.py) are the registry's too: taken
with its vmId's stage, in the same critical section, so two requests in
flight cannot both take one path, and given back in the one that takes
the VM out of both registries (its unstage, its drop, its guest's stop),
once its domain is gone.

Every change of a VM's status, and its leaving (`Down`), is posted to
the notifications (notifications.py) in the same critical section: the
feed's lock is innermost and calls nothing out, so the notifications of a
VM come in the order of its changes.
"""

import dataclasses
import threading

import workers

from . import hostpaths
from .errors import MigrateLimit, NoVM, VmExists
from .hypervisor import DomainState
from .strenum import StrEnum


class VmStatus(StrEnum):
    """A VM's status as the engine sees it (VDSM's words)."""
    # Public VMs
    UP = "Up"
    PAUSED = "Paused"
    SAVING_STATE = "Saving State"          # being hibernated
    MIGRATION_SOURCE = "Migration Source"  # migrating away (VM.migrate)
    # Staged VMs, per startup mode
    WAIT_FOR_LAUNCH = "WaitForLaunch"
    RESTORING_STATE = "Restoring state"
    MIGRATION_DESTINATION = "Migration Destination"
    # The placeholder VM.destroy stages for a vmId while it removes a
    # domain in neither registry (VDSM's word for a VM going away). It is
    # kept with the staged VMs, so that no job stages the vmId meanwhile,
    # but it is no VM: the verbs and the counts see neither staged nor public
    # (API.md's noVM), only destroy.py and the vmId's refusal see it.
    DOWN = "Down"


# The public status of a VM whose domain is in a given state.
PUBLIC_STATUS = {DomainState.RUNNING: VmStatus.UP,
                 DomainState.PAUSED: VmStatus.PAUSED}


class PublishMode(StrEnum):
    """When the list verbs (Host.getVMList, Host.getAllVmStats) start
    showing a VM. Only listed() reads it: staging, commit, refusal and
    rollback are the same in both modes, and the flows never see it."""
    COMMIT = "commit"   # at its job's commit: staged VMs are never listed
    ACCEPT = "accept"   # once its verb answered, with its staged status


class VmBusy(Exception):
    """The VM already has a job running on it: a public VM's claim, or a
    staged VM's startup job."""


@dataclasses.dataclass(frozen=True)
class Vm:
    vm_id: str
    status: VmStatus
    params: dict                 # the engine's parameters; never mutated
    staging: bool
    # What works on the VM: its startup job while staged; a hibernate or
    # migration-source job or a destroy.Destruction while public; None when
    # it is just up.
    job: object = None
    # The status a claimed public VM had before its claim: end_claim() puts
    # it back, so a claim's end never needs it from the claimer.
    status_before_claim: VmStatus | None = None
    # A staged VM whose verb answered (accept()): listed in accept mode.
    # Read only while the VM is staged.
    accepted: bool = False
    # A claimed public VM whose domain VM.destroy destroyed by force, its
    # job not ended: the claim's end drops it (destroyed_under()).
    destroyed: bool = False

    def stats(self):
        """VM.getStats' answer."""
        # (str(): a plain string in process too, as over JSON-RPC.)
        stats = {"vmId": self.vm_id, "status": str(self.status),
                 "staging": self.staging, "params": self.params}
        if isinstance(self.job, workers.Job):
            stats["jobId"] = self.job.id
        return stats


class VmRegistry:
    def __init__(self, publish_mode=PublishMode.COMMIT, notifications=None):
        # Guards _staged, _public and _paths. Held only for dict operations
        # and the append of a notification: no libvirt call, no logging, no
        # callback, nothing read from the file system is made under it.
        self._lock = threading.Lock()
        self._notifications = notifications
        self._staged = {}   # vm_id -> Vm, being started by vm.job
        self._public = {}   # vm_id -> Vm, fully up
        # The host paths the VMs of both hold, by vmId.
        self._paths = hostpaths.Holdings()
        self._list_accepted = PublishMode(publish_mode) is PublishMode.ACCEPT
        # Called with a vmId, after the lock is released, whenever a public
        # VM becomes nobody's job's: at its commit, and when a claim ends
        # (the guest watch, guests.py, reads its guest's state then). None:
        # no guest watch (the test driver, or the service stopping).
        self.on_idle = None

    def refuse_known(self, vm_id):
        """Raise VmExists if vm_id is staged or public: a verb's first
        answer, before it reads anything the request names (stage() still
        decides, atomically, when the job is queued)."""
        with self._lock:
            self._refuse_taken(vm_id)

    def _refuse_taken(self, vm_id):
        # Caller holds _lock.
        if not self._knows(vm_id):
            return
        staged = self._staged.get(vm_id)
        if staged is not None and staged.status == VmStatus.DOWN:
            # Taken a moment more: its domain is being removed, and a job
            # must not make one with its UUID meanwhile.
            raise VmExists(f"VM {vm_id}'s domain is being removed by a "
                           "VM.destroy: try again once it has answered")
        raise VmExists(f"VM {vm_id} already exists")

    def knows(self, vm_id):
        """True if vm_id is staged or public (one VM's known_ids())."""
        with self._lock:
            return self._knows(vm_id)

    def _knows(self, vm_id):
        # Caller holds _lock.
        return vm_id in self._staged or vm_id in self._public

    def stage(self, vm_id, status, params, job, max_with_status=None,
              paths=()):
        """Reserve vm_id for `job`; raise VmExists if it is staged or public.
        With `paths` (hostpaths.Hold), the host paths the VM holds from now
        on: refused (hostpaths.Taken) if another VM holds one so that they
        clash. With `max_with_status`, refuse (MigrateLimit) when that many
        VMs are already staged with `status`. The vmId, the paths and the
        count are one atomic step: concurrent requests cannot take one
        vmId or one path twice, nor overshoot the limit."""
        vm = Vm(vm_id, status, params, staging=True, job=job)
        with self._lock:
            self._refuse_taken(vm_id)
            self._paths.refuse_clash(vm_id, paths)
            _refuse_beyond(self._staged, status, max_with_status)
            self._staged[vm_id] = vm
            self._paths.add(vm_id, paths)
            if status != VmStatus.DOWN:   # not a destroy's placeholder
                self._changed(vm_id, status, True)

    def hold(self, vm_id, job, paths):
        """job's staged VM holds `paths` (hostpaths.Hold) too, whoever else
        does: a domain found running (recovery) has them already."""
        with self._lock:
            vm = self._staged.get(vm_id)
            if vm is not None and vm.job is job:
                self._paths.add(vm_id, paths)

    def held_paths(self):
        """{vmId: (the hostpaths.Hold it holds)} of every VM holding one."""
        with self._lock:
            return self._paths.holders()

    def accept(self, vm_id, job):
        """job's verb answered: its staged VM (if it is still staged, by
        job) may now be listed. A job that already ended, or one that
        stages nothing (a hibernation), leaves nothing to mark. Marked in
        both modes; only listed() tells them apart."""
        with self._lock:
            vm = self._staged.get(vm_id)
            if vm is not None and vm.job is job:
                self._staged[vm_id] = dataclasses.replace(vm, accepted=True)

    def commit(self, vm_id, status, job, params=None):
        """The commit: move job's staged VM to the public registry (with
        `params`, when the job learned the VM's own, e.g. from a state
        file)."""
        with self._lock:
            vm = self._staged.get(vm_id)
            if vm is None or vm.job is not job:
                raise RuntimeError(f"VM {vm_id} is not staged by {job}")
            del self._staged[vm_id]
            self._public[vm_id] = dataclasses.replace(
                vm, status=status, staging=False, job=None,
                params=vm.params if params is None else params)
            self._changed(vm_id, status, False)
        self._now_idle(vm_id)

    def claim(self, vm_id, status, job):
        """Give the public VM a job to run on it (a hibernation, a
        migration, or a destroy), with `status` meanwhile (None: the one
        it has now, read here: a status read before may be stale, as a
        guest's change can come in between). Raises NoVM if it is neither
        staged nor public, VmBusy if it already has one (a staged VM has
        its startup job). Returns the VM as it was."""
        with self._lock:
            vm = self._public.get(vm_id)
            if vm is None:
                staged = self._staged.get(vm_id)
                if staged is not None and staged.status != VmStatus.DOWN:
                    raise VmBusy(f"VM {vm_id} is not up yet: {staged.job} "
                                 "starts it")
                raise NoVM(f"VM {vm_id} does not exist")
            if vm.job is not None:
                raise VmBusy(f"VM {vm_id} is busy: {vm.job}")
            if status is None:
                status = vm.status
            self._public[vm_id] = dataclasses.replace(
                vm, status=status, job=job, status_before_claim=vm.status)
            if status != vm.status:
                self._changed(vm_id, status, False)
            return vm

    def idle(self, vm_id):
        """The public VM if no job works on it, else None."""
        with self._lock:
            vm = self._public.get(vm_id)
        return vm if vm is not None and vm.job is None else None

    def idle_ids(self):
        """The vmIds of the public VMs no job works on."""
        with self._lock:
            return [vm_id for vm_id, vm in self._public.items()
                    if vm.job is None]

    def guest_changed(self, vm_id, seen, status):
        """The guest of public VM `seen` (read by idle() before its guest's
        state was) was found in `status` outside any job: by its user, or
        by libvirt itself (a pause on an I/O error, a crash). Up or Paused:
        its status; Down: it stopped, and the VM leaves (its domain, shut
        off, is left for VM.destroy, as recovery leaves a stopped domain).
        Taken only if the record is still `seen`: a job that claimed the VM
        meanwhile has the guest to itself, and a VM made again with the
        same id meanwhile was read by its own commit."""
        with self._lock:
            if self._public.get(vm_id) is not seen or \
                    seen.status == status:
                return
            if status == VmStatus.DOWN:
                del self._public[vm_id]
                self._paths.release(vm_id)   # its QEMU is gone
            else:
                self._public[vm_id] = dataclasses.replace(seen, status=status)
            self._changed(vm_id, status, False)

    def destroyed_under(self, vm_id, job):
        """VM.destroy destroyed by force the domain of the public VM `job`
        works on (the job had not ended after its abort): when the job
        lets it go, it leaves (Down), its domain shut off for VM.destroy,
        instead of taking back a status its guest no longer has."""
        with self._lock:
            vm = self._public.get(vm_id)
            if vm is not None and vm.job is job:
                self._public[vm_id] = dataclasses.replace(vm, destroyed=True)

    def end_claim(self, vm_id, job):
        """End job's claim on the public VM, which keeps running with the
        status it had before the claim (or leaves, if VM.destroy
        destroyed it meanwhile)."""
        with self._lock:
            vm = self._public.get(vm_id)
            if vm is None or vm.job is not job:
                return
            if vm.destroyed:
                del self._public[vm_id]
                self._paths.release(vm_id)
                self._changed(vm_id, VmStatus.DOWN, False)
                return
            self._public[vm_id] = dataclasses.replace(
                vm, status=vm.status_before_claim, job=None,
                status_before_claim=None)
            if vm.status != vm.status_before_claim:
                self._changed(vm_id, vm.status_before_claim, False)
        self._now_idle(vm_id)

    def _now_idle(self, vm_id):
        # Outside the lock: the guest watch is called out to. Read once: a
        # stop sets it to None from its own thread (GuestWatch.close).
        on_idle = self.on_idle
        if on_idle is not None:
            on_idle(vm_id)

    def drop_claimed(self, vm_id, job):
        """Drop the public VM job claimed (hibernated, or destroyed)."""
        with self._lock:
            vm = self._public.get(vm_id)
            if vm is None or vm.job is not job:
                raise RuntimeError(f"VM {vm_id} is not claimed by {job}")
            del self._public[vm_id]
            self._paths.release(vm_id)
            self._changed(vm_id, VmStatus.DOWN, False)

    def unstage(self, vm_id, job):
        """Drop job's staged VM, if it is still there (rollback, or the end
        of a job that never committed). Returns True if it was."""
        with self._lock:
            vm = self._staged.get(vm_id)
            if vm is None or vm.job is not job:
                return False
            del self._staged[vm_id]
            self._paths.release(vm_id)
            if vm.status != VmStatus.DOWN:
                self._changed(vm_id, VmStatus.DOWN, False)
            return True

    def get(self, vm_id, *, placeholder=False):
        """The VM, staged or public; raise NoVM if neither. A VM.destroy's
        placeholder (VmStatus.DOWN) is neither, unless `placeholder` (a
        VM.destroy, which waits for it)."""
        with self._lock:
            vm = self._staged.get(vm_id) or self._public.get(vm_id)
        if vm is None or (vm.status == VmStatus.DOWN and not placeholder):
            raise NoVM(f"VM {vm_id} does not exist")
        return vm

    def listed(self):
        """The VMs the list verbs show: the public ones, then, in accept
        mode, the accepted staged ones (status staged, `staging` true).
        One snapshot: a VM committing meanwhile is listed once."""
        staged, public = self.snapshot()
        if not self._list_accepted:
            return public
        return public + [vm for vm in staged if vm.accepted]

    def snapshot(self):
        """(staged VMs, public VMs), read in one critical section: a VM
        committed meanwhile is in one list, never in both."""
        with self._lock:
            return list(self._staged.values()), list(self._public.values())

    def known_ids(self):
        with self._lock:
            return self._known_ids()

    def counts(self):
        with self._lock:
            return self._counts()

    def census(self):
        """(counts(), known_ids()) read in one critical section: a VM that
        leaves or comes meanwhile is in both or in neither."""
        with self._lock:
            return self._counts(), self._known_ids()

    def _known_ids(self):
        # Caller holds _lock.
        return self._staged.keys() | self._public.keys()

    def _counts(self):
        # Caller holds _lock. A VM.destroy's placeholder is no staged VM.
        placeholders = sum(1 for vm in self._staged.values()
                           if vm.status == VmStatus.DOWN)
        return {"staged": len(self._staged) - placeholders,
                "public": len(self._public)}

    def _changed(self, vm_id, status, staging):
        # Caller holds _lock: the notification's place in the feed is the
        # change's place among this VM's changes.
        if self._notifications is not None:
            self._notifications.vm_changed(vm_id, status, staging)


def _refuse_beyond(vms, status, limit):
    """Raise MigrateLimit if `limit` (None: no limit) VMs of `vms` already
    have `status`. (Caller holds the registry's lock.)"""
    if limit is None:
        return
    count = sum(1 for other in vms.values() if other.status == status)
    if count >= limit:
        raise MigrateLimit(f"{count} VMs already {status}, the limit is "
                           f"{limit}")
