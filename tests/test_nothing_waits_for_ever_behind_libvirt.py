"""Nothing waits for ever behind libvirt (issue 24, hole 2): a migration that
libvirt does not end after its abort (a source QEMU stuck in `cancelling`,
which cannot be provoked on demand) fails its job after a bound, and
VM.destroy destroys a VM whose job does not end, by force. The migration
call is held by the fault-injecting adapter (tests/faults.py, "hang"): an
abort of libvirt's job then ends nothing, as with the stuck QEMU."""

import os
import threading
import uuid

import pytest

from conftest import WAIT, wait_job
from faults import FaultyHypervisor
from test_migration_source import destination_jobs, host_b, migrate, up_vm  # noqa: F401
from vmjobs import destroy as destroy_module
from vmjobs.api import API
from vmjobs.config import Config
from vmjobs.errors import GeneralException, NoVM
from vmjobs.flows.outgoing import MigrationSourceJob
from vmjobs.hypervisor import ConnectionLost
from waits import until_domain_state


def sockets_of(host):
    """Where the destination service listens: VM.migrate names it there."""
    return os.path.dirname(host.address[len("unix:"):])


@pytest.fixture
def stuck_migrate(hypervisor):
    faulty = FaultyHypervisor(hypervisor, fail_calls=("migrate",),
                              kind="hang")
    yield faulty
    faulty.release.set()


def test_a_migration_libvirt_cannot_cancel_fails_after_a_bound(
        stuck_migrate, host_b, monkeypatch):  # noqa: F811
    monkeypatch.setattr(MigrationSourceJob, "cancel_timeout", 0.5)
    with API(Config(workers=2, migration_socket_dirs=[sockets_of(host_b)]),
             hypervisor=stuck_migrate) as api:
        vm_id = up_vm(api)
        stuck_migrate.arm(1)
        job_id = migrate(api, vm_id, host_b)["jobId"]
        assert stuck_migrate.hanging.wait(60)
        assert api.Job.abort(job_id) is True
        info = wait_job(api, job_id)
        assert (info["status"], info["step"]) == ("failed", "migrate"), info
        assert "did not end the migration" in info["error"]["message"]
        # The documented state: the VM stays listed here, its domain as it
        # is; the destination's copy is destroyed.
        assert api.VM.getStats(vm_id)["status"] == "Up"
        assert api.hv.state(vm_id) == "running"
        assert destination_jobs(host_b)[vm_id]["status"] == "aborted"
        assert host_b.Host.getVMList() == []
        stuck_migrate.release.set()
        assert api.VM.destroy(vm_id) is True


def test_a_migration_given_up_keeps_its_slot_until_libvirts_call_returns(
        stuck_migrate, host_b, monkeypatch):  # noqa: F811
    """A hostile-caller audit, round 13 (what a caller makes the service
    hold): libvirt's migration call holds a connection of its own
    (Connections.own: a socket and an eventfd) and a thread for as long as
    it lasts, and `migration.max_outgoing` is what bounds them. A job
    that gave up on a migration libvirt did not end (cancel_timeout) gave
    its slot to the next at once, while its call still ran: with
    max_outgoing 1, a second VM's migration called libvirt beside the
    first (it failed at once on the test driver: step migrate), and each
    migration so given up would hold one more. Now the slot is left when
    libvirt's call returns: the next migration waits its turn meanwhile,
    parked in wait-slot, then runs."""
    monkeypatch.setattr(MigrationSourceJob, "cancel_timeout", 0.5)
    with API(Config(workers=2, max_outgoing=1,
                    migration_socket_dirs=[sockets_of(host_b)]),
             hypervisor=stuck_migrate) as api:
        first, second = up_vm(api), up_vm(api)
        stuck_migrate.arm(1)
        first_job = migrate(api, first, host_b)["jobId"]
        assert stuck_migrate.hanging.wait(60)
        assert api.Job.abort(first_job) is True
        assert wait_job(api, first_job)["status"] == "failed"
        second_job = migrate(api, second, host_b)["jobId"]
        # Parked, nothing running: in its turn's wait; or (before) ended.
        assert api.pool.wait_stats(lambda stats: (
            stats["parked"], stats["running"]) == (1, 0) or
            stats["failed"] == 2, 60), api.pool.stats()
        info = api.Host.getJobs(job_ids=[second_job])[second_job]
        assert (info["status"], info["step"]) == ("running", "wait-slot")
        assert stuck_migrate.calls == ["migrate"]
        # The first call returns: the second migration gets its turn (the
        # test driver cannot migrate: it fails in its transfer).
        stuck_migrate.release.set()
        info = wait_job(api, second_job)
        assert (info["status"], info["step"]) == ("failed", "migrate")
        assert stuck_migrate.calls == ["migrate", "migrate"]
        for vm_id in (first, second):
            assert api.VM.destroy(vm_id) is True


@pytest.fixture
def stuck_vm(stuck_migrate, host_b, monkeypatch):  # noqa: F811
    """(api, vm_id, job_id): a VM whose migration job waits in libvirt for
    an hour (an abort ends nothing), VM.destroy waiting JOB_WAIT (0.5 s)
    for it before and after destroying the domain by force."""
    monkeypatch.setattr(MigrationSourceJob, "cancel_timeout", 3600.0)
    monkeypatch.setattr(destroy_module, "JOB_WAIT", 0.5)
    with API(Config(workers=2, migration_socket_dirs=[sockets_of(host_b)]),
             hypervisor=stuck_migrate) as api:
        vm_id = up_vm(api)
        stuck_migrate.arm(1)
        job_id = migrate(api, vm_id, host_b)["jobId"]
        assert stuck_migrate.hanging.wait(60)
        yield api, vm_id, job_id


def test_destroy_destroys_a_vm_whose_job_does_not_end(
        stuck_vm, stuck_migrate, host_b):  # noqa: F811
    # The forced destroy (as with a real QEMU) ends libvirt's migration
    # call.
    api, vm_id, job_id = stuck_vm

    def release_once_destroyed():
        # The forced destroy is what ends the stuck call.
        until_domain_state(api.hv, vm_id, lambda state: state != "running",
                           "destroyed")
        stuck_migrate.release.set()

    releaser = threading.Thread(target=release_once_destroyed)
    releaser.start()
    assert api.VM.destroy(vm_id) is True
    releaser.join(60)
    assert api.jobs.get(job_id).wait(60)
    with pytest.raises(NoVM):
        api.VM.getStats(vm_id)
    assert api.hv.state(vm_id) is None
    nothing_left_on(host_b, vm_id)


def test_a_vm_destroyed_under_a_job_that_will_not_end_leaves_with_it(
        stuck_vm, stuck_migrate, host_b):  # noqa: F811
    """VM.destroy destroyed the domain by force and its job still did not
    end (answered 100): once the job ends, the VM leaves (Down), its
    domain shut off for VM.destroy. It took back its status from before
    the job (Up), for a guest that was gone (a hostile-caller audit's
    registry said Up where VM.hibernate found a stopped domain)."""
    api, vm_id, job_id = stuck_vm
    with pytest.raises(GeneralException) as err:
        api.VM.destroy(vm_id)   # the call stays stuck past both waits
    assert "has not ended" in str(err.value)
    assert api.hv.state(vm_id) == "shutoff"
    stuck_migrate.release.set()
    assert api.jobs.get(job_id).wait(60)
    with pytest.raises(NoVM):
        api.VM.getStats(vm_id)
    assert api.Host.getVMList() == []
    assert api.VM.destroy(vm_id) is True   # the stopped domain goes
    assert api.hv.state(vm_id) is None
    nothing_left_on(host_b, vm_id)


def nothing_left_on(destination, vm_id):
    """The job's rollback destroyed the destination's staged copy: the
    guest was stopped here, still defined, so it arrived nowhere (the test
    driver's destination never hears of the forced destroy; a real one
    sees its incoming migration fail)."""
    with pytest.raises(NoVM):
        destination.VM.getStats(vm_id)
    assert destination.Host.getStats()["staged"] == 0


def test_a_removal_waiting_for_the_daemon_ends_at_a_stop(hypervisor,
                                                         monkeypatch):
    """A removal (an undo, VM.destroy) tries again while libvirtd is gone,
    up to reconnect_wait; a stop (stop_waiting_for_the_daemon) ends that
    wait at once, as it ends the connections' own (it read its deadline
    once, at its start, and went on for up to 60 s; a structure review)."""
    lost = threading.Event()

    def daemon_gone(*args):
        lost.set()
        raise ConnectionLost("remove", 1, "the daemon is gone")
    monkeypatch.setattr(hypervisor, "_remove_once", daemon_gone)
    monkeypatch.setattr(hypervisor._connections, "reconnect_wait",
                        10 * WAIT)
    raised = []

    def remove():
        try:
            hypervisor.remove(str(uuid.uuid4()))
        except ConnectionLost as exc:
            raised.append(exc)
    removal = threading.Thread(target=remove, daemon=True)
    removal.start()
    assert lost.wait(WAIT)
    hypervisor.stop_waiting_for_the_daemon()
    removal.join(WAIT)
    assert not removal.is_alive(), "the removal still waits for the daemon"
    assert len(raised) == 1
