"""The backing chains vmjobs states in a domain XML (domxml.compose, so
that QEMU never reads a backing name from a header) cannot grow it past
what libvirt takes: a hostile-caller audit (round 8) sent one XML of
thousands of disks over one qcow2 image 16 deep (4 MiB, the largest
request): the check read the chain again for each disk (29 s), the
stated chains made a 64 MB XML (780 MB of elements while it was built),
held by the queued job, which libvirt could never take (over 4 MiB its
RPC refuses it). Now each image is read once per request and the chains
stated stop at libvirt's bound: -32602, nothing queued."""

import pytest

from conftest import new_id, our_domains, wait_job
from engine_xml import qcow2
from vmjobs import domxml
from vmjobs.errors import InvalidParams

DEPTH = 15      # backing files below the top: images.MAX_CHAIN's deepest


@pytest.fixture
def top(tmp_path):
    """A qcow2 image over a chain DEPTH deep, ending in a raw file."""
    # A long directory name: the chains a domain's 1,000 disks state
    # (at most allowlist.MAX_DEVICES) then pass libvirt's bound.
    images = tmp_path / ("images-" + "i" * 140)
    images.mkdir()
    (images / "base.raw").write_bytes(b"\0" * 65536)
    below, fmt = "base.raw", "raw"
    for level in range(DEPTH):
        below = qcow2(f"{images}/level{level}.qcow2", below, backing_fmt=fmt,
                      size="64K")
        fmt = "qcow2"
    return images, below


def letters(index):
    """A disk's name after `vd`, as libvirt counts them: a..z, aa..."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(ord("a") + rest) + name
    return name


def domain(vm_id, top, disks):
    devices = "".join(
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{top}'/><target dev='vd{letters(index)}' "
        "bus='virtio'/>"
        "</disk>" for index in range(disks))
    return (f"<domain type='test'><name>c-{vm_id[:8]}</name><uuid>{vm_id}"
            "</uuid><memory unit='MiB'>64</memory><os><type>hvm</type></os>"
            f"<devices>{devices}</devices></domain>")


def test_stated_chains_stop_at_libvirts_bound(make_api, top):
    images, image = top
    api = make_api(image_dirs=[str(images)])
    vm_id = new_id()
    xml = domain(vm_id, image, 1000)
    assert len(xml) < domxml.LIBVIRT_MAX_XML_BYTES / 10
    with pytest.raises(InvalidParams) as err:
        api.VM.create(vm_id, {"vmId": vm_id, "xml": xml})
    assert err.value.data == {"param": "xml"}
    assert "longer than libvirt takes" in str(err.value)
    assert api.jobs.jobs() == [] and api.registry.snapshot()[0] == []
    assert our_domains(api.hv) == []


def test_a_few_disks_over_the_same_chain_run(make_api, top):
    """The control: the same image under a few disks, each stated."""
    images, image = top
    api = make_api(image_dirs=[str(images)])
    vm_id = new_id()
    info = wait_job(api, api.VM.create(vm_id, {"vmId": vm_id, "xml": domain(
        vm_id, image, 4)})["jobId"])
    assert info["status"] == "done", info
    defined = api.hv.migratable_xml(vm_id)
    assert defined.count(str(images / "base.raw")) == 4
    assert api.VM.destroy(vm_id) is True


def test_a_restore_states_no_more_than_libvirt_takes(top):
    """The same bound where a restore states the chains (with_chains)."""
    _, image = top
    vm_id = new_id()
    chain = [(image, "qcow2")] * DEPTH
    few = domain(vm_id, image, 4)
    assert domxml.with_chains(few, {image: chain}).count(image) == 4 + 4 * \
        DEPTH
    with pytest.raises(domxml.BadDomainXML):
        domxml.with_chains(domain(vm_id, image, 2000), {image: chain})
