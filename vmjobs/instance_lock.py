"""One service per hypervisor: a lock file (flock) held while serving,
with the holder's PID in it, so that a second service of the same libvirt
(which would recover the first one's VMs as its own) says who is running.
Services of other libvirts run beside it: a second libvirtd on the host
is how migrations are tried (API.md), each with its vmjobs service.

Its default path is the hypervisor's (default_path): /run/vmjobs/vmjobs.lock
for the host's own, qemu:///system; one of its own in /run/vmjobs for any
other URI; none for libvirt's test driver on its own (test:///...), whose
domains are private to the process that opened it. A --lock-file is
always taken.

The service runs as root, and the lock path may be in a directory others
can write (a --lock-file under /tmp, say): the file is opened without
following a symlink (O_NOFOLLOW) and not inherited by children
(O_CLOEXEC), and a file the service did not create is never truncated or
written: an existing file is taken only if it is a regular file, of one
link, owned by this user, and holds nothing but a PID line (what a
previous instance left); anything else is refused, saying why."""

import errno
import fcntl
import hashlib
import os
import re
import stat
import urllib.parse

from . import rundir
from .config import DEFAULT_URI


def default_path(uri):
    """The lock of the services of libvirt `uri`, or None if no other
    service can reach its domains (the test driver on its own)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme == "test" and not parts.netloc:
        return None
    if uri == DEFAULT_URI:
        return os.path.join(rundir.RUN_DIR, "vmjobs.lock")
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return os.path.join(rundir.RUN_DIR, f"vmjobs-{digest}.lock")


def path_of(config):
    """The lock file a service of `config` takes: its lock_file, else its
    hypervisor's (None: none)."""
    return config.lock_file or default_path(config.uri)


class InstanceLocked(OSError):
    pass


# What a lock file of ours holds: nothing (released), or a holder's PID.
_OURS = re.compile(rb"(\d{1,10}\n)?")
_FLAGS = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW


class InstanceLock:
    def __init__(self, path):
        """Take the lock at `path` (its directory made 0700 if missing,
        the run directory made private: rundir.prepare);
        InstanceLocked if another process holds it, or if the path is
        not a lock file of ours."""
        self.path = path
        self._fd = None
        directory = os.path.dirname(path)
        try:
            if directory:
                rundir.prepare(directory)
            fd = self._open(path)
        except OSError as exc:
            if isinstance(exc, InstanceLocked):
                raise
            if exc.errno == errno.ELOOP:
                raise InstanceLocked(
                    f"{path} is a symlink, which the lock file never "
                    "follows (its target was left alone): remove it, or "
                    "give another --lock-file") from None
            raise InstanceLocked(
                f"cannot open the lock file {path}: {exc.strerror}; run as "
                "root, or give a --lock-file this user may write") from None
        try:
            # flock, not lockf: a lock per open file, so a second take in
            # the same process is refused too (tests), and closing some
            # other descriptor of the file never drops it.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace")
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise InstanceLocked(
                f"{path}: another vmjobs holds this lock (PID "
                f"{holder.strip() or 'unknown'}): stop it first (systemctl "
                "stop vmjobs), or give this one its own --lock-file") \
                from None
        self._fd = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    @staticmethod
    def _open(path):
        """A descriptor of the lock file: created here, or an existing
        lock file of ours (else InstanceLocked, the file untouched)."""
        try:
            return os.open(path, _FLAGS | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass
        fd = os.open(path, _FLAGS | os.O_NONBLOCK)   # a FIFO: no hang
        try:
            info = os.fstat(fd)
            problem = None
            if not stat.S_ISREG(info.st_mode):
                problem = "not a regular file"
            elif info.st_nlink != 1:
                problem = "a file with other hard links"
            elif info.st_uid != os.geteuid():
                problem = "owned by another user"
            elif not _OURS.fullmatch(os.pread(fd, 64, 0)):
                problem = "not a vmjobs lock file (it holds something " \
                    "else than a PID)"
            if problem is not None:
                raise InstanceLocked(
                    f"{path} exists and is {problem}: refusing to take it "
                    "as the lock file (nothing in it was changed); remove "
                    "it, or give another --lock-file")
            os.set_blocking(fd, True)
            return fd
        except BaseException:
            os.close(fd)
            raise

    def release(self):
        """Drop the lock. The file stays (empty): removing it could let a
        process that opened it just before lock a file nobody else sees."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.release()
