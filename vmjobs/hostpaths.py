"""The host paths vmjobs' VMs hold, and the rule of who may hold which.

A domain makes or writes some of the host paths its XML names: libvirt
binds a socket at a unix chardev's or a console's path (unlinking what is
there first), opens a file chardev's, a chardev log's or an nvdimm's path
writing from its start, and QEMU writes a read-write disk's image, a
guest's firmware variables and the files of a share it may write. And it
reads its read-only images (a read-only disk, a CD-ROM, a backing file)
for as long as it runs: no other guest may write them meanwhile, and a
guest's writable share writes its directory's files through QEMU's 9p,
which takes no image lock (round 12).
hostfiles.py refuses such a path when the host shows it in use (a socket
someone listens on, a file a process holds locked). What the host cannot
show is a path another request named and has not made yet (two requests
in flight both found it free), and a file a running guest has open
without a lock (its serial output, an nvdimm's memory, a file of its
share). So a VM holds those paths, from its verb's acceptance until its
domain is gone, and a VM naming a path another holds so that the two
would clash is refused.

What holds a path, and how (`Use`), is the allowlist's table's to say
(allowlist.held: each slot's Kind); `hold` reads from the file system what
a path is compared by (where it leads, its inode), in the caller's thread.
The holds of every VM of the host are a `Holdings`, which the registry
keeps (registry.VmRegistry): a VM's holds come and go with it, taken with
its vmId's stage in one critical section, so that two requests in flight
cannot both take one path, and given back in the one that takes it out
of the registry. Its lock (VmRegistry._lock) guards them: dict operations
only, nothing read from the file system under it."""

import dataclasses
import os
import stat

from .strenum import StrEnum


class Use(StrEnum):
    """How a VM holds a host path."""
    BIND = "bind"                # a socket the host binds there
    WRITE = "write"              # a file written from its start
    DISK = "disk"                # an image QEMU opens read-write
    SHARED_DISK = "shared-disk"  # ... that every VM naming it shares
    DIR = "dir"                  # a directory the guest writes into
    READ = "read"                # an image QEMU reads while it runs
    READ_DIR = "read-dir"        # a directory the guest reads (all below)

    @property
    def says(self):
        return _SAYS[self]


_SAYS = {Use.BIND: "binds a socket at", Use.WRITE: "writes",
         Use.DISK: "has as a read-write disk",
         Use.SHARED_DISK: "shares as a read-write disk (<shareable/>)",
         Use.DIR: "lets its guest write in the directory",
         Use.READ: "reads as an image",
         Use.READ_DIR: "lets its guest read the directory"}

# The uses that only read: any number of VMs may hold one path so, and a
# shareable disk's writers beside them are QEMU's locks' to judge.
_READERS = frozenset({Use.READ, Use.READ_DIR, Use.SHARED_DISK})


class Taken(ValueError):
    """A path another VM holds, so that the two uses would clash."""


@dataclasses.dataclass(frozen=True)
class Hold:
    """A host path a VM holds: as its XML names it, and what it is
    compared by, read by `hold()` when it was taken."""
    path: str
    use: Use
    real: str                 # the path, symlinks resolved
    keys: frozenset           # what names the same file: its real path,
                              # its inode, a device's number
    above: tuple              # the real directories above `real`


def hold(path, use):
    """A Hold of `path` for `use`: where the path leads, and, if there is
    a file, its inode (another name of the file, a hard link, is the same
    file) and, for a device node, its device (another node of it is the
    same device)."""
    real = os.path.realpath(path)
    keys = {("path", real)}
    try:
        st = os.stat(real)
    except OSError:
        pass    # nothing there yet: its real path names it
    else:
        keys.add(("inode", st.st_dev, st.st_ino))
        if stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode):
            keys.add(("device", stat.S_IFMT(st.st_mode), st.st_rdev))
    above = []
    parent = os.path.dirname(real)
    while parent != os.path.dirname(parent):
        above.append(parent)
        parent = os.path.dirname(parent)
    return Hold(path, Use(use), real, frozenset(keys), tuple(above))


def holding(named):
    """The Holds of `named`, (path, Use) pairs (allowlist.held), each
    (path, use) once."""
    return tuple(hold(path, use) for path, use in dict.fromkeys(named))


def clash(new, old):
    """Whether two VMs may not hold `new` and `old`, which name one file
    (their keys meet), at once: only a disk both share may be, and an
    image either only reads, unless the other writes it as its own (a
    reader beside a shareable disk's writers is QEMU's image locks' to
    judge: an engine attaches a shared disk read-only to some VMs). (A
    file inside a directory the other's guest writes into is found by the
    directory indexes of Holdings.)"""
    uses = {new.use, old.use}
    if uses & {Use.READ, Use.READ_DIR}:
        return not uses <= _READERS
    return not (new.use is Use.SHARED_DISK and old.use is Use.SHARED_DISK)


def writes(hold):
    """Whether a VM holding `hold` writes there (or its guest does)."""
    return hold.use not in (Use.READ, Use.READ_DIR)


class Holdings:
    """Who holds which host paths: each VM's Holds, and indexes that find
    a clash in a few dict lookups per path. Not thread-safe: its owner's
    lock guards it (VmRegistry._lock)."""

    def __init__(self):
        self._of = {}       # vm_id -> [Hold]
        self._by_key = {}   # a Hold's key -> {vm_id: [Hold]}
        self._dirs = {}     # a DIR Hold's real path -> {vm_id: Hold}
        self._read_dirs = {}   # a READ_DIR Hold's real path -> {vm_id: Hold}
        self._below = {}    # a real directory -> {vm_id: [Holds below it]}

    def refuse_clash(self, vm_id, holds):
        """Raise Taken if another VM than `vm_id` holds a path so that it
        clashes with one of `holds`."""
        for new in holds:
            found = self._clashing(vm_id, new)
            if found is not None:
                other, old = found
                raise Taken(f"{new.path} is taken: VM {other} "
                            f"{old.use.says} {old.path}")

    def _clashing(self, vm_id, new):
        for key in new.keys:
            for other, olds in self._by_key.get(key, {}).items():
                for old in olds:
                    if other != vm_id and clash(new, old):
                        return other, old
        for directory in new.above:
            for other, old in self._dirs.get(directory, {}).items():
                if other != vm_id:
                    return other, old
            if writes(new):     # inside a directory another guest reads
                for other, old in self._read_dirs.get(directory,
                                                      {}).items():
                    if other != vm_id:
                        return other, old
        if new.use in (Use.DIR, Use.READ_DIR):
            # What another VM holds below: its guest writes all of it,
            # or reads what another writes.
            for other, olds in self._below.get(new.real, {}).items():
                for old in olds:
                    if other != vm_id and (new.use is Use.DIR or
                                           writes(old)):
                        return other, old
        return None

    def add(self, vm_id, holds):
        """`vm_id` holds `holds` too, whoever else does."""
        if not holds:
            return
        self._of.setdefault(vm_id, []).extend(holds)
        for new in holds:
            for key in new.keys:
                self._by_key.setdefault(key, {}).setdefault(
                    vm_id, []).append(new)
            if new.use is Use.DIR:
                self._dirs.setdefault(new.real, {})[vm_id] = new
            if new.use is Use.READ_DIR:
                self._read_dirs.setdefault(new.real, {})[vm_id] = new
            for directory in new.above:
                self._below.setdefault(directory, {}).setdefault(
                    vm_id, []).append(new)

    def release(self, vm_id):
        """`vm_id` holds nothing any more."""
        for old in self._of.pop(vm_id, ()):
            for key in old.keys:
                _discard(self._by_key, key, vm_id)
            if old.use is Use.DIR:
                _discard(self._dirs, old.real, vm_id)
            if old.use is Use.READ_DIR:
                _discard(self._read_dirs, old.real, vm_id)
            for directory in old.above:
                _discard(self._below, directory, vm_id)

    def holders(self):
        """{vm_id: (its Holds)}, a copy."""
        return {vm_id: tuple(holds) for vm_id, holds in self._of.items()}


def _discard(index, key, vm_id):
    entries = index.get(key)
    if entries is not None:
        entries.pop(vm_id, None)
        if not entries:
            del index[key]
