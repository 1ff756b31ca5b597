"""A hibernation whose save fails for want of room, on the real daemon:
its state directory a tmpfs smaller than a guest's state, mounted before
the daemon's namespace copies the mounts (as the chaos run's
`hibernate_full`). libvirt writes the state through its iohelper, which
fails with ENOSPC after QEMU has sent it all: QEMU has finished its side
of the save (libvirt 9.0, QEMU 7.2).

A running guest is resumed by libvirt itself. A paused one was left in
QEMU's runstate `postmigrate`, which refuses every later save and
migration ("Can't migrate the vm that was paused due to previous
migration"), and which only running its vCPUs leaves: the hibernation's
rollback resumes it and pauses it again at once. What QEMU's runstate is
(a launchPaused guest's is `prelaunch` until it first runs) is read on
its monitor, as no vmjobs code does."""

import json
import subprocess

import libvirt
import libvirt_qemu
import pytest

from conftest import new_id, wait_job
from realdaemon import real_params, start_daemon, stop_daemon
from test_real_guest_changes import Statuses
from vmjobs.hypervisor.states import paused_by_request

# Smaller than a 48 MiB guest's state (about 300 KB for an idle one).
FULL_SIZE = "256k"


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """(a daemon, a full state directory it sees)."""
    base = tmp_path_factory.mktemp("save-fails")
    full_dir = base / "full"
    full_dir.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o",
                    f"size={FULL_SIZE},mode=0755", "vmjobs-test-full",
                    str(full_dir)], check=True)
    try:
        sandbox = start_daemon(base / "daemon")
        try:
            yield sandbox, full_dir
        finally:
            stop_daemon(sandbox)
    finally:
        subprocess.run(["umount", "-l", str(full_dir)], check=True)


def runstate(sandbox, vm_id):
    conn = libvirt.open(sandbox.uri)
    try:
        answer = libvirt_qemu.qemuMonitorCommand(
            conn.lookupByUUIDString(vm_id), '{"execute": "query-status"}', 0)
    finally:
        conn.close()
    return json.loads(answer)["return"]["status"]


def hibernate(api, vm_id, path):
    return wait_job(api, api.VM.hibernate(vm_id, str(path))["jobId"])


@pytest.mark.parametrize("paused", [True, False])
def test_a_guest_whose_save_failed_can_be_hibernated_again(
        full, make_real_api, tmp_path, paused):
    """The save into the full directory fails; the VM is listed as it was
    (`Paused`, or `Up` for the control, which libvirt resumes), its
    guest as it was, and a hibernation into a directory with room then
    succeeds, and the restore brings it back so. Before, a paused guest's
    second hibernation failed ("Can't migrate the vm that was paused due
    to previous migration": QEMU in `postmigrate`)."""
    sandbox, full_dir = full
    api = make_real_api(sandbox=sandbox,
                        state_dirs=[str(tmp_path), str(full_dir)])
    vm_id = new_id()
    status = "Paused" if paused else "Up"
    assert wait_job(api, api.VM.create(vm_id, real_params(
        vm_id, launchPaused=paused))["jobId"])["status"] == "done"
    with api.subscribe() as subscription:
        info = hibernate(api, vm_id, full_dir / "s.state")
        statuses = Statuses(subscription)
        assert statuses.next(vm_id) == "Saving State"
        assert statuses.next(vm_id) == status   # never Up meanwhile
    assert info["status"] == "failed", info
    assert "No space left on device" in info["error"]["message"], info
    assert not (full_dir / "s.state").exists()
    assert api.VM.getStats(vm_id)["status"] == status
    assert runstate(sandbox, vm_id) == ("paused" if paused else "running")

    path = tmp_path / "again.state"
    info = hibernate(api, vm_id, path)
    assert info["status"] == "done", info
    assert wait_job(api, api.VM.create(vm_id, {
        "vmId": vm_id, "restoreState": str(path),
        "launchPaused": paused})["jobId"])["status"] == "done"
    assert api.VM.getStats(vm_id)["status"] == status
    assert api.VM.destroy(vm_id) is True
    assert sandbox.qemu_pids() == []


def test_a_paused_guest_whose_save_failed_can_be_migrated(
        full, make_real_api, daemon_b, tmp_path):
    """QEMU's refusal is that of every migration (a save is one): after
    the failed save, libvirt migrates the guest to another daemon, where
    it arrives paused. Before, libvirt's migrate call failed ("Can't
    migrate the vm that was paused due to previous migration")."""
    sandbox, full_dir = full
    api = make_real_api(sandbox=sandbox,
                        state_dirs=[str(tmp_path), str(full_dir)])
    vm_id = new_id()
    assert wait_job(api, api.VM.create(vm_id, real_params(
        vm_id, launchPaused=True))["jobId"])["status"] == "done"
    info = hibernate(api, vm_id, full_dir / "s.state")
    assert info["status"] == "failed", info
    conn = libvirt.open(sandbox.uri)
    try:
        conn.lookupByUUIDString(vm_id).migrateToURI3(
            f"qemu+unix:///system?socket={daemon_b.socket}",
            {libvirt.VIR_MIGRATE_PARAM_URI: "tcp://127.0.0.1"},
            libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER |
            libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
        there = libvirt.open(daemon_b.uri)
        try:
            assert there.lookupByUUIDString(vm_id).state() == [
                libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_USER]
        finally:
            there.close()
    finally:
        conn.close()
        daemon_b.remove_all_domains()
    assert sandbox.qemu_pids() == []


def test_only_a_pause_someone_asked_for_is_made_anew():
    """The rule of Hypervisor.pause_anew: a user's or an engine's pause,
    and a restore's asked paused, may be made anew; a pause libvirt or
    QEMU made on their own is left as it is, and so is a guest that runs
    or is shut off."""
    paused = libvirt.VIR_DOMAIN_PAUSED
    for reason in (libvirt.VIR_DOMAIN_PAUSED_USER,
                   libvirt.VIR_DOMAIN_PAUSED_MIGRATION):
        assert paused_by_request(paused, reason)
    for reason in (libvirt.VIR_DOMAIN_PAUSED_IOERROR,
                   libvirt.VIR_DOMAIN_PAUSED_WATCHDOG,
                   libvirt.VIR_DOMAIN_PAUSED_CRASHED,
                   libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED,
                   libvirt.VIR_DOMAIN_PAUSED_POSTCOPY,
                   libvirt.VIR_DOMAIN_PAUSED_STARTING_UP,
                   libvirt.VIR_DOMAIN_PAUSED_SAVE,
                   libvirt.VIR_DOMAIN_PAUSED_UNKNOWN):
        assert not paused_by_request(paused, reason)
    assert not paused_by_request(libvirt.VIR_DOMAIN_RUNNING,
                                 libvirt.VIR_DOMAIN_RUNNING_UNPAUSED)
    assert not paused_by_request(libvirt.VIR_DOMAIN_SHUTOFF,
                                 libvirt.VIR_DOMAIN_SHUTOFF_SAVED)
