"""A fault-injecting wrapper around the libvirt adapter: it passes every
call on to the real adapter, except the Nth, which fails as libvirt would
(an error, or the connection lost) or hangs until released (past the job
timeout). Used where a real failure cannot be provoked on demand."""

import threading

import libvirt

from vmjobs.hypervisor import HypervisorError

# The adapter's verbs that talk to libvirt.
CALLS = ("state", "define", "start", "remove", "list_domains", "metadata",
         "save", "saved_domain_xml", "restore", "persist", "set_metadata",
         "arrival", "migratable_xml", "migrate", "abort_job",
         "migration_progress", "migrating")


# What a failed call raises, by kind of fault.
FAULTS = {
    "error": (libvirt.VIR_ERR_INTERNAL_ERROR, "injected fault in {call}"),
    "lost": (libvirt.VIR_ERR_INVALID_CONN,
             "injected fault in {call}: client socket is closed"),
}


class FaultyHypervisor:
    def __init__(self, real, fail_at=None, fail_calls=CALLS, kind="error"):
        self._real = real
        self._fail_at = fail_at       # 1-based index of the call to fail
        self._fail_calls = fail_calls
        self._kind = kind             # "error", "lost" or "hang"
        self._lock = threading.Lock()  # guards calls, failed, _fail_at
        self.calls = []               # names of the calls made, in order
        self.failed = None            # the call that was failed
        self.hanging = threading.Event()   # a "hang" call has started
        self.release = threading.Event()   # ... and may go on

    def arm(self, fail_at, kind=None):
        """Start counting afresh (after the service started), and fail the
        `fail_at`th call from now (None: fail none)."""
        with self._lock:
            self.calls = []
            self.failed = None
            self._fail_at = fail_at
            if kind is not None:
                self._kind = kind

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
            if fail and self._kind == "hang":
                self.hanging.set()
                assert self.release.wait(120), "hang never released"
            elif fail:
                code, message = FAULTS[self._kind]
                raise HypervisorError(name, code, message.format(call=name))
            return attr(*args, **kwargs)
        return call
