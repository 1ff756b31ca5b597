"""The service's run directory, /run/vmjobs: its instance locks, its log's
lock and its default listener's socket. It is the service's own, 0700
(API.md), from the first moment the service makes or takes it, even when
it was there before the start, more open: a tmpfs mounted over it is
1777, where anyone could put a file at the lock's or the socket's path
first."""

import os
import stat

from . import hostfiles

RUN_DIR = "/run/vmjobs"


def prepare(directory, mode=0o700):
    """Make `directory` with `mode` if it is missing. The run directory,
    if it was there, is made 0700 (unless `mode` is more open: the
    metrics-only socket's); another existing directory is never changed
    (a --lock-file or a socket may be in /tmp), nor is a symlink, or a
    directory root does not own."""
    if hostfiles.make_dir(directory, mode) or directory != RUN_DIR or \
            mode != 0o700:
        return
    st = os.lstat(directory)
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and \
            stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(directory, 0o700)
