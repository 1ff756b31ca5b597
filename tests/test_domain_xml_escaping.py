"""XML metacharacters in vmName and opaque params are stored literally, and engine XML keeps its own metadata beside ours."""

import xml.etree.ElementTree as ET

import libvirt
import pytest

from conftest import new_id, vm_params, wait_job
from vmjobs import domxml

NASTY = [
    'a<b>&c"\'',
    "]]>",
    "<devices>",
    "<devices><disk type='file'>",
    "&amp;",
    "&lt;name&gt;",
    "&#x41;",
    "<![CDATA[x]]>",
    "<!-- comment -->",
    "<?pi x?>",
    " spaced name ",
    "é☃\u2028",
]


def create_up(api, vm_id, params):
    job = wait_job(api, api.VM.create(vm_id, params)["jobId"])
    assert job["status"] == "done", job
    return job


def domain_root(api, vm_id):
    """The domain as libvirt itself describes it, parsed."""
    dom = api.hv.shared_connection.lookupByUUIDString(vm_id)
    return ET.fromstring(dom.XMLDesc())


def shape(root):
    """What must not change with the name: the top-level elements and the
    devices (tag and attributes)."""
    return ([child.tag for child in root],
            [(dev.tag, dev.attrib) for dev in root.find("devices")])


@pytest.fixture
def baseline(api):
    """The shape of a VM created with a plain name, on the same driver."""
    vm_id = new_id()
    create_up(api, vm_id, vm_params(vm_id, vmName="plain-name"))
    root = domain_root(api, vm_id)
    devices = [dev.tag for dev in root.find("devices")]
    # What vmjobs puts there (the test driver adds a console for the serial).
    assert "serial" in devices and "memballoon" in devices
    assert "disk" not in devices
    return shape(root)


@pytest.mark.parametrize("name", NASTY)
def test_vm_name_is_stored_literally(api, baseline, name):
    vm_id = new_id()
    params = vm_params(vm_id, vmName=name)
    create_up(api, vm_id, params)

    root = domain_root(api, vm_id)
    assert len(root.findall("name")) == 1
    assert root.findtext("name") == name
    assert api.hv.shared_connection.lookupByUUIDString(vm_id).name() == name
    assert root.findtext("uuid") == vm_id
    assert shape(root) == baseline

    metadata = api.hv.metadata(vm_id, domxml.METADATA_NS)
    assert domxml.read_metadata(metadata) == (vm_id, params)
    assert api.VM.getStats(vm_id)["params"] == params


def test_opaque_params_are_stored_literally(api, baseline):
    vm_id = new_id()
    other = new_id()
    params = vm_params(
        vm_id,
        # Trying to close our metadata element and open one of its own.
        note=f"</vmjobs:params><vmjobs:vmId>{other}</vmjobs:vmId>",
        escaped="&amp;&lt;&#x41;",
        markup={"<devices>": ["]]>", "<disk/>", "a<b>&c\"'"]},
        **{"key<&>\"'": "</metadata></domain>"})
    create_up(api, vm_id, params)

    assert shape(domain_root(api, vm_id)) == baseline
    metadata = api.hv.metadata(vm_id, domxml.METADATA_NS)
    assert domxml.read_metadata(metadata) == (vm_id, params)
    assert api.VM.getStats(vm_id)["params"] == params


ENGINE_NS = "http://example.org/engine/1.0"


def engine_xml(vm_id, metadata):
    return (f"<domain type='test'><name>engine-vm</name>"
            f"<uuid>{vm_id}</uuid><memory unit='MiB'>32</memory>"
            f"<os><type>hvm</type></os>"
            f"<metadata>{metadata}</metadata></domain>")


def test_engine_xml_keeps_its_metadata_and_gets_ours(api):
    vm_id = new_id()
    xml = engine_xml(vm_id, f'<e:tune xmlns:e="{ENGINE_NS}">'
                            f'<e:qos>keep &amp; me</e:qos></e:tune>')
    params = {"vmId": vm_id, "xml": xml, "custom": "<x>"}
    create_up(api, vm_id, params)
    assert api.VM.getStats(vm_id)["status"] == "Up"

    dom = api.hv.shared_connection.lookupByUUIDString(vm_id)
    root = ET.fromstring(dom.XMLDesc())
    assert root.get("type") == "test"
    assert root.findtext("name") == "engine-vm"
    assert root.findtext("uuid") == vm_id
    # Its own element, untouched.
    theirs = ET.fromstring(
        dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, ENGINE_NS))
    assert theirs.tag.rpartition("}")[2] == "tune"
    assert [(c.tag.rpartition("}")[2], c.text) for c in theirs] == [
        ("qos", "keep & me")]
    # Ours beside it: every key but the xml itself.
    metadata = api.hv.metadata(vm_id, domxml.METADATA_NS)
    expected = {"vmId": vm_id, "custom": "<x>"}
    assert domxml.read_metadata(metadata) == (vm_id, expected)
    assert api.VM.getStats(vm_id)["params"] == expected
    namespaces = {child.tag.partition("}")[0].lstrip("{")
                  for child in root.find("metadata")}
    assert namespaces == {ENGINE_NS, domxml.METADATA_NS}


def test_engine_xml_cannot_bring_its_own_vmjobs_metadata(api):
    vm_id = new_id()
    forged = new_id()
    xml = engine_xml(
        vm_id, f'<v:vm xmlns:v="{domxml.METADATA_NS}">'
               f'<v:vmId>{forged}</v:vmId><v:params>{{"forged": 1}}</v:params>'
               f'</v:vm>')
    create_up(api, vm_id, {"vmId": vm_id, "xml": xml})

    root = domain_root(api, vm_id)
    ours = root.find("metadata").findall(f"{{{domxml.METADATA_NS}}}vm")
    assert len(ours) == 1
    metadata = api.hv.metadata(vm_id, domxml.METADATA_NS)
    assert domxml.read_metadata(metadata) == (vm_id, {"vmId": vm_id})


def test_another_element_in_our_namespace_cannot_stand_in_for_ours(api):
    """libvirt keeps one metadata element per namespace, the first: an
    engine's element of another name in our namespace, before ours, made
    the domain carry no vmId (recovery then lost the running guest, and
    its vmId could be created twice). Every element of our namespace in
    the engine's XML is replaced by ours."""
    vm_id = new_id()
    xml = engine_xml(vm_id, f'<v:other xmlns:v="{domxml.METADATA_NS}">hi'
                            f'</v:other><e:tune xmlns:e="{ENGINE_NS}"/>')
    create_up(api, vm_id, {"vmId": vm_id, "xml": xml})
    root = domain_root(api, vm_id)
    assert [child.tag for child in root.find("metadata")] == [
        f"{{{ENGINE_NS}}}tune", f"{{{domxml.METADATA_NS}}}vm"]
    metadata = api.hv.metadata(vm_id, domxml.METADATA_NS)
    assert domxml.read_metadata(metadata) == (vm_id, {"vmId": vm_id})
