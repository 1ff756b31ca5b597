"""`vmjobs call`, `vmjobs jobs` and `vmjobs vms` against a real server,
and docs/api.md's curl examples, run as written."""

import json
import os
import re
import subprocess
import sys
import uuid

import pytest

from serve import ROOT, ServeProcess, wait_job_info
from vmjobs.client import Client


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


def test_jobs_filters_ended_jobs(server):
    from vmjobs.cli_call import job_table, shown_job
    now = 1000.0
    jobs = {
        "r": {"id": "r", "job_type": "create", "status": "running",
              "step": "start", "created": 0.0},
        "new": {"id": "new", "job_type": "create", "status": "done",
                "step": "commit", "created": 900.0, "ended": 990.0},
        "old": {"id": "old", "job_type": "restore", "status": "failed",
                "step": "restore", "created": 0.0, "ended": 10.0},
    }
    def shown(**filters):
        return sorted(i for i, info in jobs.items()
                      if shown_job(info, now, **filters))
    assert shown() == ["new", "old", "r"]
    assert shown(ended_within=60) == ["new", "r"]
    assert shown(active_only=True) == ["r"]
    table = job_table({"r": jobs["r"]}, now, hidden=2)
    assert table.splitlines()[-1].startswith("(2 ended job(s) not shown")
    # Against the server: --active hides an ended job, --all shows it,
    # --type filters by type.
    vm_id = str(uuid.uuid4())
    created = vmjobs(server, "call", "VM.create", f"vmID={vm_id}",
                     "vmParams=" + json.dumps({"vmId": vm_id, "vmName":
                                               "filtered", "memSize": 64}))
    job_id = json.loads(created.stdout)["jobId"]
    wait_done(server, job_id)
    assert job_id not in vmjobs(server, "jobs", "--active").stdout
    assert job_id in vmjobs(server, "jobs", "--all").stdout
    assert job_id in vmjobs(server, "jobs", "--ended-within", "600").stdout
    assert job_id in vmjobs(server, "jobs", "--type", "create").stdout
    assert job_id not in vmjobs(server, "jobs", "--type", "restore").stdout


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
    assert wait_done(server, json.loads(created.stdout)["jobId"])[
        "status"] == "done"
    listed = vmjobs(server, "vms")
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["VM", "NAME", "STATUS"]
    assert [vm_id, "listed", "Up"] in [line.split() for line in lines[1:]]


def wait_done(server, job_id):
    return wait_job_info(server, job_id, lambda info: info["status"] in (
        "done", "failed", "aborted"))


def test_vms_without_a_vm_name(server):
    """A VM made from a domain XML keeps no vmName: '-' in its column."""
    vm_id = str(uuid.uuid4())
    xml = (f"<domain type='test'><name>from-xml-{vm_id[:8]}</name>"
           f"<uuid>{vm_id}</uuid><memory unit='MiB'>64</memory>"
           "<os><type>hvm</type></os></domain>")
    with Client(server.address) as client:
        job_id = client.call("VM.create", {"vmID": vm_id, "vmParams": {
            "vmId": vm_id, "xml": xml}})["jobId"]
    assert wait_done(server, job_id)["status"] == "done"
    rows = [line.split() for line in
            vmjobs(server, "vms").stdout.splitlines()]
    assert [vm_id, "-", "Up"] in rows


def test_call_in_vdsm_clients_form(server):
    vm_id = str(uuid.uuid4())
    created = vmjobs(server, "call", "VM", "create", f"vmID={vm_id}",
                     "vmParams=" + json.dumps({"vmId": vm_id, "vmName":
                                               "vdsm-form", "memSize": 64}))
    assert created.returncode == 0, created.stderr
    wait_done(server, json.loads(created.stdout)["jobId"])
    dotted = vmjobs(server, "call", "VM.getStats", f"vmID={vm_id}")
    spaced = vmjobs(server, "call", "VM", "getStats", f"vmID={vm_id}")
    assert spaced.returncode == 0, spaced.stderr
    assert json.loads(spaced.stdout) == json.loads(dotted.stdout)
    assert json.loads(spaced.stdout)["vmId"] == vm_id
    assert vmjobs(server, "call", "Host", "ping").stdout.strip() == "true"
    # Not a verb either way: the service's own answer.
    wrong = vmjobs(server, "call", "VM", "nope", f"vmID={vm_id}")
    assert wrong.returncode == 1 and "-32601" in wrong.stderr


def test_call_timeout(server, tmp_path):
    ok = vmjobs(server, "call", "--timeout", "30", "Host.ping")
    assert ok.returncode == 0 and ok.stdout.strip() == "true"
    # A server that accepts and never answers: the call gives up.
    import socket
    silent = socket.socket(socket.AF_UNIX)
    silent.bind(str(tmp_path / "silent.sock"))
    silent.listen()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "vmjobs", "call", "--timeout", "0.5",
             "Host.ping", "--server", f"unix:{tmp_path}/silent.sock"],
            capture_output=True, text=True, cwd=ROOT, timeout=60,
            env=dict(os.environ, PYTHONPATH=ROOT))
    finally:
        silent.close()
    assert result.returncode == 2
    assert "no answer in time" in result.stderr
    assert "--timeout" in result.stderr


def test_call_list_gives_types_and_optional_params():
    result = subprocess.run(
        [sys.executable, "-m", "vmjobs", "call", "--list"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
        env=dict(os.environ, PYTHONPATH=ROOT))
    rows = {line.split()[0]: line.split(None, 1)[1]
            for line in result.stdout.splitlines()[1:]}
    assert rows["VM.create"] == "vmID: UUID, vmParams: object"
    assert rows["VM.destroy"] == "vmID: UUID, [gracefulAttempts: int]"
    assert rows["Host.ping"] == "-"
    from vmjobs.api import VERBS
    assert set(rows) == set(VERBS)


def api_curl_examples():
    text = open(os.path.join(ROOT, "docs", "api.md")).read()
    block = text.split("<!-- curl examples -->", 1)[1].split("```", 2)[1]
    return [line for line in block.splitlines() if line.startswith("curl")]


def test_api_curl_examples(server):
    examples = api_curl_examples()
    assert len(examples) >= 4
    env = dict(os.environ, SOCK=server.address[len("unix:"):],
               VM=str(uuid.uuid4()))
    for example in examples:
        result = subprocess.run(["bash", "-c", example], capture_output=True,
                                text=True, env=env, timeout=60)
        assert result.returncode == 0, (example, result.stderr)
        answer = json.loads(result.stdout)
        assert "result" in answer, (example, answer)


def test_jobs_counts_only_the_jobs_its_flags_name_as_left_out(server):
    """The note under `vmjobs jobs`' table counts the ended jobs that
    time (--ended-within, --watch's 60 s) or --active leaves out, of the
    jobs the flags name: not the jobs of another --type (the watch's
    table holds every job the stream told of, whatever its type), nor
    those of another ID_PREFIX. It said '(2 ended job(s) not shown:
    --all shows them)' under `vmjobs jobs --watch --type restore` for two
    creations, which --all does not show either."""
    from vmjobs.cli import build_parser
    from vmjobs.cli_call import visible_table
    job_ids = []
    for name in ("noted-1", "noted-2"):
        vm_id = str(uuid.uuid4())
        created = vmjobs(server, "call", "VM.create", f"vmID={vm_id}",
                         "vmParams=" + json.dumps({"vmId": vm_id, "vmName":
                                                   name, "memSize": 64}))
        job_ids.append(json.loads(created.stdout)["jobId"])
        assert wait_done(server, job_ids[-1])["status"] == "done"
    # What the watch holds once the stream told it of them: every job.
    with Client(server.address) as client:
        listed = client.call("Host.getJobs")
    later = max(info["ended"] for info in listed.values()) + 3600

    def note(*flags, now=later):
        args = build_parser().parse_args(["jobs", *flags])
        last = visible_table(listed, args, now).splitlines()[-1]
        return last if last.startswith("(") else None

    # Creations only, ended an hour ago: none a restore watch leaves out.
    assert note("--watch", "--type", "restore") is None
    assert note("--active", "--type", "restore") is None
    # The control: the creations a creation watch leaves out (at least
    # these two; the module's other tests made more).
    hidden = int(note("--watch", "--type", "create")[1:].split()[0])
    assert hidden >= 2
    # One job named by its id: only it is left out.
    assert note("--active", job_ids[0]) == \
        "(1 ended job(s) not shown: --all shows them)"
