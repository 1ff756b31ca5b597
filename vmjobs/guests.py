"""Guests followed: on a daemon, a public VM's status follows what happens
to its guest outside vmjobs, while no job works on it. Its user pauses,
resumes or destroys it with `virsh`; libvirt pauses it on an I/O error;
QEMU crashes or the guest powers itself off. The VM becomes `Paused` or
`Up`, or, once its guest stopped, leaves the host (`Down`), each with its
notification. Its domain, shut off, is then left defined for VM.destroy,
as recovery leaves a stopped domain.

libvirt's lifecycle events say when to look; what is seen is the guest's
state, read afterwards, never inferred from the event: an event may come
late, from a domain since destroyed and made again with the same UUID,
and events missed while libvirt restarted are not replayed (the watch is
told, and every public VM is read again). A VM is looked at when an event
comes for it while no job works on it, and whenever it becomes nobody's
job's (its commit, the end of a claim): the events that came while its
job held it were that job's, and what they left is read then. The
registry takes a reading only if the VM is still as it was before the
read (VmRegistry.guest_changed), so a job that claimed it meanwhile keeps
its guest.

The readings are made by a lookout (lookout.py), off libvirt's event
loop (which must not block) and off the workers: a libvirt call per look,
one per VM started. Not on the test driver: its private host has no
other client, and there listening costs a storm a quarter of its speed
(docs/benchmarks.md, section 2)."""

import logging

from .hypervisor import DomainState, HypervisorError, may_change_state
from .lookout import Lookout
from .registry import PUBLIC_STATUS, VmStatus

log = logging.getLogger("vmjobs.guests")


class GuestWatch:
    def __init__(self, hv, registry):
        self._hv = hv
        self._registry = registry
        self._lookout = Lookout("guest-watch", self._read,
                                "a guest's reading")
        registry.on_idle = self.look
        self._token = hv.watch(self._on_event, missed=self._look_at_all)

    def look(self, vm_id):
        """Read VM `vm_id`'s guest soon (from any thread; never blocks)."""
        self._lookout.due(vm_id)

    def close(self):
        self._hv.unwatch(self._token)
        self._registry.on_idle = None
        self._lookout.close()

    def _on_event(self, vm_id, event, detail):
        # On libvirt's event thread: a VM a job works on (or no VM of
        # ours) is not looked at now (its job's end will be).
        if may_change_state(event) and \
                self._registry.idle(vm_id) is not None:
            self.look(vm_id)

    def _look_at_all(self):
        # Events were lost while libvirt restarted.
        self._lookout.due(*self._registry.idle_ids())

    def _read(self, vm_id):
        seen = self._registry.idle(vm_id)
        if seen is None:
            return   # a job works on it, or it left
        try:
            state = self._hv.state(vm_id)
        except HypervisorError as exc:
            # libvirt is restarting: its return tells the watch (missed).
            log.warning("VM %s: its guest's state cannot be read: %s",
                        vm_id, exc)
            return
        if state in (None, DomainState.SHUTOFF):
            status = VmStatus.DOWN
        elif state in PUBLIC_STATUS:
            status = PUBLIC_STATUS[state]
        else:
            return   # on its way (shutting down): its end sends an event
        if status != seen.status:
            log.info("VM %s: its guest is %s outside vmjobs: %s", vm_id,
                     state or "gone", status)
        self._registry.guest_changed(vm_id, seen, status)
