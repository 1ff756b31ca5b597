"""VDSM's optional parameters: VM.destroy(gracefulAttempts) and
Host.getVMList(vmList, onlyUUID) are accepted, and checked."""

import pytest

from conftest import new_id, our_domains, vm_params, wait_job
from test_migration_destination import incoming
from vmjobs.errors import InvalidParams
from vmjobs.params import MAX_GRACEFUL_ATTEMPTS, parse_graceful_attempts


def started(api, n):
    vm_ids = [new_id() for _ in range(n)]
    for vm_id in vm_ids:
        assert wait_job(api, api.VM.create(vm_id, vm_params(vm_id))[
            "jobId"])["status"] == "done"
    return vm_ids


def test_destroy_with_graceful_attempts(api):
    a, b, c, d = started(api, 4)
    assert api.VM.destroy(vmID=a, gracefulAttempts=3) is True
    assert api.call("VM.destroy", [b, 1]) is True   # by position
    # Any integer, as VDSM's range(gracefulAttempts): none below 1, at
    # most MAX_GRACEFUL_ATTEMPTS tried.
    assert api.VM.destroy(vmID=c, gracefulAttempts=-1) is True
    assert api.VM.destroy(vmID=d, gracefulAttempts=1000) is True
    assert our_domains(api.hv) == [] and api.Host.getVMList() == []


@pytest.mark.parametrize("value, tried", [
    (-1, 0), (0, 0), (3, 3), (10, 10), (11, 10), (1000, 10), (None, 0)])
def test_graceful_attempts_tried(value, tried):
    assert MAX_GRACEFUL_ATTEMPTS == 10
    assert parse_graceful_attempts(value) == tried


@pytest.mark.parametrize("value", ["2", True, 1.5, [1]])
def test_bad_graceful_attempts_are_refused(api, value):
    (vm_id,) = started(api, 1)
    with pytest.raises(InvalidParams) as error:
        api.VM.destroy(vmID=vm_id, gracefulAttempts=value)
    assert error.value.data == {"param": "gracefulAttempts"}
    assert api.Host.getVMList() == [vm_id]   # untouched


def test_get_vm_list_vm_list_and_only_uuid(api):
    a, b, c = started(api, 3)
    assert sorted(api.Host.getVMList(vmList=[a, c, new_id()])) == \
        sorted([a, c])
    assert api.Host.getVMList(fullStatus=True, vmList=[b]) == [
        {"vmId": b, "status": "Up"}]
    # As VDSM: onlyUUID gives ids only without fullStatus; an empty
    # vmList means every VM.
    assert api.Host.getVMList(fullStatus=True, vmList=[b],
                              onlyUUID=True) == [{"vmId": b, "status": "Up"}]
    assert api.call("Host.getVMList", [False, [a], True]) == [a]
    assert sorted(api.Host.getVMList(vmList=[])) == sorted([a, b, c])
    # A vmId in capitals names the same VM, as VM.getStats takes it.
    assert api.Host.getVMList(vmList=[b.upper()]) == [b]


def test_null_for_an_optional_param_is_its_default(api):
    """null for a verb's optional parameter is the parameter not given, as
    VM.destroy's gracefulAttempts, VM.migrationCreate's incomingLimit and
    Host.getJobs' filters took it: a caller passing params by position
    puts null where it gives none. Host.getVMList's fullStatus and
    onlyUUID answered -32602 ("must be true or false")."""
    a, b = started(api, 2)
    assert sorted(api.call("Host.getVMList", [None, None, None])) == \
        sorted([a, b])
    assert api.call("Host.getVMList", [None, [a]]) == [a]
    assert api.Host.getVMList(fullStatus=None, onlyUUID=None,
                              vmList=[b]) == [b]
    assert api.call("Host.getVMList", [True, [a], None]) == [
        {"vmId": a, "status": "Up"}]
    # The control: the others' null, as before.
    assert len(api.call("Host.getJobs", [None, None])) == 2
    assert api.call("VM.destroy", [a, None]) is True


@pytest.mark.parametrize("params,param", [
    ({"fullStatus": 0}, "fullStatus"),
    ({"vmList": "x"}, "vmList"),
    ({"vmList": [1]}, "vmList"),
    ({"vmList": ["not-a-uuid"]}, "vmList"),
    ({"onlyUUID": "yes"}, "onlyUUID"),
])
def test_bad_get_vm_list_params(api, params, param):
    with pytest.raises(InvalidParams) as error:
        api.call("Host.getVMList", params)
    assert error.value.data == {"param": param}


def plain(value):
    """Whether `value` is made of JSON's own types only (an enum member,
    even one equal to its string, is not)."""
    if type(value) is dict:
        return all(type(k) is str and plain(v) for k, v in value.items())
    if type(value) is list:
        return all(plain(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


def test_in_process_results_are_plain_json(api):
    """API.md: in process, "the same results" as over JSON-RPC: a status
    was a VmStatus member there (equal to its string, but not a str)."""
    vm_id = new_id()
    created = api.VM.create(vm_id, vm_params(vm_id))
    wait_job(api, created["jobId"])
    other = new_id()
    results = [created, api.VM.getStats(vm_id),
               api.Host.getVMList(fullStatus=True), api.Host.getAllVmStats(),
               api.Host.getStats(), api.Host.getJobs(),
               api.VM.migrationCreate(other, incoming(other))]
    for result in results:
        assert plain(result), result
    assert api.VM.destroy(other) is True
    assert api.VM.destroy(vm_id) is True
