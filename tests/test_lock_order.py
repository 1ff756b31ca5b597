"""The lock order docs/architecture.md states is the one the code takes.

Every threading.Lock made while the test runs is a recording lock, named
by the class of the object that made it (the caller's `self`). A creation
that commits (telling the guest watch, as on a daemon), a migration
destination that parks (the pool's timer), wakes on an event and is
aborted, two migration sources of which one waits for its slot, and a
hibernation run through the verbs, while an event stream of the JSON-RPC
server follows them; each time a lock is taken while others are held,
the pairs (held, taken) are recorded. Every pair seen must be one the page
allows, and the pairs the page names must all be seen (so the test cannot
pass by recording nothing)."""

import pathlib
import re
import sys
import threading

import pytest

from conftest import WAIT, new_id, vm_params, wait_job
from test_migration_destination import incoming
from test_migration_source import host_b, migrate  # noqa: F401 (fixture)
from vmjobs.client import Client
from vmjobs.errors import MigrateError
from vmjobs.server import Server

ROOT = pathlib.Path(__file__).resolve().parent.parent

# The order of docs/architecture.md ("Lock order"), as (outer, inner).
ALLOWED = {
    ("Job", "Pool"),
    ("Job", "Timer"),
    ("Pool", "Timer"),
    ("Job", "VmRegistry"),
    ("Job", "Notifications"),
    ("VmRegistry", "Notifications"),
    ("Job", "Lookout"),
    ("Streams", "Notifications"),
}
TRACKED = {"Job", "Pool", "Timer", "VmRegistry", "JobTable",
           "OutgoingSlots", "Notifications", "Lookout", "Streams",
           "ConnectionTable", "Recovery"}

_held = threading.local()


class RecordingLock:
    def __init__(self, name, seen, taken):
        self._lock = _real_lock()
        self.name = name
        self._seen = seen
        self._taken = taken

    def acquire(self, blocking=True, timeout=-1):
        got = self._lock.acquire(blocking, timeout)
        if got:
            stack = getattr(_held, "stack", None)
            if stack is None:
                stack = _held.stack = []
            for outer in stack:
                if outer != self.name:
                    self._seen.add((outer, self.name))
            stack.append(self.name)
            self._taken.add(self.name)
        return got

    def release(self):
        _held.stack.remove(self.name)
        self._lock.release()

    def locked(self):
        return self._lock.locked()

    __enter__ = acquire

    def __exit__(self, *exc_info):
        self.release()


_real_lock = threading.Lock


def owner_name(frame):
    """The tracked class whose __init__ (or method) made the lock."""
    while frame is not None:
        owner = frame.f_locals.get("self")
        if owner is not None:
            for cls in type(owner).__mro__:
                if cls.__name__ in TRACKED:
                    return cls.__name__
        frame = frame.f_back
        if frame is not None and frame.f_code.co_filename == __file__:
            return None
    return None


class CountingLooks:
    """The test's adapter, counting the destination job's looks for its
    guest (each after a wake-up by the pool's timer, but the first); said
    shared with others, as a daemon is, so that the API follows its
    guests (guests.GuestWatch, on its lookout)."""

    shared_with_others = True

    def __init__(self, hv):
        self._hv = hv
        self.looks = threading.Semaphore(0)

    def __getattr__(self, name):
        return getattr(self._hv, name)

    def state_reason(self, vm_id):
        try:
            return self._hv.state_reason(vm_id)
        finally:
            self.looks.release()


class StreamReader(threading.Thread):
    """Reads the server's event stream until it ends."""

    def __init__(self, address):
        super().__init__(daemon=True)
        self.client = Client(address)
        self.stream = self.client.events()
        self.events = []
        self.start()

    def run(self):
        for notification in self.stream:
            self.events.append(notification)


def test_the_documented_order_is_the_order_taken(monkeypatch, make_api,
                                                 hypervisor, tmp_path,
                                                 host_b):  # noqa: F811
    seen, taken = set(), set()

    def make_lock():
        name = owner_name(sys._getframe(1))
        return _real_lock() if name is None else \
            RecordingLock(name, seen, taken)

    monkeypatch.setattr(threading, "Lock", make_lock)
    hv = CountingLooks(hypervisor)
    busy = new_id()
    gate, held = threading.Event(), threading.Event()

    def hold(job, step):   # holds busy's hibernation in its save
        if job.vm_id == busy and step == "save":
            held.set()
            assert gate.wait(WAIT)
    # Adaptive: a startup that ends is counted by the pool's admission,
    # which reads when the job started (never under the pool's lock).
    api = make_api(workers=2, adaptive=True, migration_check_interval=0.05,
                   hv=hv, step_hook=hold, max_outgoing=1,
                   listen=f"unix:{tmp_path}/a.sock")
    assert api.guests is not None
    # The event stream: the server's connection slots and streams.
    server = Server(api, api.config)
    server.start()
    reader = StreamReader(server.address)
    # A creation: its commit takes the registry's lock under the job's.
    vm_id = new_id()
    assert wait_job(api, api.VM.create(vm_id, vm_params(vm_id))[
        "jobId"])["status"] == "done"
    # A destination job parks (the timer, under the pool, under the job),
    # is woken by its poll a few times, then aborted.
    other = new_id()
    job_id = api.VM.migrationCreate(other, incoming(other))["params"][
        "jobId"]
    job = api.jobs.get(job_id)
    for _ in range(2):       # the first look, and one after a timer wake
        assert hv.looks.acquire(timeout=WAIT)
    # Refused: a VM busy with a job says which job, under the registry's
    # lock (a hostile-caller audit: naming a job took the job's lock
    # there, the reverse of a commit's order, and wedged the service).
    # Staged, its startup job parked:
    with pytest.raises(MigrateError):
        api.VM.hibernate(other, str(tmp_path / "other.state"))
    assert api.Job.abort(job_id) is True
    assert job.wait(WAIT) and job.status == "aborted"
    assert api.pool.wait_idle(WAIT)
    assert wait_job(api, api.VM.create(busy, vm_params(busy))[
        "jobId"])["status"] == "done"
    hibernation = api.VM.hibernate(busy, str(tmp_path / "busy.state"))[
        "jobId"]
    assert held.wait(WAIT)
    with pytest.raises(MigrateError):   # claimed by its hibernation
        api.VM.hibernate(busy, str(tmp_path / "again.state"))
    gate.set()
    assert wait_job(api, hibernation)["status"] == "done"
    # Two migrations out, one slot: the second waits for it, parked, and
    # is woken when the first ends (the test driver fails each transfer).
    other = new_id()
    assert wait_job(api, api.VM.create(other, vm_params(other))[
        "jobId"])["status"] == "done"
    migrations = [migrate(api, vm, host_b)["jobId"]
                  for vm in (vm_id, other)]
    for migration in migrations:
        assert wait_job(api, migration)["status"] == "failed"
    assert api.VM.destroy(vm_id) is True
    assert api.VM.destroy(other) is True
    server.stop()     # ends the stream
    reader.join(WAIT)
    assert not reader.is_alive()
    reader.client.close()
    assert reader.events, "the stream read nothing"

    documented = doc_pairs()
    assert documented == ALLOWED, "the test and the page disagree"
    assert seen <= ALLOWED, f"taken out of order: {seen - ALLOWED}"
    assert {("Job", "Pool"), ("Pool", "Timer"), ("Job", "VmRegistry"),
            ("Job", "Notifications"), ("VmRegistry", "Notifications"),
            ("Job", "Lookout"), ("Streams", "Notifications")} \
        <= seen, f"not exercised: {seen}"
    # The locks held alone were taken too: they met no other.
    assert TRACKED <= taken, f"never taken: {TRACKED - taken}"


def doc_pairs():
    """The (outer, inner) pairs of the tracked locks that the chains of
    docs/architecture.md's "Lock order" state (`A._lock` → `B._lock` →
    ...: every earlier one before every later one)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Lock order", 1)[1].split("\n## ", 1)[0]
    pairs = set()
    for chain in re.findall(r"(?:`[\w.]+\._lock`\s*→\s*)+`[\w.]+\._lock`",
                            section):
        names = [name.rsplit(".", 1)[-1]
                 for name in re.findall(r"`([\w.]+)\._lock`", chain)]
        for i, outer in enumerate(names):
            pairs.update((outer, inner) for inner in names[i + 1:]
                         if {outer, inner} <= TRACKED)
    return pairs
