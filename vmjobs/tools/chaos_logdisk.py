"""The chaos run's `log-full` mix: each service's log on a disk of its own
(a tmpfs), which fault `log_full` fills up for a few steps, as a host's
/var/log fills (ENOSPC), and what the service must say of it.

While the disk is full the service serves on and loses log lines; it
says the first lost line of a run on stderr, once, and once a line is
written again says how many were lost (logs.LogFile), in the log and on
stderr. The check, after the disk had room again and a line was written
(a verb's audit line): each start's stderr holds no traceback, and the
running service's last word on it is not a loss (a start killed while
the disk was full never wrote again: its stderr may end so)."""

import errno
import os
import shutil
import subprocess

from .chaos_host import says_a_thread_died

# Room for every log line of a 30-minute run (about 1 MiB a host),
# whatever the filler leaves.
SIZE = "64m"
FILLER = "filler"
LOST = ": cannot write a line ("
BACK = ": written again, "


class LogDisk:
    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.mounted = False
        self.full = False

    def mount(self):
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700",
             "chaos-log", self.dir], capture_output=True)
        self.mounted = done.returncode == 0
        return self.mounted

    def unmount(self):
        """Unmount the disk, its log files first copied to the directory
        above it (where the other mixes keep them): a violation's
        diagnosis reads them after the run."""
        if self.mounted:
            into = os.path.dirname(self.dir)
            for name in os.listdir(self.dir):
                if name != FILLER:
                    shutil.copy2(os.path.join(self.dir, name), into)
            subprocess.run(["umount", "-l", self.dir], capture_output=True)
            self.mounted = False
            self.full = False

    def fill(self):
        """Fill the disk up: every write to it fails (ENOSPC) but in a
        log file's last page, which it already has (a tmpfs counts
        pages)."""
        fd = os.open(os.path.join(self.dir, FILLER),
                     os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 65536)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        try:
            while True:   # what is left is less than 64 KiB
                os.write(fd, b"\0" * 4096)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        finally:
            os.close(fd)
        self.full = True

    def free(self):
        try:
            os.unlink(os.path.join(self.dir, FILLER))
        except FileNotFoundError:
            pass
        self.full = False


def stderr_findings(name, paths, current):
    """What the services' stderr files (`paths`, oldest first; `current`,
    the running service's) say wrong of their log, once the disk has room
    and the running service wrote a line: a traceback anywhere, or the
    running service's last word a loss. Also (lost, written again): how
    many runs of losses each said."""
    found, lost, back = [], 0, 0
    for path in paths:
        try:
            with open(path, errors="replace") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            continue
        if any(says_a_thread_died(line) for line in lines):
            found.append(f"{name}: {path} holds a traceback")
        said = [line for line in lines if LOST in line or BACK in line]
        lost += sum(LOST in line for line in said)
        back += sum(BACK in line for line in said)
        if path == current and said and LOST in said[-1]:
            found.append(f"{name}: its log lost lines for good: "
                         f"{said[-1][:300]}")
    return found, (lost, back)
