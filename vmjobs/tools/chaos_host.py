"""One host of the chaos run: a private libvirtd (Sandbox) and its own
`vmjobs serve` process, which the run kills, stops, freezes and restarts."""

import http.client
import os
import signal
import subprocess
import sys
import time

import libvirt

from ..client import Client, RemoteError
from ..sdnotify import messages, notify_socket
from .sandbox import Sandbox

# The services' settings: short bounds, so that a run sees them pass.
CONFIG = """\
[libvirt]
domain_type = qemu
[pool]
workers = 4
[jobs]
timeout = 120
[migration]
source_timeout = 30
destination_timeout = 45
[recovery]
settle_timeout = 30
"""

# With tcp (the partition mix), migrations' bounds shorter than the
# longest partition (20 s) and libvirtd's keepalive too (2 s x 3): a cut
# outlasts them as a real partition outlasts the real ones (source 600 s,
# keepalive 5 s x 5), so that a job ends and libvirt gives up on its peer
# while the link is down, which a shorter cut than every bound never sees
# (seed 3107: 43 migrations cut, all done once the link healed).
PARTITION_BOUNDS = {"source_timeout = 30": "source_timeout = 8",
                    "destination_timeout = 45": "destination_timeout = 15"}
PARTITION_LIBVIRTD = {"keepalive_interval": 2, "keepalive_count": 3}

CALL_TIMEOUT = 60.0


def says_a_thread_died(text):
    """Whether a service's stderr `text` holds a traceback: a thread or a
    logging call of it died."""
    return "Traceback" in text or "Logging error" in text


class ServiceDown(Exception):
    """The service did not answer (stopped, killed, or frozen)."""


class ServiceDidNotStart(RuntimeError):
    """`vmjobs serve` exited before it served: the message ends with the
    last line of its stderr."""


class ChaosHost:
    def __init__(self, name, directory, state_dir, extra_state_dirs=(),
                 tcp=False):
        """`tcp`: the hosts talk over loopback TCP (libvirtd's port, the
        migration ports, the service's), all in the sandbox's block of
        ports, which a partition cuts (chaos_partition); else over Unix
        sockets, as every mix did before the partition one."""
        self.name = name
        self.tcp = tcp
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        # Where its service's log files go (the log-full mix: a disk of
        # their own, chaos_logdisk); its stderr files stay in dir.
        self.log_dir = os.path.join(self.dir, "logs")
        os.makedirs(self.log_dir, exist_ok=True)
        self.state_dir = state_dir   # shared: a file restores on either
        self.extra_state_dirs = list(extra_state_dirs)
        self.sandbox = Sandbox(os.path.join(self.dir, "libvirt"), tcp=tcp,
                               settings=PARTITION_LIBVIRTD if tcp else None)
        # Where the other host and the run reach the service and libvirtd
        # (with tcp: the sandbox's ports, known once it started).
        self.listen = f"unix:{self.dir}/vmjobs.sock"
        self.migration_uri = \
            f"qemu+unix:///system?socket={self.sandbox.socket}"
        self.process = None
        self.client = None
        self.ready = None   # its start's $NOTIFY_SOCKET (wait_recovered)
        self.starts = 0

    # -- the service ----------------------------------------------------------

    def start_daemon(self, before_start=None):
        self.sandbox.start(before_start=before_start)
        if self.tcp:
            self.listen = f"127.0.0.1:{self.sandbox.spare_port}"
            self.migration_uri = self.sandbox.tcp_uri

    def start_service(self):
        self.starts += 1
        config = os.path.join(self.dir, "vmjobs.conf")
        text = CONFIG
        if self.tcp:
            for default, shorter in PARTITION_BOUNDS.items():
                text = text.replace(default, shorter)
        with open(config, "w") as f:
            f.write(text)
        stderr = open(self.stderr_path(self.starts), "w")
        # It says READY=1 there once recovery ended, as to systemd.
        if self.ready is not None:
            self.ready.close()
        notify = os.path.join(self.dir, "notify")
        if os.path.exists(notify):
            os.unlink(notify)   # the previous start's
        self.ready = notify_socket(notify)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vmjobs", "serve", "--config", config,
             "--uri", self.sandbox.uri, "--listen", self.listen,
             "--state-dir", self.state_dir,
             *[arg for d in self.extra_state_dirs
               for arg in ("--state-dir", d)],
             # Both hosts' sockets (service and libvirtd) are under the
             # run's directory: VM.migrate may name them there.
             "--migration-socket-dir", os.path.dirname(self.dir),
             *(["--insecure"] if self.tcp else []),
             "--lock-file", os.path.join(self.dir, "vmjobs.lock"),
             "--log-file", os.path.join(self.log_dir,
                                        f"serve-{self.starts}.log")],
            stdout=subprocess.PIPE, stderr=stderr, text=True,
            env=dict(os.environ, NOTIFY_SOCKET=notify))
        stderr.close()
        line = self.process.stdout.readline()
        if not line.startswith("vmjobs: serving on "):
            self.process.kill()
            self.process.wait()
            with open(self.stderr_path(self.starts), errors="replace") as f:
                said = (f.read().strip().splitlines() or [""])[-1]
            raise ServiceDidNotStart(f"{self.name}: serve did not start: "
                                     f"{line!r}; its stderr ends: "
                                     f"{said[:300]}")
        self.client = Client(self.listen, timeout=CALL_TIMEOUT)

    def stderr_path(self, start):
        """The file of start number `start`'s stderr."""
        return os.path.join(self.dir, f"serve-{start}.stderr")

    def wait_recovered(self, bound):
        """True once the service (as started last) says recovery ended,
        READY=1 on its $NOTIFY_SOCKET, within `bound` s."""
        deadline = time.monotonic() + bound
        while (remaining := deadline - time.monotonic()) > 0:
            self.ready.settimeout(remaining)
            try:
                if messages(self.ready).get("READY") == "1":
                    return True
            except TimeoutError:
                return False
        return False

    def kill(self):
        self.process.kill()
        self.process.wait()
        self._closed()

    def terminate(self, bound):
        """SIGTERM; True if the service exited within `bound` seconds (else
        it is killed -9, as systemd does after TimeoutStopSec)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(bound)
            stopped = True
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            stopped = False
        self._closed()
        return stopped

    def freeze(self, seconds):
        self.process.send_signal(signal.SIGSTOP)
        time.sleep(seconds)   # the fault's length, not a wait
        self.process.send_signal(signal.SIGCONT)

    def _closed(self):
        if self.client is not None:
            self.client.close()
        self.client = None

    def call(self, method, **params):
        """The verb's result (RemoteError for its error); ServiceDown if the
        service does not answer."""
        if self.client is None:
            raise ServiceDown(self.name)
        for attempt in (1, 2):
            try:
                return self.client.call(method, params)
            except RemoteError:
                raise
            except (OSError, ValueError, http.client.HTTPException) as exc:
                # The service closed an idle connection, or is down: once
                # more on a new connection, then it is down.
                self.client.close()
                self.client = Client(self.listen, timeout=CALL_TIMEOUT)
                if attempt == 2:
                    raise ServiceDown(f"{self.name}: {exc}") from None
        raise AssertionError("unreachable")

    def call_once(self, method, **params):
        """As call(), on a connection of its own and never sent twice: for
        verbs sent from several threads at once (one Client is one HTTP
        connection, not to be shared; a resend of a request the service
        took would hibernate or migrate twice)."""
        if self.client is None:
            raise ServiceDown(self.name)
        client = Client(self.listen, timeout=CALL_TIMEOUT)
        try:
            return client.call(method, params)
        except RemoteError:
            raise
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise ServiceDown(f"{self.name}: {exc}") from None
        finally:
            client.close()

    def close(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.terminate(60)
        if self.ready is not None:
            self.ready.close()
        self.sandbox.stop()

    # -- libvirt, as another client ---------------------------------------------

    def connect(self):
        # libvirt prints every error to stderr by default; the checks
        # expect some (a domain gone meanwhile).
        libvirt.registerErrorHandler(lambda ctx, err: None, None)
        return libvirt.open(self.sandbox.uri)
