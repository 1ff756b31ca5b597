"""Late arrivals: a guest migrated here after the job that expected it
ended is adopted at once, as recovery at start-up would adopt it.

A destination libvirtd takes an incoming domain without asking vmjobs. So
when the destination's job ends first (Job.abort on it, its arrival
timeout) and the source's libvirtd only then begins the transfer, the
guest arrives here all the same, and the source's job ends done: the VM
has left the source's registry. Left running in no registry here, it
would be public on neither host until a restart's recovery adopted it
(API.md: "never lost").

What counts as a late arrival: a domain whose incoming migration began
(libvirt's STARTED/MIGRATED event, at the destination's Prepare) or whose
destination job's end found nothing here (the transfer may not have begun
yet), that has since arrived (hypervisor.has_arrived) and carries vmjobs'
mark (ownership.py: a vmjobs source sends its domain's XML whole, mark
included). A domain started, resumed or restored here any other way is
not one: an orphan a user restarts with virsh stays as it was, for
VM.destroy. The adoption is a recover job (flows/recover.py) on the
service's pool: it waits for libvirt's incoming job to have ended, reads
the VM's vmId and params from the mark, and commits the VM as it runs.

Who has the vmId is decided by the registry's stage alone (the recover
job's reserve): a VM.migrationCreate, a VM.destroy of the domain or another
look that staged it first wins, and the late arrival is then theirs; a
vmId staged or public when it is looked at is some job's or VM's, never
adopted. Never twice: a guest is looked at only once its migration has
finished here, when libvirt's source has let its own copy go (its Confirm
kills it once the destination's Finish succeeded).

The looks are made by a lookout (lookout.py), off libvirt's event loop
and off the workers. Only on a daemon: the test driver cannot migrate."""

import logging
import threading

from . import ownership
from .hypervisor import (
    DomainNotFound,
    DomainState,
    HypervisorError,
    has_arrived,
    incoming_resumed,
    incoming_started,
)
from .lookout import Lookout

log = logging.getLogger("vmjobs.arrivals")


class LateArrivals:
    """Adopts, through `recovery` (recovery.Recovery.adopt), what arrives
    late on `hv`."""

    def __init__(self, hv, registry, recovery):
        self._hv = hv
        self._registry = registry
        self._recovery = recovery
        # Guards _followed: the vmIds whose incoming migration is followed
        # until it has arrived or gone (at most one per transfer under way,
        # and per destination job that just ended).
        self._lock = threading.Lock()
        self._followed = set()
        self._lookout = Lookout("late-arrivals", self._look,
                                "looking for a late arrival")
        self._token = hv.watch(self._on_event, missed=self._look_at_all)

    def expect(self, vm_id):
        """A destination job of `vm_id` ended and found nothing here: its
        guest may still come (from any thread; never blocks)."""
        with self._lock:
            self._followed.add(vm_id)
        self._lookout.due(vm_id)

    def close(self):
        self._hv.unwatch(self._token)
        self._lookout.close()

    def _on_event(self, vm_id, event, detail):
        # On libvirt's event thread: note it, look from the lookout's.
        with self._lock:
            if incoming_started(event, detail):
                self._followed.add(vm_id)
            elif not incoming_resumed(event, detail) and \
                    vm_id not in self._followed:
                return
        self._lookout.due(vm_id)

    def _look_at_all(self):
        # Events were lost while libvirt restarted: look at every guest
        # followed.
        with self._lock:
            followed = set(self._followed)
        self._lookout.due(*followed)

    def _look(self, vm_id):
        try:
            self._look_for_arrival(vm_id)
        except HypervisorError as exc:
            # libvirt is restarting: its return tells us (missed).
            log.warning("VM %s: a late arrival cannot be looked at: %s",
                        vm_id, exc)

    def _look_for_arrival(self, vm_id):
        if self._registry.knows(vm_id):
            # A job or a public VM has it: its own (a destination job
            # follows its guest, and its end says if it may come late).
            self._forget(vm_id)
            return
        state, reason = self._hv.state_reason(vm_id)
        if state is None or state is DomainState.SHUTOFF:
            self._forget(vm_id)   # gone, or its transfer failed
            return
        if not has_arrived(state, reason):
            return   # still arriving: its next event brings us back
        self._forget(vm_id)
        try:
            if not ownership.carries_mark(self._hv, vm_id):
                log.warning("VM %s arrived by migration in no job, without "
                            "vmjobs metadata: not ours, left alone", vm_id)
                return
        except DomainNotFound:
            return
        self._adopt(vm_id)

    def _forget(self, vm_id):
        with self._lock:
            self._followed.discard(vm_id)

    def _adopt(self, vm_id):
        job = self._recovery.adopt(vm_id)
        if job is not None:
            log.warning("VM %s arrived by migration after its job here "
                        "ended: adopted by recover job %s", vm_id, job.id)
