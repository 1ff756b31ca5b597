"""The sandbox's supervisor: the first process of the private libvirtd's
mount namespace (`python -m vmjobs.tools.supervisor DIR CACHE_DIR
[LIFELINE_FD]`, started by Sandbox.start under unshare). It mounts tmpfs
over libvirt's system directories, runs libvirtd as its child and, as a
child subreaper, reaps the QEMU processes libvirtd daemonizes; SIGTERM
stops the daemon and the sandbox, SIGHUP restarts the daemon alone
(SIGUSR1: kills it -9 first, as a crash). With
a lifeline (a pipe's read end whose write end only the sandbox's owner
holds), the end of the owner is a SIGTERM too."""

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time

from .procfs import children

PRIVATE_DIRS = ("/run/libvirt", "/var/lib/libvirt", "/var/log/libvirt",
                "/etc/libvirt")
CACHE_MOUNT = "/var/cache/libvirt"
PR_SET_CHILD_SUBREAPER = 36


def listens_on_tcp(conf):
    with open(conf) as f:
        return any(line.split() == ["listen_tcp", "=", "1"] for line in f)


def supervise(directory, cache_dir, lifeline=None):
    """Runs as the namespace's first process: mounts, then libvirtd as a
    child, reaping every orphan until libvirtd exits."""
    for path in PRIVATE_DIRS:
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs",
                        path], check=True)
    os.makedirs(CACHE_MOUNT, exist_ok=True)
    subprocess.run(["mount", "--bind", cache_dir, CACHE_MOUNT], check=True)
    with open(os.path.join(directory, "conf", "qemu.conf")) as src, \
            open("/etc/libvirt/qemu.conf", "w") as dst:
        qemu_conf = src.read()
        dst.write(qemu_conf)
    if 'stdio_handler = "logd"' in qemu_conf:
        start_virtlogd(os.path.join(directory, "run", "virtlogd.pid"))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    command = [
        "libvirtd", "-f", os.path.join(directory, "conf", "libvirtd.conf"),
        "-p", os.path.join(directory, "run", "libvirtd.pid")]
    if listens_on_tcp(os.path.join(directory, "conf", "libvirtd.conf")):
        # libvirtd opens the TCP socket its configuration asks for only
        # with --listen (not socket-activated).
        command.append("--listen")
    daemon = subprocess.Popen(command)
    # SIGTERM stops the daemon and the sandbox; SIGHUP restarts the daemon
    # alone, its QEMU processes running on (as after a libvirtd upgrade).
    restarting = []
    signal.signal(signal.SIGTERM,
                  lambda *_: kill(daemon.pid, signal.SIGTERM))

    def restart(*_):
        restarting.append(True)
        kill(daemon.pid, signal.SIGTERM)

    signal.signal(signal.SIGHUP, restart)

    def crash(*_):
        # SIGUSR1: libvirtd killed -9 (a crash, not a stop), then started
        # again, its QEMU processes running on.
        restarting.append(True)
        kill(daemon.pid, signal.SIGKILL)

    signal.signal(signal.SIGUSR1, crash)
    if lifeline is not None:
        threading.Thread(target=stop_at_eof, args=(int(lifeline),),
                         daemon=True).start()
    while True:
        try:
            pid, _ = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid != daemon.pid:
            continue
        if restarting:
            restarting.clear()
            daemon = subprocess.Popen(command)
            continue
        # QEMU processes outlive libvirtd: end them, then reap them.
        for child in children(os.getpid()):
            kill(child, signal.SIGKILL)


VIRTLOGD_SOCKET = "/run/libvirt/virtlogd-sock"


def start_virtlogd(pidfile, timeout=30):
    """The namespace's own virtlogd, a child (killed with the QEMU
    processes when libvirtd ends), listening before libvirtd starts a
    guest that needs it; its pid file the sandbox's (the default,
    /run/virtlogd.pid, is the host's)."""
    process = subprocess.Popen(["virtlogd", "--pid-file", pidfile])
    deadline = time.monotonic() + timeout
    while not os.path.exists(VIRTLOGD_SOCKET):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("virtlogd did not start")
        time.sleep(0.01)


def stop_at_eof(fd):
    """Nothing is ever written to the lifeline: its end of file is the
    owner's end (even by SIGKILL). Stop as a SIGTERM would: the handler
    runs in the main thread, between its waits."""
    while os.read(fd, 1):
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def kill(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    supervise(*sys.argv[1:4])
