"""GET /metrics: Prometheus' text format on the JSON-RPC listener, read
with prometheus_client's own parser; each API has its own registry."""

import json
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import WAIT, StepGate, new_id, vm_params, wait_job
from test_recovery import previous_run
from vmjobs.client import Client, RemoteError, _UnixConnection
from vmjobs.config import Config
from vmjobs.errors import CreateError, NoVM, UnknownMethod
from vmjobs.server import Server


def get_metrics(address, headers=None, target="/metrics"):
    connection = _UnixConnection(address[len("unix:"):], WAIT)
    try:
        connection.request("GET", target, headers=headers or {})
        response = connection.getresponse()
        assert response.status == 200
        return response.getheader("Content-Type"), response.read().decode()
    finally:
        connection.close()


def scrape(address):
    content_type, text = get_metrics(address)
    # The classic text format, as prometheus_client's own server answers a
    # scraper that sends no Accept header.
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples}


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(api):
        server = Server(api, Config(listen=f"unix:{tmp_path}/s.sock"))
        server.start()
        servers.append(server)
        return server.address
    yield start
    for server in servers:
        server.stop()


class FailAt:
    """A step hook: the job of one vmId fails at `step`."""

    def __init__(self, vm_id, step):
        self.vm_id, self.step = vm_id, step

    def __call__(self, job, step):
        if getattr(job, "vm_id", None) == self.vm_id and step == self.step:
            raise CreateError("libvirt said no (injected)")


def test_metrics_of_a_run(make_api, serve):
    previous_run(make_api, 3)
    failing = new_id()
    api = make_api(step_hook=FailAt(failing, "start"))
    assert api.wait_recovered(WAIT)
    address = serve(api)
    vm_ids = [new_id() for _ in range(5)]
    with Client(address) as client:
        jobs = [client.call("VM.create", [vm_id, vm_params(vm_id)])["jobId"]
                for vm_id in vm_ids + [failing]]
        with pytest.raises(RemoteError) as refused:
            client.call("VM.create", [vm_ids[0], vm_params(vm_ids[0])])
        assert refused.value.code == 4
        with pytest.raises(RemoteError):
            client.call("VM.getStats", [new_id()])
    for job_id in jobs:
        wait_job(api, job_id)
    m = scrape(address)
    assert m[("vmjobs_jobs_total", (("job_type", "create"),
                                    ("status", "done")))] == 5
    assert m[("vmjobs_jobs_total", (("job_type", "create"),
                                    ("status", "failed")))] == 1
    assert m[("vmjobs_jobs_total", (("job_type", "recover"),
                                    ("status", "done")))] == 3
    assert m[("vmjobs_job_duration_seconds_count",
              (("job_type", "create"),))] == 6
    assert m[("vmjobs_job_duration_seconds_bucket",
              (("job_type", "create"), ("le", "+Inf")))] == 6
    assert m[("vmjobs_time_to_up_seconds_count",
              (("job_type", "create"),))] == 5     # the failed one is not
    assert m[("vmjobs_time_to_up_seconds_count",
              (("job_type", "recover"),))] == 3
    assert m[("vmjobs_refused_total", (("code", "4"),))] == 1
    assert m[("vmjobs_refused_total", (("code", "1"),))] == 1
    assert m[("vmjobs_vms", (("registry", "public"),))] == 8
    assert m[("vmjobs_vms", (("registry", "staging"),))] == 0
    assert m[("vmjobs_queued_jobs", ())] == 0
    assert m[("vmjobs_running_jobs", ())] == 0
    assert m[("vmjobs_workers", ())] == 4
    assert m[("vmjobs_admission_limit", ())] == 4   # not adaptive
    assert m[("vmjobs_recovering", ())] == 0
    assert m[("vmjobs_recovered_vms", ())] == 3
    assert m[("vmjobs_stuck_jobs", ())] == 0
    assert 0 < m[("vmjobs_recovery_seconds", ())] < WAIT


def test_time_to_up_counts_only_vms_that_came_up(make_api, hypervisor,
                                                 serve):
    """vmjobs_time_to_up_seconds is the time to a commit, of "startups
    that succeeded" (docs/service.md): a recover job that finds its domain
    stopped ends done in step left-stopped, and nothing came up. It was
    observed all the same, as a VM up (found by the contract audit, round
    12, scraping a served test driver). Beside it, the control: the
    running VM recovered is observed, and both jobs are counted done."""
    running, stopped = previous_run(make_api, 2)
    hypervisor.shared_connection.lookupByUUIDString(stopped).destroy()
    api = make_api()
    assert api.wait_recovered(WAIT)
    steps = {info["vm_id"]: (info["status"], info["step"]) for info in
             api.Host.getJobs(job_type="recover").values()}
    assert steps == {running: ("done", "commit"),
                     stopped: ("done", "left-stopped")}
    m = scrape(serve(api))
    assert m[("vmjobs_jobs_total", (("job_type", "recover"),
                                    ("status", "done")))] == 2
    assert m[("vmjobs_job_duration_seconds_count",
              (("job_type", "recover"),))] == 2
    assert m[("vmjobs_time_to_up_seconds_count",
              (("job_type", "recover"),))] == 1


def test_a_job_duration_is_not_read_off_the_wall_clock(make_api, serve,
                                                      monkeypatch):
    """vmjobs_job_duration_seconds is the time from the verb's answer to
    the job's end, measured on a clock that does not jump: the wall clock
    set back an hour while the job ran (NTP stepping it, an operator's
    `date -s`) made it observe -3600 s, and its _sum, a counter, went
    down. The system clock cannot be stepped under the other tests, so
    time.time is set back in this process alone. The control: the job's
    JobInfo timestamps are the wall clock's, as API.md says (seconds
    since the epoch), and show the step back."""
    gate = StepGate("start")
    api = make_api(step_hook=gate)
    address = serve(api)
    vm_id = new_id()
    job_id = api.VM.create(vm_id, vm_params(vm_id))["jobId"]
    assert gate.reached.wait(WAIT)
    wall = time.time
    monkeypatch.setattr(time, "time", lambda: wall() - 3600)
    gate.release.set()
    info = wait_job(api, job_id)
    monkeypatch.setattr(time, "time", wall)
    assert info["ended"] < info["created"]     # the wall clock's step
    m = scrape(address)
    seconds = m[("vmjobs_job_duration_seconds_sum",
                 (("job_type", "create"),))]
    assert 0 <= seconds < WAIT
    assert 0 <= m[("vmjobs_time_to_up_seconds_sum",
                   (("job_type", "create"),))] < WAIT


def refused(address, code):
    return scrape(address).get(("vmjobs_refused_total",
                                (("code", str(code)),)), 0)


def test_a_verb_answered_answer_too_large_is_counted(make_api, tmp_path):
    """A call answered -32603 "answer too large" (API.md, Transport: its
    answer is over rpc.max_response_bytes; in a batch, the calls past the
    bound are not run and each answers it) is a verb answered with an
    error code: vmjobs_refused_total{code="-32603"} counts each. It counted
    none: the refusals were counted by the audit, which saw the verb's own
    result (and logged result=ok)."""
    api = make_api()
    vm_id = new_id()
    # Opaque params of 2 KB: VM.getStats' answer is over 1 KiB.
    wait_job(api, api.VM.create(vm_id, vm_params(vm_id, blob="x" * 2048))[
        "jobId"])
    server = Server(api, Config(listen=f"unix:{tmp_path}/s.sock",
                                max_response_bytes=1024))
    server.start()
    try:
        with Client(server.address) as client:
            # The positive control: an answer within the bound, not counted.
            assert client.call("Host.ping") is True
            assert refused(server.address, -32603) == 0
            with pytest.raises(RemoteError) as too_large:
                client.call("VM.getStats", [vm_id])
            assert (too_large.value.code, too_large.value.message) == (
                -32603, "answer too large")
            assert refused(server.address, -32603) == 1
            # A batch: the first call runs and does not fit, the two after
            # it are not run; each of the three answers -32603, and a
            # notification past the bound is answered nothing.
            answers = client.post(json.dumps(
                [{"jsonrpc": "2.0", "id": i, "method": "VM.getStats",
                  "params": [vm_id]} for i in range(3)] +
                [{"jsonrpc": "2.0", "method": "Host.ping"}]).encode())
            assert [a["error"]["code"] for a in answers] == [-32603] * 3
            assert refused(server.address, -32603) == 4
            # A verb's own error is counted once, under its own code.
            with pytest.raises(RemoteError):
                client.call("VM.getStats", [new_id()])
            assert refused(server.address, 1) == 1
            assert refused(server.address, -32603) == 4
    finally:
        server.stop()


def test_a_request_that_names_no_verb_is_not_counted(api, serve):
    """vmjobs_refused_total counts "verbs answered with an error code"
    (API.md, Metrics): a body that is not JSON (-32700) or not a request
    (-32600) names no verb and is not counted; a call of a method that is
    not a verb (-32601) and a verb refused for its params (-32602) are."""
    address = serve(api)
    with Client(address) as client:
        for body, code in ((b"{", -32700), (b'{"jsonrpc": "2.0"}', -32600),
                           (b"[1]", -32600)):
            answer = client.post(body)
            answers = answer if isinstance(answer, list) else [answer]
            assert [a["error"]["code"] for a in answers] == [code]
        for method, params, code in (("VM.nosuch", [], -32601),
                                     ("VM.getStats", ["x"], -32602)):
            with pytest.raises(RemoteError) as err:
                client.call(method, params)
            assert err.value.code == code
    assert refused(address, -32700) == refused(address, -32600) == 0
    assert refused(address, -32601) == refused(address, -32602) == 1


def test_a_refused_notification_is_counted(api, serve):
    """A notification (no id) is run and answered nothing (JSON-RPC):
    its verb's refusal is counted all the same, by the code the verb
    answered with, since the metric is the one place it shows (API.md's
    "verbs answered with an error code", read as the verb's answer, not
    the transport's). In a batch beside a call answered with the same
    code: both counted, one answer on the wire; a notification that
    succeeds, the control, is counted nowhere."""
    address = serve(api)
    with Client(address) as client:
        answer = client.post(json.dumps([
            {"jsonrpc": "2.0", "id": 1, "method": "VM.getStats",
             "params": [new_id()]},
            {"jsonrpc": "2.0", "method": "VM.getStats", "params": [new_id()]},
            {"jsonrpc": "2.0", "method": "Host.ping"}]).encode())
    assert [a["error"]["code"] for a in answer] == [1]
    assert refused(address, 1) == 2
    assert sum(v for (name, _), v in scrape(address).items()
               if name == "vmjobs_refused_total") == 2


def test_a_refusal_in_process_is_counted_as_over_the_wire(api, serve):
    """vmjobs_refused_total counts "verbs answered with an error code"
    (API.md, Metrics), and the verbs are the same in process (API.md,
    Transport): a refusal by api.VM.getStats(...) or api.call(...) is
    counted as one over JSON-RPC is, each once. It counted only those
    answered over JSON-RPC, while the jobs of in-process calls were
    counted in vmjobs_jobs_total."""
    address = serve(api)
    # The control: a call that succeeds is counted nowhere.
    assert api.Host.ping() is True
    assert refused(address, 1) == 0
    with pytest.raises(NoVM):
        api.VM.getStats(new_id())
    assert refused(address, 1) == 1
    with pytest.raises(UnknownMethod):
        api.call("VM.nosuch")
    assert refused(address, -32601) == 1
    with Client(address) as client:
        with pytest.raises(RemoteError):
            client.call("VM.getStats", [new_id()])
    assert refused(address, 1) == 2   # once, not once per layer


def test_running_recovering_and_stuck_are_live(make_api, serve):
    previous_run(make_api, 1)
    gate = StepGate("commit")
    api = make_api(step_hook=gate, job_timeout=0.0)
    address = serve(api)
    assert gate.reached.wait(WAIT)   # the recover job, held
    m = scrape(address)
    assert m[("vmjobs_recovering", ())] == 1
    assert m[("vmjobs_running_jobs", ())] == 1
    assert m[("vmjobs_stuck_jobs", ())] == 1   # past its 0 s timeout
    assert m[("vmjobs_vms", (("registry", "staging"),))] == 1
    gate.release.set()
    assert api.wait_recovered(WAIT)
    assert api.pool.wait_idle(WAIT)
    m = scrape(address)
    assert m[("vmjobs_recovering", ())] == 0
    assert m[("vmjobs_stuck_jobs", ())] == 0
    assert m[("vmjobs_vms", (("registry", "public"),))] == 1


def test_each_api_counts_its_own(make_api, hypervisor):
    first, second = make_api(), make_api()
    vm_id = new_id()
    wait_job(first, first.VM.create(vm_id, vm_params(vm_id))["jobId"])
    assert b'vmjobs_jobs_total{job_type="create",status="done"} 1.0' in \
        first.metrics.render()
    assert b"vmjobs_jobs_total{" not in second.metrics.render()


def test_openmetrics_when_asked_for(make_api, serve):
    """A scraper that asks for OpenMetrics (Prometheus does, in its Accept
    header) gets it; the control, the classic format, is scrape()'s."""
    address = serve(make_api())
    content_type, text = get_metrics(address, {
        "Accept": "application/openmetrics-text; version=1.0.0,"
                  "text/plain;version=0.0.4;q=0.5"})
    assert content_type.startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n")
    assert "vmjobs_workers" in text



def test_a_scrape_with_a_query_is_a_scrape(make_api, serve):
    """GET /metrics is Prometheus' text format (API.md) whatever its query
    string: a scrape job with `params` sends one (prometheus_client's own
    server reads name[] there). It was answered 405, "POST to /". The
    query filters nothing here: every metric is sent."""
    address = serve(make_api())
    for target in ("/metrics?name[]=vmjobs_workers", "/metrics?",
                   "/metrics?module=vmjobs"):
        content_type, text = get_metrics(address, target=target)
        assert content_type == "text/plain; version=0.0.4; charset=utf-8"
        assert "vmjobs_workers 4.0" in text and "vmjobs_vms" in text
