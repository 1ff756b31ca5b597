"""A lookout: one thread of its own that looks at each VM made due, for
those who follow libvirt's events (guests.py, arrivals.py). libvirt's
event loop must not block, and a worker must not wait on a guest that no
job asked for: an event only makes its VM due (`due`, from any thread,
never blocking), and the look, a libvirt call, is made here. A VM made
due again before its look is looked at once."""

import logging
import threading

log = logging.getLogger("vmjobs.lookout")

CLOSE_WAIT = 5.0   # seconds a stop waits for a look in progress


class Lookout:
    """`look(vm_id)` is called on the lookout's thread (`name`) for each VM
    made due; what it raises is logged as a bug (`what` it was doing) and
    the others are still looked at."""

    def __init__(self, name, look, what):
        self._look = look
        self._what = what
        # Guards _due and _closed; _wake is signalled when either changes.
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._due = set()   # vmIds to look at
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name,
                                        daemon=True)
        self._thread.start()

    def due(self, *vm_ids):
        """Look at these VMs soon (from any thread; never blocks)."""
        with self._lock:
            self._due.update(vm_ids)
            self._wake.notify()

    def close(self):
        """Stop looking; wait CLOSE_WAIT for a look in progress."""
        with self._lock:
            self._closed = True
            self._wake.notify()
        self._thread.join(CLOSE_WAIT)
        if self._thread.is_alive():
            log.warning("%s still waits for libvirt at stop", self._what)

    def _run(self):
        while True:
            with self._lock:
                while not self._due and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                due, self._due = self._due, set()
            for vm_id in due:
                try:
                    self._look(vm_id)
                except Exception:
                    # A bug: logged, and the others are still looked at.
                    log.exception("VM %s: %s failed", vm_id, self._what)
