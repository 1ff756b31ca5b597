"""The audit log: one INFO line per verb, naming the caller (Unix peer
uid, or the client certificate's subject), the vmId and jobId, the result
code and the milliseconds; a failed job logs a WARNING with its error."""

import logging
import os
import re
import subprocess
import sys

import pytest

from conftest import new_id, vm_params, wait_job
from serve import ROOT
from test_metrics import FailAt
from test_server_tls import pki  # noqa: F401 (a fixture)
from vmjobs.client import Client, RemoteError
from vmjobs.config import Config
from vmjobs.server import Server

LINE = re.compile(r"audit (\S+) caller=(\S+) vm=(\S+) job=(\S+) "
                  r"result=(.+) ms=\d+\.\d$")


def audit_lines(caplog):
    return [LINE.match(r.getMessage()).groups() for r in caplog.records
            if r.name == "vmjobs.audit" and r.levelno == logging.INFO]


def test_one_line_per_verb_over_a_unix_socket(make_api, tmp_path, caplog):
    failing = new_id()
    api = make_api(step_hook=FailAt(failing, "define"))
    server = Server(api, Config(listen=f"unix:{tmp_path}/s.sock"))
    server.start()
    caplog.set_level(logging.INFO, logger="vmjobs")
    vm_id = new_id()
    try:
        with Client(server.address) as client:
            job = client.call("VM.create", [vm_id, vm_params(vm_id)])["jobId"]
            with pytest.raises(RemoteError):
                client.call("VM.create", {"vmID": vm_id,
                                          "vmParams": vm_params(vm_id)})
            bad = client.call("VM.create", [failing, vm_params(failing)])
            wait_job(api, job)
            assert wait_job(api, bad["jobId"])["status"] == "failed"
            client.call("Job.delete", [job])
            client.call("Host.ping")
    finally:
        server.stop()
    me = f"uid:{os.getuid()},pid:{os.getpid()}"
    lines = audit_lines(caplog)
    assert lines[0] == ("VM.create", me, vm_id, job, "ok")
    assert lines[1][:4] == ("VM.create", me, vm_id, "-")
    assert lines[1][4].startswith("4 (exist): ")
    assert lines[2] == ("VM.create", me, failing, bad["jobId"], "ok")
    assert lines[3] == ("Job.delete", me, "-", job, "ok")
    assert lines[4] == ("Host.ping", me, "-", "-", "ok")
    assert len(lines) == 5
    failed = [r for r in caplog.records if r.levelno == logging.WARNING
              and bad["jobId"] in r.getMessage()]
    assert len(failed) == 1
    assert "libvirt said no (injected)" in failed[0].getMessage()


def test_each_connection_names_its_own_caller(make_api, tmp_path, caplog):
    """The caller is read once per connection (not per request): a second
    connection, from another process, between two requests of the first,
    is named by its own pid, and the first's later request by its own."""
    server = Server(make_api(), Config(listen=f"unix:{tmp_path}/s.sock"))
    server.start()
    caplog.set_level(logging.INFO, logger="vmjobs")
    try:
        with Client(server.address) as client:
            client.call("Host.ping")
            other = subprocess.run(
                [sys.executable, "-c",
                 "import os, sys\n"
                 "from vmjobs.client import Client\n"
                 "with Client(sys.argv[1]) as c:\n"
                 "    c.call('Host.ping')\n"
                 "print(os.getpid())", server.address],
                capture_output=True, text=True, check=True,
                env={**os.environ, "PYTHONPATH": ROOT}).stdout.strip()
            client.call("Host.ping")
    finally:
        server.stop()
    uid = os.getuid()
    assert [line[1] for line in audit_lines(caplog)] == [
        f"uid:{uid},pid:{os.getpid()}", f"uid:{uid},pid:{other}",
        f"uid:{uid},pid:{os.getpid()}"]


def test_caller_is_the_certificate_subject(make_api, pki, caplog):  # noqa
    config = Config(listen="127.0.0.1:0", tls_cert=f"{pki}/server.pem",
                    tls_key=f"{pki}/server.key", tls_ca=f"{pki}/ca.pem")
    server = Server(make_api(), config)
    server.start()
    caplog.set_level(logging.INFO, logger="vmjobs")
    try:
        with Client(server.address, cert=f"{pki}/engine.pem",
                    key=f"{pki}/engine.key", ca=f"{pki}/ca.pem") as client:
            client.call("Host.ping")
    finally:
        server.stop()
    assert audit_lines(caplog) == [("Host.ping", "commonName=engine", "-",
                                    "-", "ok")]


def test_a_caller_cannot_forge_an_audit_line(make_api, tmp_path, caplog):
    """A vmID with a newline (refused, but audited) stays on its line."""
    api = make_api()
    server = Server(api, Config(listen=f"unix:{tmp_path}/s.sock"))
    server.start()
    caplog.set_level(logging.INFO, logger="vmjobs")
    forged = "x\naudit VM.destroy caller=uid:0 vm=y job=- result=ok ms=0.1"
    try:
        with Client(server.address) as client:
            with pytest.raises(RemoteError):
                client.call("VM.getStats", [forged])
    finally:
        server.stop()
    (line,) = [r.getMessage() for r in caplog.records
               if r.name == "vmjobs.audit"]
    assert "\n" not in line and line.startswith("audit VM.getStats ")
    assert LINE.match(line).group(3).startswith("x\\naudit\\x20VM")
