"""Metrics and health without root: the metrics listener (GET /metrics and
/healthz only, never a verb), GET /healthz through recovery, readiness and
stop, the process and build-info metrics."""

import http.client
import json
import os
import stat
import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import WAIT, StepGate, new_id, vm_params
from serve import ServeProcess
from test_recovery import previous_run
from vmjobs import __version__
from vmjobs.client import _UnixConnection
from vmjobs.config import Config, ConfigError
from vmjobs.sdnotify import messages, notify_socket
from vmjobs.server import Server


def connect(address):
    if address.startswith("unix:"):
        return _UnixConnection(address[len("unix:"):], WAIT)
    host, _, port = address.rpartition(":")
    return http.client.HTTPConnection(host.strip("[]"), int(port),
                                      timeout=WAIT)


def request(address, method, path, body=None, headers=None):
    """(status, headers, body) of one request on a new connection."""
    connection = connect(address)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


@pytest.fixture
def listeners(tmp_path):
    """start(api, metrics_listen) -> (main address, metrics address)."""
    servers = []

    def start(api, metrics_listen="127.0.0.1:0"):
        config = Config(listen=f"unix:{tmp_path}/main/{len(servers)}.sock",
                        metrics_listen=metrics_listen)
        pair = [Server(api, config), Server(api, config, metrics_only=True)]
        for server in pair:
            server.start()
            servers.append(server)
        return pair[0].address, pair[1].address
    yield start
    for server in servers:
        server.stop()


def create_body(vm_id):
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "VM.create",
                       "params": [vm_id, vm_params(vm_id)]}).encode()


def test_metrics_listener_never_takes_a_verb(api, listeners):
    assert api.wait_recovered(WAIT)
    main, metrics = listeners(api)
    refused_vm = new_id()
    headers = {"Content-Type": "application/json"}
    for path in ("/", "/metrics", "/healthz"):
        status, answer, _ = request(metrics, "POST", path,
                                    create_body(refused_vm), headers)
        assert status == 405 and answer["Allow"] == "GET"
    for method in ("PUT", "DELETE"):
        assert request(metrics, method, "/")[0] == 405
    assert request(metrics, "GET", "/")[0] == 405
    # No event stream either; the main listener's answers (the control).
    assert request(metrics, "GET", "/events")[0] == 405
    connection = connect(main)
    try:
        connection.request("GET", "/events")
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    # Positive control: the same request on the main listener runs.
    created_vm = new_id()
    status, _, body = request(main, "POST", "/", create_body(created_vm),
                              headers)
    assert status == 200 and "jobId" in json.loads(body)["result"]
    assert api.pool.wait_idle(WAIT)
    assert api.Host.getVMList() == [created_vm]
    assert not any(getattr(job, "vm_id", None) == refused_vm
                   for job in api.jobs.jobs())


def test_metrics_and_health_on_both_listeners(api, listeners):
    assert api.wait_recovered(WAIT)
    for address in listeners(api):
        status, headers, body = request(address, "GET", "/metrics")
        assert status == 200
        assert headers["Server"] == "vmjobs"    # no trailing space
        names = {sample.name for family in text_string_to_metric_families(
            body.decode()) for sample in family.samples}
        assert {"vmjobs_queued_jobs", "process_cpu_seconds_total",
                "process_resident_memory_bytes",
                "process_start_time_seconds"} <= names
        families = {f.name: f for f in text_string_to_metric_families(
            body.decode())}
        [build] = families["vmjobs_build_info"].samples
        assert build.labels == {"version": __version__} and build.value == 1
        assert request(address, "GET", "/healthz")[::2] == (200, b"ready\n")


def test_healthz_503_while_recovering_then_200(make_api, listeners):
    previous_run(make_api, 2)
    gate = StepGate("commit")
    api = make_api(step_hook=gate)
    assert gate.reached.wait(WAIT)
    addresses = listeners(api)
    for address in addresses:
        assert request(address, "GET", "/healthz")[::2] == \
            (503, b"recovering\n")
    gate.release.set()
    assert api.wait_recovered(WAIT)
    for address in addresses:
        assert request(address, "GET", "/healthz")[::2] == (200, b"ready\n")


def test_healthz_503_while_stopping(make_api, listeners):
    gate = StepGate("commit")
    api = make_api(step_hook=gate)
    assert api.wait_recovered(WAIT)
    _, metrics = listeners(api)
    vm_id = new_id()
    api.VM.create(vm_id, vm_params(vm_id))
    assert gate.reached.wait(WAIT)
    assert request(metrics, "GET", "/healthz")[::2] == (200, b"ready\n")
    # The stop waits for the job held at its commit: meanwhile, stopping.
    stopper = threading.Thread(target=api.close, args=("drain",))
    stopper.start()
    assert api.stopping.wait(WAIT)
    assert request(metrics, "GET", "/healthz")[::2] == (503, b"stopping\n")
    gate.release.set()
    stopper.join(WAIT)
    assert not stopper.is_alive()


def test_metrics_listener_tcp_only_on_loopback(api, listeners):
    config = Config(listen="unix:/nonexistent/s.sock",
                    metrics_listen="0.0.0.0:0")
    with pytest.raises(ConfigError, match="loopback"):
        Server(api, config, metrics_only=True)
    # Positive controls: loopback, by address and by name.
    for loopback in ("127.0.0.1:0", "[::1]:0", "localhost:0"):
        if loopback.startswith("[") and not os.path.exists(
                "/proc/net/if_inet6"):
            continue
        _, address = listeners(api, loopback)
        assert request(address, "GET", "/healthz")[0] == 200


def test_metrics_socket_is_open_to_local_users(api, listeners, tmp_path):
    main, metrics = listeners(api, f"unix:{tmp_path}/pub/metrics.sock")
    mode = os.stat(metrics[len("unix:"):]).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o666
    assert stat.S_IMODE(os.stat(tmp_path / "pub").st_mode) == 0o755
    # The verbs' socket stays root's (0600, in a 0700 directory).
    assert stat.S_IMODE(os.stat(main[len("unix:"):]).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "main").st_mode) == 0o700
    assert request(metrics, "GET", "/healthz")[0] == 200


def test_serve_with_a_metrics_listener(tmp_path):
    """`vmjobs serve --metrics-listen`, as run: health on both listeners,
    no verb on the metrics one, and the log's lock file in the run
    directory (beside the instance lock), not beside the log."""
    (tmp_path / "log").mkdir()
    ready = notify_socket(str(tmp_path / "notify"), WAIT)
    service = ServeProcess(
        "--listen", f"unix:{tmp_path}/main/s.sock",
        "--metrics-listen", "127.0.0.1:0",
        "--log-file", str(tmp_path / "log" / "serve.log"),
        "--lock-file", str(tmp_path / "run" / "vmjobs.lock"),
        env={"NOTIFY_SOCKET": str(tmp_path / "notify")})
    try:
        line = service.process.stdout.readline()
        assert line.startswith("vmjobs: metrics and health on 127.0.0.1:")
        metrics = line.rsplit(" ", 1)[1].strip()
        assert messages(ready)["READY"] == "1"     # recovery ended
        assert request(metrics, "GET", "/healthz")[0] == 200
        assert request(service.address, "GET", "/healthz")[0] == 200
        assert request(metrics, "POST", "/", create_body(new_id()),
                       {"Content-Type": "application/json"})[0] == 405
        status, out, err = service.stop()
    finally:
        service.kill()
        ready.close()
    assert status == 0, out + err
    assert [p.name for p in (tmp_path / "log").iterdir()] == ["serve.log"]
    assert ".__serve.lock" in {p.name for p in (tmp_path / "run").iterdir()}
