"""A batch's bounds (API.md, Transport): at most `rpc.max_batch` calls
(more: -32600 and none runs), and an answer never larger than
`rpc.max_response_bytes` (the calls past it do not run and each answers
-32603 "answer too large"). Each refusal beside its positive control: the
same batch within the bound runs every call."""

import json

from conftest import new_id, vm_params, wait_job
from vmjobs.config import Config
from vmjobs.rpc import Dispatcher


def strict(raw):
    """Parsed as strict JSON: NaN and Infinity are refused."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(raw, parse_constant=refuse)


def call(method, params=None, request_id=1):
    request = {"jsonrpc": "2.0", "method": method, "id": request_id}
    if params is not None:
        request["params"] = params
    return request


def create(vm_id, request_id):
    return call("VM.create", [vm_id, vm_params(vm_id)], request_id)


def up_vms(api, count):
    for _ in range(count):
        vm_id = new_id()
        job_id = api.VM.create(vm_id, vm_params(vm_id))["jobId"]
        assert wait_job(api, job_id)["status"] == "done"


def batch(dispatcher, requests):
    raw = dispatcher.handle(json.dumps(requests).encode())
    return raw, strict(raw)


def test_the_defaults():
    config = Config()
    assert (config.max_batch, config.max_response_bytes) == (
        100, 16 * 1024 * 1024)
    dispatcher = Dispatcher(None)
    assert (dispatcher.max_batch, dispatcher.max_response_bytes) == (
        100, 16 * 1024 * 1024)


def test_a_batch_over_max_batch_runs_nothing(api):
    dispatcher = Dispatcher(api, max_batch=3)
    vm_ids = [new_id() for _ in range(4)]
    _, answer = batch(dispatcher, [create(v, i) for i, v in
                                   enumerate(vm_ids)])
    assert answer["error"]["code"] == -32600
    assert "rpc.max_batch" in answer["error"]["message"]
    assert api.Host.getVMList() == [] and api.Host.getJobs() == {}
    # The positive control: max_batch calls run.
    _, answers = batch(dispatcher, [create(v, i) for i, v in
                                    enumerate(vm_ids[:3])])
    assert all("jobId" in a["result"] for a in answers)
    assert len(api.Host.getJobs()) == 3


def test_calls_past_the_answer_bound_do_not_run(api):
    ping = len(json.dumps({"jsonrpc": "2.0", "id": 0, "result": True}))
    too_large = len(json.dumps({"jsonrpc": "2.0", "id": 0, "error": {
        "code": -32603, "message": "answer too large"}}))
    # A call runs while its answer and the -32603 of every call after it
    # fit: the room of five -32603s; a ping's answer is smaller than one.
    assert ping < too_large
    bound = 2 + 5 * (too_large + 1)
    dispatcher = Dispatcher(api, max_response_bytes=bound)
    late = new_id()
    requests = [call("Host.ping", request_id=i) for i in range(3)] + [
        call("Host.getVMList", [True], 3), create(late, 4)]
    # Five VMs make getVMList's answer far larger than a ping's.
    up_vms(api, 5)
    raw, answers = batch(dispatcher, requests)
    assert len(raw) <= bound
    assert [a.get("result") for a in answers[:3]] == [True] * 3
    for a in answers[3:]:
        assert a["error"] == {"code": -32603, "message": "answer too large"}
    assert [a["id"] for a in answers] == [0, 1, 2, 3, 4]
    assert late not in {vm["vmId"] for vm in api.Host.getVMList(True)}
    assert late not in {i["vm_id"] for i in api.Host.getJobs().values()}
    # The positive control: with room, every call runs.
    _, answers = batch(Dispatcher(api), requests)
    assert all("result" in a for a in answers), answers
    assert late in {i["vm_id"] for i in api.Host.getJobs().values()}


def test_one_answer_over_the_bound(api):
    up_vms(api, 20)
    request = json.dumps(call("Host.getVMList", [True])).encode()
    answer = strict(Dispatcher(api, max_response_bytes=1024).handle(
        request))
    assert answer["error"] == {"code": -32603, "message": "answer too large"}
    assert len(strict(Dispatcher(api).handle(request))["result"]) == 20


def test_a_small_batch_cannot_build_a_huge_answer(api):
    """The issue's case: 12 KB of batch asking for large answers."""
    up_vms(api, 50)
    bound = 64 * 1024
    requests = [call("Host.getAllVmStats", request_id=i) for i in range(100)]
    raw, answers = batch(Dispatcher(api, max_response_bytes=bound),
                         requests)
    assert len(raw) <= bound
    assert len(answers) == 100
    assert "result" in answers[0]
    assert answers[-1]["error"]["message"] == "answer too large"
