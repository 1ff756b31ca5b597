"""A VM's state file (`hibernationVolHandle`, `restoreState`): where one
may be, how a hibernation creates and removes the one it writes, and what
a restore reads.

The service runs as root and a caller names the path. It is taken only
inside `storage.state_dirs` (hostfiles.confine's rules), never in an image
directory (a guest writes its disks: read as a state file, their bytes
would be restored into QEMU), and never through a symlink in its last
component: refused by name, then opened with O_NOFOLLOW, which closes the
race. A hibernation creates its file exclusively (O_EXCL: an existing file
is never overwritten, two hibernations never share one) and removes only
that file, known by its inode. A restore reads only a regular file (a FIFO
or a device is never opened) and never changes it.
"""

import logging
import os
import stat

from .errors import InvalidParams
from .hostfiles import OutsideDirs, confine, inside, is_one_of

log = logging.getLogger("vmjobs.statefiles")


def confined(value, param, state_dirs, image_dirs=()):
    """The state file path `value` (the verb's parameter `param`), if it
    is confined to `state_dirs`, outside `image_dirs`, in a directory that
    exists and not a symlink itself; else -32602 naming `param`."""
    # First: confine() would call a state directory itself "outside"
    # storage.state_dirs, naming that very directory.
    if isinstance(value, str) and os.path.isabs(value) and \
            is_one_of(value, state_dirs):
        raise InvalidParams(param, f"{value!r} is a state directory, not a "
                            "file in one")
    try:
        path = confine(value, state_dirs, "storage.state_dirs")
    except OutsideDirs as exc:
        raise InvalidParams(param, str(exc)) from None
    image_dir = inside(os.path.realpath(path), image_dirs)
    if image_dir is not None:
        raise InvalidParams(param, f"{path!r} is in the image directory "
                            f"{image_dir}: a guest's disk is never a state "
                            "file")
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise InvalidParams(param, f"no directory {directory}")
    # A name no file can have is a malformed parameter, not a host that
    # failed: a hibernation answered migrateErr (12) for it, from O_CREAT.
    name_max = os.pathconf(directory, "PC_NAME_MAX")
    path_max = os.pathconf(directory, "PC_PATH_MAX")
    if len(os.fsencode(os.path.basename(path))) > name_max or \
            len(os.fsencode(path)) >= path_max:
        raise InvalidParams(param, "its file name is longer than the file "
                            f"system takes ({name_max} bytes, {path_max} "
                            "with its directories)")
    if os.path.islink(path):
        raise InvalidParams(param, f"{path!r} is a symbolic link")
    return path


def create(path, error_class):
    """Create `path` empty, exclusively and without following a symlink;
    error_class if anything, even a dangling symlink, is there, or it
    cannot be created. Returns the file's identity (st_dev, st_ino), by
    which its creator knows it later (remove_own)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                     os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise error_class(f"{path} exists: refusing to overwrite it") \
            from None
    except OSError as exc:
        raise error_class(f"cannot create {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return st.st_dev, st.st_ino


def remove_own(path, identity):
    """Unlink `path` if it is still the file of `identity` (st_dev, st_ino):
    a file put in its place by someone else is never removed."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return
    if (st.st_dev, st.st_ino) != identity:
        log.warning("%s is no longer the file this job created: kept", path)
        return
    os.unlink(path)


def check_readable(path, error_class):
    """Refuse (error_class(message)) unless `path` is a readable regular
    file, its last component not a symlink. Looked at before it is opened
    (read-only, not read): a FIFO or a device is never opened."""
    try:
        if stat.S_ISREG(os.lstat(path).st_mode):
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK |
                         os.O_CLOEXEC)
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    return
            finally:
                os.close(fd)
    except OSError as exc:
        raise error_class(f"cannot open {path}: {exc.strerror}") from None
    raise error_class(f"{path} is not a regular file")
