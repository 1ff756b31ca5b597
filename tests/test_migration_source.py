"""VM.migrate on libvirt's test driver, between two vmjobs hosts talking
JSON-RPC over a Unix socket: the claim, the destination's refusals, the
rollback, VM.destroy and Job.abort during the job. The test driver cannot
migrate (ARGUMENT_UNSUPPORTED for a peer-to-peer migration), so every
transfer here fails, as a real one can: the real transfers are in
test_real_migration_source.py, on two private libvirtds."""

import os
import re
import socket
import threading

import pytest

from conftest import (
    WAIT,
    DestroyAt,
    StepGate,
    assert_quiet_and_clean,
    new_id,
    vm_params,
    wait_job,
)
from faults import FaultyHypervisor
from invariants import check_invariants
from test_migration_destination import domain_xml, incoming
from vmjobs.api import API
from vmjobs.config import Config
from vmjobs.errors import InvalidParams, MigrateError, MigrateLimit, MissParam, NoVM
from vmjobs.hypervisor import Hypervisor
from vmjobs.server import Server


@pytest.fixture
def host_b(tmp_path):
    """Another vmjobs host, on its own test driver, served on a socket."""
    with Hypervisor() as hv:
        api = API(Config(workers=2, max_incoming=2,
                         listen=f"unix:{tmp_path}/b.sock",
                         migration_check_interval=3600), hypervisor=hv)
        server = Server(api, api.config)
        server.start()
        api.address = server.address
        yield api
        server.stop()
        api.close()


def up_vm(api, **extra):
    vm_id = new_id()
    job_id = api.VM.create(vm_id, vm_params(vm_id, **extra))["jobId"]
    assert wait_job(api, job_id)["status"] == "done"
    return vm_id


def migrate(api, vm_id, host_b, **params):
    sockets = os.path.dirname(host_b.address[len("unix:"):])
    return api.VM.migrate(vm_id, {
        "dst": host_b.address,
        "dstUri": f"qemu+unix:///system?socket={sockets}/libvirt-sock",
        **params})


def destination_jobs(host_b):
    return {info["vm_id"]: info for info in host_b.Host.getJobs(
        job_type="migration-destination").values()}


def test_the_vm_is_claimed_and_given_back_when_the_transfer_fails(
        make_api, host_b):
    gate = StepGate("migrate")
    api = make_api(step_hook=gate)
    vm_id = up_vm(api, owner="ops")
    job_id = migrate(api, vm_id, host_b)["jobId"]
    assert gate.reached.wait(60)

    # While the job runs: public here as Migration Source, staged there.
    stats = api.VM.getStats(vm_id)
    assert (stats["status"], stats["jobId"]) == ("Migration Source", job_id)
    assert api.Host.getVMList(fullStatus=True) == [
        {"vmId": vm_id, "status": "Migration Source"}]
    with pytest.raises(MigrateError):
        migrate(api, vm_id, host_b)   # one job per VM
    staged = host_b.VM.getStats(vm_id)
    assert (staged["status"], staged["staging"]) == (
        "Migration Destination", True)
    # The destination got the VM's own params and its domain XML.
    assert staged["params"] == {"vmId": vm_id, "vmName": f"vm-{vm_id[:8]}",
                                "memSize": 64, "owner": "ops"}
    gate.release.set()

    info = wait_job(api, job_id)
    assert (info["job_type"], info["status"], info["step"]) == (
        "migration-source", "failed", "migrate")
    assert info["error"]["code"] == 12
    assert "migrate" in info["error"]["message"]
    assert api.VM.getStats(vm_id)["status"] == "Up"
    assert api.hv.state(vm_id) == "running"
    # The destination's copy was destroyed over RPC: its job aborted.
    assert destination_jobs(host_b)[vm_id]["status"] == "aborted"
    with pytest.raises(NoVM):
        host_b.VM.getStats(vm_id)
    assert_quiet_and_clean(api)
    assert_quiet_and_clean(host_b)
    assert api.VM.destroy(vm_id) is True


def test_outgoing_migrations_beyond_the_limit_wait_their_turn(make_api,
                                                              host_b):
    """Beyond migration.max_outgoing VM.migrate is accepted (API.md): the
    job waits in step wait-slot, parked (holding no worker: a creation
    runs meanwhile on the only one), in call order, and goes once the
    migration ahead of it ended."""
    gate = StepGate("prepare-destination")
    prepared = []     # the jobs in the order they got their turn

    def hook(job, step):
        if (job.job_type, step) == ("migration-source", "prepare"):
            prepared.append(job.id)
        gate(job, step)

    api = make_api(step_hook=hook, max_outgoing=1, workers=2)
    first, second, third = up_vm(api), up_vm(api), up_vm(api)
    job_ids = [migrate(api, vm_id, host_b)["jobId"]
               for vm_id in (first, second, third)]
    assert gate.reached.wait(60)
    assert gate.job.id == job_ids[0]
    # The gated one runs; the two others park, each once a worker took it.
    assert api.pool.wait_stats(
        lambda stats: (stats["running"], stats["parked"]) == (1, 2), 60), \
        api.pool.stats()
    for vm_id, job_id in zip((second, third), job_ids[1:], strict=True):
        info = api.Host.getJobs(job_ids=[job_id])[job_id]
        assert (info["status"], info["step"]) == ("running", "wait-slot")
        assert api.VM.getStats(vm_id)["status"] == "Migration Source"
    # The other worker is free for a creation.
    fourth = up_vm(api)
    gate.release.set()
    ended = [wait_job(api, job_id) for job_id in job_ids]
    # The test driver cannot migrate: each fails in its transfer, in turn.
    assert [(info["status"], info["step"]) for info in ended] == \
        [("failed", "migrate")] * 3
    assert prepared == job_ids           # in call order
    for vm_id in (first, second, third, fourth):
        assert api.VM.getStats(vm_id)["status"] == "Up"
        assert api.VM.destroy(vm_id) is True
    assert_quiet_and_clean(host_b)


def test_a_paused_vm_stays_paused(make_api, host_b):
    api = make_api()
    vm_id = up_vm(api, launchPaused=True)
    info = wait_job(api, migrate(api, vm_id, host_b)["jobId"])
    assert info["status"] == "failed"
    assert api.VM.getStats(vm_id)["status"] == "Paused"
    assert api.hv.state(vm_id) == "paused"
    assert api.VM.destroy(vm_id) is True
    assert_quiet_and_clean(api)


def test_the_destination_refuses_a_vm_it_has(make_api, host_b):
    """exist (4) from the destination: the job's error carries it, the VM
    stays Up here, and the destination's own VM is left alone."""
    api = make_api()
    vm_id = up_vm(api)
    job_id = host_b.VM.create(vm_id, vm_params(vm_id))["jobId"]
    assert wait_job(host_b, job_id)["status"] == "done"

    info = wait_job(api, migrate(api, vm_id, host_b)["jobId"])
    assert (info["status"], info["step"]) == ("failed",
                                              "prepare-destination")
    assert info["error"]["code"] == 4
    assert "refused" in info["error"]["message"]
    assert api.VM.getStats(vm_id)["status"] == "Up"
    assert host_b.VM.getStats(vm_id)["status"] == "Up"
    assert host_b.hv.state(vm_id) == "running"
    for host in (api, host_b):
        assert host.VM.destroy(vm_id) is True
        assert_quiet_and_clean(host)


def test_a_busy_destination_is_retried_until_the_timeout(make_api, host_b):
    """migrateLimit (82) again and again: retried with backoff, then the job
    fails with 82 once its timeout passed."""
    api = make_api()
    vm_id = up_vm(api)
    others = [new_id(), new_id()]   # fill the destination's two slots
    for other in others:
        host_b.VM.migrationCreate(other, incoming(other))
    info = wait_job(api, migrate(api, vm_id, host_b, timeout=1.5)["jobId"])
    assert (info["status"], info["step"]) == ("failed",
                                              "prepare-destination")
    assert info["error"]["code"] == 82
    assert info["ended"] - info["started"] >= 1.5
    assert api.VM.getStats(vm_id)["status"] == "Up"
    assert vm_id not in destination_jobs(host_b)
    for other in others:
        assert host_b.VM.destroy(other) is True
    assert_quiet_and_clean(host_b)
    assert api.VM.destroy(vm_id) is True


def test_a_destination_that_frees_up_is_taken(make_api, host_b):
    """Busy first, then a slot frees: the retry gets it (and the transfer
    then fails on the test driver, which rolls the copy back)."""
    gate = StepGate("prepare-destination")
    api = make_api(step_hook=gate)
    vm_id = up_vm(api)
    others = [new_id(), new_id()]
    for other in others:
        host_b.VM.migrationCreate(other, incoming(other))
    refused = threading.Event()
    real = host_b.vm_migration_create

    def spy(*args, **kwargs):
        try:
            return real(*args, **kwargs)
        except MigrateLimit:
            refused.set()
            raise

    host_b.vm_migration_create = spy
    job_id = migrate(api, vm_id, host_b, timeout=60)["jobId"]
    assert gate.reached.wait(60)
    gate.job.retry_first = 0.01
    gate.release.set()
    # Free a slot once the job was refused.
    assert refused.wait(60)
    assert host_b.VM.destroy(others[0]) is True
    info = wait_job(api, job_id)
    assert (info["status"], info["step"]) == ("failed", "migrate")
    assert destination_jobs(host_b)[vm_id]["status"] == "aborted"
    assert api.VM.getStats(vm_id)["status"] == "Up"
    assert host_b.VM.destroy(others[1]) is True
    assert_quiet_and_clean(host_b)
    assert api.VM.destroy(vm_id) is True


@pytest.mark.parametrize("step", ["prepare", "prepare-destination",
                                  "migrate"])
def test_destroy_during_the_job(make_api, host_b, step):
    """bz912390 for the source: VM.destroy aborts the job, waits for its
    rollback (the destination's copy destroyed), then destroys the VM."""
    destroy = DestroyAt(step, job_type="migration-source")
    api = make_api(step_hook=destroy)
    destroy.api = api
    vm_id = up_vm(api)
    job_id = migrate(api, vm_id, host_b)["jobId"]
    info = wait_job(api, job_id)
    destroy.thread.join(60)
    assert destroy.result == [True]
    assert (info["status"], info["step"]) == ("aborted", step)
    with pytest.raises(NoVM):
        api.VM.getStats(vm_id)
    assert api.hv.state(vm_id) is None
    with pytest.raises(NoVM):
        host_b.VM.getStats(vm_id)
    assert_quiet_and_clean(api)
    assert_quiet_and_clean(host_b)


def test_job_abort_keeps_the_vm(make_api, host_b):
    gate = StepGate("migrate")
    api = make_api(step_hook=gate)
    vm_id = up_vm(api)
    job_id = migrate(api, vm_id, host_b)["jobId"]
    assert gate.reached.wait(60)
    assert api.Job.abort(job_id) is True
    gate.release.set()
    info = wait_job(api, job_id)
    assert (info["status"], info["step"]) == ("aborted", "migrate")
    assert api.VM.getStats(vm_id)["status"] == "Up"
    assert destination_jobs(host_b)[vm_id]["status"] == "aborted"
    assert_quiet_and_clean(host_b)
    assert api.VM.destroy(vm_id) is True


def test_unreachable_destination(make_api, tmp_path):
    api = make_api()
    vm_id = up_vm(api)
    info = wait_job(api, api.VM.migrate(vm_id, {
        "dst": f"unix:{tmp_path}/nobody.sock",
        "dstUri": local_uri(tmp_path)})["jobId"])
    assert (info["status"], info["error"]["code"]) == ("failed", 12)
    assert "cannot reach" in info["error"]["message"]
    assert api.VM.getStats(vm_id)["status"] == "Up"
    assert api.VM.destroy(vm_id) is True


GOOD_URI = "qemu+tls://b/system"


@pytest.mark.parametrize("params, error, param", [
    ({"dstUri": GOOD_URI}, MissParam, None),
    ({"dst": "b:8000"}, MissParam, None),
    ({"dst": "no-port", "dstUri": GOOD_URI}, InvalidParams, "dst"),
    ({"dst": "b:8000", "dstUri": 3}, InvalidParams, "dstUri"),
    ({"dst": "b:8000", "dstUri": GOOD_URI, "timeout": 0}, InvalidParams,
     "timeout"),
    ({"dst": "b:8000", "dstUri": GOOD_URI, "migrationUri": ""},
     InvalidParams, "migrationUri"),
    ({"dst": "b:8000", "dstUri": GOOD_URI, "maxBandwidth": 0},
     InvalidParams, "maxBandwidth"),
    ({"dst": "b:8000", "dstUri": GOOD_URI, "speed": 1}, InvalidParams,
     "speed"),
], ids=["no-dst", "no-dstUri", "bad-dst", "bad-dstUri", "bad-timeout",
        "bad-migrationUri", "bad-maxBandwidth", "unknown-key"])
def test_bad_params(api, params, error, param):
    vm_id = up_vm(api)
    with pytest.raises(error) as err:
        api.VM.migrate(vm_id, params)
    if param is not None:
        assert err.value.data == {"param": param}
    assert api.VM.getStats(vm_id)["status"] == "Up"
    assert api.Host.getJobs(job_type="migration-source") == {}


def local_uri(tmp_path):
    """A destination libvirtd on this machine, by its unix socket in the
    test's socket dir (nobody listens: dst, on this machine too, is the
    destination these tests play)."""
    return f"qemu+unix:///system?socket={tmp_path}/libvirt-sock"


def silent_destination(tmp_path):
    """A destination service that takes connections and never answers."""
    silent = socket.socket(socket.AF_UNIX)
    silent.bind(str(tmp_path / "silent.sock"))
    silent.listen()
    return silent, f"unix:{tmp_path}/silent.sock"


def in_flight(silent):
    """Accept the call and read its request whole: it waits for the
    answer from now on. The connection, kept open, unanswered."""
    peer, _ = silent.accept()
    peer.settimeout(WAIT)
    request = b""
    while b"\r\n\r\n" not in request:
        request += peer.recv(65536)
    head, _, body = request.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    while len(body) < length:
        body += peer.recv(65536)
    assert b"VM.migrationCreate" in body
    return peer


@pytest.mark.parametrize("how", ["Job.abort", "VM.destroy"])
def test_an_abort_ends_a_call_the_destination_never_answers(
        make_api, tmp_path, how):
    """The call to VM.migrationCreate is in flight (its request read by a
    destination that will not answer before the call's 60 s timeout): an
    abort interrupts it, and the job ends aborted, not failed at the
    timeout; a VM.destroy likewise. The worker is free again (a second
    VM's creation runs on the only one)."""
    silent, dst = silent_destination(tmp_path)
    api = make_api(workers=1)
    vm_id = up_vm(api)
    job_id = api.VM.migrate(vm_id, {"dst": dst, "dstUri": local_uri(tmp_path),
                                    "timeout": 3600})["jobId"]
    peer = in_flight(silent)
    try:
        if how == "Job.abort":
            assert api.Job.abort(job_id) is True
            info = wait_job(api, job_id)
            assert (info["status"], info["step"]) == (
                "aborted", "prepare-destination"), info
            assert api.VM.getStats(vm_id)["status"] == "Up"
            other = up_vm(api)   # the only worker is free
            assert api.VM.destroy(other) is True
        else:
            assert api.VM.destroy(vm_id) is True
            assert wait_job(api, job_id)["status"] == "aborted"
            assert vm_id not in api.Host.getVMList()
    finally:
        peer.close()
        silent.close()
    assert_quiet_and_clean(api)


def migration_answered(make_api, tmp_path, timeout, answer):
    """An Up VM's migration whose destination answers VM.migrationCreate
    with `answer(peer, done)`, run on a thread of its own (`done` is set
    once the job has ended). The job fails (12) and the VM stays Up here;
    the job's info."""
    silent, dst = silent_destination(tmp_path)
    api = make_api()
    vm_id = up_vm(api)
    job_id = api.VM.migrate(vm_id, {"dst": dst, "dstUri": local_uri(tmp_path),
                                    "timeout": timeout})["jobId"]
    peer = in_flight(silent)
    done = threading.Event()

    def answering():
        try:
            answer(peer, done)
        except OSError:
            pass   # the service gave up the connection

    answerer = threading.Thread(target=answering, daemon=True)
    answerer.start()
    try:
        info = wait_job(api, job_id)
    finally:
        done.set()
        answerer.join(WAIT)
        peer.close()
        silent.close()
    assert (info["status"], info["error"]["code"]) == ("failed", 12), info
    assert api.VM.getStats(vm_id)["status"] == "Up"
    assert api.VM.destroy(vm_id) is True
    assert_quiet_and_clean(api)
    return info


def test_a_destination_whose_answer_is_too_long_is_not_read(make_api,
                                                            tmp_path):
    """A destination that is no vmjobs service answers VM.migrationCreate
    with 6 GiB: the answer is refused unread (a hostile-caller audit's
    such peer had the service read it into memory until the kernel
    killed it). The VM stays Up here."""
    def six_gib(peer, done):
        peer.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json"
                     b"\r\nContent-Length: 6442450944\r\n\r\n" +
                     b" " * 65536)
    info = migration_answered(make_api, tmp_path, 3600, six_gib)
    assert "more than the 1048576 taken" in info["error"]["message"]


def test_a_destination_that_trickles_its_answer_gains_nothing(make_api,
                                                              tmp_path):
    """A destination that sends its answer a byte at a time: the call's
    bound is the whole call's, not each read's (the job's 2 s timeout was
    passed by over 20 s in a hostile-caller audit, its worker and its
    outgoing slot held meanwhile)."""
    def trickle(peer, done):
        # The peer's own pace, a byte each 0.2 s, until the job ends.
        peer.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        while not done.wait(0.2):
            peer.sendall(b" ")
    info = migration_answered(make_api, tmp_path, 2, trickle)
    assert "no whole answer within" in info["error"]["message"]

def read_http(sock):
    """One HTTP message read whole from `sock` (head and body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "closed before a whole message"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)Content-Length: (\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def passed_on(request, address):
    """`request` sent to the service at unix `address`; its answer."""
    with socket.socket(socket.AF_UNIX) as upstream:
        upstream.settimeout(WAIT)
        upstream.connect(address[len("unix:"):])
        upstream.sendall(request)
        return read_http(upstream)


def test_an_abort_while_the_answer_is_lost_destroys_the_copy_there(
        make_api, host_b, tmp_path):
    """The destination took VM.migrationCreate (the VM staged there) but
    its answer never comes back (a proxy keeps it), and the source's job
    is aborted meanwhile: its rollback destroys the copy there all the
    same, instead of leaving it to hold the vmId until the destination's
    timeout (found by a chaos run). The control, a refusal (the VM
    already there): nothing of the destination's is destroyed."""
    proxy, dst = silent_destination(tmp_path)
    proxy.settimeout(WAIT)
    api = make_api()
    vm_id = up_vm(api)
    job_id = api.VM.migrate(vm_id, {"dst": dst, "dstUri": local_uri(tmp_path),
                                    "timeout": 3600})["jobId"]
    peer, _ = proxy.accept()
    peer.settimeout(WAIT)
    passed_on(read_http(peer), host_b.address)   # its answer kept here
    assert host_b.VM.getStats(vm_id)["staging"] is True
    try:
        aborted = threading.Thread(target=api.Job.abort, args=(job_id,))
        aborted.start()
        # The rollback's VM.destroy, passed on with its answer.
        cleanup, _ = proxy.accept()
        with cleanup:
            cleanup.settimeout(WAIT)
            request = read_http(cleanup)
            assert b"VM.destroy" in request
            cleanup.sendall(passed_on(request, host_b.address))
        aborted.join(WAIT)
        assert wait_job(api, job_id)["status"] == "aborted"
    finally:
        peer.close()
        proxy.close()
    with pytest.raises(NoVM):
        host_b.VM.getStats(vm_id)
    assert api.VM.getStats(vm_id)["status"] == "Up"

    # The control: the destination refuses (its own VM of that id), and
    # the rollback leaves that VM alone.
    theirs = host_b.VM.create(vm_id, vm_params(vm_id))["jobId"]
    assert wait_job(host_b, theirs)["status"] == "done"
    info = wait_job(api, migrate(api, vm_id, host_b)["jobId"])
    assert (info["status"], info["error"]["code"]) == ("failed", 4)
    assert host_b.VM.getStats(vm_id)["status"] == "Up"
    assert host_b.VM.destroy(vm_id) is True


def test_only_a_public_vm_migrates(api):
    with pytest.raises(NoVM):
        api.VM.migrate(new_id(), {"dst": "b:8000", "dstUri": GOOD_URI})
    vm_id = new_id()
    api.VM.migrationCreate(vm_id, {"vmId": vm_id, "xml": domain_xml(vm_id)})
    # Staged, not public: its startup job works on it (migrateErr).
    with pytest.raises(MigrateError, match="not up yet") as err:
        api.VM.migrate(vm_id, {"dst": "b:8000", "dstUri": GOOD_URI})
    assert err.value.code == 12
    assert api.VM.destroy(vm_id) is True


# Fixed order on the test driver (the transfer fails at once): the XML, the
# transfer, the look after it failed, the look before destroying the
# destination's copy. (The monitor's looks are left out: how many it makes
# depends on timing.)
CALLS = ("migratable_xml", "migrate", "state")


@pytest.mark.parametrize("kind", ["error", "lost"])
def test_fault_at_every_call(hypervisor, host_b, kind, reliability_figures):
    """Each case ends failed with migrateErr and the VM Up here, and the
    destination's copy is gone (destroyed by the rollback, or, once the
    call failed with the domain here, removed by the destination's job
    asked to settle it)."""
    faulty = FaultyHypervisor(hypervisor, fail_calls=CALLS)
    sockets = os.path.dirname(host_b.address[len("unix:"):])
    with API(Config(workers=2, migration_socket_dirs=[sockets]),
             hypervisor=faulty) as api:
        vm_id = up_vm(api)
        for n, call in enumerate(["migratable_xml", "migrate", "state",
                                  "state"], start=1):
            faulty.arm(n, kind)
            info = wait_job(api, migrate(api, vm_id, host_b)["jobId"])
            assert faulty.failed == call
            assert (info["status"], info["error"]["code"]) == ("failed", 12)
            if n == 4:
                # The look here once B settled the VM absent (its job,
                # asked to settle it, removed what was staged): it only
                # words the error, which is the migration call's.
                assert "p2p migration is not supported" in \
                    info["error"]["message"]
            else:
                assert "injected fault" in info["error"]["message"]
            assert check_invariants(api) == {vm_id}
            assert api.VM.getStats(vm_id)["status"] == "Up"
            with pytest.raises(NoVM):
                host_b.VM.getStats(vm_id)
            check_invariants(host_b)
            assert host_b.Host.getVMList() == []
            reliability_figures["fault points"].add(
                ("MigrationSource", n, kind))
        assert api.VM.destroy(vm_id) is True


def test_an_ended_migration_keeps_its_info_not_the_vm(make_api, host_b):
    """An ended job stays listed (an hour, up to 10,000 of them) with its
    JobInfo, not what it worked on (docs/benchmarks.md, section 7): the VM
    as its claim found it (its params, up to 64 KiB) and the domain XML
    it sent are let go as the job ends. The control: the job holds both
    while it runs (seen at its migrate step)."""
    marker = f"ops-{new_id()}"

    def holding(job):
        return sorted(name for name, value in vars(job).items()
                      if marker in repr(value))
    held = []
    api = make_api(step_hook=lambda job, step: step == "migrate" and
                   held.append(holding(job)))
    vm_id = up_vm(api, owner=marker)
    job = api.jobs.get(migrate(api, vm_id, host_b)["jobId"])
    assert job.wait(WAIT) and job.info()["status"] == "failed"
    assert held == [["_xml", "vm_before_claim"]]       # the control
    assert holding(job) == []
    assert api.VM.destroy(vm_id) is True
