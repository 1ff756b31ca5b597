"""A fault-injecting wrapper around the libvirt adapter: it passes every
call on to the real adapter, except the Nth, which fails as libvirt would.
Used where a real failure cannot be provoked on demand."""

import threading

import libvirt

from vmjobs.hypervisor import HypervisorError

# The adapter's verbs that talk to libvirt.
CALLS = ("state", "define", "start", "remove", "list_domains", "metadata",
         "save", "saved_domain_xml", "restore", "persist", "set_metadata",
         "create_transient", "resume")


class FaultyHypervisor:
    def __init__(self, real, fail_at=None, fail_calls=CALLS):
        self._real = real
        self._fail_at = fail_at       # 1-based index of the call to fail
        self._fail_calls = fail_calls
        self._lock = threading.Lock()  # guards calls
        self.calls = []               # names of the calls made, in order
        self.failed = None            # the call that was failed

    def arm(self, fail_at):
        """Start counting afresh (after the service started), and fail the
        `fail_at`th call from now (None: fail none)."""
        with self._lock:
            self.calls = []
            self.failed = None
            self._fail_at = fail_at

    def __getattr__(self, name):
        attr = getattr(self._real, name)
        if name not in self._fail_calls:
            return attr

        def call(*args, **kwargs):
            with self._lock:
                self.calls.append(name)
                fail = len(self.calls) == self._fail_at
                if fail:
                    self.failed = name
            if fail:
                raise HypervisorError(name, libvirt.VIR_ERR_INTERNAL_ERROR,
                                      f"injected fault in {name}")
            return attr(*args, **kwargs)
        return call
