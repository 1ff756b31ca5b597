"""The chaos run's `fd-limit` mix: a service out of file descriptors for a
few seconds, as a host's service whose limit (systemd's LimitNOFILE) a
leak or a storm of connections reached: fault `fd_limit` lowers its soft
RLIMIT_NOFILE (prlimit, on its process alone) so that 0 to 3 more
descriptors fit, while verbs that need new ones run (a migration from
it and to it: a connection to its peer, an accepted one; a hibernation:
its state file), then gives the limit back.

Every new descriptor past the limit fails EMFILE: an accept, a socket, an
open, a pipe of a child. The service must serve on once it has them again
(every invariant holds at the next check) and no thread of it may have
died of it (no traceback on its stderr).

Known (libvirt's, with GLib; --known glib-abort-at-fd-limit, for replays
of the code before round 14): a new libvirt connection opened with one
descriptor free kills the whole process: GLib cannot make the wakeup
pipe of the connection's main context and aborts ("GLib-ERROR **:
Creating pipes for GWakeup: Too many open files"); vmjobs opens one per
migration (Connections.own()) and on every reconnect, and since round 14
only with descriptors to spare (hypervisor/connections.py,
open_connection): refused otherwise, the verb's job failing."""

import os
import resource

from .chaos_host import says_a_thread_died


def open_fds(pid):
    """How many descriptors process `pid` holds."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def lower(pid, slack):
    """Process `pid`'s soft descriptor limit set so that `slack` new
    descriptors fit and no more (a new one takes the lowest free number,
    which must be below the limit: the limit is the free number after
    `slack` others, so a gap left by a closed one counts); its limits
    before, for give_back()."""
    before = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    held = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    free = (n for n in range(before[0] + len(held) + 1) if n not in held)
    for _ in range(slack):
        next(free)
    soft = min(next(free), before[0])
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, before[1]))
    return before


def give_back(pid, before):
    """Process `pid`'s limits as they were (nothing if it has ended: a
    restarted service starts with its own)."""
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, before)
    except ProcessLookupError:
        pass


def tracebacks(paths):
    """The stderr files among `paths` that hold a traceback (a thread or
    a logging call that died)."""
    found = []
    for path in paths:
        try:
            with open(path, errors="replace") as f:
                text = f.read()
        except FileNotFoundError:
            continue
        if says_a_thread_died(text):
            found.append(path)
    return found


GLIB_ABORT = "GLib-ERROR"
NO_DESCRIPTORS = "Too many open files"


def glib_abort(path):
    """The line of stderr file `path` in which GLib aborted the process
    for want of a descriptor, or None."""
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if GLIB_ABORT in line and NO_DESCRIPTORS in line:
                    return line.strip()
    except FileNotFoundError:
        pass
    return None
