"""A job's error message is at most workers.MAX_ERROR_MESSAGE bytes of
JSON, cut with a mark: it lives as long as the job (an hour, up to 10,000
ended jobs) and may echo what the caller sent (libvirt's messages do). A
short message is kept whole (the positive control)."""

import json

import pytest

from conftest import WAIT, new_id
from faults import FaultyHypervisor
from vmjobs.config import Config
from workers import MAX_ERROR_MESSAGE, Job, Pool, bounded_error


class Failing(Job):
    def __init__(self, message):
        super().__init__()
        self.message = message

    def run(self):
        raise RuntimeError(self.message)


def error_of(message):
    with Pool(workers=1, queue_size=4) as pool:
        job = Failing(message)
        pool.submit(job)
        assert job.wait(WAIT)
        return job.info()["error"]["message"]


def test_a_long_error_message_is_cut_with_a_mark():
    message = error_of("x" * (1024 * 1024))
    assert message.startswith("x" * MAX_ERROR_MESSAGE)
    assert message.endswith(f"...[cut: {1024 * 1024} characters in all]")
    assert len(message) < MAX_ERROR_MESSAGE + 100


@pytest.mark.parametrize("char", ["\U0001f600", "\u00e9", "\x01", '"'])
def test_the_bound_is_in_bytes_as_json_writes_them(char):
    """Characters JSON escapes count as their escapes: 4,096 emoji took
    49 KB of JSON (a hostile-caller audit)."""
    message = error_of(char * 4096)
    assert message.startswith(char * 8)
    assert len(json.dumps(message)) < MAX_ERROR_MESSAGE + 100


def test_a_message_at_the_bound_is_kept_whole():
    assert error_of("x" * MAX_ERROR_MESSAGE) == "x" * MAX_ERROR_MESSAGE
    assert "cut" in error_of("x" * (MAX_ERROR_MESSAGE + 1))


def test_every_ended_job_kept_fits_one_answer(make_api, hypervisor):
    """Host.getJobs without a filter answers with every job kept: with
    the default bounds, max_ended failed jobs with the longest error fit
    rpc.max_response_bytes (measured on a real failed job's info, its
    message made the longest one)."""
    faulty = FaultyHypervisor(hypervisor)
    api = make_api(hv=faulty)
    faulty.arm(1)
    vm_id = new_id()
    job_id = api.VM.create(vm_id, {"vmId": vm_id, "vmName": "failing",
                                   "memSize": 64})["jobId"]
    assert api.jobs.get(job_id).wait(WAIT)
    info = api.Host.getJobs(job_ids=[job_id])[job_id]
    assert info["status"] == "failed", info
    info["error"] = bounded_error({**info["error"],
                                   "message": "\U0001f600" * 4096})
    config = Config()
    assert len(json.dumps({job_id: info})) * config.max_ended < \
        config.max_response_bytes


def test_a_short_error_message_is_kept_whole():
    assert error_of("libvirt: no such file") == "libvirt: no such file"


def _refusal(api, method, params):
    from vmjobs.rpc import Dispatcher
    raw = Dispatcher(api).handle(json.dumps(
        {"jsonrpc": "2.0", "method": method, "params": params,
         "id": 1}).encode())
    return json.loads(raw)["error"]


@pytest.mark.parametrize("method,params,param", [
    ("VM.getStats", {"vmID": "x" * 200_000}, "vmID"),
    ("VM.destroy", {"vmID": "\U0001f600" * 50_000}, "vmID"),
    ("x" * 200_000, {}, None),
])
def test_a_verbs_refusal_message_is_bounded_too(api, method, params, param):
    """A refusal's message echoes what the caller sent (the value, the
    method's name): it is cut as a job's error is (found by the clean-room
    run against API.md: a 200 KB vmID came back whole in the -32602
    message, in every such answer of a batch and to the in-process
    caller)."""
    error = _refusal(api, method, params)
    assert len(json.dumps(error["message"])) < MAX_ERROR_MESSAGE + 100
    assert "[cut: " in error["message"]
    if param is not None:
        assert error["code"] == -32602 and error["data"] == {"param": param}
    else:
        assert error["code"] == -32601


def test_a_short_refusal_message_is_whole(api):
    """The positive control: a short bad value is named whole."""
    error = _refusal(api, "VM.getStats", {"vmID": "not-a-uuid"})
    assert "'not-a-uuid'" in error["message"]
    assert "cut" not in error["message"]
