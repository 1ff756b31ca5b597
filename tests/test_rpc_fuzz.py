"""Hostile input over JSON-RPC: random bytes, deep nesting, huge strings,
wrong types in every field of every verb, XML with DOCTYPEs and entities,
fields built to inject XML. Every answer carries a documented code (never
an internal error: that would be a bug), the server stays alive, and no
state changes."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serve import ServeProcess, post, rpc
from vmjobs.api import API, VERBS
from vmjobs.config import Config
from vmjobs.rpc import Dispatcher

# Every code API.md documents; GeneralException (100) and -32603 are left
# out on purpose: they mean a bug.
DOCUMENTED = {-32700, -32600, -32601, -32602, 1, 4, 9, 11, 12, 66, 68, 82,
              84, 99, 1100}
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() |
    st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) |
    st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20)

HOSTILE_XML = [
    "<?xml version='1.0'?><!DOCTYPE d [<!ENTITY a 'aaaaaaaaaa'>"
    "<!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'>]><domain>&b;</domain>",
    "<!DOCTYPE domain SYSTEM 'file:///etc/passwd'><domain/>",
    "<domain><name>&xxe;</name></domain>",
    "<domain type='test'><uuid>not</uuid></domain>",
    "<domain" + "<a>" * 10000,
    "\x00\x01<domain/>",
]


@pytest.fixture(scope="module")
def dispatcher():
    api = API(Config(uri=None, workers=2))
    yield Dispatcher(api)
    api.close()


def answers(dispatcher, body):
    raw = dispatcher.handle(body)
    if raw is None:
        return []
    answer = json.loads(raw)
    return answer if isinstance(answer, list) else [answer]


def assert_documented(responses):
    for response in responses:
        assert response["jsonrpc"] == "2.0"
        if "error" in response:
            assert response["error"]["code"] in DOCUMENTED, response


def assert_nothing_changed(api):
    assert api.registry.snapshot()[0] == [] and api.registry.snapshot()[1] == []
    assert api.Host.getJobs() == {}


@SETTINGS
@given(body=st.binary(max_size=2000))
def test_random_bytes(dispatcher, body):
    assert_documented(answers(dispatcher, body))
    assert_nothing_changed(dispatcher.api)


@SETTINGS
@given(method=st.sampled_from(sorted(VERBS)) | st.text(max_size=20),
       params=json_values, request_id=json_values,
       jsonrpc=st.sampled_from(["2.0", "1.0", None, 2]))
def test_wrong_types_in_every_field(dispatcher, method, params, request_id,
                                    jsonrpc):
    request = {"method": method, "params": params, "id": request_id}
    if jsonrpc is not None:
        request["jsonrpc"] = jsonrpc
    body = json.dumps(request).encode()
    assert_documented(answers(dispatcher, body))
    assert_documented(answers(dispatcher, json.dumps([request] * 3).encode()))
    assert_nothing_changed(dispatcher.api)


@SETTINGS
@given(verb=st.sampled_from(sorted(VERBS)),
       values=st.lists(json_values, max_size=4))
def test_wrong_params_by_position(dispatcher, verb, values):
    body = json.dumps({"jsonrpc": "2.0", "method": verb, "params": values,
                       "id": 1}).encode()
    assert_documented(answers(dispatcher, body))
    assert_nothing_changed(dispatcher.api)


@pytest.mark.parametrize("xml", HOSTILE_XML)
@pytest.mark.parametrize("verb", ["VM.create", "VM.migrationCreate"])
def test_hostile_domain_xml_is_refused_before_anything(dispatcher, xml, verb):
    vm_id = "5f0c3c1e-8a4b-4c55-9a51-2f1f3e3c9a10"
    key = "vmParams" if verb == "VM.create" else "params"
    body = json.dumps({"jsonrpc": "2.0", "method": verb, "id": 1, "params": {
        "vmID": vm_id, key: {"vmId": vm_id, "xml": xml}}}).encode()
    response, = answers(dispatcher, body)
    assert response["error"]["code"] == -32602
    assert response["error"]["data"] == {"param": "xml"}
    assert_nothing_changed(dispatcher.api)


def test_deep_nesting_and_huge_strings(dispatcher):
    for body in (b"[" * 200000 + b"]" * 200000,
                 b'{"a":' * 100000 + b"1" + b"}" * 100000,
                 json.dumps({"jsonrpc": "2.0", "method": "VM.create",
                             "id": 1, "params": ["x" * 3_000_000, {}]}
                            ).encode()):
        assert_documented(answers(dispatcher, body))
    assert_nothing_changed(dispatcher.api)


def test_a_real_server_survives_hostile_bodies(tmp_path):
    server = ServeProcess("--listen", "127.0.0.1:0", "--insecure",
                          tmp_path=tmp_path)
    try:
        hostile = [b"\xff\xfe\x00", b"[" * 50000, b'{"jsonrpc": "2.0"}',
                   b"[1, 2, 3]", b'{"jsonrpc": "2.0", "method": "VM.create",'
                   b' "params": {"vmID": [], "vmParams": "x"}, "id": 1}',
                   json.dumps({"jsonrpc": "2.0", "method": "VM.create",
                               "id": 2, "params": {
                                   "vmID": "5f0c3c1e-8a4b-4c55-9a51-"
                                           "2f1f3e3c9a10",
                                   "vmParams": {"vmId": "5f0c3c1e-8a4b-"
                                                "4c55-9a51-2f1f3e3c9a10",
                                                "xml": HOSTILE_XML[0]}}}
                              ).encode()]
        for body in hostile:
            status, answer = post(server.url, body)
            assert status == 200
            for response in (answer if isinstance(answer, list)
                             else [answer]):
                assert response["error"]["code"] in DOCUMENTED
        assert rpc(server.url, "Host.ping")["result"] is True
        assert rpc(server.url, "Host.getJobs")["result"] == {}
    finally:
        status, out, err = server.stop()
    assert status == 0, err
    assert "Traceback" not in (tmp_path / "serve.log").read_text()
