"""Migration ends are atomic across both hosts, on two private libvirtds
(issue 24, holes 3 and 4): once the transfer has completed, an abort of
the destination's job cannot leave the guest unlisted; a migration that
fails after the source's vCPUs were stopped leaves the guest running on
the source."""

import contextlib
import logging
import os
import threading

import libvirt
import pytest

from conftest import AtStep, StepGate, new_id
from faults import FaultyHypervisor
from realdaemon import WAIT, real_params
from vmjobs import domxml
from vmjobs.api import API
from vmjobs.config import Config
from vmjobs.errors import NoVM
from vmjobs.hypervisor import Activity, Hypervisor, HypervisorError
from vmjobs.server import Server
from waits import until_notified


def finished(api, job_id):
    assert api.jobs.get(job_id).wait(WAIT)
    return api.Host.getJobs(job_ids=[job_id])[job_id]


def serve_b(daemon_b, tmp_path, hypervisor=None):
    """A vmjobs host on the second daemon, served on a socket (on
    `hypervisor` if given); `gate` holds its jobs at a step when set.
    Yields it, then stops it and empties the daemon."""
    holder = {"gate": None}

    def hook(job, step):
        if holder["gate"] is not None:
            holder["gate"](job, step)

    api = API(Config(uri=daemon_b.uri, workers=2, domain_type="qemu",
                     listen=f"unix:{tmp_path}/b.sock"), step_hook=hook,
              hypervisor=hypervisor)
    server = Server(api, api.config)
    server.start()
    api.address = server.address
    api.holder = holder
    yield api
    server.stop()
    api.close()
    daemon_b.remove_all_domains()


@pytest.fixture
def host_b(daemon_b, tmp_path):
    yield from serve_b(daemon_b, tmp_path)


@pytest.fixture
def b_paused_in_its_end_check(daemon_b, tmp_path):
    """host_b, whose destination job's end answers its look for what
    arrived only once `hv.release` is set (`hv.hanging`: it looked)."""
    hv = Hypervisor(daemon_b.uri, domain_type="qemu")
    faulty = FaultyHypervisor(hv, fail_at=1, fail_calls=("state_reason",),
                              kind="pause-after", within="_remove_unarrived")
    try:
        yield from serve_b(daemon_b, tmp_path, hypervisor=faulty)
    finally:
        faulty.release.set()
        hv.close()


def migrate(api, vm_id, host_b, daemon_b):
    return api.VM.migrate(vm_id, {
        "dst": host_b.address,
        "dstUri": f"qemu+unix:///system?socket={daemon_b.socket}",
        "migrationUri": "tcp://127.0.0.1"})["jobId"]


def up_vm(api):
    vm_id = new_id()
    assert finished(api, api.VM.create(
        vm_id, real_params(vm_id, memSize=32))["jobId"])["status"] == "done"
    return vm_id


def sockets(tmp_path, daemon_b):
    """Where VM.migrate may name unix sockets: the destination service's
    (in tmp_path) and its libvirtd's."""
    return [str(tmp_path), os.path.dirname(daemon_b.socket)]


@contextlib.contextmanager
def faulty_source(daemon, daemon_b, tmp_path, faulty):
    """(api, hv): an API on A whose adapter is `faulty(hv)`, a fault made
    over the real adapter `hv`; both closed after, and A's domains
    removed."""
    hv = Hypervisor(daemon.uri, domain_type="qemu")
    try:
        api = API(Config(uri=daemon.uri, workers=2, domain_type="qemu",
                         state_dirs=[str(tmp_path)],
                         migration_socket_dirs=sockets(tmp_path, daemon_b)),
                  hypervisor=faulty(hv))
        try:
            yield api, hv
        finally:
            api.close()
    finally:
        hv.close()
        daemon.remove_all_domains()


def assert_only_on_b(vm_id, host_b, source_hv):
    """The VM is public on B only, its guest running there, and no domain
    of it is left on the source."""
    assert host_b.VM.getStats(vm_id)["status"] == "Up"
    assert host_b.hv.state(vm_id) == "running"
    assert source_hv.state(vm_id) is None


def assert_migrated_to_b(api, vm_id, host_b, daemon_b, source_hv):
    """A migration of the VM to B, through a faulty source, ends done: the
    VM only on B (assert_only_on_b), listed on the source no more; then
    destroyed on B."""
    info = finished(api, migrate(api, vm_id, host_b, daemon_b))
    assert info["status"] == "done", info
    assert_only_on_b(vm_id, host_b, source_hv)
    assert api.Host.getVMList() == []
    assert host_b.VM.destroy(vm_id) is True


def test_an_abort_of_the_destination_after_the_transfer_lists_the_guest(
        make_real_api, host_b, daemon_b, tmp_path):
    a = make_real_api(migration_socket_dirs=sockets(tmp_path, daemon_b))
    vm_id = up_vm(a)
    gate = StepGate("persist")   # B's job: arrived, not committed yet
    host_b.holder["gate"] = gate
    job_id = migrate(a, vm_id, host_b, daemon_b)
    assert gate.reached.wait(WAIT)
    assert host_b.Job.abort(gate.job.id) is True
    gate.release.set()
    # (The source's job ends once B lists the VM: see the next test.)
    source = finished(a, job_id)
    assert source["status"] == "done", source
    dest = finished(host_b, gate.job.id)
    assert dest["status"] == "failed", dest
    assert "too late to abort" in dest["error"]["message"]
    # Public on exactly one host, and running there.
    assert_only_on_b(vm_id, host_b, a.hv)
    assert vm_id not in a.Host.getVMList()
    host_b.VM.destroy(vm_id)


def test_the_source_ends_once_the_destination_lists_the_vm(
        make_real_api, host_b, daemon_b, tmp_path):
    """API.md: when the source's job has ended, the VM is public on
    exactly one of the two hosts. The source's job ended as libvirt's
    migration call returned, while the destination's job had yet to commit
    the VM (held here at its commit step; on a busy host, waiting for a
    worker): for that while the VM was public on neither host. Now the
    source's job ends once the destination lists it."""
    a = make_real_api(migration_socket_dirs=sockets(tmp_path, daemon_b))
    vm_id = up_vm(a)
    gate = StepGate("commit")    # B's job: arrived and persisted
    host_b.holder["gate"] = gate
    job_id = migrate(a, vm_id, host_b, daemon_b)
    assert gate.reached.wait(WAIT)
    # A bounded look: before, the source's job ended at once here.
    ended_meanwhile = a.jobs.get(job_id).wait(2.0)
    listed_on_b = vm_id in host_b.Host.getVMList()
    gate.release.set()
    assert not ended_meanwhile and not listed_on_b
    source = finished(a, job_id)
    assert source["status"] == "done", source
    assert vm_id in host_b.Host.getVMList()
    assert vm_id not in a.Host.getVMList()
    host_b.VM.destroy(vm_id)


def stop_vcpus_as_a_switch_over_does(hv, vm_id, path):
    """Leave the domain as a migration aborted after its switch-over began
    leaves it on the source: paused, reason MIGRATION, no job (a restore
    with SAVE_PAUSED gives exactly that state, measured)."""
    with hv.connection() as conn:
        conn.lookupByUUIDString(vm_id).save(path)
        conn.restoreFlags(path, None, libvirt.VIR_DOMAIN_SAVE_PAUSED)
    assert hv.state_reason(vm_id) == ("paused", "migration")
    assert hv.activity(vm_id) is Activity.SETTLED


class _FailsAfterSwitchOver(FaultyHypervisor):
    """The real adapter, except that the migration call stops the
    domain's vCPUs as a switch-over does, then fails as libvirt does when
    the destination's domain is removed meanwhile (hole 4)."""

    def __init__(self, real, path):
        super().__init__(real, fail_calls=())
        self._path = path

    def migrate(self, uuid, *args, **kwargs):
        stop_vcpus_as_a_switch_over_does(self._real, uuid, self._path)
        raise HypervisorError("migrate", libvirt.VIR_ERR_OPERATION_FAILED,
                              "domain disappeared on the destination")


def test_a_migration_failed_after_the_switch_over_leaves_the_guest_running(
        daemon, host_b, daemon_b, tmp_path):
    with faulty_source(daemon, daemon_b, tmp_path, lambda hv:
                       _FailsAfterSwitchOver(hv, str(tmp_path / "s"))) \
            as (api, hv):
        vm_id = up_vm(api)
        info = finished(api, migrate(api, vm_id, host_b, daemon_b))
        assert info["status"] == "failed", info
        assert "disappeared" in info["error"]["message"]
        assert api.VM.getStats(vm_id)["status"] == "Up"
        assert hv.state_reason(vm_id) == ("running", None)
        assert host_b.Host.getVMList() == []
        api.VM.destroy(vm_id)


class _LosesItsDaemonAfterTheGuestArrived(FaultyHypervisor):
    """The real adapter, except that the migration call completes (the
    guest arrives on B and B's job commits it), and then fails as when
    A's libvirtd is killed -9 in the migration's Confirm: the source's
    QEMU is killed but its definition stays (seed 3403 of the operator
    mix, round 13: libvirtd_kill9 of the source 0.5 s into a migration)."""

    def __init__(self, real, host_b):
        super().__init__(real, fail_calls=())
        self._host_b = host_b

    def migrate(self, uuid, *args, **kwargs):
        with self._real.connection() as conn:
            xml = conn.lookupByUUIDString(uuid).XMLDesc(
                libvirt.VIR_DOMAIN_XML_INACTIVE |
                libvirt.VIR_DOMAIN_XML_SECURE)
        self._real.migrate(uuid, *args, **kwargs)
        wait_listed(self._host_b, uuid)
        self._real.define(xml)
        raise HypervisorError("migrate", libvirt.VIR_ERR_INTERNAL_ERROR,
                              "End of file while reading data: "
                              "Input/output error")


def test_a_migration_whose_call_failed_after_the_guest_arrived_keeps_it(
        daemon, host_b, daemon_b, tmp_path):
    """The source's migration call fails after B's job committed the
    guest, the source's domain still defined (libvirt, restarted, had not
    finished it, or leaves it to a third party in its phase
    PERFORM3_DONE). The job took the domain still here for a migration
    that did not happen: its rollback destroyed the guest on B, its only
    copy, and the VM was public on neither host. B's listing is the
    evidence that it arrived: the job ends done, A's copy removed."""
    with faulty_source(daemon, daemon_b, tmp_path, lambda hv:
                       _LosesItsDaemonAfterTheGuestArrived(hv, host_b)) \
            as (api, hv):
        vm_id = up_vm(api)
        assert_migrated_to_b(api, vm_id, host_b, daemon_b, hv)


class _FailsWhileTheDestinationCommits(FaultyHypervisor):
    """As _LosesItsDaemonAfterTheGuestArrived, but the call fails while
    B's job holds the arrived guest at its step persist (`gate`): libvirt's
    Finish has succeeded there, and B does not list the VM yet (round 13's
    window left open: a few milliseconds between the event and the
    commit on a worker)."""

    def __init__(self, real, gate):
        super().__init__(real, fail_calls=())
        self._gate = gate

    def migrate(self, uuid, *args, **kwargs):
        with self._real.connection() as conn:
            xml = conn.lookupByUUIDString(uuid).XMLDesc(
                libvirt.VIR_DOMAIN_XML_INACTIVE |
                libvirt.VIR_DOMAIN_XML_SECURE)
        self._real.migrate(uuid, *args, **kwargs)
        assert self._gate.reached.wait(WAIT)
        self._real.define(xml)
        raise HypervisorError("migrate", libvirt.VIR_ERR_INTERNAL_ERROR,
                              "End of file while reading data: "
                              "Input/output error")


class HeldUntilAborted(StepGate):
    """A StepGate whose job goes on once something aborts it (a
    VM.destroy or a Job.abort of the held job), whoever it is."""

    def __call__(self, job, step):
        if step == self.step and self.job is None:
            abort = job.abort

            def abort_and_release():
                try:
                    abort()
                finally:
                    self.release.set()
            job.abort = abort_and_release
        super().__call__(job, step)


def test_a_migration_whose_call_failed_while_the_guest_arrived_keeps_it(
        daemon, host_b, daemon_b, tmp_path):
    """The source's call fails once libvirt's Finish succeeded on B, while
    B's job has yet to commit the guest (held at its step persist): B
    lists it staged. The source took "not listed" for "not arrived": its
    rollback's VM.destroy on B aborted B's job, which committed the
    arrived guest all the same (too late to abort), and then destroyed
    it; A's copy is stopped (libvirtd killed in Confirm): the guest was
    nowhere. A staged VM is arriving, not absent: the source has B's job
    settle it (Job.abort: B's rule commits an arrived guest and removes
    one still in transfer) and reads what B lists then."""
    gate = HeldUntilAborted("persist")
    host_b.holder["gate"] = gate
    with faulty_source(daemon, daemon_b, tmp_path, lambda hv:
                       _FailsWhileTheDestinationCommits(hv, gate)) \
            as (api, hv):
        try:
            vm_id = up_vm(api)
            assert_migrated_to_b(api, vm_id, host_b, daemon_b, hv)
        finally:
            gate.release.set()


class _UndefinedThenStoppedAtMigrate(FaultyHypervisor):
    """The real adapter, except that at the migration call, after the
    job's persist, an operator undefines the running domain (virsh
    undefine: transient) and its guest then stops (a crash, the OOM
    killer): a transient domain stopped is gone, before libvirt migrates
    anything."""

    def migrate(self, uuid, *args, **kwargs):
        with self._real.connection() as conn:
            dom = conn.lookupByUUIDString(uuid)
            dom.undefine()
            dom.destroy()
        return self._real.migrate(uuid, *args, **kwargs)


def test_an_undefine_after_the_persist_of_a_migration_is_read_right(
        daemon, host_b, daemon_b, tmp_path):
    """Round 13 made the domain persistent before the migration, so that
    a guest that stops is shut off, not gone; an undefine between that
    persist and the migration call left the window open: the call failed
    with the domain gone, taken for "it left", the job ended done, the
    VM public on neither host, and B's staged copy waited for it until
    B's arrival timeout. Gone is a migration only if B says so: here B
    holds nothing once its job settled, the job fails, B keeps nothing,
    and the VM leaves here, Down (its guest stopped). The control of a domain
    gone because it migrated is every other migration test."""
    with faulty_source(daemon, daemon_b, tmp_path, lambda hv:
                       _UndefinedThenStoppedAtMigrate(hv, fail_calls=())) \
            as (api, hv):
        vm_id = up_vm(api)
        info = finished(api, migrate(api, vm_id, host_b, daemon_b))
        assert info["status"] == "failed", info
        assert "is kept" not in info["error"]["message"], info
        with pytest.raises(NoVM):
            host_b.VM.getStats(vm_id)
        assert host_b.hv.state(vm_id) is None
        assert all(job["status"] != "running" for job in
                   host_b.Host.getJobs().values())
        # Its guest stopped: it leaves, Down (guests.py).
        until_notified(api, lambda: vm_id not in api.Host.getVMList(),
                       f"{vm_id} Down", WAIT)
        with pytest.raises(NoVM):
            api.VM.getStats(vm_id)
        assert hv.state(vm_id) is None


def test_a_user_pause_is_never_resumed(make_real_api):
    # The positive control of the rule above: a VM its user paused stays
    # paused (only a migration's stop of the vCPUs is undone).
    api = make_real_api()
    vm_id = up_vm(api)
    with api.hv.connection() as conn:
        conn.lookupByUUIDString(vm_id).suspend()
    assert api.hv.resume_if_stopped_by_migration(vm_id) is False
    assert api.hv.state_reason(vm_id) == ("paused", "other")
    api.VM.destroy(vm_id)


def test_a_destroy_too_late_for_a_migration_says_the_vm_left(
        make_real_api, host_b, daemon_b, tmp_path):
    """VM.destroy while the migration commits, past its switch-over: the
    abort comes too late, the VM runs on B, and the destroy says so
    (noVM: not here, not destroyed). It answered true, as if the guest were
    gone, while it ran Up on B (a chaos run)."""
    answers = []

    def destroy_at_commit(job, step):
        if step != "commit" or job.job_type != "migration-source" or \
                answers:
            return

        def destroy():
            try:
                answers.append(a.VM.destroy(job.vm_id))
            except NoVM as exc:
                answers.append(exc)
        answers.append(threading.Thread(target=destroy))
        answers[0].start()
        assert job.wait_abort_requested(WAIT)
    a = make_real_api(migration_socket_dirs=sockets(tmp_path, daemon_b),
                      step_hook=destroy_at_commit)
    vm_id = up_vm(a)
    source = finished(a, migrate(a, vm_id, host_b, daemon_b))
    assert source["status"] == "failed", source
    assert "too late to abort" in source["error"]["message"], source
    answers[0].join(WAIT)
    answer = answers[1]
    assert isinstance(answer, NoVM), answer
    assert "was not destroyed" in str(answer)
    assert_only_on_b(vm_id, host_b, a.hv)
    assert host_b.VM.destroy(vm_id) is True


def wait_listed(api, vm_id):
    """VM `vm_id`'s status once it is public on `api`'s host."""
    until_notified(api, lambda: vm_id in api.Host.getVMList(),
                   f"listed {vm_id}", WAIT)
    return api.VM.getStats(vm_id)["status"]


def wait_status(api, vm_id, status):
    until_notified(api, lambda: api.VM.getStats(vm_id)["status"] == status,
                   f"{vm_id} {status}", WAIT)


class LogSeen(logging.Handler):
    """Set once logger `name` logged a record that names `word`."""

    def __init__(self, name, word):
        super().__init__()
        self.word = word
        self.seen = threading.Event()
        self.logger = logging.getLogger(name)

    def emit(self, record):
        if self.word in record.getMessage():
            self.seen.set()

    def __enter__(self):
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc_info):
        self.logger.removeHandler(self)


def held_at_migrate(make_real_api, daemon_b, tmp_path):
    """(host A, whose migrations are held at step migrate by `gate`, the
    gate, a VM up on A)."""
    gate = StepGate("migrate")
    a = make_real_api(migration_socket_dirs=sockets(tmp_path, daemon_b),
                      step_hook=gate)
    return a, gate, up_vm(a)


def abort_the_destination_while_held(a, gate, vm_id, host_b, daemon_b):
    """VM.migrate of `vm_id` from A, held at step migrate, and B's job for
    it aborted meanwhile, once it waits for the guest (step wait-arrival):
    (A's job id, B's job id). B answered VM.migrationCreate once its job
    was queued, and A goes on to step migrate then: aborted while still
    queued, B's job would run its end in the caller of Job.abort (here,
    the test's thread), not in B's worker."""
    waiting = AtStep("wait-arrival")
    host_b.holder["gate"] = waiting
    job_id = migrate(a, vm_id, host_b, daemon_b)
    assert gate.reached.wait(WAIT)
    assert waiting.reached.wait(WAIT)
    incoming = waiting.job.id
    assert host_b.Job.abort(incoming) is True
    return job_id, incoming


@pytest.mark.parametrize("status", ["Up", "Paused"])
def test_a_guest_arriving_after_the_destinations_job_ended_is_listed_there(
        make_real_api, host_b, daemon_b, tmp_path, status):
    """B's job is aborted while A holds its migration between B's answer
    and libvirt's migrate; then A's libvirtd sends the guest all the same
    (a destination libvirtd takes it without asking vmjobs), and A's job
    ends done. The guest arrives on B carrying A's vmjobs metadata, and B
    adopts it (a recover job): public on B, as the engine was told. It
    ran in no registry on B, public on neither host, until a restart's
    recovery or a VM.destroy."""
    a, gate, vm_id = held_at_migrate(make_real_api, daemon_b, tmp_path)
    if status == "Paused":
        with a.hv.connection() as conn:
            conn.lookupByUUIDString(vm_id).suspend()
        wait_status(a, vm_id, "Paused")
    job_id, incoming = abort_the_destination_while_held(
        a, gate, vm_id, host_b, daemon_b)
    assert finished(host_b, incoming)["status"] == "aborted"
    assert host_b.hv.state(vm_id) is None
    gate.release.set()
    source = finished(a, job_id)
    assert source["status"] == "done", source
    assert vm_id not in a.Host.getVMList() and a.hv.state(vm_id) is None
    assert wait_listed(host_b, vm_id) == status
    adopted, = host_b.Host.getJobs(job_type="recover").values()
    assert adopted["status"] == "done", adopted
    assert host_b.VM.getStats(vm_id)["params"] == real_params(
        vm_id, memSize=32)
    stats = host_b.Host.getStats()
    assert (stats["unowned_domains"], stats["external_domains"]) == (0, 0)
    assert host_b.VM.destroy(vm_id) is True
    assert host_b.hv.state(vm_id) is None


def test_a_late_guest_without_vmjobs_metadata_is_not_adopted(
        make_real_api, host_b, daemon_b, tmp_path):
    """The positive control's refusal: the same late arrival, its mark
    taken off on A before the transfer (a source that is not vmjobs), is
    left alone on B: not ours (external), never listed."""
    a, gate, vm_id = held_at_migrate(make_real_api, daemon_b, tmp_path)
    job_id, incoming = abort_the_destination_while_held(
        a, gate, vm_id, host_b, daemon_b)
    assert finished(host_b, incoming)["status"] == "aborted"
    with a.hv.connection() as conn:
        conn.lookupByUUIDString(vm_id).setMetadata(
            libvirt.VIR_DOMAIN_METADATA_ELEMENT, None, None,
            domxml.METADATA_NS, libvirt.VIR_DOMAIN_AFFECT_LIVE |
            libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    with LogSeen("vmjobs.arrivals", vm_id) as look:
        gate.release.set()
        assert finished(a, job_id)["status"] == "done"
        # The late arrival was looked at and left alone (the look's last
        # word is its log line).
        assert look.seen.wait(WAIT)
    assert host_b.hv.state(vm_id) == "running"
    assert host_b.Host.getVMList() == []
    assert host_b.Host.getJobs(job_type="recover") == {}
    stats = host_b.Host.getStats()
    assert (stats["unowned_domains"], stats["external_domains"]) == (0, 1)


def test_a_guest_arriving_while_the_destinations_job_ends_is_kept(
        make_real_api, b_paused_in_its_end_check, daemon_b, tmp_path):
    """The window in the end of B's job between its look ("nothing has
    arrived") and its removal of what has the UUID: the whole transfer
    completes in it (A's libvirtd migrates after B's look). The removal
    destroyed the guest's only copy (A's job ended done, the guest ran
    nowhere); now what the look did not see is not removed, and the late
    arrival is adopted."""
    host_b = b_paused_in_its_end_check
    a, gate, vm_id = held_at_migrate(make_real_api, daemon_b, tmp_path)
    job_id, incoming = abort_the_destination_while_held(
        a, gate, vm_id, host_b, daemon_b)
    assert host_b.hv.hanging.wait(WAIT)   # B's end looked: nothing here
    gate.release.set()
    source = finished(a, job_id)
    assert source["status"] == "done", source
    assert host_b.hv.state(vm_id) == "running"   # arrived meanwhile
    host_b.hv.release.set()
    assert finished(host_b, incoming)["status"] == "aborted"
    assert host_b.hv.state(vm_id) == "running"
    assert wait_listed(host_b, vm_id) == "Up"
    assert a.hv.state(vm_id) is None
    assert host_b.VM.destroy(vm_id) is True


class HoldingAll:
    """A step hook that holds every job reaching `step` until `release`
    is set; wait_held(n) returns once n jobs are held."""

    def __init__(self, step):
        self.step = step
        self.release = threading.Event()
        self._held = threading.Condition()   # guards held
        self.held = 0

    def __call__(self, job, step):
        if step != self.step:
            return
        with self._held:
            self.held += 1
            self._held.notify_all()
        assert self.release.wait(WAIT), "never released"

    def wait_held(self, count):
        with self._held:
            return self._held.wait_for(lambda: self.held >= count, WAIT)


def test_a_guest_arriving_after_the_destinations_job_was_aborted_queued(
        make_real_api, host_b, daemon_b, tmp_path):
    """B's job aborted while still queued (both of B's workers busy) ends
    in the aborting caller's thread, not on a worker: that end, too, must
    leave the guest's late arrival to be adopted once it comes, and the
    adoption waits its turn for a worker like any job."""
    a, gate, vm_id = held_at_migrate(make_real_api, daemon_b, tmp_path)
    busy = HoldingAll("prepare")
    host_b.holder["gate"] = busy
    for _ in range(2):
        other = new_id()
        host_b.VM.create(other, real_params(other, memSize=32))
    assert busy.wait_held(2)
    job_id = migrate(a, vm_id, host_b, daemon_b)
    assert gate.reached.wait(WAIT)
    incoming, = host_b.Host.getJobs(
        job_type="migration-destination").values()
    assert incoming["status"] == "pending", incoming
    assert host_b.Job.abort(incoming["id"]) is True
    assert finished(host_b, incoming["id"])["status"] == "aborted"
    assert host_b.hv.state(vm_id) is None
    gate.release.set()
    assert finished(a, job_id)["status"] == "done"
    busy.release.set()
    assert wait_listed(host_b, vm_id) == "Up"
    adopted, = host_b.Host.getJobs(job_type="recover").values()
    assert adopted["status"] == "done", adopted
    assert a.hv.state(vm_id) is None
    assert host_b.VM.destroy(vm_id) is True
