"""systemd's readiness protocol (sd_notify): datagrams to $NOTIFY_SOCKET.

The service says READY=1 once recovery at start-up has ended and its
listener accepts, STOPPING=1 when a stop begins, and a STATUS= line
systemctl shows. A few lines over an AF_UNIX datagram socket, as
sd_notify(3) describes; no library needed. Without $NOTIFY_SOCKET (not
under systemd) nothing is sent.
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
    if address.startswith("@"):
        address = "\0" + address[1:]
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
