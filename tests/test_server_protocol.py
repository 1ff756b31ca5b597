"""JSON-RPC 2.0 over HTTP, against a real `vmjobs serve` process: results,
VDSM codes for verb failures, the standard codes for the rest, batches and
notifications; nothing a refused request carries changes any state."""

import http.client
import socket
import uuid

import pytest

from serve import ServeProcess, post, rpc, wait_job_ended


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = ServeProcess("--listen", "127.0.0.1:0", "--insecure",
                           tmp_path=tmp_path_factory.mktemp("serve"))
    yield process
    status, out, _ = process.stop()
    assert status == 0
    assert "staged=0" in out


@pytest.fixture
def quiet_server(server):
    """The shared server once every job on it has ended, for a test that
    compares its state before and after a request: no job of an earlier
    test may commit meanwhile (a VM.create's commit changed the VM list
    under such a test once)."""
    settle(server)
    return server


def settle(server):
    """Wait until every job on the server has ended."""
    for job_id, info in rpc(server.url, "Host.getJobs")["result"].items():
        if info["status"] not in ("done", "failed", "aborted"):
            wait_job_ended(server, job_id)


def new_vm():
    vm_id = str(uuid.uuid4())
    return vm_id, {"vmId": vm_id, "vmName": f"rpc-{vm_id[:8]}",
                   "memSize": 64}


def state(server):
    return (rpc(server.url, "Host.getVMList")["result"],
            rpc(server.url, "Host.getStats")["result"]["staged"])


def test_ping(server):
    assert rpc(server.url, "Host.ping") == {"jsonrpc": "2.0", "id": 1,
                                            "result": True}


def test_create_by_name_and_by_position(server):
    vm_id, params = new_vm()
    answer = rpc(server.url, "VM.create", {"vmID": vm_id,
                                           "vmParams": params})
    assert answer["result"]["status"] == "WaitForLaunch"
    other, other_params = new_vm()
    answer = rpc(server.url, "VM.create", [other, other_params], "abc")
    assert answer["id"] == "abc"
    jobs = rpc(server.url, "Host.getJobs", {"job_ids": [
        answer["result"]["jobId"]]})["result"]
    assert list(jobs) == [answer["result"]["jobId"]]
    settle(server)    # its jobs end within the test


@pytest.mark.parametrize("body,code", [
    (b"{not json", -32700),
    (b"", -32700),
    (b"[" * 100000 + b"]" * 100000, -32700),
    (b'{"jsonrpc": "1.0", "method": "Host.ping", "id": 1}', -32600),
    (b'{"jsonrpc": "2.0", "method": 5, "id": 1}', -32600),
    (b'{"jsonrpc": "2.0", "method": "Host.ping", "params": 3, "id": 1}',
     -32600),
    (b'{"jsonrpc": "2.0", "method": "Host.ping", "id": {}}', -32600),
    (b'"just a string"', -32600),
    (b"[]", -32600),
    (b'{"jsonrpc": "2.0", "method": "VM.explode", "id": 1}', -32601),
])
def test_protocol_errors(quiet_server, body, code):
    server = quiet_server
    before = state(server)
    status, answer = post(server.url, body)
    assert status == 200
    assert answer["error"]["code"] == code
    assert state(server) == before


@pytest.mark.parametrize("params,code,param", [
    ({"vmID": "not-a-uuid", "vmParams": {}}, -32602, "vmID"),
    ({"vmID": 5, "vmParams": {}}, -32602, "vmID"),
    ({"vmParams": {}}, 11, None),
    ({"vmID": "UUID", "vmParams": {"vmId": "UUID", "vmName": "x",
                                   "memSize": "lots"}}, -32602, "memSize"),
    ({"vmID": "UUID", "vmParams": {"vmId": "UUID", "vmName": "x",
                                   "memSize": 64, "smp": 0}}, -32602, "smp"),
    ({"vmID": "UUID", "vmParams": {"vmId": "UUID", "memSize": 64}}, 11,
     None),
    ({"vmID": "UUID", "vmParams": {"vmId": "UUID", "xml": "<domain"}},
     -32602, "xml"),
    ({"vmID": "UUID", "vmParams": [1, 2]}, -32602, "vmParams"),
    ({"vmID": "UUID", "vmParams": {}, "extra": 1}, -32602, "extra"),
])
def test_bad_params(quiet_server, params, code, param):
    server = quiet_server
    vm_id = str(uuid.uuid4())
    params = {key: (vm_id if value == "UUID" else
                    {k: vm_id if v == "UUID" else v for k, v in
                     value.items()} if isinstance(value, dict) else value)
              for key, value in params.items()}
    before = state(server)
    answer = rpc(server.url, "VM.create", params)
    assert answer["error"]["code"] == code
    if param is not None:
        assert answer["error"]["data"] == {"param": param}
    assert state(server) == before


def test_verb_failures_carry_vdsm_codes(server):
    assert rpc(server.url, "VM.getStats", [str(uuid.uuid4())])[
        "error"]["code"] == 1
    assert rpc(server.url, "Job.abort", ["no-such-job"])["error"][
        "code"] == 66
    vm_id, params = new_vm()
    rpc(server.url, "VM.create", [vm_id, params])
    assert rpc(server.url, "VM.create", [vm_id, params])["error"][
        "code"] == 4
    settle(server)


def test_batch_mixing_good_and_bad_calls(server):
    vm_id, params = new_vm()
    before = rpc(server.url, "Host.getVMList")["result"]
    status, answer = post(server.url, [
        {"jsonrpc": "2.0", "method": "Host.ping", "id": 1},
        {"jsonrpc": "2.0", "method": "No.such", "id": 2},
        {"jsonrpc": "2.0", "method": "VM.create", "params": {
            "vmID": "bad", "vmParams": {}}, "id": 3},
        {"jsonrpc": "2.0", "method": "Host.ping"},   # notification
        1,
        {"jsonrpc": "2.0", "method": "VM.create", "params": [vm_id, params],
         "id": 4},
    ])
    assert status == 200
    by_id = {a["id"]: a for a in answer}
    assert len(answer) == 5   # no answer to the notification
    assert by_id[1]["result"] is True
    assert by_id[2]["error"]["code"] == -32601
    assert by_id[3]["error"]["code"] == -32602
    assert by_id[None]["error"]["code"] == -32600
    assert by_id[4]["result"]["vmId"] == vm_id
    assert rpc(server.url, "VM.getStats", [vm_id])["result"]["vmId"] == \
        vm_id
    assert set(before) <= set(rpc(server.url, "Host.getVMList")["result"]) \
        | {vm_id}
    settle(server)


def test_notifications_run_and_get_no_answer(server):
    vm_id, params = new_vm()
    status, answer = post(server.url, {"jsonrpc": "2.0", "method":
                                       "VM.create", "params": [vm_id,
                                                               params]})
    assert (status, answer) == (204, None)
    jobs = rpc(server.url, "Host.getJobs")["result"]
    assert any(info["vm_id"] == vm_id for info in jobs.values())
    status, answer = post(server.url, [{"jsonrpc": "2.0",
                                        "method": "Host.ping"}])
    assert (status, answer) == (204, None)
    settle(server)


def test_a_notifications_answer_is_a_bare_204(server):
    """The answer to notifications alone is 204 No Content with neither a
    body nor a Content-Length, which RFC 9110 (8.6) forbids in a 204: it
    said 'Content-Length: 0' (and a Content-Type for no content). The
    control: the kept connection's next request, a call, is answered
    with its length as before."""
    host, port = server.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        def send(body):
            sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\n"
                         b"Content-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body),
                                                            body))
        received = b""
        send(b'{"jsonrpc": "2.0", "method": "Host.ping"}')
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        head, _, rest = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 204 No Content\r\n")
        names = [line.split(b":", 1)[0].lower()
                 for line in head.split(b"\r\n")[1:]]
        assert b"content-length" not in names, head
        assert b"content-type" not in names, head
        assert rest == b""
        send(b'{"jsonrpc": "2.0", "method": "Host.ping", "id": 7}')
        answer = b'{"jsonrpc": "2.0", "id": 7, "result": true}'
        while not received.endswith(answer):
            received += sock.recv(65536)
        second = received.split(b"\r\n\r\n", 1)[1]
        assert second.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Content-Length: %d\r\n" % len(answer) in second


def test_a_path_is_found_or_not_whatever_the_method(server):
    """A path the listener does not serve is 404 whatever the method: a
    GET of one was 405 'POST to /' with Allow: POST, which said the path
    was there for a POST (a POST to it is 404); and the body of such a GET
    was dropped twice, so that the connection's next request lost its
    first bytes and was answered 400. A method a path does not take is
    405 naming the one it does: DELETE /metrics said Allow: POST, POST
    /metrics was 404. The controls: GET / is still 405 (Allow: POST),
    GET /healthz 200, POST /other 404."""
    host, port = server.address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def ask(method, path, body=None):
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.getheader("Allow"), response.read()
    for method in ("GET", "DELETE", "PUT", "HEAD", "POST"):
        assert ask(method, "/other")[0] == 404, method
    assert ask("GET", "/other", body=b"x" * 40)[0] == 404
    assert ask("GET", "/healthz")[0] == 200   # not eaten: answered
    assert ask("DELETE", "/metrics")[:2] == (405, "GET")
    assert ask("POST", "/metrics", body=b"{}")[:2] == (405, "GET")
    assert ask("PUT", "/healthz")[:2] == (405, "GET")
    assert ask("HEAD", "/events")[:2] == (405, "GET")
    assert ask("GET", "/")[:2] == (405, "POST")
    assert ask("HEAD", "/")[:2] == (405, "POST")
    assert ask("GET", "/healthz") == (200, None, b"ready\n")
    conn.close()


def test_http_level_refusals(server):
    host, port = server.address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", "/")
    response = conn.getresponse()
    response.read()
    assert response.status == 405
    conn.request("POST", "/other", body=b"{}")
    response = conn.getresponse()
    response.read()
    assert response.status == 404
    conn.close()
