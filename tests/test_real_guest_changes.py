"""A guest paused, resumed or stopped outside vmjobs, on the real daemon (by
its user with virsh, by libvirt itself on an I/O error, by a crash): its
public VM follows (guests.py), with a `|virt|VM_status|` notification,
unless a job works on the VM (its own pauses are its job's to tell; what
they leave is read at the job's end). A stopped guest's VM leaves the
host (`Down`) and its domain is left for VM.destroy. Another libvirt
client plays the user. (On the test driver's private host nobody else
reaches the domains, and nothing is followed.)"""

import os
import signal
import time

import libvirt
import pytest

from conftest import StepGate, new_id, wait_job
from faults import FaultyHypervisor
from realdaemon import WAIT, qemu_pid, real_params
from vmjobs.api import API
from vmjobs.config import Config
from vmjobs.errors import NoVM
from vmjobs.hypervisor import Hypervisor
from vmjobs.notifications import VM_STATUS
from waits import until_domain_state


def up_vm(api, **extra):
    vm_id = new_id()
    assert wait_job(api, api.VM.create(vm_id, real_params(vm_id, **extra))[
        "jobId"])["status"] == "done"
    return vm_id


class Statuses:
    """The status notifications of a subscription, VM by VM: each read
    takes a VM's next one, and keeps the others for later reads (one
    batch of the subscription may hold several)."""

    def __init__(self, subscription):
        self._subscription = subscription
        self._kept = []

    def next(self, vm_id):
        """VM `vm_id`'s next status (waiting for it)."""
        deadline = time.monotonic() + WAIT
        while True:
            for i, event in enumerate(self._kept):
                if event.method == VM_STATUS + vm_id:
                    del self._kept[i]
                    return event.params[vm_id]["status"]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no status notification of {vm_id}")
            self._kept += self._subscription.get(remaining) or []


def assert_hibernation_left(api, vm_id, path):
    """VM.hibernate of `vm_id` into `path`, its save made to fail under
    it with no state of ours saved: the VM is `Saving State`, then leaves
    (`Down`), the job fails saying nothing of a hibernation, its file
    goes and the vmId is no VM."""
    with api.subscribe() as subscription:
        info = wait_job(api, api.VM.hibernate(vm_id, str(path))["jobId"])
        statuses = Statuses(subscription)
        assert statuses.next(vm_id) == "Saving State"
        assert statuses.next(vm_id) == "Down"
    assert info["status"] == "failed", info
    assert "hibernated" not in info["error"]["message"], info
    assert not path.exists()
    with pytest.raises(NoVM):
        api.VM.getStats(vm_id)


def test_a_pause_and_a_resume_by_another_client_are_followed(
        make_real_api, daemon):
    api = make_real_api()
    running, paused = up_vm(api), up_vm(api, launchPaused=True)
    user = libvirt.open(daemon.uri)
    try:
        with api.subscribe() as subscription:
            statuses = Statuses(subscription)
            user.lookupByUUIDString(running).suspend()
            assert statuses.next(running) == "Paused"
            assert api.VM.getStats(running)["status"] == "Paused"
            user.lookupByUUIDString(running).resume()
            assert statuses.next(running) == "Up"
            user.lookupByUUIDString(paused).resume()
            assert statuses.next(paused) == "Up"
        listed = api.Host.getVMList(fullStatus=True)
        assert {vm["vmId"]: vm["status"] for vm in listed} == {
            running: "Up", paused: "Up"}
    finally:
        user.close()
    assert api.VM.destroy(running) is True
    assert api.VM.destroy(paused) is True


@pytest.mark.parametrize("meanwhile", [["suspend", "resume"], ["suspend"]])
def test_a_vm_a_job_works_on_keeps_its_jobs_status(make_real_api, daemon,
                                                   tmp_path, meanwhile):
    """A hibernation held before its save: its guest paused (and resumed)
    meanwhile is not taken while the job works on it (the VM's one change
    is back to Up, at the job's end); what that left is read then: Paused
    if the guest stayed paused, else the control, a pause once no job
    works on the VM, is taken."""
    gate = StepGate("save")
    api = make_real_api(step_hook=gate)
    vm_id = up_vm(api)
    job_id = api.VM.hibernate(vm_id, str(tmp_path / "s.state"))["jobId"]
    assert gate.reached.wait(WAIT)
    user = libvirt.open(daemon.uri)
    try:
        with api.subscribe() as subscription:
            statuses = Statuses(subscription)
            for action in meanwhile:
                getattr(user.lookupByUUIDString(vm_id), action)()
            assert api.Job.abort(job_id) is True
            gate.release.set()
            assert wait_job(api, job_id)["status"] == "aborted"
            assert statuses.next(vm_id) == "Up"   # the job's end
            if meanwhile[-1] == "resume":
                user.lookupByUUIDString(vm_id).suspend()   # the control
            assert statuses.next(vm_id) == "Paused"
            assert api.VM.getStats(vm_id)["status"] == "Paused"
    finally:
        user.close()
    assert api.VM.destroy(vm_id) is True


def test_a_guest_stopped_outside_vmjobs_leaves_the_host(make_real_api,
                                                        daemon):
    """Destroyed by its user, or its QEMU killed: `Down`, no longer listed,
    its domain (shut off, defined) counted stopped, and VM.destroy
    removes it; the control keeps running, Up."""
    api = make_real_api()
    destroyed, killed, control = up_vm(api), up_vm(api), up_vm(api)
    user = libvirt.open(daemon.uri)
    try:
        with api.subscribe() as subscription:
            statuses = Statuses(subscription)
            user.lookupByUUIDString(destroyed).destroy()
            assert statuses.next(destroyed) == "Down"
            os.kill(qemu_pid(daemon, killed), signal.SIGKILL)
            assert statuses.next(killed) == "Down"
    finally:
        user.close()
    for vm_id in (destroyed, killed):
        with pytest.raises(NoVM):
            api.VM.getStats(vm_id)
    assert api.Host.getVMList() == [control]
    assert api.Host.getStats()["stopped_domains"] == 2
    for vm_id in (destroyed, killed, control):
        assert api.VM.destroy(vm_id) is True
    assert api.Host.getStats()["stopped_domains"] == 0
    assert daemon.qemu_pids() == []


def test_a_guest_changed_around_a_libvirtd_restart_is_followed(
        make_real_api, daemon):
    """The events' connection is opened again as soon as libvirtd is back,
    with no call of vmjobs to find it lost; a guest paused after the
    restart, and one whose QEMU died around it (its event lost, or never
    sent), are both followed."""
    api = make_real_api()
    paused, killed = up_vm(api), up_vm(api)
    with api.subscribe() as subscription:
        statuses = Statuses(subscription)
        os.kill(qemu_pid(daemon, killed), signal.SIGKILL)
        daemon.restart_daemon()
        assert statuses.next(killed) == "Down"
        user = libvirt.open(daemon.uri)
        try:
            user.lookupByUUIDString(paused).suspend()
        finally:
            user.close()
        assert statuses.next(paused) == "Paused"
    for vm_id in (paused, killed):
        assert api.VM.destroy(vm_id) is True


def test_a_guest_killed_before_its_hibernation_is_not_said_hibernated(
        make_real_api, daemon, tmp_path):
    """Its QEMU killed as the hibernation's save begins: the save fails and
    the domain is shut off, but not by a save (reason SAVED), so the file
    holds no state: the VM leaves (`Down`), the job's file goes, and its
    error says nothing of a hibernation. It was said to "stay hibernated"
    in a file no restore could read (a chaos run); the control, whose
    save's reply alone is lost, is test_never_lose_a_guest's."""
    killed = {}

    def kill_at_save(job, step):
        if step != "save" or killed:
            return
        killed["pid"] = qemu_pid(daemon, job.vm_id)
        os.kill(killed["pid"], signal.SIGKILL)
        # libvirt has seen it stop before the save is asked (looked at
        # again at each of the domain's lifecycle events).
        until_domain_state(job.hv, job.vm_id, lambda state: state ==
                           "shutoff", "its QEMU's end seen", WAIT)
    api = make_real_api(step_hook=kill_at_save)
    vm_id = up_vm(api)
    assert_hibernation_left(api, vm_id, tmp_path / "cut.state")
    assert api.VM.destroy(vm_id) is True   # its stopped domain


@pytest.mark.parametrize("killed", [False, True],
                         ids=["saved", "killed-at-save"])
def test_a_guest_undefined_after_its_hibernations_persist_is_read_right(
        daemon, tmp_path, killed):
    """An operator's `virsh undefine` at the hibernation's step save, after
    the job made the domain persistent (round 13's window left open).
    `saved`: the save completes and its reply is lost; libvirt removes
    the saved transient domain, and the VM left `Down`, the file that held
    its only state removed; now the whole state libvirt reads from the
    job's file says it saved: the VM is brought back `Up` and the file
    goes. `killed-at-save` (the control): its QEMU killed too, the domain
    gone, the file empty: not saved, the VM leaves `Down`."""
    hv = Hypervisor(daemon.uri, domain_type="qemu")
    faulty = FaultyHypervisor(hv)

    def undefine_at_save(job, step):
        if step != "save":
            return
        user = libvirt.open(daemon.uri)
        try:
            user.lookupByUUIDString(job.vm_id).undefine()
        finally:
            user.close()
        if killed:
            os.kill(qemu_pid(daemon, job.vm_id), signal.SIGKILL)
            until_domain_state(hv, job.vm_id, lambda state: state is None,
                               "its transient domain gone", WAIT)
    api = API(Config(uri=daemon.uri, workers=2, domain_type="qemu",
                     state_dirs=[str(tmp_path)]),
              hypervisor=faulty, step_hook=undefine_at_save)
    try:
        vm_id = up_vm(api)
        path = tmp_path / "undefined.state"
        if killed:
            assert_hibernation_left(api, vm_id, path)
        else:
            faulty.arm(3, "after")   # state, persist, save: its reply lost
            info = wait_job(api, api.VM.hibernate(vm_id, str(path))["jobId"])
            assert info["status"] == "failed", info
            assert api.VM.getStats(vm_id)["status"] == "Up"
            assert hv.state(vm_id) == "running"
            assert not path.exists()
            assert api.VM.destroy(vm_id) is True
    finally:
        api.close()
        hv.close()
        daemon.remove_all_domains()


@pytest.mark.parametrize("how", ["managedsave", "save"])
def test_a_guest_saved_by_its_operator_before_its_hibernation_is_not_said_hibernated(
        make_real_api, daemon, tmp_path, how):
    """An operator's `virsh managedsave` (or `virsh save` into a file of
    their own) as the hibernation's save begins: the save fails ("domain
    is not running") and the domain is shut off with reason SAVED, as
    after a save of ours whose reply was lost; but its state is in
    libvirt's managed save image (or the operator's file), not in the
    job's file, which stays empty. The VM leaves (`Down`), the job's file
    goes, and its error says nothing of a hibernation; the operator's
    start (or restore) brings the guest back. It was said to "stay
    hibernated" in an empty file (round 13). The control, the kill before
    the save (reason DESTROYED), is the test above."""
    saved = []
    theirs = tmp_path / "theirs.state"

    def operator_saves_at_save(job, step):
        if step != "save" or saved:
            return
        user = libvirt.open(daemon.uri)
        try:
            dom = user.lookupByUUIDString(job.vm_id)
            if how == "managedsave":
                dom.managedSave(0)
            else:
                dom.save(str(theirs))
        finally:
            user.close()
        saved.append(job.vm_id)
    api = make_real_api(step_hook=operator_saves_at_save)
    vm_id = up_vm(api)
    assert_hibernation_left(api, vm_id, tmp_path / "operator.state")
    assert saved == [vm_id]
    user = libvirt.open(daemon.uri)
    try:
        if how == "managedsave":
            dom = user.lookupByUUIDString(vm_id)
            assert dom.hasManagedSaveImage(0)
            dom.create()   # the operator's start: libvirt restores it
        else:
            user.restore(str(theirs))
            dom = user.lookupByUUIDString(vm_id)
        assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    finally:
        user.close()
    assert api.VM.destroy(vm_id) is True   # the domain in no registry
