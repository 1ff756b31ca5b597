"""Host paths a caller names: confined to the directories the operator
configured.

The service runs as root. A state file path (`hibernationVolHandle`,
`restoreState`) must be inside `storage.state_dirs` (statefiles.py); a
host file a domain XML names must be inside `storage.image_dirs`
(policy.py). A path is taken only as an absolute, normalized text without
control characters, and its directory must really (symlinks resolved) be
inside a configured one.
"""

import os
import re
import stat

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


def confine(path, dirs, what="the configured directories",
            resolve_last=False, real_dirs=None):
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


def resolve_inside(path, dirs, what="the configured directories"):
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
