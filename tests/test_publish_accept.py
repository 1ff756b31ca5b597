"""Publish on accept (registry.publish = accept): a VM is listed by
Host.getVMList and Host.getAllVmStats from the moment its verb answers,
with its staged status, and dropped when its job ends without a commit.
Nothing else changes: a listed staged VM is not public (VM.destroy aborts
its job, which rolls back; VM.hibernate refuses it), and its vmId is
taken."""

import threading

import pytest

from conftest import (
    WAIT,
    StepGate,
    assert_quiet_and_clean,
    new_id,
    our_domains,
    vm_params,
    wait_job,
)
from serve import ServeProcess
from test_migration_destination import domain_xml, incoming
from test_restore import hibernated_vm, restore
from vmjobs.client import Client
from vmjobs.errors import MigrateError, NoVM, VmExists
from vmjobs.registry import PublishMode, VmRegistry, VmStatus
from vmjobs.tools import simulation


def listing(api):
    """(Host.getVMList(fullStatus=True), the vmIds and staging flags of
    Host.getAllVmStats)."""
    return (api.Host.getVMList(fullStatus=True),
            [(s["vmId"], s["status"], s["staging"])
             for s in api.Host.getAllVmStats()])


def assert_listed_staged(api, vm_id, status, job_id):
    assert api.Host.getVMList() == [vm_id]
    assert listing(api) == ([{"vmId": vm_id, "status": status}],
                            [(vm_id, status, True)])
    assert api.Host.getAllVmStats()[0]["jobId"] == job_id
    # Listed, yet not public: the registries did not change with the mode.
    host = api.Host.getStats()
    assert (host["staged"], host["public"]) == (1, 0)


def test_queued_create_is_listed_when_its_verb_answers(make_api):
    """Listed while still queued behind a busy worker, then public."""
    gate = StepGate("prepare")
    api = make_api(publish="accept", workers=1, step_hook=gate)
    first = new_id()
    api.VM.create(first, vm_params(first))
    assert gate.reached.wait(WAIT)   # the only worker is held
    vm_id = new_id()
    created = api.VM.create(vm_id, vm_params(vm_id))
    assert api.Host.getJobs()[created["jobId"]]["status"] == "pending"
    assert {"vmId": vm_id, "status": "WaitForLaunch"} in \
        api.Host.getVMList(fullStatus=True)
    gate.release.set()
    assert wait_job(api, created["jobId"])["status"] == "done"
    assert api.pool.wait_idle(WAIT)
    assert sorted(api.Host.getVMList()) == sorted([first, vm_id])
    assert all(s["staging"] is False and s["status"] == "Up"
               for s in api.Host.getAllVmStats())
    assert_quiet_and_clean(api)


def test_restore_is_listed_restoring_state(make_api, tmp_path):
    gate = StepGate("restore")
    api = make_api(publish="accept", step_hook=gate)
    vm_id, path, _ = hibernated_vm(api, tmp_path)
    assert api.Host.getVMList() == []
    created = restore(api, vm_id, path)
    assert gate.reached.wait(WAIT)
    assert_listed_staged(api, vm_id, "Restoring state", created["jobId"])
    gate.release.set()
    assert wait_job(api, created["jobId"])["status"] == "done"
    assert listing(api) == ([{"vmId": vm_id, "status": "Up"}],
                            [(vm_id, "Up", False)])
    assert_quiet_and_clean(api)


def test_migration_is_listed_until_it_arrives(make_api, hypervisor):
    gate = StepGate("wait-arrival")
    api = make_api(publish="accept", step_hook=gate)
    vm_id = new_id()
    job_id = api.VM.migrationCreate(vm_id, incoming(vm_id))["params"]["jobId"]
    assert gate.reached.wait(WAIT)
    assert_listed_staged(api, vm_id, "Migration Destination", job_id)
    gate.release.set()
    simulation.simulate_incoming_migration(hypervisor, domain_xml(vm_id))
    assert wait_job(api, job_id)["status"] == "done"
    assert api.Host.getVMList(fullStatus=True) == [
        {"vmId": vm_id, "status": "Up"}]
    assert_quiet_and_clean(api)


def test_dropped_when_its_job_fails(make_api):
    """A migration that never arrives fails at its timeout: the VM listed
    meanwhile is gone from the list."""
    gate = StepGate("wait-arrival")
    api = make_api(publish="accept", step_hook=gate,
                   migration_destination_timeout=0.3)
    vm_id = new_id()
    job_id = api.VM.migrationCreate(vm_id, incoming(vm_id))["params"]["jobId"]
    assert gate.reached.wait(WAIT)
    assert_listed_staged(api, vm_id, "Migration Destination", job_id)
    gate.release.set()
    assert wait_job(api, job_id)["status"] == "failed"
    assert listing(api) == ([], [])
    with pytest.raises(NoVM):
        api.VM.getStats(vm_id)
    assert_quiet_and_clean(api)


@pytest.mark.parametrize("step", ["prepare", "define", "start", "verify",
                                  "commit"])
def test_dropped_when_its_job_is_aborted(make_api, step):
    gate = StepGate(step)
    api = make_api(publish="accept", step_hook=gate)
    vm_id = new_id()
    created = api.VM.create(vm_id, vm_params(vm_id))
    assert gate.reached.wait(WAIT)
    assert_listed_staged(api, vm_id, "WaitForLaunch", created["jobId"])
    assert api.Job.abort(created["jobId"]) is True
    gate.release.set()
    info = wait_job(api, created["jobId"])
    assert (info["status"], info["step"]) == ("aborted", step)
    assert listing(api) == ([], [])
    assert our_domains(api.hv) == []
    assert_quiet_and_clean(api)


def test_destroy_of_a_listed_staged_vm_aborts_its_job(make_api):
    """Listed is not public: VM.destroy aborts the startup job and waits
    for its rollback, as in commit mode; it does not destroy a public VM."""
    gate = StepGate("verify")
    api = make_api(publish="accept", step_hook=gate)
    vm_id = new_id()
    created = api.VM.create(vm_id, vm_params(vm_id))
    assert gate.reached.wait(WAIT)
    assert_listed_staged(api, vm_id, "WaitForLaunch", created["jobId"])
    job = api.jobs.get(created["jobId"])
    destroyed = []
    destroyer = threading.Thread(
        target=lambda: destroyed.append(api.VM.destroy(vm_id)))
    destroyer.start()
    assert job.wait_abort_requested(WAIT)
    gate.release.set()
    destroyer.join(WAIT)
    assert destroyed == [True]
    assert job.history() == ["pending", "running", "aborting", "aborted"]
    assert listing(api) == ([], [])
    assert our_domains(api.hv) == []
    assert_quiet_and_clean(api)


def test_listed_staged_vm_is_neither_public_nor_free(make_api, tmp_path):
    """Its vmId is taken (VmExists) and it cannot be hibernated (its
    startup job works on it: migrateErr), exactly as in commit mode."""
    gate = StepGate("start")
    api = make_api(publish="accept", step_hook=gate)
    vm_id = new_id()
    created = api.VM.create(vm_id, vm_params(vm_id))
    assert gate.reached.wait(WAIT)
    assert api.Host.getVMList() == [vm_id]
    with pytest.raises(VmExists):
        api.VM.create(vm_id, vm_params(vm_id))
    with pytest.raises(MigrateError) as err:
        api.VM.hibernate(vm_id, str(tmp_path / "x.state"))
    assert err.value.code == 12
    assert not (tmp_path / "x.state").exists()
    gate.release.set()
    assert wait_job(api, created["jobId"])["status"] == "done"
    assert_quiet_and_clean(api)


def test_serve_publish_accept_flag(tmp_path):
    """`vmjobs serve --publish accept`: an incoming migration waiting for
    its domain is listed over JSON-RPC, staged, until VM.destroy aborts
    it; the stop summary counts registries, not the listing."""
    server = ServeProcess("--listen", f"unix:{tmp_path}/vmjobs.sock",
                          "--state-dir", str(tmp_path), "--publish",
                          "accept", tmp_path=tmp_path)
    try:
        vm_id = new_id()
        with Client(server.address) as client:
            answer = client.call("VM.migrationCreate",
                                 {"vmID": vm_id, "params": incoming(vm_id)})
            assert client.call("Host.getVMList", {"fullStatus": True}) == [
                {"vmId": vm_id, "status": "Migration Destination"}]
            stats = client.call("Host.getAllVmStats")
            assert [(s["vmId"], s["staging"], s["jobId"]) for s in stats] \
                == [(vm_id, True, answer["params"]["jobId"])]
            assert client.call("VM.destroy", {"vmID": vm_id}) is True
            assert client.call("Host.getVMList") == []
    finally:
        status, out, err = server.stop()
    assert status == 0, err
    assert "public=0 staged=0" in out


# -- the registry's listing, the only place the mode is read ---------------

@pytest.mark.parametrize("mode", list(PublishMode))
def test_registry_lists_a_staged_vm_only_once_accepted(mode):
    """Staged but not yet accepted (the verb has not answered, or the
    queue refused the job): never listed, in either mode. Accepted: listed
    in accept mode only. Committed: listed in both."""
    registry = VmRegistry(mode)
    job = object()
    registry.stage("a", VmStatus.WAIT_FOR_LAUNCH, {}, job)
    assert registry.listed() == []
    registry.accept("a", job)
    assert [vm.vm_id for vm in registry.listed()] == (
        ["a"] if mode is PublishMode.ACCEPT else [])
    registry.commit("a", VmStatus.UP, job)
    assert [(vm.vm_id, vm.staging) for vm in registry.listed()] == [
        ("a", False)]
    assert registry.counts() == {"staged": 0, "public": 1}


def test_registry_accept_of_an_ended_job_marks_nothing():
    """accept() after the job already ended (it ran faster than its verb
    answered) leaves nothing listed."""
    registry = VmRegistry(PublishMode.ACCEPT)
    job = object()
    registry.stage("a", VmStatus.WAIT_FOR_LAUNCH, {}, job)
    assert registry.unstage("a", job)
    registry.accept("a", job)
    registry.accept("b", job)   # a job that staged nothing (hibernate)
    assert registry.listed() == [] and registry.snapshot()[0] == []
