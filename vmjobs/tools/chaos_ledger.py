"""What the chaos run knows of each VM, from the outcomes it saw: which
must be public on a host, which are uncertain (their job was lost with its
service, so they are looked for, not assumed), which state files hold a
VM no restore consumed yet."""

import os


class Ledger:
    def __init__(self):
        self.expected = set()    # VMs that must be public on a host
        self.uncertain = set()   # VMs whose last operation's outcome is lost
        self.files = {}          # unconsumed state file -> its VM
        # Files a queued restore is reading: never restored twice at once
        # (libvirt would run the guest on both hosts: the engine's rule).
        self.restoring = set()
        self.destroyed = {}      # VM -> the step of its last VM.destroy
        self.killed = {}         # VM -> the step its QEMU was last killed
        self.killed_files = set()   # files kept by a save its QEMU's kill cut

    def destroy_answered(self, vm_id, step):
        self.expected.discard(vm_id)
        self.destroyed[vm_id] = step

    def destroy_lost(self, vm_id):
        self.uncertain.add(vm_id)
        self.expected.discard(vm_id)

    def guest_killed(self, vm_id, step):
        """Its QEMU was killed: the VM may go Down (it must, if it was not
        moving), so it is looked for, not expected (nor made expected by
        the end of a job started before)."""
        self.killed[vm_id] = step
        self.uncertain.add(vm_id)
        self.expected.discard(vm_id)

    def restorable(self):
        return set(self.files) - self.restoring

    def job_ended(self, kind, vm_id, path, step, status):
        """A job the run started ended `status` ("lost": its service was
        restarted before its outcome could be read)."""
        self.restoring.discard(path)
        if status == "done" and kind in ("create", "restore"):
            self.files.pop(path, None)
            # Unless a VM.destroy after the verb removed it since; a VM
            # whose QEMU was killed since is looked for.
            if self.killed.get(vm_id, -1) >= step:
                self.uncertain.add(vm_id)
            elif self.destroyed.get(vm_id, -1) < step:
                self.expected.add(vm_id)
        elif status == "done" and kind == "hibernate":
            self.expected.discard(vm_id)
            self.files[path] = vm_id
        elif status == "lost" and kind == "migrate":
            # A migration whose service was killed (on either end, or both)
            # never loses its VM: libvirt ends the transfer one way or the
            # other, and each end's recovery adopts what runs there (docs/
            # recovery.md). The VM stays expected if it was.
            pass
        elif status == "lost" or kind == "hibernate":
            # A job lost with its service, or a hibernation that may have
            # kept the VM in its file: see what is there.
            self.uncertain.add(vm_id)
            self.expected.discard(vm_id)
            if kind == "hibernate" and os.path.exists(path) and \
                    os.path.getsize(path) > 0:
                self.files[path] = vm_id
                if self.killed.get(vm_id, -1) >= step:
                    # Its QEMU was killed while it was saved: the file may
                    # be cut short (vmjobs still says the VM "stays
                    # hibernated" there; the run notes whether it restores).
                    self.killed_files.add(path)

    def resolve(self, public):
        """Both hosts are quiet and `public` is every VM listed on one:
        an uncertain VM listed is expected; a file whose VM runs again was
        consumed by the restore that did it, or was never the VM's only
        state."""
        self.expected.update(self.uncertain & public)
        self.uncertain.clear()
        self.restoring.clear()   # quiet: no restore reads a file any more
        for path, vm_id in list(self.files.items()):
            if vm_id in public:
                del self.files[path]
