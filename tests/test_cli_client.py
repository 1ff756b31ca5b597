"""`vmjobs call`, `vmjobs jobs` and `vmjobs vms` against a real server,
and the README's curl examples, run as written."""

import json
import os
import re
import subprocess
import sys
import uuid

import pytest

from serve import ROOT, ServeProcess
from vmjobs.tools.client import Client


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """On a Unix socket, as by default (in a directory of the test's)."""
    tmp = tmp_path_factory.mktemp("cli")
    process = ServeProcess("--listen", f"unix:{tmp}/vmjobs.sock",
                           "--state-dir", str(tmp), tmp_path=tmp)
    yield process
    status, _, err = process.stop()
    assert status == 0, err


def vmjobs(server, *args):
    return subprocess.run(
        [sys.executable, "-m", "vmjobs", *args, "--server", server.address],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
        env=dict(os.environ, PYTHONPATH=ROOT))


def test_call_jobs_vms(server):
    vm_id = str(uuid.uuid4())
    params = json.dumps({"vmId": vm_id, "vmName": "cli", "memSize": 64,
                         "launchPaused": True})
    result = vmjobs(server, "call", "VM.create", f"vmID={vm_id}",
                    f"vmParams={params}")
    assert result.returncode == 0, result.stderr
    job_id = json.loads(result.stdout)["jobId"]
    jobs = vmjobs(server, "jobs")
    assert jobs.returncode == 0
    assert re.search(rf"{job_id}\s+create\s+{vm_id}\s+\w+", jobs.stdout)
    one = vmjobs(server, "jobs", job_id[:6])   # an id prefix
    assert one.returncode == 0 and job_id in one.stdout
    waited = vmjobs(server, "call", "Host.getJobs", f'job_ids=["{job_id}"]')
    assert json.loads(waited.stdout)[job_id]["job_type"] == "create"


def test_call_failure_exits_non_zero_with_the_error(server):
    result = vmjobs(server, "call", "VM.getStats",
                    f"vmID={uuid.uuid4()}")
    assert result.returncode == 1
    assert result.stderr.startswith("vmjobs call: error 1 (noVM): ")
    assert len(result.stderr.splitlines()) == 1
    result = vmjobs(server, "call", "VM.getStats", "vmID=nope")
    assert result.stderr.startswith("vmjobs call: error -32602 "
                                    "(InvalidParams): ")
    assert result.stderr.rstrip().endswith("[param: vmID]")
    result = vmjobs(server, "call", "--json", "VM.getStats", "vmID=nope")
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"]["data"] == {"param": "vmID"}


def test_vms_lists_public_vms(server):
    vm_id = str(uuid.uuid4())
    created = vmjobs(server, "call", "VM.create", f"vmID={vm_id}",
                     "vmParams=" + json.dumps({"vmId": vm_id, "vmName":
                                               "listed", "memSize": 64}))
    job_id = json.loads(created.stdout)["jobId"]
    with Client(server.address) as client:
        for _ in range(10000):   # each round is a request: no event here
            if client.call("Host.getJobs", {"job_ids": [job_id]})[job_id][
                    "status"] == "done":
                break
    listed = vmjobs(server, "vms")
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["VM", "STATUS"]
    assert [vm_id, "Up"] in [line.split() for line in lines[1:]]


def readme_curl_examples():
    readme = open(os.path.join(ROOT, "README.md")).read()
    block = readme.split("<!-- curl examples -->", 1)[1].split("```", 2)[1]
    return [line for line in block.splitlines() if line.startswith("curl")]


def test_readme_curl_examples(server):
    examples = readme_curl_examples()
    assert len(examples) >= 4
    env = dict(os.environ, SOCK=server.address[len("unix:"):],
               VM=str(uuid.uuid4()))
    for example in examples:
        result = subprocess.run(["bash", "-c", example], capture_output=True,
                                text=True, env=env, timeout=60)
        assert result.returncode == 0, (example, result.stderr)
        answer = json.loads(result.stdout)
        assert "result" in answer, (example, answer)
