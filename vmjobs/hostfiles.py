"""Host paths a caller names: confined to the directories the operator
configured.

The service runs as root. A state file path (`hibernationVolHandle`,
`restoreState`) must be inside `storage.state_dirs` (statefiles.py); a
host file a domain XML names must be inside `storage.image_dirs`
(policy.py). A path is taken only as an absolute, normalized text without
control characters, and its directory must really (symlinks resolved) be
inside a configured one. A path where the host binds a socket or writes
a file must take nothing from anyone (bind_would_take, write_would_take).
"""

import fcntl
import os
import re
import stat
import struct

# Control characters, C0 and C1 (U+0085 is a line break too), and the
# Unicode line and paragraph separators (forged log lines, split config
# files), as logs.py counts them; and lone surrogates, which no file
# system name can carry.
_UNFIT = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


# What a domain's name becomes in libvirt's own directories: it makes a
# directory of the bare name for each domain (a snapshot's and a
# checkpoint's: /var/lib/libvirt/qemu/snapshot/NAME) and deletes that tree
# at a define. A name is only taken as one entry of its own there.
SELF_OR_PARENT = frozenset({".", ".."})


def is_entry_name(name):
    """Whether `name`, used as a file name in a directory, names an entry
    of its own in it: no `/`, and not `.` or `..` (the directory itself,
    its parent). libvirt 9.0 defining a domain named `..` deleted the
    tree of /var/lib/libvirt/qemu, every guest's state in it."""
    return bool(name) and "/" not in name and name not in SELF_OR_PARENT


class OutsideDirs(ValueError):
    """A path that is not an acceptable host path inside the given dirs."""


def confine(path, dirs, what, resolve_last=False, real_dirs=None):
    """`path` if it is absolute, normalized, free of control characters and
    inside one of `dirs`, its directory (and with `resolve_last` the path
    itself) resolved of symlinks; else OutsideDirs. `real_dirs`: `dirs`
    already resolved (a caller checking many paths resolves them once)."""
    if not isinstance(path, str) or not path:
        raise OutsideDirs("must be a non-empty path")
    if _UNFIT.search(path):
        raise OutsideDirs("must not contain control characters")
    if not os.path.isabs(path):
        raise OutsideDirs(f"{path!r} is not an absolute path")
    if os.path.normpath(path) != path or path.startswith("//"):
        raise OutsideDirs(f"{path!r} is not a normalized path (no '..', "
                          "'.', '//' or trailing '/')")
    real = os.path.realpath(path if resolve_last else os.path.dirname(path))
    if real_dirs is None:
        real_dirs = [os.path.realpath(d) for d in dirs]
    for d, real_d in zip(dirs, real_dirs, strict=True):
        if _within(path, d) and _within(real, real_d):
            return path
    raise OutsideDirs(f"{path!r} is outside {what} ({', '.join(dirs)})")


def resolve_inside(path, dirs, what):
    """The file `path` reaches (resolved of symlinks and '..' as the kernel
    walks it: a symlink is followed before a '..' after it applies) if it
    is inside one of `dirs` (resolved too); else OutsideDirs. For a path
    that the host builds from names a caller chose (a qcow2 header's), so
    not refused for being unnormalized: only where it leads counts."""
    if not isinstance(path, str) or _UNFIT.search(path):
        raise OutsideDirs("must not contain control characters")
    real = os.path.realpath(path)
    if inside(real, dirs):
        return real
    raise OutsideDirs(f"{path!r} leads to {real!r}, outside {what} "
                      f"({', '.join(dirs)})")


def _within(path, directory):
    directory = os.path.normpath(directory)
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def inside(real, dirs):
    """The first of `dirs` that the resolved path `real` is in (or is),
    each resolved of symlinks; else None."""
    return next((d for d in dirs if _within(real, os.path.realpath(d))),
                None)


def overlapping(one, other):
    """Whether directories `one` and `other`, symlinks resolved, are the
    same or one holds the other."""
    one, other = os.path.realpath(one), os.path.realpath(other)
    return _within(one, other) or _within(other, one)


def is_one_of(path, dirs):
    """Whether `path` is (names) one of `dirs` itself."""
    return os.path.normpath(path) in (os.path.normpath(d) for d in dirs)


# What the host does at a path a domain XML names for it to make: libvirt
# (or QEMU) unlinks whatever is there to bind a unix socket, and opens a
# file chardev's or log's path truncating it. QEMU locks each image it
# opens (byte-range locks from byte 100), which keeps a second guest's
# disk off a running guest's image; nothing keeps a socket or a chardev
# off it. A hostile-caller audit (round 9) took a running guest's agent
# socket over, deleted an image, and emptied a running guest's disk so.

def bind_would_take(path, listening):
    """Why binding a unix socket at `path` (confined) would take something
    from someone, or None: free is nothing there, or a socket no one
    listens on (what a process that ended left). `listening()`: the
    host's listening sockets (listening_sockets(), which the allowlist
    reads once a request), asked only for a path where a socket file is."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be looked at: {exc.strerror}"
    if not stat.S_ISSOCK(st.st_mode):
        return "is a file (or a link), which binding a socket there " \
               "would delete"
    if _listened_on(path, st, listening()):
        return "is a socket another process listens on (a guest's " \
               "channel or console), which binding there would take over"
    return None


def write_would_take(path):
    """Why writing a file at `path` (confined) from its start would take
    something from someone, or None: free is nothing there, or a regular
    file no process holds a byte-range lock on (QEMU holds one on every
    image it has open: another running guest's disk)."""
    not_regular = "is not a regular file (a device, a socket...)"
    try:
        # Looked at before it is opened: a device is never opened (some,
        # a watchdog's, act when they are).
        if not stat.S_ISREG(os.stat(path).st_mode):
            return not_regular
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be looked at: {exc.strerror}"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return not_regular
        # Would a write lock on the whole file conflict with one held?
        probe = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        held = struct.unpack("hhqqi", fcntl.fcntl(
            fd, fcntl.F_OFD_GETLK, probe))[0]
    finally:
        os.close(fd)
    if held != fcntl.F_UNLCK:
        return "is a file a process holds locked (a running guest's disk: " \
               "QEMU locks its images), which writing there would " \
               "overwrite"
    return None


LISTENING = 0x10000     # __SO_ACCEPTCON in /proc/net/unix's Flags


def listening_sockets():
    """The paths the unix sockets of this network namespace (libvirtd's
    and QEMU's are the host's) listen on, by their last component:
    /proc/net/unix read once, not connected to, so the guest behind one
    sees nothing. Read once for a request's socket paths, not once for
    each: a host's sockets times a domain's paths was quadratic (a
    hostile-caller audit, round 13: 1,000 channels on a host of 10,000
    sockets, 17 s of CPU)."""
    by_name = {}
    with open("/proc/net/unix") as f:
        next(f)                                     # the header
        for line in f:
            fields = line.rstrip("\n").split(None, 7)
            if len(fields) == 8 and int(fields[3], 16) & LISTENING:
                by_name.setdefault(os.path.basename(fields[7]),
                                   []).append(fields[7])
    return by_name


def _listened_on(path, st, listening):
    """Whether a socket of `listening` (listening_sockets()) listens on
    the socket file `path` (its lstat `st`). A listener is known by the
    path it bound, which may name the file by another way (a symlinked
    directory): compared by the file it names."""
    for bound_path in listening.get(os.path.basename(path), ()):
        if bound_path == path:
            return True
        try:
            bound = os.lstat(bound_path)
        except OSError:
            continue
        if (bound.st_dev, bound.st_ino) == (st.st_dev, st.st_ino):
            return True
    return False


def prepare_dirs(config, log):
    """Create the configured state and image directories that are missing:
    state files 0700 (only the service reads them), images 0711 (QEMU,
    which may run as another user, must reach the files it is given).
    Another service (of another libvirt: no lock between them) may make
    one at the same moment: its directory is taken as it made it."""
    for dirs, mode in ((config.state_dirs, 0o700),
                       (config.image_dirs, 0o711)):
        for d in dirs:
            if make_dir(d, mode):
                log.info("created %s (mode %o)", d, mode)


def make_dir(path, mode):
    """Create the directory `path` (and its parents) with `mode` if it is
    missing; True if this call made it. One that another process (a
    service starting beside this one) made meanwhile is taken as it is;
    anything else there raises."""
    if os.path.isdir(path):
        return False
    try:
        os.makedirs(path, mode=mode)
    except FileExistsError:
        if stat.S_ISDIR(os.stat(path).st_mode):
            return False   # made meanwhile
        raise
    os.chmod(path, mode)   # makedirs' mode obeys the umask
    return True
