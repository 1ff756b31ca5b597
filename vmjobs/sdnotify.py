"""systemd's readiness protocol (sd_notify): datagrams to $NOTIFY_SOCKET.

The service says READY=1 once recovery at start-up has ended and its
listener accepts, STOPPING=1 when a stop begins, and a STATUS= line
systemctl shows. A few lines over an AF_UNIX datagram socket, as
sd_notify(3) describes; no library needed. Without $NOTIFY_SOCKET (not
under systemd) nothing is sent.

Its other end, systemd's, is here too (notify_socket, messages): the
chaos run and the tests learn as systemd does that a service they
started is ready.
"""

import logging
import os
import socket
import threading

log = logging.getLogger("vmjobs.sdnotify")


def notify(state, environ=None):
    """Send `state` (e.g. "READY=1\\nSTATUS=...") to $NOTIFY_SOCKET; True
    if sent. A name starting with '@' is in the abstract namespace."""
    address = (os.environ if environ is None else environ).get(
        "NOTIFY_SOCKET")
    if not address:
        return False
    address = _address(address)
    try:
        with socket.socket(socket.AF_UNIX,
                           socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        # The service runs on; systemd will say it never became ready.
        log.warning("cannot notify systemd at %s: %s",
                    address.replace("\0", "@"), exc)
        return False
    return True


def _address(name):
    """A $NOTIFY_SOCKET name as a socket address: '@name' is abstract."""
    return "\0" + name[1:] if name.startswith("@") else name


def notify_socket(name, timeout=None):
    """systemd's end: a datagram socket bound at `name` (give it to a
    service as its $NOTIFY_SOCKET), each read waiting `timeout` seconds
    at most (socket.timeout then)."""
    sock = socket.socket(socket.AF_UNIX,
                         socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    sock.bind(_address(name))
    sock.settimeout(timeout)
    return sock


def messages(sock):
    """The next message a service sent on `sock` (waiting for it), as a
    dict: {"READY": "1", "STATUS": ...}."""
    return dict(line.split("=", 1) for line in
                sock.recv(4096).decode().splitlines())


class Readiness:
    """READY=1 once `api`'s recovery has ended (the listener was started
    before), STOPPING=1 at stop(); never READY after STOPPING."""

    def __init__(self, api, address, environ=None):
        self._api = api
        self._address = address
        self._environ = environ
        # Guards _stopping and makes the check and the send one step, so
        # READY cannot follow STOPPING.
        self._lock = threading.Lock()
        self._stopping = False

    def start(self):
        threading.Thread(target=self._when_recovered, daemon=True,
                         name="vmjobs-readiness").start()

    def _when_recovered(self):
        self._api.wait_recovered()
        public = self._api.registry.counts()["public"]
        with self._lock:
            if self._stopping:
                return
            notify(f"READY=1\nSTATUS=serving on {self._address}; recovery "
                   f"ended with {public} public VMs", self._environ)
        log.info("ready: recovery ended with %d public VMs; serving on %s",
                 public, self._address)

    def status(self, text):
        notify(f"STATUS={text}", self._environ)

    def stop(self):
        with self._lock:
            self._stopping = True
            notify("STOPPING=1\nSTATUS=stopping", self._environ)
