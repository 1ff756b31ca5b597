"""What /proc says of a process: its stat line's fields, its children,
its command name, whether it is alive, the CPU time it has used (read by
the sandbox, its supervisor, the chaos run and the benchmarks); and the
wait for processes' ends, on their pidfds."""

import os
import select
import time

TICKS = os.sysconf("SC_CLK_TCK")


def stat_fields(pid):
    """The fields of /proc/`pid`/stat after its command name (which may
    hold spaces and parentheses): [state, ppid, ...]. OSError if the
    process is gone."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(pids):
    """The CPU time (user + system, in seconds) the processes `pids` have
    used so far; a process gone meanwhile counts nothing."""
    ticks = 0
    for pid in pids:
        try:
            fields = stat_fields(pid)
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])   # utime + stime
    return ticks / TICKS


def children(pid):
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = stat_fields(entry)
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(entry))
    return children


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie counts as gone: our Popen never waits for it.
    try:
        return stat_fields(pid)[0] != "Z"
    except OSError:
        return False


def wait_exits(pids, timeout):
    """The pids of `pids` still running after `timeout` seconds (None: no
    bound), waiting on each process's pidfd, readable once it has exited
    (a zombie too, as alive() counts it)."""
    fds = {}
    try:
        for pid in pids:
            try:
                fds[os.pidfd_open(pid)] = pid
            except ProcessLookupError:
                pass   # gone already
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        deadline = None if timeout is None else time.monotonic() + timeout
        running = set(fds)
        while running:
            remaining = None if deadline is None else \
                max(0.0, deadline - time.monotonic()) * 1000
            ready = poller.poll(remaining)
            if not ready:
                break
            for fd, _ in ready:
                poller.unregister(fd)
                running.discard(fd)
        return sorted(fds[fd] for fd in running)
    finally:
        for fd in fds:
            os.close(fd)
