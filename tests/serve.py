"""Runs `vmjobs serve` as a real process for the tests, and talks to it."""

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import urllib.request
import uuid

from conftest import WAIT
from vmjobs.client import Client
from vmjobs.notifications import JOB_STATUS, RESYNC, SubscriptionCut

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What the tests serve unless they name a URI: libvirt's test driver, asked
# for by name (the service's default is the host's hypervisor).
TEST_URI = "test:///default"
WARNING = "vmjobs: warning: "


class ServeProcess:
    """`vmjobs serve ARGS`, started and ready (it printed its address)."""

    def __init__(self, *args, config=None, tmp_path=None, log_name="serve",
                 env=None, default_lock=False, default_listen=False,
                 nofile=None):
        """`nofile`: its (soft, hard) RLIMIT_NOFILE, else the tests' own.
        `default_lock`, `default_listen`: no --lock-file, no --listen,
        the service's own defaults in the host's /run/vmjobs (the tests
        give each service a private lock and socket unless asked: two
        suites on one machine, or a vmjobs service of the host's, bound
        the same socket)."""
        command = [sys.executable, "-m", "vmjobs", "serve", *args]
        if "--uri" not in args and "uri =" not in (config or ""):
            command += ["--uri", TEST_URI]
        if config is not None:
            path = tmp_path / "vmjobs.conf"
            path.write_text(config)
            command += ["--config", str(path)]
        elif "--config" not in args:   # not the host's /etc/vmjobs
            command += ["--config", os.devnull]
        # Not the host's /run/vmjobs.
        self._run_dir = tempfile.TemporaryDirectory()
        if "--lock-file" not in args and not default_lock:
            command += ["--lock-file", os.path.join(self._run_dir.name,
                                                    "vmjobs.lock")]
        if "--listen" not in args and "listen =" not in (config or "") \
                and not default_listen:
            socket_path = os.path.join(self._run_dir.name, "vmjobs.sock")
            command += ["--listen", f"unix:{socket_path}"]
        if "--log-file" not in args:
            command += ["--log-file", str(tmp_path / f"{log_name}.log")
                        if tmp_path else "-"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=ROOT, **(env or {})),
            preexec_fn=None if nofile is None else (
                lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile)))
        line = self.process.stdout.readline()   # blocks until ready
        self.warnings = []   # what it said before it was ready
        while line.startswith(WARNING):
            self.warnings.append(line[len(WARNING):].strip())
            line = self.process.stdout.readline()
        if not line.startswith("vmjobs: serving on "):
            self.process.kill()
            raise RuntimeError(f"serve did not start: {line!r} "
                               f"{self.process.stderr.read()}")
        self.address = line.split("serving on ", 1)[1].strip()
        self.url = f"http://{self.address}/"

    def stop(self, signum=signal.SIGTERM, timeout=60):
        """Send `signum`; returns (exit status, what it printed after)."""
        self.process.send_signal(signum)
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def insecure_tcp(tmp_path):
    """A fixture's body: `vmjobs serve` on loopback TCP without TLS
    (--insecure), yielded, then stopped cleanly (exit status 0)."""
    served = ServeProcess("--listen", "127.0.0.1:0", "--insecure",
                          "--state-dir", str(tmp_path), tmp_path=tmp_path)
    yield served
    status, _, err = served.stop()
    assert status == 0, err


def post(url, body, headers=None, timeout=30):
    """POST `body` (bytes or a JSON-able value): (status, decoded answer)."""
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type":
                                              "application/json",
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read()
            return response.status, json.loads(data) if data else None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def rpc(url, method, params=None, request_id=1):
    request = {"jsonrpc": "2.0", "method": method, "id": request_id}
    if params is not None:
        request["params"] = params
    status, answer = post(url, request)
    assert status == 200, (status, answer)
    return answer


def wait_job_info(server, job_id, reached):
    """The job's JobInfo once `reached(info)` is true: read once, then
    followed on the service's event stream (subscribed first, so that no
    change in between is missed), each wait bounded by WAIT."""
    with Client(server.address, timeout=WAIT) as stream, \
            Client(server.address, timeout=WAIT) as client:
        def read():
            return client.call("Host.getJobs", {"job_ids": [job_id]})[job_id]
        changes = stream.events()
        info = read()
        while not reached(info):
            try:
                notification = next(changes)
            except (StopIteration, SubscriptionCut, OSError) as exc:
                raise AssertionError(f"job {job_id} did not get there "
                                     f"({exc!r}): {info}") from None
            if notification.method == JOB_STATUS + job_id:
                info = notification.params[job_id]
            elif notification.method == RESYNC:
                info = read()
        return info


def wait_job_ended(server, job_id):
    """The job's final status."""
    return wait_job_info(server, job_id, lambda info: info["status"] in (
        "done", "failed", "aborted"))["status"]


def storm(server, vms, accepted, reached, after, mem_mib=64):
    """VM.create `vms` times over RPC, as an engine in a storm would. The
    vmIds accepted go to `accepted`; `reached` is set once `after` were
    accepted (or the storm is over). Ends early when the server stops
    listening."""
    for _ in range(vms):
        vm_id = str(uuid.uuid4())
        try:
            answer = rpc(server.url, "VM.create", [vm_id, {
                "vmId": vm_id, "vmName": f"storm-{vm_id}",
                "memSize": mem_mib}])
        except OSError:
            break   # the server stopped (or was killed)
        if "result" in answer:
            accepted.append(vm_id)
        if len(accepted) == after:
            reached.set()
    reached.set()
