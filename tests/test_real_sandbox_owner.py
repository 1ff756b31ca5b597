"""A sandbox ends with the process that started it, however that process
ends: a benchmark or test killed before its `stop()` (by SIGKILL here)
leaves no supervisor, no libvirtd and no guest behind. `vmjobs sandbox
start` is the one way to a sandbox that outlives its command, and `vmjobs
sandbox stop` ends it."""

import json
import os
import signal
import subprocess
import sys

from realdaemon import require_daemon
from vmjobs.tools.procfs import wait_exits
from vmjobs.tools.sandbox import Sandbox

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Starts a sandbox and one tiny guest, prints the processes, then is killed
# with no chance to clean up.
OWNER = """
import json, os, signal, sys
import libvirt
from vmjobs import domxml
from vmjobs.hypervisor import Hypervisor
from vmjobs.params import parse_create
from vmjobs.tools.sandbox import Sandbox

sandbox = Sandbox(sys.argv[1]).start()
with Hypervisor(sandbox.uri, domain_type="qemu") as hv:
    vm_id = "5a9d0c4e-7b1f-4e2a-9c3d-0f6b8e1a2c47"
    spec = parse_create(vm_id, {"vmId": vm_id, "vmName": "owner-test",
                                "memSize": 32})
    conn = libvirt.open(sandbox.uri)
    conn.defineXML(domxml.compose(spec, hv.guest)).create()
    conn.close()
with open(os.path.join(sandbox.dir, "run", "libvirtd.pid")) as f:
    daemon = int(f.read())
print(json.dumps({"supervisor": sandbox._supervisor_pid(),
                  "daemon": daemon, "qemu": sandbox.qemu_pids()}),
      flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_owner_leaves_no_daemon_and_no_guest(tmp_path):
    require_daemon()
    owner = subprocess.run(
        [sys.executable, "-c", OWNER, str(tmp_path / "sandbox")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT})
    assert owner.returncode == -signal.SIGKILL, owner.stderr
    pids = json.loads(owner.stdout)
    assert len(pids["qemu"]) == 1   # the guest was running
    processes = [pids["supervisor"], pids["daemon"], *pids["qemu"]]
    assert wait_exits(processes, timeout=120) == []


def test_a_detached_sandbox_outlives_its_command(tmp_path):
    require_daemon()
    directory = str(tmp_path / "sandbox")
    vmjobs = [sys.executable, "-m", "vmjobs", "sandbox"]
    env = {**os.environ, "PYTHONPATH": ROOT}
    subprocess.run([*vmjobs, "start", directory], check=True, timeout=300,
                   cwd=ROOT, env=env, capture_output=True)
    sandbox = Sandbox(directory)
    supervisor = sandbox._supervisor_pid()
    try:
        # Its command has exited: the daemon still answers.
        assert wait_exits([supervisor], timeout=0) == [supervisor]
        sandbox._first_call()
    finally:
        subprocess.run([*vmjobs, "stop", directory], check=True,
                       timeout=300, cwd=ROOT, env=env, capture_output=True)
    assert wait_exits([supervisor], timeout=120) == []
