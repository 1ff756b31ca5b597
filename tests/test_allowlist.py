"""The allowlist takes what an oVirt engine sends for ordinary VMs, and
what vmjobs builds itself; its document (docs/allowlist.md) is generated
from the table and must not be stale.

To teach vmjobs an element: add its row to vmjobs/allowlist.py, a case
here (accepted) and, if it names anything on the host, a refused case with
its control in test_hostile_xml.py; then regenerate the document."""

import pytest

from conftest import new_id, our_domains, wait_job
from engine_xml import ENGINE_XMLS, make_images
from vmjobs import allowlist, domxml, policy
from vmjobs.hypervisor.adapter import GuestKind
from vmjobs.params import parse_create
from vmjobs.tools import allowlist_doc


@pytest.fixture
def images(tmp_path):
    make_images(str(tmp_path))
    return str(tmp_path)


@pytest.mark.parametrize("name", ENGINE_XMLS)
def test_engine_xml_is_accepted(images, name):
    for domain_type in ("kvm", "qemu", "test"):
        policy.check_domain_xml(
            ENGINE_XMLS[name](new_id(), images, domain_type), [images])


def test_efi_firmware_names_its_nvram(images):
    """firmware='efi' has libvirt choose the loader (read-only firmware)
    and, without an <nvram> path, a variables file outside the image dirs
    (the real QEMU driver's reading; the test driver has no firmware)."""
    def xml(nvram):
        return (f"<domain type='kvm'><name>efi</name><uuid>{new_id()}</uuid>"
                "<memory unit='MiB'>64</memory><os firmware='efi'><type>"
                f"hvm</type>{nvram}</os></domain>")
    for refused in ("", "<nvram/>", f"<nvram template='{images}/vars.fd'/>"):
        with pytest.raises(allowlist.Refused, match="names no <nvram>"):
            policy.check_domain_xml(xml(refused), [images])
    policy.check_domain_xml(xml(f"<nvram>{images}/nvram.fd</nvram>"),
                            [images])


@pytest.mark.parametrize("name", ENGINE_XMLS)
def test_engine_xml_runs_at_the_verb(make_api, images, name):
    api = make_api(image_dirs=[images])
    vm_id = new_id()
    xml = ENGINE_XMLS[name](vm_id, images, "test")
    info = wait_job(api, api.VM.create(vm_id, {"vmId": vm_id,
                                               "xml": xml})["jobId"])
    assert info["status"] == "done", info
    assert [d.uuid for d in our_domains(api.hv)] == [vm_id]
    assert api.VM.destroy(vm_id) is True


@pytest.mark.parametrize("guest", [
    GuestKind("test", "i686", None), GuestKind("kvm", "x86_64", "pc"),
    GuestKind("qemu", "x86_64", "pc-q35-7.2")])
def test_what_vmjobs_builds_is_accepted(guest):
    vm_id = new_id()
    spec = parse_create(vm_id, {"vmId": vm_id, "vmName": "a<name>&b",
                                "memSize": 64, "smp": 2, "opaque": "x/y"})
    policy.check_domain_xml(domxml.compose(spec, guest), ["/nonexistent"])


def test_every_host_path_slot_is_confined():
    """No slot a path can hide in is typed as anything but a confined
    path: TOKEN (the type of most names) cannot hold a '/'."""
    for bad in ("/etc/shadow", "../x", "a/b"):
        with pytest.raises(allowlist.Refused):
            allowlist.TOKEN.check(bad, "x", None, None)
    slots = {(key, attr) for key, attr, _ in allowlist.host_path_slots()}
    for expected in [
            ("domain/os/kernel", None), ("domain/os/initrd", None),
            ("domain/os/dtb", None), ("domain/os/loader", None),
            ("domain/os/nvram", None), ("domain/os/nvram", "template"),
            ("domain/os/acpi/table", None),
            ("domain/devices/disk/source", "file"),
            ("domain/devices/disk/source", "dev"),
            ("domain/devices/filesystem/source", "dir"),
            ("domain/devices/rng/backend", None),
            ("domain/devices/memory/source/path", None),
            ("domain/devices/lease/target", "path"),
            ("domain/devices/serial/source", "path"),
            ("domain/devices/serial/log", "file"),
            ("domain/devices/channel/source", "path"),
            ("domain/devices/graphics", "socket"),
            ("domain/blkiotune/device/path", None)]:
        assert expected in slots, expected


def test_the_allowlist_document_is_generated_from_the_table(tmp_path):
    assert allowlist_doc.main(["--check"]) == 0, (
        "docs/allowlist.md is stale: run python -m vmjobs.tools."
        "allowlist_doc")
    stale = tmp_path / "allowlist.md"
    stale.write_text("old\n")
    assert allowlist_doc.main(["--check", str(stale)]) == 1


@pytest.mark.parametrize("value,taken", [
    ("512", True), (" 0512 ", True), ("0" * 30 + "1", True),
    ("513", False), ("²", False), ("-1", False), ("", False),
    ("9" * 5000, False),        # past int()'s 4300 digits: refused by name
])
def test_a_count_is_decimal_digits_within_its_bounds(value, taken):
    """allowlist.Count reads a count as libvirt does (base 10, leading
    zeros and spaces around allowed), ASCII digits only, bounded."""
    if taken:
        allowlist.VCPUS.check(value, "vcpu", None, None)
    else:
        with pytest.raises(allowlist.Refused, match="a decimal number"):
            allowlist.VCPUS.check(value, "vcpu", None, None)
