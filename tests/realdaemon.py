"""Fixtures for the tests on a real libvirtd with QEMU: private daemons
started by the suite itself (vmjobs.tools.sandbox). On CI (CI=true) a missing
requirement fails these tests; elsewhere they are skipped with the reason
and what to install."""

import hashlib
import os
import shutil
import time

import pytest

from vmjobs.api import API
from vmjobs.config import Config
from vmjobs.errors import NoVM
from vmjobs.notifications import VM_STATUS
from vmjobs.tools.sandbox import Sandbox, missing_requirements

# Seconds: real VMs on a 2-core machine; below pytest's timeout (300,
# setup.cfg), so that a wait that runs out fails with its own message
# rather than the test being killed by pytest-timeout.
WAIT = 240


def cannot_run(reason):
    """On CI a missing requirement fails the test; elsewhere it is
    skipped, saying what `make setup` would install."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"cannot run on CI: {reason}")
    pytest.skip(f"{reason} (`make setup` installs what is needed)")


def require_daemon():
    reason = missing_requirements()
    if reason is not None:
        cannot_run(f"no private libvirtd here: {reason}")


def require_programs(*programs):
    """Programs a test needs beyond the daemon."""
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        cannot_run(f"not installed: {', '.join(missing)}")


def start_daemon(directory, **options):
    """A private daemon (Sandbox's `options`); its cold and warm start
    times are recorded for the report (pytest -rA shows them)."""
    require_daemon()
    sandbox = Sandbox(directory, **options)
    started = time.monotonic()
    sandbox.start()
    sandbox.start_seconds = time.monotonic() - started
    return sandbox


def stop_daemon(sandbox):
    sandbox.stop()
    assert sandbox.qemu_pids() == []


@pytest.fixture(scope="session")
def daemon(tmp_path_factory):
    sandbox = start_daemon(tmp_path_factory.mktemp("daemon-a"))
    print(f"private libvirtd started in {sandbox.start_seconds:.2f} s")
    yield sandbox
    stop_daemon(sandbox)


@pytest.fixture(scope="session")
def daemon_b(tmp_path_factory):
    sandbox = start_daemon(tmp_path_factory.mktemp("daemon-b"))
    yield sandbox
    stop_daemon(sandbox)


@pytest.fixture
def make_real_api(daemon, tmp_path):
    """make_real_api(**config) -> an API on the private daemon, its state
    files confined to tmp_path; every domain is removed after the test,
    whatever it left."""
    apis, sandboxes = [], {daemon.dir: daemon}

    def make(sandbox=None, step_hook=None, **config):
        sandbox = sandbox or daemon
        sandboxes[sandbox.dir] = sandbox
        config.setdefault("workers", 4)
        # TCG: nested in a VM, an idle KVM guest costs ~8% of a core.
        config.setdefault("domain_type", "qemu")
        config.setdefault("state_dirs", [str(tmp_path)])
        api = API(Config(uri=sandbox.uri, **config), step_hook=step_hook)
        apis.append(api)
        return api

    yield make
    for api in apis:
        api.close()
    for sandbox in sandboxes.values():
        sandbox.remove_all_domains()


def real_params(vm_id, **extra):
    """A tiny real VM: 48 MiB, no disk."""
    params = {"vmId": vm_id, "vmName": f"real-{vm_id[:8]}", "memSize": 48}
    params.update(extra)
    return params


def tpm_dir(daemon, vm_id):
    """swtpm's state directory of a guest, seen from outside the private
    daemon's mount namespace (where its /var/lib/libvirt is)."""
    return (f"/proc/{daemon.daemon_pid()}/root/var/lib/libvirt/swtpm/"
            f"{vm_id}")


def tpm_state(daemon, vm_id):
    """The hash of the guest's TPM (swtpm's permanent state: its
    endorsement key and what the guest stored), read in the private
    daemon's mount namespace; None if it has none there."""
    try:
        with open(f"{tpm_dir(daemon, vm_id)}/tpm2/tpm2-00.permall",
                  "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        return None


def tpm_guest(vm_id):
    return (f"<domain type='qemu'><name>tpm-{vm_id[:8]}</name><uuid>{vm_id}"
            "</uuid><memory unit='MiB'>48</memory><vcpu>1</vcpu><os><type "
            "arch='x86_64'>hvm</type></os><devices><tpm model='tpm-crb'>"
            "<backend type='emulator' version='2.0'/></tpm><serial "
            "type='pty'/><memballoon model='none'/></devices></domain>")


def wait_left(api, vm_ids):
    """Each VM of `vm_ids` left `api`'s host by itself (its guest migrated
    away, or stopped, outside vmjobs: guests.py follows it): its `Down` is
    in the feed, read from the oldest notification the feed still holds,
    and the VM is no more."""
    waiting = set(vm_ids)
    deadline = time.monotonic() + WAIT
    oldest = api.notifications._kept[0].id
    with api.subscribe(oldest - 1) as subscription:
        while waiting:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no Down for {waiting}"
            for event in subscription.get(remaining) or []:
                vm_id = event.method[len(VM_STATUS):]
                if event.method.startswith(VM_STATUS) and \
                        event.params[vm_id]["status"] == "Down":
                    waiting.discard(vm_id)
    for vm_id in vm_ids:
        with pytest.raises(NoVM):
            api.VM.getStats(vm_id)


def qemu_pid(sandbox, vm_id):
    """The pid of the sandbox's QEMU that runs VM `vm_id` (its `-uuid`)."""
    for pid in sandbox.qemu_pids():
        try:
            if vm_id in command_line(pid).split(" "):
                return pid
        except FileNotFoundError:
            pass   # another VM's QEMU, ended meanwhile
    raise AssertionError(f"no QEMU of {vm_id} in {sandbox.dir}")


def command_line(pid):
    """A process's arguments, joined by spaces."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode()
