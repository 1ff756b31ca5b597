"""api.call dispatches verbs with named or positional params, refuses unknown ones, and shows only vmjobs' own VMs."""

import threading

import pytest

from conftest import WAIT, new_id, vm_params, wait_job
from vmjobs.errors import InvalidParams, NoVM, UnknownMethod, VdsmError

# The same contract in both publish modes (conftest.py).
pytestmark = pytest.mark.both_publish_modes

STATS_KEYS = {"workers", "queue_size", "queued", "running", "parked",
              "staged", "public", "external_domains", "stopped_domains",
              "unowned_domains", "jobs_done", "jobs_failed", "jobs_aborted",
              "recovering", "admission_limit", "uri"}


@pytest.mark.parametrize("method", ["VM.nosuch", "Nope.ping", "ping",
                                    "host.ping", "", None, ["Host.ping"]])
def test_unknown_method(api, method):
    with pytest.raises(UnknownMethod) as err:
        api.call(method, {})
    assert err.value.code == -32601


def test_unknown_method_as_attribute(api):
    with pytest.raises(AttributeError):
        _ = api.VM.nosuch


@pytest.mark.parametrize("method,params,param", [
    ("Host.ping", {"bogus": 1}, "bogus"),
    ("VM.getStats", {"vmID": "x", "vmId": "x"}, "vmId"),
    ("Host.getJobs", {"jobIds": []}, "jobIds"),
])
def test_unknown_named_param(api, method, params, param):
    with pytest.raises(InvalidParams) as err:
        api.call(method, params)
    assert err.value.code == -32602
    assert err.value.data == {"param": param}


def test_unknown_named_param_creates_nothing(api):
    vm_id = new_id()
    with pytest.raises(InvalidParams) as err:
        api.call("VM.create", {"vmID": vm_id, "vmParams": vm_params(vm_id),
                               "extra": True})
    assert err.value.data == {"param": "extra"}
    assert api.registry.snapshot()[0] == []
    assert api.Host.getJobs() == {}


@pytest.mark.parametrize("method,params", [
    ("Host.ping", [1]),
    ("VM.getStats", [new_id(), new_id()]),
    ("Host.getJobs", [None, None, None]),
])
def test_too_many_positional_params(api, method, params):
    with pytest.raises(InvalidParams) as err:
        api.call(method, params)
    assert err.value.code == -32602
    assert err.value.data == {"param": "params"}


def test_too_many_positional_params_creates_nothing(api):
    vm_id = new_id()
    with pytest.raises(InvalidParams):
        api.call("VM.create", [vm_id, vm_params(vm_id), {}])
    assert api.registry.snapshot()[0] == []
    assert api.Host.getJobs() == {}


@pytest.mark.parametrize("params", ["vmID", 5, True])
def test_params_neither_object_nor_array(api, params):
    with pytest.raises(InvalidParams) as err:
        api.call("VM.getStats", params)
    assert err.value.data == {"param": "params"}


def test_positional_params_in_api_order(api):
    vm_id = new_id()
    result = api.call("VM.create", [vm_id, vm_params(vm_id)])
    assert set(result) == {"vmId", "status", "jobId"}
    assert (result["vmId"], result["status"]) == (vm_id, "WaitForLaunch")
    assert wait_job(api, result["jobId"])["status"] == "done"
    assert api.call("Host.getVMList", [True]) == [
        {"vmId": vm_id, "status": "Up"}]
    assert api.call("Host.getVMList", [False]) == [vm_id]
    assert api.call("Host.getVMList", []) == [vm_id]
    assert api.call("VM.getStats", [vm_id])["status"] == "Up"
    # The methods take positional arguments the same way.
    assert api.Host.getVMList(True) == [{"vmId": vm_id, "status": "Up"}]
    assert api.call("VM.destroy", [vm_id]) is True
    assert api.Host.getVMList() == []


def test_methods_take_positional_then_named_arguments(api):
    """API.md: the verbs are methods of one Python object, with the same
    arguments: a method takes its first params by position and the others
    by name, as a Python method does."""
    vm_id = new_id()
    job = api.VM.create(vm_id, vmParams=vm_params(vm_id))
    assert wait_job(api, job["jobId"])["status"] == "done"
    assert api.Host.getVMList(True, vmList=[vm_id]) == [
        {"vmId": vm_id, "status": "Up"}]
    assert api.Host.getVMList(False, vmList=[new_id()]) == []
    # A param given twice, or one the verb does not take, is refused as
    # in a call by name; so are more positional params than it takes.
    with pytest.raises(TypeError, match="vmID"):
        api.VM.getStats(vm_id, vmID=vm_id)
    with pytest.raises(InvalidParams) as err:
        api.VM.getStats(vm_id, vmId=vm_id)
    assert err.value.data == {"param": "vmId"}
    with pytest.raises(InvalidParams) as err:
        api.VM.getStats(vm_id, vm_id, vmID=vm_id)
    assert err.value.data == {"param": "params"}
    assert api.VM.destroy(vm_id, gracefulAttempts=1) is True
    assert api.Host.getVMList() == []


def test_ping(api):
    assert api.call("Host.ping") is True
    assert api.call("Host.ping", []) is True
    assert api.Host.ping() is True


def test_get_stats_keys(api):
    stats = api.Host.getStats()
    assert set(stats) == STATS_KEYS
    assert stats["recovering"] is False
    assert stats["workers"] == api.config.workers
    assert stats["queue_size"] == api.config.queue_size
    # Not adaptive (the default): the limit is the workers.
    assert stats["admission_limit"] == api.config.workers
    # The libvirt URI served (here the fixture's private test driver).
    assert stats["uri"] == api.hv.uri and stats["uri"].startswith("test://")
    counters = STATS_KEYS - {"workers", "queue_size", "recovering",
                             "admission_limit", "uri"}
    assert {key: stats[key] for key in counters} == dict.fromkeys(counters, 0)

    vm_id = new_id()
    wait_job(api, api.VM.create(vm_id, vm_params(vm_id))["jobId"])
    stats = api.call("Host.getStats", {})
    assert set(stats) == STATS_KEYS
    assert (stats["public"], stats["staged"], stats["jobs_done"]) == (1, 0, 1)


@pytest.mark.parametrize("verb", ["VM.destroy", "VM.getStats"])
def test_unknown_vm_is_no_vm(api, verb):
    with pytest.raises(NoVM) as err:
        api.call(verb, {"vmID": new_id()})
    assert err.value.code == 1


def define_external(conn, name, start):
    vm_id = new_id()
    dom = conn.defineXML(
        f"<domain type='test'><name>{name}</name><uuid>{vm_id}</uuid>"
        f"<memory unit='MiB'>32</memory><os><type>hvm</type></os></domain>")
    if start:
        dom.create()
    return vm_id


def test_external_domains_are_counted_but_never_shown(api):
    conn = api.hv.shared_connection
    running = define_external(conn, "not-ours-running", start=True)
    stopped = define_external(conn, "not-ours-stopped", start=False)
    ours = new_id()
    wait_job(api, api.VM.create(ours, vm_params(ours))["jobId"])

    stats = api.Host.getStats()
    assert stats["external_domains"] == 2
    assert stats["stopped_domains"] == 0
    assert stats["public"] == 1
    assert api.Host.getVMList() == [ours]
    assert api.Host.getVMList(fullStatus=True) == [
        {"vmId": ours, "status": "Up"}]
    assert [s["vmId"] for s in api.Host.getAllVmStats()] == [ours]
    # Not ours: no verb sees them, and destroy leaves them alone.
    for external in (running, stopped):
        with pytest.raises(NoVM):
            api.VM.getStats(external)
        with pytest.raises(NoVM):
            api.VM.destroy(external)
    assert conn.lookupByUUIDString(running).isActive()
    assert not conn.lookupByUUIDString(stopped).isActive()
    assert api.Host.getStats()["external_domains"] == 2


def test_create_over_an_external_domain_fails_and_leaves_it(api):
    conn = api.hv.shared_connection
    external = define_external(conn, "not-ours", start=True)
    job = wait_job(api, api.VM.create(external,
                                      vm_params(external))["jobId"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == 9
    dom = conn.lookupByUUIDString(external)
    assert dom.isActive() and dom.name() == "not-ours"
    assert api.Host.getVMList() == []
    assert api.registry.snapshot()[0] == []
    assert api.Host.getStats()["external_domains"] == 1


def test_a_vm_that_is_not_here_is_no_vm_even_with_the_queue_full(
        make_api, tmp_path):
    """VM.hibernate and VM.migrate of a vmId neither staged nor public
    answer noVM (1) whatever the queue holds, as VM.create answers exist
    (4) before it takes a place: a full queue answered ResourceExhausted
    (1100, 'try again later') for a VM that will never be there. The
    control: a VM that is here is still told the queue is full (1100),
    and nothing was created or queued for the refusals."""
    blocker, held, gate = new_id(), threading.Event(), threading.Event()

    def hold(job, step):   # one job holds the one worker
        if job.vm_id == blocker and step == "prepare":
            held.set()
            assert gate.wait(WAIT)
    api = make_api(step_hook=hold, workers=1, queue_size=1)
    up = new_id()
    assert wait_job(api, api.VM.create(up, vm_params(up))["jobId"])[
        "status"] == "done"
    try:
        api.VM.create(blocker, vm_params(blocker))
        assert held.wait(WAIT)
        # The room of creations and hibernations, and the room of
        # migrations, each full.
        queued = new_id()
        api.VM.create(queued, vm_params(queued))
        incoming = new_id()
        api.VM.migrationCreate(incoming, {"vmId": incoming, "xml": (
            f"<domain type='test'><name>in-{incoming[:8]}</name>"
            f"<uuid>{incoming}</uuid><memory unit='MiB'>64</memory>"
            "<os><type>hvm</type></os></domain>")})
        jobs = set(api.Host.getJobs())
        migrate = {"dst": f"unix:{tmp_path}/peer.sock",
                   "dstUri": "qemu+unix:///system?socket="
                   f"{tmp_path}/libvirt.sock"}
        absent = new_id()
        for call in (lambda vm: api.VM.hibernate(vm, str(tmp_path / "s")),
                     lambda vm: api.VM.migrate(vm, migrate)):
            with pytest.raises(VdsmError) as err:
                call(absent)
            assert err.value.code == 1, err.value
            with pytest.raises(VdsmError) as err:
                call(up)
            assert err.value.code == 1100, err.value
        assert set(api.Host.getJobs()) == jobs
        assert not (tmp_path / "s").exists()
        assert api.VM.getStats(up)["status"] == "Up"
    finally:
        gate.set()


def test_a_vm_that_is_not_here_is_no_vm_while_the_service_stops(
        make_api, tmp_path):
    """Once a stop began, a VM.hibernate or VM.migrate of a vmId that is
    not here is noVM (1), as a VM.create of a vmId here is exist (4):
    'the service is stopping: try again once it is back' (1100) is for
    a request a retry can make good. The control: the same calls for a
    VM here answer 1100, and nothing is queued."""
    api = make_api()
    up = new_id()
    assert wait_job(api, api.VM.create(up, vm_params(up))["jobId"])[
        "status"] == "done"
    jobs = set(api.Host.getJobs())
    api.stopping.set()   # as a SIGTERM sets it, before the pool stops
    migrate = {"dst": f"unix:{tmp_path}/peer.sock",
               "dstUri": f"qemu+unix:///system?socket={tmp_path}/l.sock"}
    absent = new_id()
    for call in (lambda vm: api.VM.hibernate(vm, str(tmp_path / "s")),
                 lambda vm: api.VM.migrate(vm, migrate)):
        with pytest.raises(VdsmError) as err:
            call(absent)
        assert err.value.code == 1, err.value
        with pytest.raises(VdsmError, match="stopping") as err:
            call(up)
        assert err.value.code == 1100
    with pytest.raises(VdsmError) as err:
        api.VM.create(up, vm_params(up))
    assert err.value.code == 4
    assert set(api.Host.getJobs()) == jobs


def test_an_answer_is_the_callers_own_in_process(api):
    """An answer in process is the caller's, as one read off the wire is:
    changing it changes nothing in the service. VM.getStats' and
    Host.getAllVmStats' params were the VM's own dict, so a caller's
    change showed in every later answer (over JSON-RPC too) and no longer
    matched the domain's metadata, which recovery reads."""
    vm_id = new_id()
    sent = vm_params(vm_id, custom={"disks": [1]})
    answer = api.VM.create(vm_id, sent)
    assert wait_job(api, answer["jobId"])["status"] == "done"
    job_id = answer["jobId"]

    stats = api.VM.getStats(vm_id)
    assert stats["params"] == sent           # the control: what was sent
    stats["params"]["memSize"] = 1
    stats["params"]["custom"]["disks"].append(2)
    listed = api.call("Host.getAllVmStats")[0]
    listed["params"]["injected"] = True
    listed["status"] = "Down"
    info = api.Host.getJobs()[job_id]
    info["status"] = "failed"

    assert api.VM.getStats(vm_id)["params"] == sent
    assert api.Host.getAllVmStats() == [
        {"vmId": vm_id, "status": "Up", "staging": False, "params": sent}]
    assert api.Host.getJobs()[job_id]["status"] == "done"
