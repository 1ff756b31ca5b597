"""VM.create refuses missing (11) or malformed (-32602, param named) params without a trace, and accepts valid extremes and opaque keys."""

import xml.etree.ElementTree as ET

import pytest

from conftest import new_id, vm_params, wait_job
from vmjobs import domxml
from vmjobs.errors import InvalidParams, MissParam, NoVM, VmExists


# Both ways of calling the verb: they must behave the same.
def by_call(api, kwargs):
    return api.call("VM.create", kwargs)


def by_method(api, kwargs):
    return api.VM.create(**kwargs)


CALLERS = pytest.mark.parametrize("create", [by_call, by_method],
                                  ids=["call", "method"])


def assert_no_trace(api):
    """A refused request staged nothing, listed no job, defined nothing."""
    assert api.registry.snapshot()[0] == []
    assert api.registry.snapshot()[1] == []
    assert api.Host.getJobs() == {}
    assert api.hv.list_domains(domxml.METADATA_NS) == []
    stats = api.Host.getStats()
    assert (stats["staged"], stats["queued"], stats["running"]) == (0, 0, 0)


def domain_xml(vm_id, name="engine-vm", extra=""):
    return (f"<domain type='test'><name>{name}</name><uuid>{vm_id}</uuid>"
            f"<memory unit='MiB'>32</memory><os><type>hvm</type></os>"
            f"{extra}</domain>")


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE domain [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<domain type='test'><name>&lol3;</name><uuid>{vm_id}</uuid>
<memory unit='MiB'>32</memory><os><type>hvm</type></os></domain>"""

EXTERNAL_ENTITY = """<!DOCTYPE domain [
  <!ENTITY leak SYSTEM "file:///etc/hostname">
]>
<domain type='test'><name>&leak;</name><uuid>{vm_id}</uuid>
<memory unit='MiB'>32</memory><os><type>hvm</type></os></domain>"""


# -- missing parameters: MissParam (11) ------------------------------------

MISSING = {
    "no vmID": lambda v: {"vmParams": vm_params(v)},
    "no vmParams": lambda v: {"vmID": v},
    "no vmId in vmParams": lambda v: {
        "vmID": v, "vmParams": {"vmName": "x", "memSize": 64}},
    "no vmName": lambda v: {
        "vmID": v, "vmParams": {"vmId": v, "memSize": 64}},
    "no memSize": lambda v: {
        "vmID": v, "vmParams": {"vmId": v, "vmName": "x"}},
}


@CALLERS
@pytest.mark.parametrize("case", sorted(MISSING))
def test_missing_parameter_is_miss_param(api, create, case):
    with pytest.raises(MissParam) as err:
        create(api, MISSING[case](new_id()))
    assert err.value.code == 11
    assert_no_trace(api)


# -- malformed parameters: InvalidParams (-32602) naming the parameter -------

def with_params(**changes):
    """vmParams of a valid request, with `changes` applied (None: drop)."""
    def build(v):
        params = vm_params(v)
        for key, value in changes.items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = value
        return {"vmID": v, "vmParams": params}
    return build


def with_xml(make_xml):
    def build(v):
        return {"vmID": v, "vmParams": {"vmId": v, "xml": make_xml(v)}}
    return build


MALFORMED = {
    # vmID / vmId
    "vmID not a UUID": ("vmID", lambda v: {"vmID": "not-a-uuid",
                                           "vmParams": vm_params(v)}),
    "vmID not a string": ("vmID", lambda v: {"vmID": 42,
                                             "vmParams": vm_params(v)}),
    "vmId is another UUID": ("vmId", lambda v: {
        "vmID": v, "vmParams": vm_params(new_id())}),
    "vmId not a UUID": ("vmId", with_params(vmId="not-a-uuid")),
    # vmParams
    "vmParams a list": ("vmParams", lambda v: {"vmID": v, "vmParams": [v]}),
    "vmParams a string": ("vmParams", lambda v: {"vmID": v,
                                                 "vmParams": "vmId=" + v}),
    # memSize
    "memSize a string": ("memSize", with_params(memSize="64")),
    "memSize a bool": ("memSize", with_params(memSize=True)),
    "memSize a float": ("memSize", with_params(memSize=64.0)),
    "memSize 15": ("memSize", with_params(memSize=15)),
    # 1e999 over the wire (rpc.py: read as infinity), NaN in-process: the
    # key is named, not the whole vmParams
    "memSize infinite": ("memSize", with_params(memSize=float("inf"))),
    "smp NaN": ("smp", with_params(smp=float("nan"))),
    "an engine key infinite": ("custom", with_params(
        custom={"nested": [1, float("-inf")]})),
    "memSize 4194305": ("memSize", with_params(memSize=4194305)),
    # smp
    "smp 0": ("smp", with_params(smp=0)),
    "smp 513": ("smp", with_params(smp=513)),
    "smp a string": ("smp", with_params(smp="2")),
    "smp a bool": ("smp", with_params(smp=True)),
    # launchPaused
    "launchPaused yes": ("launchPaused", with_params(launchPaused="yes")),
    "launchPaused 1": ("launchPaused", with_params(launchPaused=1)),
    # vmName
    "vmName empty": ("vmName", with_params(vmName="")),
    "vmName blank": ("vmName", with_params(vmName="   ")),
    "vmName with a slash": ("vmName", with_params(vmName="</name><devices>")),
    "vmName too long": ("vmName", with_params(vmName="a" * 256)),
    "vmName with NUL": ("vmName", with_params(vmName="a\x00b")),
    "vmName with a line feed": ("vmName", with_params(vmName="a\nb")),
    "vmName with a tab": ("vmName", with_params(vmName="a\tb")),
    "vmName with a carriage return": ("vmName",
                                      with_params(vmName="a\rb")),
    "vmName not a string": ("vmName", with_params(vmName=5)),
    # libvirt makes directories of the bare name: `..` deleted
    # /var/lib/libvirt/qemu's tree (test_real_hostile_xml.py)
    "vmName dot": ("vmName", with_params(vmName=".")),
    "vmName dot dot": ("vmName", with_params(vmName="..")),
    # xml
    "xml not a string": ("xml", with_xml(lambda v: 5)),
    "xml not well-formed": ("xml", with_xml(
        lambda v: domain_xml(v).replace("</domain>", ""))),
    "xml root not domain": ("xml", with_xml(
        lambda v: f"<vm><uuid>{v}</uuid></vm>")),
    "xml without uuid": ("xml", with_xml(
        lambda v: domain_xml(v).replace(f"<uuid>{v}</uuid>", ""))),
    "xml uuid not a UUID": ("xml", with_xml(
        lambda v: domain_xml(v).replace(v, "not-a-uuid"))),
    "xml uuid is another VM": ("xml", with_xml(lambda v: domain_xml(new_id()))),
    "xml billion laughs": ("xml", with_xml(
        lambda v: BILLION_LAUGHS.format(vm_id=v))),
    "xml external entity": ("xml", with_xml(
        lambda v: EXTERNAL_ENTITY.format(vm_id=v))),
    "xml with a bare DOCTYPE": ("xml", with_xml(
        lambda v: "<!DOCTYPE domain>" + domain_xml(v))),
}


@CALLERS
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_parameter_is_invalid_params(api, create, case):
    param, build = MALFORMED[case]
    with pytest.raises(InvalidParams) as err:
        create(api, build(new_id()))
    assert err.value.code == -32602
    assert err.value.data == {"param": param}
    assert_no_trace(api)


def test_refused_request_leaves_an_existing_vm_alone(api):
    vm_id = new_id()
    wait_job(api, api.VM.create(vm_id, vm_params(vm_id))["jobId"])
    with pytest.raises(InvalidParams):
        api.VM.create(vm_id, vm_params(vm_id, memSize=15))
    assert api.Host.getVMList() == [vm_id]
    assert api.VM.getStats(vm_id)["status"] == "Up"
    assert len(api.Host.getJobs()) == 1


# -- what is accepted -------------------------------------------------------

@pytest.mark.parametrize("extra,vcpus,mem_kib", [
    ({"memSize": 16}, 1, 16 * 1024),
    ({"memSize": 4194304}, 1, 4194304 * 1024),
    ({"smp": 1}, 1, 64 * 1024),
    ({"smp": 512}, 512, 64 * 1024),
], ids=["memSize 16", "memSize 4194304", "smp 1", "smp 512"])
def test_valid_extremes_start(api, extra, vcpus, mem_kib):
    vm_id = new_id()
    job = wait_job(api, api.VM.create(vm_id, vm_params(vm_id, **extra))
                   ["jobId"])
    # The test driver takes every extreme; were one refused, the job would
    # have to end failed with createErr and leave nothing behind.
    assert job["status"] == "done", job
    assert api.VM.getStats(vm_id)["status"] == "Up"
    root = ET.fromstring(
        api.hv.shared_connection.lookupByUUIDString(vm_id).XMLDesc())
    assert int(root.findtext("vcpu")) == vcpus
    memory = root.find("memory")
    assert (memory.get("unit"), int(memory.text)) == ("KiB", mem_kib)


@pytest.mark.parametrize("name", ["...", "..a", "a..", ".hidden", "é"])
def test_names_of_dots_beside_others_start(api, name):
    """The controls of `vmName dot` and `vmName dot dot`."""
    vm_id = new_id()
    job = wait_job(api, api.VM.create(vm_id, vm_params(vm_id, vmName=name))
                   ["jobId"])
    assert job["status"] == "done", job
    assert api.hv.shared_connection.lookupByUUIDString(vm_id).name() == name


def test_launch_paused_true_ends_paused(api):
    vm_id = new_id()
    job = wait_job(api, api.VM.create(
        vm_id, vm_params(vm_id, launchPaused=True))["jobId"])
    assert job["status"] == "done"
    assert api.VM.getStats(vm_id)["status"] == "Paused"


def test_xml_refused_by_libvirt_fails_with_create_error_and_leaves_nothing(
        api):
    vm_id = new_id()
    # Well-formed and ours to accept, but libvirt wants a <name>.
    xml = domain_xml(vm_id).replace("<name>engine-vm</name>", "")
    job = wait_job(api, api.VM.create(vm_id, {"vmId": vm_id, "xml": xml})
                   ["jobId"])
    assert job["status"] == "failed"
    assert job["step"] == "define"
    assert job["error"]["code"] == 9
    assert api.registry.snapshot()[0] == []
    assert api.hv.list_domains(domxml.METADATA_NS) == []
    with pytest.raises(NoVM):
        api.VM.getStats(vm_id)


def test_unknown_keys_are_kept_and_returned(api):
    vm_id = new_id()
    params = vm_params(vm_id, smp=2, launchPaused=False, displayIp="0",
                       custom={"nested": [1, "two", None, {"b": True}]},
                       emptyList=[], ratio=0.5)
    job = wait_job(api, api.VM.create(vm_id, dict(params))["jobId"])
    assert job["status"] == "done"
    stats = api.VM.getStats(vm_id)
    assert stats["status"] == "Up"
    assert stats["params"] == params
    assert api.Host.getAllVmStats() == [stats]


def test_vm_id_is_canonicalised(api):
    vm_id = new_id()
    upper = vm_id.upper()
    assert upper != vm_id
    result = api.VM.create(upper, vm_params(upper))
    assert result["vmId"] == vm_id
    job = wait_job(api, result["jobId"])
    assert job["status"] == "done"
    assert job["vm_id"] == vm_id
    assert api.Host.getVMList() == [vm_id]
    # Looked up by either spelling, reported lower-case.
    assert api.VM.getStats(upper)["vmId"] == vm_id
    assert api.VM.getStats(vm_id)["vmId"] == vm_id
    assert [d.uuid for d in api.hv.list_domains(domxml.METADATA_NS)] == [
        vm_id]
    # The same VM spelled the other way is the same VM.
    with pytest.raises(VmExists) as err:
        api.VM.create(vm_id, vm_params(vm_id, vmName="other-name"))
    assert err.value.code == 4


def test_opaque_parameters_are_bounded(api):
    """A VM's opaque parameters (every vmParams key but xml) are kept in
    its domain's metadata and returned by the list verbs: at most
    domxml.MAX_PARAMS_BYTES of JSON. Five VMs of 3.9 MiB made every
    Host.getAllVmStats answer too large (a hostile-caller audit)."""
    big = new_id()
    params = {**vm_params(big), "x": "A" * domxml.MAX_PARAMS_BYTES}
    with pytest.raises(InvalidParams) as err:
        api.VM.create(big, params)
    assert err.value.data == {"param": "vmParams"}
    assert api.Host.getJobs() == {} and api.Host.getVMList() == []
    with pytest.raises(InvalidParams) as err:
        api.VM.migrationCreate(big, {**params, "xml": "<domain/>"})
    assert err.value.data == {"param": "params"}
    # The control: just under the bound is kept and returned whole; the
    # domain XML (xml) does not count.
    fits = new_id()
    params = {**vm_params(fits), "x": "A" * (domxml.MAX_PARAMS_BYTES - 200)}
    assert wait_job(api, api.VM.create(fits, params)["jobId"])[
        "status"] == "done"
    assert api.VM.getStats(fits)["params"]["x"] == params["x"]
    assert len(api.Host.getAllVmStats()) == 1
