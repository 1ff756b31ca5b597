"""One service per host: a lock file (flock) held while serving, with the
holder's PID in it, so that a second instance says who is running."""

import errno
import fcntl
import os


class InstanceLocked(OSError):
    pass


class InstanceLock:
    def __init__(self, path):
        """Take the lock at `path` (its directory made 0700 if missing);
        InstanceLocked if another process holds it."""
        self.path = path
        directory = os.path.dirname(path)
        try:
            if directory:
                os.makedirs(directory, mode=0o700, exist_ok=True)
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                               0o644)
        except OSError as exc:
            raise InstanceLocked(
                f"cannot open the lock file {path}: {exc.strerror}; run as "
                "root, or give a --lock-file this user may write") from None
        try:
            # flock, not lockf: a lock per open file, so a second take in
            # the same process is refused too (tests), and closing some
            # other descriptor of the file never drops it.
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace")
            os.close(self._fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise InstanceLocked(
                f"{path}: another vmjobs holds this lock (PID "
                f"{holder.strip() or 'unknown'}): stop it first (systemctl "
                "stop vmjobs), or give this one its own --lock-file") \
                from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

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
