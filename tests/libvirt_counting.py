"""Real libvirt connections wrapped in a counter of the calls made on
each and of those in flight at once (the domains a connection hands out
count against it): for tests that assert how vmjobs uses libvirt."""

import threading

import libvirt

# What libvirt answers from the handle itself, sending no request.
LOCAL = frozenset({"UUIDString", "UUID", "name", "ID", "connect"})


class InFlight:
    """The calls in flight on one real connection, and their maximum."""

    def __init__(self):
        self.lock = threading.Lock()
        self.now = self.most = self.calls = 0

    def call(self, method, *args, **kwargs):
        with self.lock:
            self.now += 1
            self.calls += 1
            self.most = max(self.most, self.now)
        try:
            return wrap(method(*args, **kwargs), self)
        finally:
            with self.lock:
                self.now -= 1


class Counted:
    """A libvirt connection or domain whose calls are counted on its
    connection's InFlight."""

    def __init__(self, real, counter):
        self._real = real
        self._counter = counter

    def __getattr__(self, name):
        attr = getattr(self._real, name)
        if not callable(attr) or name in LOCAL:
            return attr
        return lambda *a, **kw: self._counter.call(
            attr, *[unwrap(v) for v in a], **kw)


def unwrap(arg):
    """libvirt's own objects for the wrapped ones among a call's arguments
    (libvirt checks their types)."""
    if isinstance(arg, Counted):
        return arg._real
    if isinstance(arg, list):
        return [unwrap(a) for a in arg]
    return arg


def wrap(result, counter):
    if isinstance(result, libvirt.virDomain):
        return Counted(result, counter)
    if isinstance(result, list):
        return [wrap(r, counter) for r in result]
    return result


def counting_open(counters):
    """A libvirt.open that counts: each connection it opens gets an
    InFlight, appended to `counters`."""
    real_open = libvirt.open

    def counted_open(uri):
        counter = InFlight()
        counters.append(counter)
        return Counted(real_open(uri), counter)
    return counted_open
