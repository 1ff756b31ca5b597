"""A fault-injecting wrapper around the libvirt adapter: it passes every
call on to the real adapter, except the Nth, which fails as libvirt would,
before or after it took effect, or hangs until released (past the job
timeout). Used where a real failure cannot be provoked on demand.

Kinds of fault:
- "error": libvirt refuses the call (nothing done);
- "lost": the connection is lost before the call reaches libvirt;
- "after": the call is made, libvirt does it, and the reply is lost (the
  connection dropped, the daemon restarted): ConnectionLost all the same;
- "hang": the call waits until `release` is set, then is made;
- "pause-after": the call is made, then its answer waits until `release`
  is set (what it read may be stale by then: a point between a check and
  the act that trusts it).

With `within`, only the calls made from a function of that name (anywhere
up the caller's stack) are counted and failed; the others pass through."""

import sys
import threading

import libvirt

from vmjobs.hypervisor import ConnectionLost, HypervisorError

# The adapter's verbs that talk to libvirt (define, start and state also
# NewDomain's, Hypervisor.new_domain()).
CALLS = ("state", "state_reason", "define", "start", "remove",
         "list_domains", "metadata", "domain_xml", "network_bridge", "save",
         "saved_domain_xml", "restore", "persist", "set_metadata",
         "migratable_xml", "migrate", "abort_job", "migration_progress",
         "activity", "was_saved")

# What a failed call raises, by kind of fault.
FAULTS = {
    "error": (HypervisorError, libvirt.VIR_ERR_INTERNAL_ERROR,
              "injected fault in {call}"),
    "lost": (ConnectionLost, libvirt.VIR_ERR_INVALID_CONN,
             "injected fault in {call}: client socket is closed"),
    "after": (ConnectionLost, libvirt.VIR_ERR_INVALID_CONN,
              "injected fault in {call}, after libvirt did it: client "
              "socket is closed"),
}

# Every kind but "hang", which the timeout tests use.
KINDS = ["error", "lost", "after"]


class FaultyHypervisor:
    def __init__(self, real, fail_at=None, fail_calls=CALLS, kind="error",
                 within=None):
        self._real = real
        self._within = within
        # 1-based index of the call to fail; or a set of them; or a dict
        # of them to the kind of fault each gets.
        self._fail_at = fail_at
        self._fail_calls = fail_calls
        self._kind = kind             # a key of FAULTS, or "hang"
        self._lock = threading.Lock()  # guards calls, failed, _fail_at
        self.calls = []               # names of the calls made, in order
        self.failed = None            # the call that was failed
        self.hanging = threading.Event()   # a "hang" call has started
        self.release = threading.Event()   # ... and may go on

    def arm(self, fail_at, kind=None):
        """Start counting afresh (after the service started), and fail the
        `fail_at`th call from now (or each of a set of them; None: fail
        none). The kind of fault: `kind`, or the dict's."""
        with self._lock:
            self.calls = []
            self.failed = None
            self._fail_at = fail_at
            if kind is not None:
                self._kind = kind

    def __getattr__(self, name):
        attr = getattr(self._real, name)
        if name == "new_domain":
            return lambda: _FaultyNewDomain(self, attr())
        if name not in self._fail_calls:
            return attr
        return self.faulty(name, attr)

    def faulty(self, name, attr):
        """`attr`, counted as the call `name` and failed when it is the
        one armed."""

        def call(*args, **kwargs):
            if self._within is not None and \
                    not called_within(self._within):
                return attr(*args, **kwargs)
            with self._lock:
                self.calls.append(name)
                n = len(self.calls)
                kind = self._kind
                if isinstance(self._fail_at, dict):
                    kind = self._fail_at.get(n)
                    fail = kind is not None
                elif isinstance(self._fail_at, (set, frozenset)):
                    fail = n in self._fail_at
                else:
                    fail = n == self._fail_at
                if fail:
                    self.failed = name
            if not fail:
                return attr(*args, **kwargs)
            if kind == "hang":
                self.hanging.set()
                assert self.release.wait(120), "hang never released"
                return attr(*args, **kwargs)
            if kind == "pause-after":
                answer = attr(*args, **kwargs)
                self.hanging.set()
                assert self.release.wait(120), "pause never released"
                return answer
            cls, code, message = FAULTS[kind]
            if kind == "after":
                attr(*args, **kwargs)
            raise cls(name, code, message.format(call=name))
        return call


def called_within(name):
    """True if a function named `name` is up the caller's stack."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == name:
            return True
        frame = frame.f_back
    return False


class _FaultyNewDomain:
    """The adapter's NewDomain, its calls (define, start, state) counted
    and failed as the verbs of the same names are."""

    def __init__(self, faulty, real):
        self._faulty = faulty
        self._real = real

    def __enter__(self):
        self._real.__enter__()
        return self

    def __exit__(self, *exc_info):
        return self._real.__exit__(*exc_info)

    def __getattr__(self, name):
        attr = getattr(self._real, name)
        if name not in self._faulty._fail_calls:
            return attr
        return self._faulty.faulty(name, attr)
