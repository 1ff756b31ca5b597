"""Real live migration from private daemon A to private daemon B, vmjobs serving B: arrival by events, source abort, timeout, destroy, limit, refusal, ten at once."""

import threading
import time

import libvirt
import pytest

from conftest import StepGate, assert_quiet_and_clean, new_id, our_domains
from realdaemon import WAIT, real_params, wait_left
from vmjobs import domxml
from vmjobs.errors import MigrateError, MigrateLimit, NoVM
from workers.job import current_job

libvirt.registerErrorHandler(lambda ctx, err: None, None)

# The source domains are vmjobs domains, hence persistent on A: without
# UNDEFINE_SOURCE A would keep a shut-off definition of every VM it sent.
FLAGS = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER |
         libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
# Seconds B waits for an arrival in the timeout variant: well past the
# abort (about 1 s after VM.migrationCreate), short enough to wait out.
ARRIVAL_TIMEOUT = 6.0

_KINDS = ["DEFINED", "UNDEFINED", "STARTED", "SUSPENDED", "RESUMED",
          "STOPPED", "SHUTDOWN", "PMSUSPENDED", "CRASHED"]


def event_name(event, detail):
    """'STARTED/MIGRATED' for (VIR_DOMAIN_EVENT_STARTED, ..._MIGRATED)."""
    kind = _KINDS[event] if event < len(_KINDS) else str(event)
    prefix = f"VIR_DOMAIN_EVENT_{kind}_"
    details = [name[len(prefix):] for name in dir(libvirt)
               if name.startswith(prefix) and getattr(libvirt, name) == detail]
    return f"{kind}/{details[0] if details else detail}"


class Looks:
    """Wraps B's adapter's state_reason() on the instance, to see the
    migration jobs' own looks while they wait: `nothing(vm_id)` is set once
    a job looked and found no domain; `after(vm_id, event)` once a job looked
    after that event reached Watch (subscribed before the job, so called
    first)."""

    def __init__(self, hv):
        self._real = hv.state_reason
        hv.state_reason = self._state_reason
        self._lock = threading.Lock()   # guards the dicts below
        self._nothing = {}
        self._after = {}
        self._armed = {}   # vm_id -> Events the next look sets
        self.seen = {}     # vm_id -> states the job saw, in order

    def nothing(self, vm_id):
        with self._lock:
            return self._nothing.setdefault(vm_id, threading.Event())

    def after(self, vm_id, event):
        with self._lock:
            return self._after.setdefault((vm_id, event), threading.Event())

    def mark(self, vm_id, event):
        ready = self.after(vm_id, event)
        with self._lock:
            self._armed.setdefault(vm_id, []).append(ready)

    def _state_reason(self, uuid):
        job = current_job()
        ours = (job is not None and job.vm_id == uuid and
                job.info()["step"] == "wait-arrival")
        if ours:
            with self._lock:
                armed = self._armed.pop(uuid, [])
        state, reason = self._real(uuid)
        if ours:
            with self._lock:
                self.seen.setdefault(uuid, []).append(
                    state if reason is None else f"{state}/{reason}")
            if state is None:
                self.nothing(uuid).set()
            for ready in armed:
                ready.set()
        return state, reason


class Watch:
    """The lifecycle events of one domain as B's vmjobs receives them."""

    def __init__(self, hv, vm_id, looks=None):
        self._hv, self._vm_id, self._looks = hv, vm_id, looks
        self._lock = threading.Lock()   # guards events and _seen
        self.events = []
        self._seen = {}
        self._token = hv.subscribe(vm_id, self._on_event)

    def _on_event(self, event, detail):
        name = event_name(event, detail)
        if self._looks is not None:
            self._looks.mark(self._vm_id, name)
        with self._lock:
            self.events.append(name)
        self.seen(name).set()

    def seen(self, name):
        with self._lock:
            return self._seen.setdefault(name, threading.Event())

    def close(self):
        self._hv.unsubscribe(self._vm_id, self._token)


class Migration(threading.Thread):
    """dom.migrateToURI3 from A to B on a connection of its own."""

    def __init__(self, source, destination, vm_id, start_together=None,
                 max_speed=None):
        super().__init__(name=f"migrate-{vm_id[:8]}")
        self.source, self.destination, self.vm_id = source, destination, vm_id
        self.start_together = start_together
        self.max_speed = max_speed
        self.error = None
        self.seconds = None

    def run(self):
        conn = libvirt.open(self.source.uri)
        try:
            dom = conn.lookupByUUIDString(self.vm_id)
            if self.max_speed is not None:
                dom.migrateSetMaxSpeed(self.max_speed)
            if self.start_together is not None:
                self.start_together.wait(WAIT)
            started = time.monotonic()
            try:
                dom.migrateToURI3(
                    f"qemu+unix:///system?socket={self.destination.socket}",
                    {libvirt.VIR_MIGRATE_PARAM_URI: "tcp://127.0.0.1"},
                    FLAGS)
            except libvirt.libvirtError as exc:
                self.error = exc
            self.seconds = time.monotonic() - started
        finally:
            conn.close()

    def finish(self):
        self.join(WAIT)
        assert not self.is_alive(), "migrateToURI3 did not return"
        return self


@pytest.fixture
def connect():
    """connect(sandbox) -> a libvirt connection, closed after the test."""
    conns = []

    def open_connection(sandbox):
        conn = libvirt.open(sandbox.uri)
        conns.append(conn)
        return conn

    yield open_connection
    for conn in conns:
        conn.close()


def finished(api, job_id):
    assert api.jobs.get(job_id).wait(WAIT), f"job {job_id} did not end"
    return api.Host.getJobs(job_ids=[job_id])[job_id]


def source_vms(api_a, conn_a, count, **extra):
    """`count` VMs Up on A through vmjobs; {vm_id: migratable domain XML}."""
    vm_ids = [new_id() for _ in range(count)]
    jobs = [api_a.VM.create(vm_id, real_params(vm_id, **extra))["jobId"]
            for vm_id in vm_ids]
    for job_id in jobs:
        assert finished(api_a, job_id)["status"] == "done"
    return {vm_id: conn_a.lookupByUUIDString(vm_id).XMLDesc(
        libvirt.VIR_DOMAIN_XML_MIGRATABLE) for vm_id in vm_ids}


def incoming(vm_id, xml, **extra):
    return {"vmId": vm_id, "xml": xml, **extra}


def assert_nothing_left(api, sandbox):
    """Nothing staged, no domain at all (ours or not), no QEMU process."""
    assert_quiet_and_clean(api)
    assert api.Host.getVMList() == []
    assert api.hv.list_domains(domxml.METADATA_NS) == []
    assert sandbox.qemu_pids() == []


def end_source(api_a, daemon, vm_ids):
    """A's vmjobs has no migration-source flow here (libvirt migrates, not
    vmjobs): a VM that left A leaves A's vmjobs by itself, `Down`, as any
    guest gone outside vmjobs (guests.py); one still on A is destroyed
    through A's vmjobs. Then nothing is left on A."""
    conn = libvirt.open(daemon.uri)
    try:
        left = [vm_id for vm_id in vm_ids if gone_from(conn, vm_id)]
    finally:
        conn.close()
    wait_left(api_a, left)
    for vm_id in vm_ids:
        if vm_id not in left:
            assert api_a.VM.destroy(vm_id) is True
    assert_nothing_left(api_a, daemon)


def assert_committed(api, conn_b, vm_id, params):
    stats = api.VM.getStats(vm_id)
    assert (stats["status"], stats["staging"]) == ("Up", False)
    assert stats["params"] == params
    dom = conn_b.lookupByUUIDString(vm_id)
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert dom.isPersistent()
    assert domxml.read_metadata(api.hv.metadata(
        vm_id, domxml.METADATA_NS)) == (vm_id, params)
    config = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                          domxml.METADATA_NS, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    assert domxml.read_metadata(config) == (vm_id, params)


def gone_from(conn, vm_id):
    try:
        conn.lookupByUUIDString(vm_id)
    except libvirt.libvirtError as exc:
        return exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN
    return False


# -- arrival -------------------------------------------------------------

def test_live_migration_arrives_through_events(make_real_api, connect,
                                               daemon, daemon_b):
    api_a = make_real_api(sandbox=daemon)
    conn_a, conn_b = connect(daemon), connect(daemon_b)
    (vm_id, xml), = source_vms(api_a, conn_a, 1, owner="ops-a").items()
    # The safety-net lookup is an hour away: only an event can end the wait.
    api = make_real_api(sandbox=daemon_b, migration_check_interval=3600)
    looks = Looks(api.hv)
    watch = Watch(api.hv, vm_id, looks)
    params = incoming(vm_id, xml, owner="ops-b", cluster="c1")
    created = api.VM.migrationCreate(vm_id, params)
    job_id = created["params"]["jobId"]
    assert created == {"migrationPort": 0,
                       "params": {"vmId": vm_id,
                                  "status": "Migration Destination",
                                  "jobId": job_id}}
    assert looks.nothing(vm_id).wait(WAIT)
    info = api.Host.getJobs(job_ids=[job_id])[job_id]
    assert (info["job_type"], info["status"], info["step"]) == (
        "migration-destination", "running", "wait-arrival")
    assert api.VM.getStats(vm_id)["staging"] is True
    assert api.Host.getVMList() == []

    migration = Migration(daemon, daemon_b, vm_id)
    migration.start()
    assert migration.finish().error is None
    info = finished(api, job_id)
    assert (info["status"], info["step"]) == ("done", "commit"), info
    expected = {"vmId": vm_id, "owner": "ops-b", "cluster": "c1"}
    assert_committed(api, conn_b, vm_id, expected)
    assert api.Host.getVMList() == [vm_id]
    assert "RESUMED/MIGRATED" in watch.events
    assert gone_from(conn_a, vm_id) and daemon.qemu_pids() == []
    assert len(daemon_b.qemu_pids()) == 1
    print(f"migration {migration.seconds:.2f} s; job "
          f"{info['ended'] - info['started']:.2f} s; B events "
          f"{watch.events}; job's looks {looks.seen[vm_id]}; A's vmjobs "
          f"after: {api_a.Host.getVMList(fullStatus=True)}")
    watch.close()

    assert api.VM.destroy(vm_id) is True
    assert_nothing_left(api, daemon_b)
    end_source(api_a, daemon, [vm_id])


# -- the source aborts ---------------------------------------------------

@pytest.mark.parametrize("end", ["destroy", "timeout"])
def test_source_aborts_mid_migration(make_real_api, connect, daemon,
                                     daemon_b, end):
    """A aborts once B shows the incoming domain: the migration fails on A,
    which keeps running; B's job looks again after the domain stopped and
    keeps waiting, until VM.destroy (aborted) or its timeout (failed, 12).
    (For the timeout, B's job is held before its wait begins until A's
    abort is over: its clock then cannot run out first, however loaded
    the machine, and end the transfer from B's side instead.)"""
    api_a = make_real_api(sandbox=daemon)
    conn_a = connect(daemon)
    # 1 GiB at 1 MiB/s: mostly zero pages, so the transfer still takes only
    # about 2.5 s after B shows the domain, but the abort comes within ms.
    (vm_id, xml), = source_vms(api_a, conn_a, 1, memSize=1024).items()
    config = {"migration_check_interval": 3600}
    gate = StepGate("prepare") if end == "timeout" else None
    if end == "timeout":
        config["migration_destination_timeout"] = ARRIVAL_TIMEOUT
    api = make_real_api(sandbox=daemon_b, step_hook=gate, **config)
    looks = Looks(api.hv)
    watch = Watch(api.hv, vm_id, looks)   # before the job subscribes
    job_id = api.VM.migrationCreate(vm_id, incoming(vm_id, xml))[
        "params"]["jobId"]
    job = api.jobs.get(job_id)
    if gate is not None:
        assert gate.reached.wait(WAIT)
    else:
        assert looks.nothing(vm_id).wait(WAIT)

    migration = Migration(daemon, daemon_b, vm_id, max_speed=1)
    migration.start()
    assert watch.seen("STARTED/MIGRATED").wait(WAIT)
    conn_a.lookupByUUIDString(vm_id).abortJob()
    error = migration.finish().error
    # libvirt reports A's abort as such, or, when B's side notices the cut
    # stream before A's libvirt records the abort, as B's failure to load
    # it or as A's failure to write to the stream B closed (each seen once
    # in about 30 runs; libvirt's own race, not ours): the migration
    # failed on A either way, and nothing else may end it.
    assert error is not None
    assert error.get_error_code() == libvirt.VIR_ERR_OPERATION_ABORTED or \
        "load of migration failed" in str(error) or \
        "Unable to write to socket: Broken pipe" in str(error), error
    assert conn_a.lookupByUUIDString(vm_id).state()[0] == \
        libvirt.VIR_DOMAIN_RUNNING
    assert api_a.VM.getStats(vm_id)["status"] == "Up"

    assert watch.seen("STOPPED/FAILED").wait(WAIT)
    if gate is not None:
        gate.release.set()
    assert looks.after(vm_id, "STOPPED/FAILED").wait(WAIT)
    print(f"B events {watch.events}; job's looks {looks.seen[vm_id]}; "
          f"migrate call {migration.seconds:.2f} s")
    if end == "destroy":
        # The job saw the domain go and did not commit: it waits on.
        info = job.info()
        assert (info["status"], info["step"]) == ("running", "wait-arrival")
        stats = api.VM.getStats(vm_id)
        assert (stats["status"], stats["staging"]) == (
            "Migration Destination", True)
        assert [vm.vm_id for vm in api.registry.snapshot()[0]] == [vm_id]
        assert api.Host.getVMList() == []
        assert api.hv.state(vm_id) is None
        assert api.VM.destroy(vm_id) is True
        info = api.Host.getJobs(job_ids=[job_id])[job_id]
        assert (info["status"], info["step"]) == ("aborted", "wait-arrival")
        assert job.history() == ["pending", "running", "aborting", "aborted"]
    else:
        info = finished(api, job_id)
        assert (info["status"], info["step"]) == ("failed", "wait-arrival")
        assert info["error"]["code"] == 12
        assert "did not arrive" in info["error"]["message"]
        assert info["ended"] - info["started"] >= ARRIVAL_TIMEOUT - 0.1
        print(f"timed out after {info['ended'] - info['started']:.2f} s")
    watch.close()
    with pytest.raises(NoVM):
        api.VM.getStats(vm_id)
    assert_nothing_left(api, daemon_b)
    end_source(api_a, daemon, [vm_id])


def test_destination_destroyed_mid_migration(make_real_api, connect, daemon,
                                            daemon_b):
    """VM.destroy on B while the domain is there but not yet resumed: the
    job aborts and removes the incoming domain, the migration fails on A,
    and A keeps running."""
    api_a = make_real_api(sandbox=daemon)
    conn_a = connect(daemon)
    (vm_id, xml), = source_vms(api_a, conn_a, 1, memSize=1024).items()
    api = make_real_api(sandbox=daemon_b, migration_check_interval=3600)
    looks = Looks(api.hv)
    watch = Watch(api.hv, vm_id, looks)
    job_id = api.VM.migrationCreate(vm_id, incoming(vm_id, xml))[
        "params"]["jobId"]
    migration = Migration(daemon, daemon_b, vm_id, max_speed=1)
    migration.start()
    assert looks.after(vm_id, "STARTED/MIGRATED").wait(WAIT)
    assert api.VM.destroy(vm_id) is True
    info = api.Host.getJobs(job_ids=[job_id])[job_id]
    assert (info["status"], info["step"]) == ("aborted", "wait-arrival")
    assert migration.finish().error is not None
    assert conn_a.lookupByUUIDString(vm_id).state()[0] == \
        libvirt.VIR_DOMAIN_RUNNING
    assert watch.seen("STOPPED/DESTROYED").wait(WAIT)
    print(f"B events {watch.events}; job's looks {looks.seen[vm_id]}; A's "
          f"migrate call failed: {migration.error.get_error_code()} "
          f"{migration.error.get_error_message()}")
    watch.close()
    assert_nothing_left(api, daemon_b)
    end_source(api_a, daemon, [vm_id])


# -- the incoming limit --------------------------------------------------

def test_incoming_limit(make_real_api, connect, daemon, daemon_b):
    """Three VM.migrationCreate at once with room for two: one is refused
    at once and leaves nothing; the two others migrate for real; once they
    are in, the third is accepted and migrates too."""
    api_a = make_real_api(sandbox=daemon)
    conn_a, conn_b = connect(daemon), connect(daemon_b)
    xmls = source_vms(api_a, conn_a, 3)
    api = make_real_api(sandbox=daemon_b, max_incoming=2,
                        migration_check_interval=3600)
    barrier = threading.Barrier(len(xmls))
    lock = threading.Lock()   # guards answers
    answers = {}

    def request(vm_id):
        barrier.wait(WAIT)
        started = time.monotonic()
        try:
            answer = api.VM.migrationCreate(vm_id,
                                            incoming(vm_id, xmls[vm_id]))
        except MigrateLimit as exc:
            answer = exc
        with lock:
            answers[vm_id] = (answer, time.monotonic() - started)

    threads = [threading.Thread(target=request, args=(vm_id,))
               for vm_id in xmls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert len(answers) == 3
    refused = [vm_id for vm_id, (answer, _) in answers.items()
               if isinstance(answer, MigrateLimit)]
    accepted = [vm_id for vm_id in xmls if vm_id not in refused]
    assert len(refused) == 1, answers
    (third,) = refused
    error, seconds = answers[third]
    assert error.code == 82
    assert seconds < 2.0, seconds   # refused before any libvirt call
    assert {vm.vm_id for vm in api.registry.snapshot()[0]} == set(accepted)
    assert sorted(info["vm_id"] for info in api.Host.getJobs().values()) == \
        sorted(accepted)
    with pytest.raises(NoVM):
        api.VM.getStats(third)
    assert api.hv.state(third) is None

    migrations = [Migration(daemon, daemon_b, vm_id) for vm_id in accepted]
    for migration in migrations:
        migration.start()
    for migration in migrations:
        assert migration.finish().error is None
    for vm_id, (answer, _) in answers.items():
        if vm_id in accepted:
            info = finished(api, answer["params"]["jobId"])
            assert info["status"] == "done", info
            assert_committed(api, conn_b, vm_id, {"vmId": vm_id})
    assert api.hv.state(third) is None
    assert conn_a.lookupByUUIDString(third).state()[0] == \
        libvirt.VIR_DOMAIN_RUNNING

    job_id = api.VM.migrationCreate(third, incoming(third, xmls[third]))[
        "params"]["jobId"]
    migration = Migration(daemon, daemon_b, third)
    migration.start()
    assert migration.finish().error is None
    assert finished(api, job_id)["status"] == "done"
    assert sorted(api.Host.getVMList()) == sorted(xmls)
    assert conn_a.listAllDomains(0) == [] and daemon.qemu_pids() == []

    for vm_id in xmls:
        assert api.VM.destroy(vm_id) is True
    assert_nothing_left(api, daemon_b)
    end_source(api_a, daemon, xmls)


# -- a domain already here -----------------------------------------------

def test_domain_already_running_here_is_refused(make_real_api, connect,
                                                daemon_b):
    """Refused by the verb before it answers: code 12, no job, nothing
    staged, and the domain that runs on B is left exactly as it was."""
    api = make_real_api(sandbox=daemon_b)
    conn_b = connect(daemon_b)
    vm_id = new_id()
    xml = (f"<domain type='qemu'><name>here-{vm_id[:8]}</name>"
           f"<uuid>{vm_id}</uuid><memory unit='MiB'>48</memory>"
           "<os><type arch='x86_64' machine='pc'>hvm</type></os>"
           "<devices><serial type='pty'/><memballoon model='none'/>"
           "</devices></domain>")
    dom = conn_b.defineXML(xml)
    dom.create()
    before = dom.XMLDesc(0)
    pids = daemon_b.qemu_pids()
    assert len(pids) == 1

    with pytest.raises(MigrateError) as err:
        api.VM.migrationCreate(vm_id, incoming(vm_id, xml, owner="ops"))
    assert err.value.code == 12
    assert "already exists" in str(err.value)
    assert api.Host.getJobs() == {}
    assert api.registry.snapshot()[0] == [] and api.Host.getVMList() == []
    with pytest.raises(NoVM):
        api.VM.getStats(vm_id)
    assert api.pool.wait_idle(WAIT)
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert dom.isPersistent()
    assert dom.XMLDesc(0) == before
    assert daemon_b.qemu_pids() == pids
    assert our_domains(api.hv) == []   # not made ours either

    dom.destroy()
    dom.undefine()
    assert_nothing_left(api, daemon_b)


# -- ten at once ---------------------------------------------------------

VMS = 10


def test_ten_live_migrations_at_once(make_real_api, connect, daemon,
                                     daemon_b):
    api_a = make_real_api(sandbox=daemon)
    conn_a, conn_b = connect(daemon), connect(daemon_b)
    xmls = source_vms(api_a, conn_a, VMS)
    # Each waiting migration holds a worker.
    api = make_real_api(sandbox=daemon_b, workers=VMS + 2, max_incoming=VMS,
                        migration_check_interval=3600)
    looks = Looks(api.hv)
    job_ids = {vm_id: api.VM.migrationCreate(vm_id, incoming(
        vm_id, xml, batch="ten"))["params"]["jobId"]
        for vm_id, xml in xmls.items()}
    for vm_id in xmls:
        assert looks.nothing(vm_id).wait(WAIT)
    assert len(api.registry.snapshot()[0]) == VMS

    barrier = threading.Barrier(VMS)
    migrations = [Migration(daemon, daemon_b, vm_id, start_together=barrier)
                  for vm_id in xmls]
    started = time.monotonic()
    for migration in migrations:
        migration.start()
    for migration in migrations:
        assert migration.finish().error is None, migration.error
    for job_id in job_ids.values():
        info = finished(api, job_id)
        assert (info["status"], info["step"]) == ("done", "commit"), info
    elapsed = time.monotonic() - started
    for vm_id in xmls:
        assert_committed(api, conn_b, vm_id, {"vmId": vm_id, "batch": "ten"})
    assert sorted(api.Host.getVMList()) == sorted(xmls)
    assert {s["status"] for s in api.Host.getAllVmStats()} == {"Up"}
    assert len(daemon_b.qemu_pids()) == VMS
    assert conn_a.listAllDomains(0) == [] and daemon.qemu_pids() == []
    print(f"{VMS} migrations in {elapsed:.2f} s (each "
          f"{min(m.seconds for m in migrations):.2f}-"
          f"{max(m.seconds for m in migrations):.2f} s)")

    for vm_id in xmls:
        assert api.VM.destroy(vm_id) is True
    assert_nothing_left(api, daemon_b)
    end_source(api_a, daemon, xmls)
