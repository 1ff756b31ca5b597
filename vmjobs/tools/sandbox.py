"""A private libvirtd with QEMU, for tests and for operators who want to
try vmjobs on real VMs without touching the machine's own libvirt.

The daemon runs in a mount namespace of its own, with tmpfs over libvirt's
system directories (/run/libvirt, /var/lib/libvirt, /var/log/libvirt,
/etc/libvirt) and its own qemu.conf and libvirtd.conf; its socket is in
DIR/sock, outside the namespace, so clients reach it as
qemu:///system?socket=DIR/sock/libvirt-sock. A capabilities cache is kept
between runs (bind-mounted over /var/cache/libvirt), so a warm start does
not probe QEMU again. libvirtd runs in the foreground under a small
supervisor that is a child subreaper: the QEMU processes libvirtd
daemonizes are re-parented to it and reaped at once (PID 1 here reaps
slowly, which makes every destroy take 1.5 s), and whatever is left when
libvirtd stops is killed.

Root is needed (mount namespaces, tmpfs).

    vmjobs sandbox start DIR     # prints the URI
    vmjobs sandbox restart DIR   # libvirtd alone; its VMs run on
    vmjobs sandbox stop DIR      # destroys its domains, stops the daemon
"""

import fcntl
import os
import signal
import subprocess
import sys
import time
import uuid

import libvirt

from .procfs import children, comm, wait_exits

SOCKET = "libvirt-sock"
# Overmounted inside the namespace; never touched outside it.
DEFAULT_CACHE = "/var/tmp/vmjobs-libvirt-cache"
PROGRAMS = ("libvirtd", "unshare", "mount")

QEMU_CONF = """\
user = "root"
group = "root"
# "file": no virtlogd, QEMU's output goes to a file; "logd" (libvirt's
# default, a sandbox made with `logd`): a virtlogd of the sandbox's own
# writes it, and a chardev's file and log.
stdio_handler = "{stdio_handler}"
# cgroups are shared between mount namespaces: two daemons would fight
# over the same cgroup names.
cgroup_controllers = [ ]
security_driver = "none"
namespaces = [ ]
remember_owner = 0
# Incoming migrations listen on ports of this sandbox's own (see
# migration_ports).
migration_port_min = {port_min}
migration_port_max = {port_max}
"""

LIBVIRTD_CONF = """\
unix_sock_dir = "{sock}"
auth_unix_rw = "none"
auth_unix_ro = "none"
# Live migration refuses to go to "the same host": each daemon its own.
host_uuid = "{host_uuid}"
"""
# Warnings and errors; a sandbox's `settings` may log more.
LOG_OUTPUTS = "3:file:{log}"


# Sandboxes share the machine's network: two daemons picking incoming
# migration ports from libvirt's one default range (49152-49215) can both
# pick a port before either QEMU listens on it, and a source then streams
# a guest into the other daemon's incoming QEMU (measured: transfers that
# hang until aborted, or "Address already in use"). Each sandbox takes a
# block of its own, above the kernel's ephemeral ports (32768-60999), held
# by a lock on a file for as long as its supervisor lives.
PORT_BLOCKS = range(61000, 65536 - 64, 64)
PORT_BLOCK_SIZE = 64
PORT_LOCKS = "/var/tmp/vmjobs-migration-ports"

# With `tcp`, libvirtd also listens on loopback TCP, on the block's last
# port, and the port before it is kept free for a service beside it (the
# chaos run's `vmjobs serve`): every port two such sandboxes talk over is
# then in their blocks, which a network partition cuts (chaos_partition).
# No authentication: the run is root, and its partition table refuses
# every other user's connection to the block (chaos_partition).
LIBVIRTD_TCP_CONF = """listen_tcp = 1
listen_tls = 0
listen_addr = "127.0.0.1"
tcp_port = "{port}"
auth_tcp = "none"
"""


class SandboxError(RuntimeError):
    pass


def migration_ports():
    """(first port, last port, the locked file's descriptor) of a block
    of 64 ports no other sandbox holds."""
    os.makedirs(PORT_LOCKS, exist_ok=True)
    for first in PORT_BLOCKS:
        fd = os.open(os.path.join(PORT_LOCKS, f"{first}.lock"),
                     os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return first, first + PORT_BLOCK_SIZE - 1, fd
    raise SandboxError("every block of migration ports is held by a "
                       "running sandbox")


def missing_requirements():
    """Why a sandbox cannot run here, or None if it can."""
    if os.geteuid() != 0:
        return "root is needed (mount namespaces)"
    for program in PROGRAMS:
        if not any(os.access(os.path.join(d, program), os.X_OK)
                   for d in os.environ.get("PATH", "").split(":") +
                   ["/usr/sbin", "/sbin"]):
            return (f"{program} is not installed (apt-get install "
                    "libvirt-daemon libvirt-daemon-driver-qemu "
                    "qemu-system-x86 util-linux)")
    try:
        import pwd
        pwd.getpwnam("libvirt-qemu")
    except KeyError:
        return ("user libvirt-qemu is missing (libvirtd's QEMU driver "
                "looks it up): useradd --system libvirt-qemu")
    return None


def conf_value(value):
    """`value` as libvirt's configuration files write it."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    value = str(value)
    if '"' in value:   # libvirt's parser has no escape: it would end there
        raise ValueError(f"a libvirtd.conf string cannot hold a quote: "
                         f"{value!r}")
    return f'"{value}"'


class Sandbox:
    def __init__(self, directory, cache_dir=DEFAULT_CACHE, settings=None,
                 tcp=False, logd=False):
        """`settings`: more libvirtd.conf keys, {key: value}, written after
        the sandbox's own (a benchmark's limits, log filters); in a
        log_outputs, {log} is the daemon's log file. `tcp`: libvirtd
        listens on loopback TCP too (LIBVIRTD_TCP_CONF), at `tcp_uri`.
        `logd`: QEMU's output and chardev files go through a virtlogd of
        the sandbox's own, as on a host with libvirt's defaults."""
        self.tcp = tcp
        self.logd = logd
        # Once started: (first, last) of its block of ports; with `tcp`,
        # libvirtd's port and the spare one (LIBVIRTD_TCP_CONF).
        self.ports = None
        self.tcp_port = self.spare_port = None
        self.dir = os.path.abspath(directory)
        self.cache_dir = cache_dir
        self.settings = dict(settings or {})
        self.log = os.path.join(self.dir, "log", "libvirtd.log")
        self.socket = os.path.join(self.dir, "sock", SOCKET)
        self.uri = f"qemu:///system?socket={self.socket}"
        self._supervisor_pidfile = os.path.join(self.dir, "supervisor.pid")
        self._lifeline = None   # our end of the supervisor's lifeline

    # -- start --------------------------------------------------------------

    def start(self, timeout=120, detached=False, before_start=None):
        """Start the daemon; return once it answers a real call. Unless
        `detached` (`vmjobs sandbox start`: the sandbox outlives the
        command), the sandbox ends with this process, however it ends: a
        benchmark or test killed before its `stop()` leaves no daemon and
        no guest running behind it. `before_start(ports)` is called with
        the sandbox's block of ports before the daemon listens on them
        (the chaos run guards a TCP libvirtd's port, which takes any
        local user, before anyone can connect)."""
        reason = missing_requirements()
        if reason is not None:
            raise SandboxError(f"cannot start a private libvirtd: {reason}")
        for sub in ("sock", "conf", "log", "run"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        os.makedirs(self.cache_dir, exist_ok=True)
        settings = {"log_outputs": LOG_OUTPUTS, **self.settings}
        settings["log_outputs"] = settings["log_outputs"].format(log=self.log)
        with open(self._path("conf", "libvirtd.conf"), "w") as f:
            f.write(LIBVIRTD_CONF.format(
                sock=os.path.join(self.dir, "sock"),
                host_uuid=uuid.uuid4()))
            for key, value in settings.items():
                f.write(f"{key} = {conf_value(value)}\n")
        port_min, port_max, ports_lock = migration_ports()
        self.ports = (port_min, port_max)
        if self.tcp:
            self.tcp_port, self.spare_port = port_max, port_max - 1
            port_max -= 2   # incoming migrations: the block's other ports
            with open(self._path("conf", "libvirtd.conf"), "a") as f:
                f.write(LIBVIRTD_TCP_CONF.format(port=self.tcp_port))
        with open(self._path("conf", "qemu.conf"), "w") as f:
            f.write(QEMU_CONF.format(
                port_min=port_min, port_max=port_max,
                stdio_handler="logd" if self.logd else "file"))
        if before_start is not None:
            try:
                before_start(self.ports)
            except BaseException:
                os.close(ports_lock)
                raise
        output = open(self._path("log", "supervisor.log"), "ab")
        # The lifeline: the supervisor reads a pipe whose other end only
        # this process holds (not inheritable, so no child of ours keeps
        # it), and the kernel closes that end when this process ends.
        lifeline = [] if detached else list(os.pipe())
        started = time.monotonic()
        try:
            # The supervisor inherits the lock: the ports are this
            # sandbox's until it stops.
            process = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private",
                 sys.executable, "-m", "vmjobs.tools.supervisor", self.dir,
                 self.cache_dir, *map(str, lifeline[:1])],
                stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                start_new_session=True, env=_env_finding_this_package(),
                pass_fds=(ports_lock, *lifeline[:1]))
        except BaseException:
            for fd in lifeline:
                os.close(fd)
            raise
        finally:
            output.close()
            os.close(ports_lock)
        if lifeline:
            os.close(lifeline[0])
            self._lifeline = lifeline[1]
        with open(self._supervisor_pidfile, "w") as f:
            f.write(str(process.pid))
        try:
            self._wait_ready(process, started + timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - started
        return self

    def _wait_ready(self, process, deadline):
        # Poll for the socket only; then the first call waits for the rest.
        while not os.path.exists(self.socket):
            if process.poll() is not None:
                raise SandboxError(f"libvirtd exited at start ({self._tail()})")
            if time.monotonic() > deadline:
                raise SandboxError(f"libvirtd did not start ({self._tail()})")
            time.sleep(0.02)   # libvirtd starting: it tells no one
        # The socket file appears when libvirtd binds it, a moment before
        # it listens: until then a connection is refused.
        while True:
            try:
                self._first_call()
                return
            except libvirt.libvirtError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)   # (nor when it listens)

    def _first_call(self):
        """Ready is not "the socket accepts": the first real call returns
        only once the QEMU driver has started."""
        conn = libvirt.open(self.uri)
        try:
            conn.getVersion()
        finally:
            conn.close()

    # -- stop -----------------------------------------------------------------

    def stop(self, timeout=60):
        """Destroy and undefine every domain, stop the daemon, and leave no
        QEMU process behind."""
        pid = self._supervisor_pid()
        if pid is None:
            return
        if os.path.exists(self.socket):
            try:
                self.remove_all_domains()
            except libvirt.libvirtError:
                pass   # a daemon that does not answer is killed below
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if wait_exits([pid], timeout):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            wait_exits([pid], None)
        os.unlink(self._supervisor_pidfile)
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None

    def restart_daemon(self, timeout=120, crash=False):
        """Restart libvirtd alone; its QEMU processes keep running and the
        new daemon takes them back. Returns once it answers again. With
        `crash`, libvirtd is killed -9 rather than stopped."""
        pidfile = self._path("run", "libvirtd.pid")
        with open(pidfile) as f:
            old = f.read().strip()
        os.kill(self._supervisor_pid(),
                signal.SIGUSR1 if crash else signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with open(pidfile) as f:
                    new = f.read().strip()
            except FileNotFoundError:
                new = None
            if new and new != old and os.path.exists(self.socket):
                # The old daemon's socket file may still be there, or the
                # new one not listen yet: back is "it answers".
                try:
                    self._first_call()
                    return
                except libvirt.libvirtError:
                    pass
            if time.monotonic() > deadline:
                raise SandboxError("libvirtd did not come back")
            time.sleep(0.02)   # libvirtd coming back tells no one

    @property
    def tcp_uri(self):
        """libvirtd on loopback TCP (a sandbox started with `tcp`)."""
        return f"qemu+tcp://127.0.0.1:{self.tcp_port}/system"

    def daemon_pid(self):
        """libvirtd's pid, or None."""
        try:
            with open(self._path("run", "libvirtd.pid")) as f:
                return int(f.read().strip())
        except (FileNotFoundError, ValueError):
            return None

    def remove_all_domains(self):
        conn = libvirt.open(self.uri)
        try:
            for dom in conn.listAllDomains(0):
                for call in (dom.destroy, dom.undefine):
                    try:
                        call()
                    except libvirt.libvirtError:
                        pass
        finally:
            conn.close()

    def qemu_pids(self):
        """The QEMU processes of this daemon (children of its supervisor)."""
        pid = self._supervisor_pid()
        return [] if pid is None else [
            child for child in children(pid)
            if comm(child).startswith("qemu")]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def _supervisor_pid(self):
        try:
            with open(self._supervisor_pidfile) as f:
                return int(f.read())
        except (FileNotFoundError, ValueError):
            return None

    def _path(self, *parts):
        return os.path.join(self.dir, *parts)

    def _tail(self):
        try:
            with open(self._path("log", "supervisor.log"), "rb") as f:
                return f.read()[-500:].decode(errors="replace")
        except OSError:
            return "no log"


def _env_finding_this_package():
    """The environment, with vmjobs importable even when run from a tree
    that is not installed."""
    here = os.path.abspath(__file__)   # ROOT/vmjobs/tools/sandbox.py
    root = os.path.dirname(os.path.dirname(os.path.dirname(here)))
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ,
                PYTHONPATH=root if not path else f"{root}:{path}")
