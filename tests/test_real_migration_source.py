"""VM.migrate end to end between two real hosts: two private libvirtds
(A and B), each with its own `vmjobs serve` process on a Unix socket, the
test talking to them through the verbs only (libvirt is only looked at, to
check what runs where).

After every migration job has ended the VM must be public on exactly one
host and run there only: `assert_only_on` checks it from both sides."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time

import libvirt
import pytest

from conftest import new_id
from realdaemon import (
    WAIT,
    qemu_pid,
    real_params,
    require_daemon,
    require_programs,
    tpm_dir,
    tpm_guest,
    tpm_state,
)
from serve import ROOT, ServeProcess
from vmjobs.client import Client, RemoteError
from vmjobs.sdnotify import messages, notify_socket
from waits import Follower, statuses

libvirt.registerErrorHandler(lambda ctx, err: None, None)

ENDED = ("done", "failed", "aborted")
POLL = 0.005   # seconds between two looks at a job in another process
# Slow transfers, for what must happen while one runs: at 1 MiB/s a guest
# of zero pages still moves about 0.4 GiB/s of it (zero pages are sent as
# headers): 1 GiB takes about 3 s, 4 GiB about 10 s.
SLOW = 1


class Host:
    """A private libvirtd and its own `vmjobs serve`."""

    def __init__(self, name, sandbox, directory, socket_dirs, workers=6,
                 max_incoming=4):
        """`socket_dirs`: where the other host's sockets are (its
        libvirtd's and its service's), for VM.migrate's dstUri and dst."""
        self.name, self.sandbox = name, sandbox
        self.dir = directory
        self.dir.mkdir(exist_ok=True)
        self.listen = f"unix:{directory}/vmjobs.sock"
        self.config = (f"[libvirt]\ndomain_type = qemu\n[pool]\nworkers = "
                       f"{workers}\n[migration]\nmax_incoming = "
                       f"{max_incoming}\n" + "".join(
                           f"socket_dirs = {d}\n" for d in socket_dirs))
        # The URI A's libvirtd migrates to, for B (and the other way).
        self.migration_uri = f"qemu+unix:///system?socket={sandbox.socket}"
        self.starts = 0
        self.start()

    def start(self):
        self.starts += 1
        # Where it says READY=1, as to systemd: once recovery ended.
        notify = str(self.dir / f"notify-{self.starts}")
        self.ready = notify_socket(notify, WAIT)
        self.serve = ServeProcess("--uri", self.sandbox.uri, "--listen",
                                  self.listen, config=self.config,
                                  tmp_path=self.dir,
                                  log_name=f"serve-{self.starts}",
                                  env={"NOTIFY_SOCKET": notify})
        self.client = Client(self.serve.address, timeout=WAIT)

    def kill(self):
        self.client.close()
        self.serve.kill()
        self.ready.close()

    def stop(self):
        self.client.close()
        status, _, err = self.serve.stop()
        self.ready.close()
        assert status == 0, err

    def call(self, method, **params):
        return self.client.call(method, params)

    def job(self, job_id):
        return self.call("Host.getJobs", job_ids=[job_id])[job_id]

    def wait_job(self, job_id, reached=lambda info: info["status"] in ENDED):
        """The job's info once `reached(info)`, asked again and again, a
        few milliseconds apart (asking without a pause would take a core
        from the guests being migrated): what it waits for may be the
        transfer's progress, which no event tells (a job's events are its
        status and step changes; serve.wait_job_info follows those)."""
        deadline = time.monotonic() + WAIT
        while not reached(info := self.job(job_id)):
            assert time.monotonic() < deadline, info
            time.sleep(POLL)
        return info

    def wait_recovered(self):
        assert messages(self.ready)["READY"] == "1"
        assert self.call("Host.getStats")["recovering"] is False

    def create(self, count, **extra):
        vm_ids = [new_id() for _ in range(count)]
        jobs = [self.call("VM.create", vmID=vm_id,
                          vmParams=real_params(vm_id, **extra))["jobId"]
                for vm_id in vm_ids]
        for job_id in jobs:
            assert self.wait_job(job_id)["status"] == "done"
        return vm_ids

    def migrate(self, vm_id, to, **params):
        return self.call("VM.migrate", vmID=vm_id, params={
            "dst": to.listen, "dstUri": to.migration_uri,
            "migrationUri": "tcp://127.0.0.1", **params})["jobId"]

    def public(self):
        return {vm["vmId"]: vm["status"] for vm in
                self.call("Host.getVMList", fullStatus=True)}

    def domains(self):
        """{uuid: (state, persistent)} of every domain in its libvirtd."""
        conn = libvirt.open(self.sandbox.uri)
        try:
            return {dom.UUIDString(): (dom.state()[0], dom.isPersistent())
                    for dom in conn.listAllDomains(0)}
        finally:
            conn.close()


def two_hosts(daemon, daemon_b, tmp_path, workers_a=6):
    require_daemon()
    sockets = [tmp_path, os.path.dirname(daemon.socket),
               os.path.dirname(daemon_b.socket)]
    a = Host("A", daemon, tmp_path / "a", sockets, workers=workers_a)
    b = Host("B", daemon_b, tmp_path / "b", sockets)
    yield a, b
    for host in (a, b):
        if host.serve.process.poll() is None:
            host.stop()
        host.sandbox.remove_all_domains()


@pytest.fixture
def hosts(daemon, daemon_b, tmp_path):
    yield from two_hosts(daemon, daemon_b, tmp_path)


@pytest.fixture
def one_worker_hosts(daemon, daemon_b, tmp_path):
    """A with a single worker (and the default max_outgoing, 2), B."""
    yield from two_hosts(daemon, daemon_b, tmp_path, workers_a=1)


def assert_only_on(vm_id, here, there, status="Up"):
    """Public on `here` only, with `status`; its domain runs (persistent)
    on `here` only; nothing staged for it anywhere."""
    assert here.public().get(vm_id) == status
    assert vm_id not in there.public()
    with pytest.raises(RemoteError) as err:
        there.call("VM.getStats", vmID=vm_id)
    assert err.value.code == 1
    assert here.call("VM.getStats", vmID=vm_id)["staging"] is False
    state = (libvirt.VIR_DOMAIN_RUNNING if status == "Up"
             else libvirt.VIR_DOMAIN_PAUSED)
    assert here.domains()[vm_id] == (state, True)
    assert vm_id not in there.domains()


def assert_nothing_staged(*hosts):
    for host in hosts:
        assert host.call("Host.getStats")["staged"] == 0


def transfer_started(info):
    """libvirt's migration job has begun (the job reports progress from
    it), or the job already ended."""
    return "progress" in info or info["status"] in ENDED


def test_ten_vms_there_and_back(hosts):
    a, b = hosts
    vm_ids = a.create(10, batch="ten")
    seconds = []
    for source, destination in ((a, b), (b, a)):
        # All ten at once: beyond the host's max_outgoing (2) they wait
        # their turn (API.md), where VDSM and KubeVirt queue them too.
        running = [source.migrate(vm_id, destination) for vm_id in vm_ids]
        infos = [source.wait_job(job_id) for job_id in running]
        for info in infos:
            assert (info["status"], info["step"], info["progress"]) == (
                "done", "commit", 100), info
            seconds.append(info["ended"] - info["created"])
        for vm_id in vm_ids:
            assert_only_on(vm_id, destination, source)
            assert destination.call("VM.getStats", vmID=vm_id)[
                "params"] == real_params(vm_id, batch="ten")
        assert_nothing_staged(a, b)
    seconds.sort()
    print(f"20 migrations, 2 at a time: each {seconds[0]:.2f}-"
          f"{seconds[-1]:.2f} s, median {seconds[10]:.2f} s")
    for vm_id in vm_ids:
        assert a.call("VM.destroy", vmID=vm_id) is True
    assert a.domains() == {} and b.domains() == {}


def test_three_at_once_two_out_and_a_creation_on_the_only_worker(
        one_worker_hosts):
    """Three VM.migrate at once with max_outgoing 2, on a host with one
    worker: all three are accepted and succeed, never more than two past
    their turn at once; a transferring migration holds no worker, so a
    VM.create runs on the only one while they transfer."""
    a, b = one_worker_hosts
    vm_ids = a.create(3, memSize=1024)   # about 3 s each at SLOW
    job_ids = [a.migrate(vm_id, b, maxBandwidth=SLOW) for vm_id in vm_ids]
    deadline = time.monotonic() + WAIT
    while True:    # until one transfers
        infos = a.call("Host.getJobs", job_ids=job_ids)
        past_turn = [info for info in infos.values()
                     if info["status"] == "running"
                     and info["step"] != "wait-slot"]
        assert len(past_turn) <= 2, infos
        transferring = [info for info in past_turn if "progress" in info]
        if transferring:
            break
        assert not any(info["status"] in ENDED
                       for info in infos.values()), infos
        assert time.monotonic() < deadline, infos
        time.sleep(POLL)   # a transfer's progress: no event tells it
    created = new_id()
    create_id = a.call("VM.create", vmID=created,
                       vmParams=real_params(created))["jobId"]
    infos = {job_id: a.wait_job(job_id) for job_id in job_ids}
    create_info = a.wait_job(create_id)
    assert create_info["status"] == "done", create_info
    # The creation started (on the only worker) before the transfer it
    # was submitted during had ended.
    assert create_info["started"] < infos[transferring[0]["id"]]["ended"]
    for vm_id, info in zip(vm_ids, infos.values(), strict=True):
        assert (info["status"], info["step"], info["progress"]) == (
            "done", "commit", 100), info
        assert_only_on(vm_id, b, a)
    assert_nothing_staged(a, b)
    for vm_id in vm_ids:
        assert b.call("VM.destroy", vmID=vm_id) is True
    assert a.call("VM.destroy", vmID=created) is True


def test_a_paused_vm_arrives_paused(hosts):
    a, b = hosts
    vm_id, = a.create(1, launchPaused=True)
    assert a.public() == {vm_id: "Paused"}
    info = a.wait_job(a.migrate(vm_id, b))
    assert info["status"] == "done", info
    assert_only_on(vm_id, b, a, status="Paused")
    assert b.call("VM.destroy", vmID=vm_id) is True


def test_a_guests_tpm_migrates_with_it(hosts):
    """A guest's emulated TPM goes with it: B's swtpm state is the one A
    had, byte for byte, and A keeps none (its undefine deleted it)."""
    require_programs("swtpm", "swtpm_setup")
    a, b = hosts
    vm_id = new_id()
    job = a.call("VM.create", vmID=vm_id, vmParams={
        "vmId": vm_id, "xml": tpm_guest(vm_id)})["jobId"]
    assert a.wait_job(job)["status"] == "done"
    before = tpm_state(a.sandbox, vm_id)
    assert before is not None
    info = a.wait_job(a.migrate(vm_id, b))
    assert info["status"] == "done", info
    assert_only_on(vm_id, b, a)
    assert tpm_state(b.sandbox, vm_id) == before
    assert not os.path.exists(tpm_dir(a.sandbox, vm_id))
    assert b.call("VM.destroy", vmID=vm_id) is True
    assert not os.path.exists(tpm_dir(b.sandbox, vm_id))


@contextlib.contextmanager
def read_only_config(sandbox):
    """The sandbox's libvirtd cannot write its configuration (its
    /etc/libvirt, inside its namespace, remounted read-only): a migration
    to it made persistent fails at its very end, in libvirt's Finish, once
    the source's QEMU has sent the whole guest."""
    def remount(how):
        subprocess.run(["nsenter", "-t", str(sandbox.daemon_pid()), "-m",
                        "mount", "-o", f"remount,{how}", "/etc/libvirt"],
                       check=True)
    remount("ro")
    try:
        yield
    finally:
        remount("rw")


@pytest.mark.parametrize("paused", [True, False])
def test_a_vm_whose_migration_failed_at_its_end_migrates_again(hosts,
                                                               paused):
    """The migration fails after the source's QEMU has finished its side
    (libvirt's Finish on B: "Read-only file system"): the VM stays on A as
    it was, and migrates once B can take it, arriving as it was. A
    running guest is resumed by libvirt (the control); a paused one was
    left in QEMU's `postmigrate`, and the second migration failed ("Can't
    migrate the vm that was paused due to previous migration")."""
    a, b = hosts
    status = "Paused" if paused else "Up"
    vm_id, = a.create(1, launchPaused=paused)
    with read_only_config(b.sandbox):
        info = a.wait_job(a.migrate(vm_id, b))
    assert info["status"] == "failed", info
    assert "Read-only file system" in info["error"]["message"], info
    assert_only_on(vm_id, a, b, status=status)
    info = a.wait_job(a.migrate(vm_id, b))
    assert info["status"] == "done", info
    assert_only_on(vm_id, b, a, status=status)
    assert b.call("VM.destroy", vmID=vm_id) is True


def test_a_migration_first_after_the_source_libvirtd_restarted(hosts):
    """The migration's first libvirt call (the domain's migratable XML) is
    the first on a connection libvirtd's restart closed: it is a read, so
    made once more on a new connection, and the migration goes through
    (it failed with "client socket is closed")."""
    a, b = hosts
    vm_id, = a.create(1)
    a.sandbox.restart_daemon()
    info = a.wait_job(a.migrate(vm_id, b))
    assert info["status"] == "done", info
    assert_only_on(vm_id, b, a)
    assert b.call("VM.destroy", vmID=vm_id) is True


def test_the_vm_comes_back_over_its_stopped_definition(hosts):
    """B holds the VM's own stopped definition, as a hibernation on B that
    a crash cut between its save and its undefine leaves once the state
    file is restored on A (found by a chaos run). The VM migrating back
    to B arrives over it, where it was refused with exist."""
    a, b = hosts
    vm_id, = a.create(1)
    conn_a, conn_b = libvirt.open(a.sandbox.uri), libvirt.open(b.sandbox.uri)
    try:
        conn_b.defineXML(conn_a.lookupByUUIDString(vm_id).XMLDesc(
            libvirt.VIR_DOMAIN_XML_INACTIVE))
    finally:
        conn_a.close()
        conn_b.close()
    assert b.domains() == {vm_id: (libvirt.VIR_DOMAIN_SHUTOFF, True)}
    assert b.call("Host.getStats")["stopped_domains"] == 1
    info = a.wait_job(a.migrate(vm_id, b))
    assert info["status"] == "done", info
    assert_only_on(vm_id, b, a)
    assert b.call("Host.getStats")["stopped_domains"] == 0
    assert b.call("VM.destroy", vmID=vm_id) is True
    assert b.domains() == {}


@pytest.mark.parametrize("end", ["abort", "destroy"])
def test_abort_or_destroy_mid_transfer(hosts, end):
    """Job.abort (or VM.destroy) on A while libvirt transfers: libvirt's
    job is aborted, B's staged copy destroyed; the VM stays Up on A (or,
    with VM.destroy, is then destroyed there)."""
    a, b = hosts
    vm_id, = a.create(1, memSize=1024)
    job_id = a.migrate(vm_id, b, maxBandwidth=SLOW)
    info = a.wait_job(job_id, transfer_started)
    assert info["status"] == "running" and info["step"] == "migrate", info
    assert a.public() == {vm_id: "Migration Source"}
    assert b.call("VM.getStats", vmID=vm_id)["status"] == \
        "Migration Destination"
    if end == "abort":
        assert a.call("Job.abort", jobId=job_id) is True
    else:
        assert a.call("VM.destroy", vmID=vm_id) is True
    info = a.wait_job(job_id)
    assert (info["status"], info["step"]) == ("aborted", "migrate"), info
    print(f"aborted at {info['progress']}%")
    if end == "abort":
        assert_only_on(vm_id, a, b)
        assert a.call("VM.destroy", vmID=vm_id) is True
    else:
        assert a.public() == {} and a.domains() == {}
    assert b.public() == {} and b.domains() == {}
    dest_job, = b.call("Host.getJobs",
                       job_type="migration-destination").values()
    assert dest_job["status"] == "aborted"
    assert_nothing_staged(a, b)


@pytest.mark.parametrize("undefined", [False, True],
                         ids=["defined", "undefined-by-an-operator"])
def test_a_guest_that_stops_mid_transfer_leaves_nothing_there(
        hosts, undefined):
    """The guest's QEMU ends while libvirt transfers it (a crash, the OOM
    killer): nothing arrived on B, so B's staged copy is destroyed and its
    incoming place freed. It was kept, staged until B's arrival timeout
    (hours): two such guests refused every migration to B (a hostile-caller
    audit).

    `undefined`: the guest's domain undefined first by an operator (virsh
    undefine: it runs on, transient). A transient domain whose QEMU ends
    is gone, as a migrated one is: the job took "gone" for "left", ended
    done, the VM public on neither host, and B's staged copy waited for
    it until B's arrival timeout (round 13). The migration makes its
    domain persistent first, so that a guest that stopped is shut off
    here, not gone.

    On A the VM leaves (`Down`) without being said `Up` first: its job
    put it back in its previous status whatever its guest had become, and
    the host's follower of guests then found it stopped, so A's stream
    said Up, then Down, and listed a dead guest Up meanwhile (the contract
    audit, round 11). The guest's domain is left shut off for VM.destroy,
    as a guest stopped outside vmjobs is."""
    a, b = hosts
    events = Client(a.serve.address, timeout=WAIT)
    on_a = Follower(events.events())
    try:
        vm_id, = a.create(1, memSize=1024)
        if undefined:
            user = libvirt.open(a.sandbox.uri)
            try:
                user.lookupByUUIDString(vm_id).undefine()
            finally:
                user.close()
        job_id = a.migrate(vm_id, b, maxBandwidth=SLOW)
        info = a.wait_job(job_id, transfer_started)
        assert (info["status"], info["step"]) == ("running", "migrate"), info
        os.kill(qemu_pid(a.sandbox, vm_id), signal.SIGKILL)
        info = a.wait_job(job_id)
        on_a.wait_status(vm_id, "Down")
    finally:
        events.close()
    assert info["status"] == "failed", info
    assert "is kept" not in info["error"]["message"], info
    assert statuses(on_a.events, vm_id) == [
        "WaitForLaunch", "Up", "Migration Source", "Down"]
    assert a.public() == {}
    assert a.domains() == {vm_id: (libvirt.VIR_DOMAIN_SHUTOFF, True)}
    assert a.call("Host.getStats")["stopped_domains"] == 1
    assert a.call("VM.destroy", vmID=vm_id) is True
    assert a.domains() == {}
    assert b.public() == {} and b.domains() == {}
    dest_job, = b.call("Host.getJobs",
                       job_type="migration-destination").values()
    assert dest_job["status"] in ENDED, dest_job
    assert_nothing_staged(a, b)


def test_the_destination_refuses(hosts):
    """exist: B has the VM already; migrateLimit: B's incoming slots are
    taken until A's timeout. Each time the job fails with B's code, the VM
    stays Up on A, and B's own VMs are left alone."""
    a, b = hosts
    vm_id, = a.create(1)
    assert b.wait_job(b.call("VM.create", vmID=vm_id, vmParams=real_params(
        vm_id))["jobId"])["status"] == "done"
    info = a.wait_job(a.migrate(vm_id, b))
    assert (info["status"], info["error"]["code"]) == ("failed", 4), info
    assert a.public() == {vm_id: "Up"} and b.public() == {vm_id: "Up"}
    assert b.call("VM.destroy", vmID=vm_id) is True

    busy = [new_id() for _ in range(4)]   # B's max_incoming
    for other in busy:
        b.call("VM.migrationCreate", vmID=other, params={
            "vmId": other, "xml": f"<domain><uuid>{other}</uuid></domain>"})
    info = a.wait_job(a.migrate(vm_id, b, timeout=2))
    assert (info["status"], info["error"]["code"]) == ("failed", 82), info
    assert info["ended"] - info["started"] >= 2
    for other in busy:
        assert b.call("VM.destroy", vmID=other) is True
    assert_only_on(vm_id, a, b)
    assert_nothing_staged(a, b)
    assert a.call("VM.destroy", vmID=vm_id) is True


def test_destination_service_killed_mid_transfer(hosts):
    """kill -9 of B's service: B's libvirtd carries the migration on, so
    A's job ends done; B's next start recovers the VM, which arrived
    persistent."""
    a, b = hosts
    vm_id, = a.create(1, memSize=1024)
    job_id = a.migrate(vm_id, b, maxBandwidth=SLOW)
    a.wait_job(job_id, transfer_started)
    b.kill()
    info = a.wait_job(job_id)
    assert info["status"] == "done", info
    assert a.public() == {}
    b.start()
    b.wait_recovered()
    recover, = b.call("Host.getJobs", job_type="recover").values()
    assert (recover["status"], recover["step"]) == ("done", "commit")
    assert_only_on(vm_id, b, a)
    assert b.call("VM.destroy", vmID=vm_id) is True


def test_source_service_killed_mid_transfer(hosts):
    """kill -9 of A's service mid-transfer: A's libvirtd carries the
    migration on; A's next start finds the domain still migrating, waits
    for the end, and finds it gone (it is B's); B commits it on arrival."""
    a, b = hosts
    vm_id, = a.create(1, memSize=4096)
    job_id = a.migrate(vm_id, b, maxBandwidth=SLOW)
    a.wait_job(job_id, transfer_started)
    killed = time.monotonic()
    a.kill()
    a.start()
    a.wait_recovered()
    recovered = time.monotonic() - killed
    recover, = a.call("Host.getJobs", job_type="recover").values()
    assert (recover["status"], recover["step"]) == ("done",
                                                    "migrated-away")
    assert a.public() == {}
    dest_job, = b.call("Host.getJobs",
                       job_type="migration-destination").values()
    b.wait_job(dest_job["id"])
    assert b.job(dest_job["id"])["status"] == "done"
    assert_only_on(vm_id, b, a)
    print(f"A back and recovered {recovered:.2f} s after the kill")
    assert b.call("VM.destroy", vmID=vm_id) is True


def test_loadtest_plays_the_engine_over_two_hosts(hosts, tmp_path):
    """`vmjobs loadtest --server A --server B --mix create=60,migrate=40`:
    VMs started on both hosts, some migrated to the other with VM.migrate;
    every VM public on exactly one host at the end."""
    a, b = hosts
    command = [sys.executable, "-m", "vmjobs", "loadtest", "--vms", "10",
               "--mem", "48", "--mix", "create=60,migrate=40",
               "--migration-uri", "tcp://127.0.0.1",
               "--log-file", str(tmp_path / "loadtest.log")]
    for host in hosts:
        command += ["--server", host.listen,
                    "--dst-uri", host.migration_uri]
    result = subprocess.run(command, capture_output=True, text=True,
                            timeout=WAIT, cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Up           10/10" in result.stdout
    assert "migrated     4/4" in result.stdout
    assert re.search(r"migration +p50 [\d.]+ ms +p95 [\d.]+ ms +p99",
                     result.stdout)
    assert "every VM public on exactly one host" in result.stdout
    # It destroyed what it made.
    assert a.public() == {} and b.public() == {}
    assert a.domains() == {} and b.domains() == {}
