"""The command line's errors: one line naming what failed (the URI, the
address, the path) and what to try; a traceback only with --debug."""

import json
import os
import socket
import subprocess
import sys
import uuid

import pytest

from serve import ROOT, TEST_URI, ServeProcess, wait_job_ended
from vmjobs import cli
from vmjobs.tools import loadtest


def vmjobs(*args, env=None):
    return subprocess.run([sys.executable, "-m", "vmjobs", *args],
                          capture_output=True, text=True, cwd=ROOT,
                          timeout=120,
                          env={**os.environ, "PYTHONPATH": ROOT, **(env or {})})


def one_line(result, command, *words):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"vmjobs {command}: "), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli-errors")
    # An incoming migration that never arrives fails fast: a job with an
    # error, for `jobs` to show.
    process = ServeProcess("--listen", "127.0.0.1:0", "--insecure",
                           "--state-dir", str(tmp / "states"),
                           "--image-dir", str(tmp / "images"),
                           config="[migration]\ndestination_timeout = 0.2\n",
                           tmp_path=tmp)
    yield process
    assert process.stop()[0] == 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_libvirt_names_the_uri(tmp_path):
    uri = f"qemu:///system?socket={tmp_path}/no-libvirt-sock"
    for made in ("states", "images"):   # made: serve says nothing of them
        (tmp_path / made).mkdir()
    dirs = ("--state-dir", str(tmp_path / "states"), "--image-dir",
            str(tmp_path / "images"))
    result = vmjobs("serve", "--config", os.devnull, "--uri", uri,
                    "--listen", "127.0.0.1:0", "--insecure", *dirs,
                    "--lock-file", str(tmp_path / "lock"))
    one_line(result, "serve", uri, "libvirtd running", "--uri")
    debug = vmjobs("--debug", "serve", "--config", os.devnull, "--uri", uri,
                   "--listen", f"unix:{tmp_path}/s.sock", *dirs,
                   "--lock-file", str(tmp_path / "lock"))
    assert "Traceback" in debug.stderr and "HypervisorError" in debug.stderr


def test_port_in_use_names_the_address(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = "127.0.0.1:%d" % busy.getsockname()[1]
        for made in ("states", "images"):
            (tmp_path / made).mkdir()
        result = vmjobs("serve", "--config", os.devnull, "--uri", TEST_URI,
                        "--listen", address, "--insecure", "--lock-file", str(tmp_path / "lock"),
                        "--state-dir", str(tmp_path / "states"),
                        "--image-dir", str(tmp_path / "images"),
                        "--log-file", str(tmp_path / "log"))
    one_line(result, "serve", address, "already in use", "--listen")


@pytest.mark.parametrize("command", ["vms", "jobs"])
def test_refused_connection_names_the_address(tmp_path, command):
    address = f"127.0.0.1:{free_port()}"
    one_line(vmjobs(command, "--server", address), command, address,
             "connection refused", "--server")
    missing = f"unix:{tmp_path}/none.sock"
    one_line(vmjobs(command, "--server", missing), command, missing,
             "no socket there")


def test_call_says_error_code_and_name(server):
    vm_id = str(uuid.uuid4())
    params = json.dumps({"vmId": vm_id, "vmName": "e", "memSize": 64})
    created = vmjobs("call", "--server", server.address, "VM.create",
                     f"vmID={vm_id}", f"vmParams={params}")
    assert created.returncode == 0, created.stderr
    assert wait_job_ended(server, json.loads(created.stdout)["jobId"]) == \
        "done"
    again = vmjobs("call", "VM.create", f"vmID={vm_id}", f"vmParams={params}",
                   "--server", server.address)
    assert again.returncode == 1
    one_line(again, "call", "error 4 (exist): ")
    scripted = vmjobs("call", "--json", "VM.create", f"vmID={vm_id}",
                      f"vmParams={params}", "--server", server.address)
    assert json.loads(scripted.stdout)["error"]["code"] == 4


def test_call_params_from_a_file_and_the_verb_list(server, tmp_path):
    path = tmp_path / "params.json"
    path.write_text(json.dumps({"fullStatus": True}))
    listed = vmjobs("call", "Host.getVMList", "-f", str(path),
                    "--server", server.address)
    assert listed.returncode == 0, listed.stderr
    assert isinstance(json.loads(listed.stdout), list)
    verbs = vmjobs("call", "--list")
    assert verbs.returncode == 0
    assert "VM.destroy          vmID: UUID, [gracefulAttempts: int]" in \
        verbs.stdout
    one_line(vmjobs("call", "Host.ping", "-f", str(tmp_path / "none")),
             "call", "none", "No such file")


def test_malformed_json_value_is_an_error_not_a_string():
    result = vmjobs("call", "VM.create", "vmID=x", 'vmParams={"vmId": 1,')
    one_line(result, "call", "vmParams", "not valid JSON")
    assert result.returncode == 2
    assert cli.cli_call.parse_params(["a=1", "b=x-1", "c=true", 'd="q"']) \
        == {"a": 1, "b": "x-1", "c": True, "d": "q"}


def test_cert_without_ca_is_a_clear_error():
    one_line(vmjobs("call", "Host.ping", "--cert", "c.pem", "--key", "c.key"),
             "call", "--cert needs --ca")
    one_line(vmjobs("loadtest", "--server", "127.0.0.1:1", "--cert", "c.pem"),
             "loadtest", "--cert needs --ca")


@pytest.mark.parametrize("args,words", [
    (["--vms", "-5"], ["--vms", "must be an integer of 1 or more, got -5"]),
    (["--workers", "0"], ["--workers"]),
    (["--rate", "nan"], ["--rate"]),
    (["--mem", "4"], ["--mem", "16 or more"]),
])
def test_loadtest_refuses_bad_arguments(args, words):
    result = vmjobs("loadtest", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words)


def test_loadtest_checks_outputs_and_plot_before_it_starts(tmp_path):
    missing = f"{tmp_path}/no/run.json"
    result = vmjobs("loadtest", "--vms", "5", "--json", missing)
    one_line(result, "loadtest", missing, "no directory")
    assert "VMs" not in result.stdout   # nothing started
    one_line(vmjobs("loadtest", "--vms", "5", "--plot", str(tmp_path)),
             "loadtest", "is a directory")
    # matplotlib absent: a package of that name that cannot be imported,
    # first on the path.
    (tmp_path / "matplotlib").mkdir()
    (tmp_path / "matplotlib" / "__init__.py").write_text(
        "raise ImportError('no matplotlib here')\n")
    result = vmjobs("loadtest", "--vms", "5", "--plot",
                    str(tmp_path / "p.png"),
                    env={"PYTHONPATH": f"{tmp_path}:{ROOT}"})
    one_line(result, "loadtest", "--plot needs matplotlib", "vmjobs[plot]")
    assert "VMs" not in result.stdout


def test_loadtest_destroys_what_it_made_even_when_it_fails(server, tmp_path):
    def public():
        return json.loads(vmjobs("call", "Host.getVMList", "--server",
                                 server.address).stdout)
    before = public()
    with pytest.raises(OSError):   # saving the JSON, after the storm
        loadtest.run(vms=20, server=server.address,
                     json_path=str(tmp_path / "no" / "run.json"),
                     out=open(os.devnull, "w"))
    assert public() == before


def test_loadtest_log_is_its_own_and_named(tmp_path):
    # --keep keeps the run's directory (test_leftovers.py: removed without).
    result = vmjobs("loadtest", "--vms", "3", "--keep",
                    env={"TMPDIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    logs = [line.split(": ", 1)[1] for line in result.stdout.splitlines()
            if line.startswith("log: ")]
    assert len(logs) == 2 and logs[0] == logs[1]
    assert os.path.dirname(logs[0]).startswith(f"{tmp_path}/vmjobs-loadtest-")
    assert os.path.getsize(logs[0]) > 0
    # concurrent-log-handler's lock file is in the run's own directory.
    assert os.listdir(tmp_path) == [os.path.basename(os.path.dirname(
        logs[0]))] or all(name.startswith("vmjobs-")
                          for name in os.listdir(tmp_path))


def test_report_on_a_wrong_file(tmp_path):
    (tmp_path / "x.json").write_text("{\"not\": \"a run\"}")
    one_line(vmjobs("report", str(tmp_path / "x.json")), "report",
             "x.json", "not a saved load test")
    one_line(vmjobs("report", str(tmp_path / "none.json")), "report",
             "none.json", "No such file")


def test_jobs_shows_errors_whole_ids_and_takes_a_prefix(server):
    vm_id = str(uuid.uuid4())
    # (A restore of a missing file, as first written here, is refused by
    # the verb now, issue 10: no job. An arrival that never comes is one.)
    xml = (f"<domain type='test'><name>in-{vm_id[:8]}</name><uuid>{vm_id}"
           "</uuid><memory unit='MiB'>64</memory><os><type>hvm</type></os>"
           "</domain>")
    created = vmjobs("call", "VM.migrationCreate", f"vmID={vm_id}",
                     "params=" + json.dumps({"vmId": vm_id, "xml": xml}),
                     "--server", server.address)
    assert created.returncode == 0, created.stderr
    job_id = json.loads(created.stdout)["params"]["jobId"]
    assert wait_job_ended(server, job_id) == "failed"
    table = vmjobs("jobs", job_id[:5], "--server", server.address)
    assert table.returncode == 0, table.stderr
    row = table.stdout.splitlines()[1]
    assert row.startswith(job_id) and vm_id in row and \
        "did not arrive" in row
    one_line(vmjobs("jobs", "zz", "--server", server.address), "jobs",
             "no job id starts with 'zz'")


def test_version_and_help_for_every_command_and_flag():
    result = vmjobs("--version")
    assert result.returncode == 0 and result.stdout.startswith("vmjobs 0.")
    parser = cli.build_parser()
    commands = next(a for a in parser._actions
                    if a.dest == "command").choices
    for name, sub in commands.items():
        assert sub.description, name
        for action in sub._actions:
            assert action.help, (name, action.dest)


@pytest.mark.parametrize("args, words", [
    (["call", "--timeout", "inf", "Host.ping"], ["--timeout", "finite"]),
    (["call", "--timeout", "0", "Host.ping"], ["--timeout", "above 0"]),
    (["call", "--timeout", "-1", "Host.ping"], ["--timeout", "above 0"]),
    (["call", "--timeout", "nan", "Host.ping"], ["--timeout", "finite"]),
    (["jobs", "--ended-within", "-5"], ["--ended-within", "0 or more"]),
    (["events", "--count", "0"], ["--count", "1 or more"]),
])
def test_durations_and_counts_out_of_range_are_usage_errors(args, words):
    """An operator audit: `call --timeout inf` was a traceback ("a bug"),
    --timeout 0, -1 or nan said "no answer in time; is the address
    right?" without trying, and `events --count 0` waited for ever."""
    result = vmjobs(*args, "--server", "unix:/nonexistent/vmjobs.sock")
    assert result.returncode == 2
    line = one_line(result, args[0], *words)
    assert "Traceback" not in result.stderr and "no answer" not in line


def test_durations_and_counts_in_range_are_taken():
    # The control: the same flags, in range, parse.
    parsed = cli.build_parser().parse_args(
        ["call", "--timeout", "2.5", "Host.ping"])
    assert parsed.timeout == 2.5
    assert cli.build_parser().parse_args(
        ["jobs", "--ended-within", "0"]).ended_within == 0
    assert cli.build_parser().parse_args(
        ["events", "--count", "1"]).count == 1


def test_a_reader_that_goes_away_is_no_server_error(server):
    """`vmjobs events | head -1`: once the reader of its output has gone,
    the command ends quietly, as a Unix filter killed by SIGPIPE does
    (status 141, nothing on stderr): it said 'cannot talk to the vmjobs
    server at ...: Broken pipe' (exit 2), blaming the server for its own
    closed pipe. The control: a server that goes away is still named."""
    read_end, write_end = os.pipe()
    # From an id the service never gave: its first line, a resync, comes
    # at once.
    follower = subprocess.Popen(
        [sys.executable, "-m", "vmjobs", "events", "--server",
         server.address, "--last-event-id", "0"], stdout=write_end,
        stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT})
    os.close(write_end)
    reader = os.fdopen(read_end)
    try:
        assert "resync" in reader.readline()
        reader.close()   # as `head -1` exits after its line
        # Its next line meets the closed pipe.
        while follower.poll() is None:
            more = str(uuid.uuid4())
            assert vmjobs("call", "--server", server.address, "VM.create",
                          f"vmID={more}", "vmParams=" + json.dumps(
                              {"vmId": more, "vmName": "piped",
                               "memSize": 64})).returncode == 0
            try:
                follower.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        assert (follower.returncode, follower.stderr.read()) == (141, "")
    finally:
        follower.kill()
        follower.wait()
        follower.stderr.close()
    gone = vmjobs("events", "--server", f"127.0.0.1:{free_port()}")
    one_line(gone, "events", "cannot talk to the vmjobs server")


def test_jobs_type_is_one_of_the_job_types(server):
    """`vmjobs jobs --type` takes the job types its help lists, those of
    the flows: a typo (`--type migration`) showed an empty table, as if
    no such job ran, with or without --watch; now a usage error naming
    the types. The control: each type of the flows is taken."""
    from vmjobs import flows
    types = {getattr(flows, name).job_type for name in flows.__all__
             if hasattr(getattr(flows, name), "job_type")}
    assert set(cli.JOB_TYPES) == types
    for job_type in sorted(types):
        assert cli.build_parser().parse_args(
            ["jobs", "--type", job_type]).type == job_type
    for args in (["jobs", "--type", "migration"],
                 ["jobs", "--watch", "--type", "create "]):
        result = vmjobs(*args, "--server", server.address)
        assert result.returncode == 2, result
        one_line(result, "jobs", "--type", "migration-source")
