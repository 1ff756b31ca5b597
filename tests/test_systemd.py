"""Running under systemd: READY=1 on $NOTIFY_SOCKET only once recovery
has ended and the listener accepts, STOPPING=1 when a stop begins, SIGHUP
reopens the log file, and a lock file keeps a second service of one
libvirt out (services of two run side by side)."""

import logging
import os
import signal
import subprocess
import sys

import pytest

from conftest import WAIT, StepGate
from serve import ROOT, ServeProcess
from test_recovery import previous_run
from vmjobs import hostfiles, instance_lock, listener
from vmjobs.client import Client
from vmjobs.config import Config
from vmjobs.instance_lock import InstanceLock, InstanceLocked
from vmjobs.sdnotify import Readiness, messages, notify, notify_socket
from vmjobs.server import Server


def test_ready_only_after_recovery_ended(make_api, tmp_path):
    previous_run(make_api, 20)
    gate = StepGate("commit")   # holds the first recover job
    api = make_api(step_hook=gate)
    server = Server(api, Config(listen=f"unix:{tmp_path}/vmjobs.sock"))
    server.start()
    sock = notify_socket(str(tmp_path / "notify"), WAIT)
    readiness = Readiness(api, server.address,
                          {"NOTIFY_SOCKET": str(tmp_path / "notify")})
    try:
        readiness.start()
        assert gate.reached.wait(WAIT)
        # The listener accepts, recovery runs: nothing sent.
        with Client(server.address) as client:
            assert client.call("Host.getStats")["recovering"] is True
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(4096)
        sock.settimeout(WAIT)
        gate.release.set()
        ready = messages(sock)
        assert ready["READY"] == "1"
        assert "recovery ended with 20 public VMs" in ready["STATUS"]
        assert api.recovery.done
        with Client(server.address) as client:
            assert len(client.call("Host.getVMList")) == 20
        readiness.stop()
        assert messages(sock)["STOPPING"] == "1"
    finally:
        gate.release.set()
        server.stop()
        sock.close()


def test_no_ready_after_stopping(make_api, tmp_path):
    previous_run(make_api, 1)
    gate = StepGate("commit")
    api = make_api(step_hook=gate)
    sock = notify_socket(str(tmp_path / "notify"), WAIT)
    readiness = Readiness(api, "here",
                          {"NOTIFY_SOCKET": str(tmp_path / "notify")})
    readiness.start()
    assert gate.reached.wait(WAIT)
    readiness.stop()
    gate.release.set()
    assert api.wait_recovered(WAIT)
    assert messages(sock) == {"STOPPING": "1", "STATUS": "stopping"}
    api.close()   # the readiness thread has nothing more to send
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.recv(4096)


def test_notify_without_socket_is_quiet():
    assert notify("READY=1", {}) is False


def test_serve_notifies_an_abstract_socket_and_reopens_its_log(tmp_path):
    name = f"@vmjobs-test-{os.getpid()}-{id(tmp_path)}"
    sock = notify_socket(name, WAIT)
    log = tmp_path / "serve.log"
    server = ServeProcess("--listen", f"unix:{tmp_path}/s.sock",
                          "--log-file", str(log), tmp_path=tmp_path,
                          env={"NOTIFY_SOCKET": name})
    try:
        assert messages(sock)["READY"] == "1"
        os.rename(log, tmp_path / "serve.log.1")   # as logrotate does
        server.process.send_signal(signal.SIGHUP)
        assert "log file reopened" in messages(sock)["STATUS"]
        status, out, err = server.stop()
        assert status == 0, err
        assert messages(sock)["STOPPING"] == "1"
    finally:
        server.kill()
        sock.close()
    # The line about the reopen is the first of the new file.
    assert "SIGHUP: log file reopened" in log.read_text()
    assert "T" in log.read_text().split()[0]   # ISO-8601
    assert not os.path.exists(tmp_path / "s.sock")


def test_a_second_instance_names_the_pid_holding_the_lock(tmp_path):
    lock = str(tmp_path / "run" / "vmjobs.lock")
    first = ServeProcess("--listen", f"unix:{tmp_path}/a.sock",
                         "--lock-file", lock, tmp_path=tmp_path)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "vmjobs", "serve", "--config", os.devnull,
             "--listen", f"unix:{tmp_path}/b.sock", "--lock-file", lock],
            capture_output=True, text=True, cwd=ROOT, timeout=60,
            env=dict(os.environ, PYTHONPATH=ROOT))
        assert second.returncode == 2
        assert f"PID {first.process.pid}" in second.stderr
        assert lock in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        assert first.stop()[0] == 0
    with InstanceLock(lock):   # free once the first stopped
        with pytest.raises(InstanceLocked, match=f"PID {os.getpid()}"):
            InstanceLock(lock)


def test_services_of_two_hypervisors_run_side_by_side(tmp_path):
    """API.md's command line has no lock flag, and a second libvirtd on
    the same host is how migrations are tried ("as tests run"): two
    services, each on its own listener and its own libvirt (here each
    its test driver, private to its process), both serve, with no
    --lock-file. The lock keeps out a second service of one libvirt."""
    services = []
    try:
        for name in ("a", "b"):
            services.append(ServeProcess(
                "--listen", f"unix:{tmp_path}/{name}.sock",
                "--state-dir", str(tmp_path / f"states-{name}"),
                "--image-dir", str(tmp_path / f"images-{name}"),
                default_lock=True))
        for service in services:
            with Client(service.address) as client:
                assert client.call("Host.ping") is True
    finally:
        for service in services:
            assert service.stop()[0] == 0


def test_a_directory_another_service_made_meanwhile_is_taken(tmp_path,
                                                              monkeypatch):
    """Two services may start at once (no lock between services of two
    libvirts): one may make a default directory between the other's look
    and its makedirs. Played here: the look said missing, and it is there
    (made by the other, its mode untouched); the control, a directory
    truly missing, is made with its mode."""
    made_by_other = tmp_path / "states"
    made_by_other.mkdir(mode=0o700)
    missing = tmp_path / "images"
    real_isdir = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda path: False if path == str(
        made_by_other) else real_isdir(path))
    config = Config(state_dirs=[str(made_by_other)],
                    image_dirs=[str(missing)])
    hostfiles.prepare_dirs(config, logging.getLogger("test"))
    assert (os.stat(made_by_other).st_mode & 0o777) == 0o700
    assert (os.stat(missing).st_mode & 0o777) == 0o711
    # The listener's directory (two services' sockets in one new one).
    listener.prepare_unix_socket(str(made_by_other / "a.sock"))
    listener.prepare_unix_socket(str(tmp_path / "run" / "b.sock"))
    assert (os.stat(tmp_path / "run").st_mode & 0o777) == 0o700


def test_the_default_lock_is_the_hypervisors():
    """The host's hypervisor keeps the lock it always had; another libvirt
    has one of its own, the same for every service of that URI; libvirt's
    test driver on its own (test:///...) is private to its process: no
    other service can share its domains, and it takes no lock. A
    --lock-file is always taken."""
    assert instance_lock.default_path("qemu:///system") == \
        "/run/vmjobs/vmjobs.lock"
    others = ["qemu+unix:///system?socket=/srv/a/libvirt-sock",
              "qemu+unix:///system?socket=/srv/b/libvirt-sock",
              "qemu+tls://host-b/system", "test+unix:///default"]
    paths = [instance_lock.default_path(uri) for uri in others]
    assert len(set(paths)) == len(others)
    for uri, path in zip(others, paths, strict=True):
        assert path == instance_lock.default_path(uri)   # the same each time
        assert os.path.dirname(path) == "/run/vmjobs"
        assert path.startswith("/run/vmjobs/vmjobs-") and \
            path.endswith(".lock")
    for private in ("test:///default", "test:///srv/host.xml"):
        assert instance_lock.default_path(private) is None
    for uri in others + ["qemu:///system", "test:///default"]:
        assert instance_lock.path_of(Config(uri=uri)) == \
            instance_lock.default_path(uri)
        assert instance_lock.path_of(
            Config(uri=uri, lock_file="/srv/l")) == "/srv/l"


def test_a_lock_file_that_cannot_be_made_says_what_to_do(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(InstanceLocked, match="cannot open the lock file .*"
                       "--lock-file"):
        InstanceLock(str(tmp_path / "file" / "vmjobs.lock"))
