"""Property-based differential test of the allowlist (issue 19): domain
XMLs generated from the allowlist's grammar (every kind of host path slot,
with paths inside and outside the image directory), then mutated as a
hostile caller would (text split by an empty child, a comment or CDATA in
a path, relative and `..` paths, symlinks out, unknown elements,
namespaced attributes, padding). For every XML the policy accepts,
libvirt's own reading of it (defined on a private test driver, then
dumpxml) must name no host path outside the image directory: a difference
between the two parsers cannot hide a path.

The oracle does not use the table: any value in libvirt's reading that
holds a '/' (outside <metadata>) must be an entropy source, a pty, or an
absolute normalized path that resolves inside the image directory."""

import os
import re
import xml.etree.ElementTree as ET

import libvirt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmjobs import allowlist, policy

EXAMPLES = 2000
HARMLESS = {"/dev/urandom", "/dev/random"}

# Slots (a template with {p}, where the path goes), from the table's host
# path slots; the values libvirt keeps as given on the test driver.
SLOTS = [
    "<os><type>hvm</type><kernel>{p}</kernel></os>",
    "<os><type>hvm</type><initrd>{p}</initrd></os>",
    "<os><type>hvm</type><loader>{p}</loader></os>",
    "<os><type>hvm</type><dtb>{p}</dtb></os>",
    "<os><type>hvm</type><loader type='pflash'>{images}/f</loader>"
    "<nvram template='{p}'>{images}/n</nvram></os>",
    "<os><type>hvm</type><acpi><table type='slic'>{p}</table></acpi></os>",
    "<devices><disk type='file' device='cdrom'><source file='{p}'/>"
    "<target dev='hdc'/></disk></devices>",
    "<devices><disk type='block' device='disk'><source dev='{p}'/>"
    "<target dev='vda'/></disk></devices>",
    "<devices><serial type='file'><source path='{p}'/></serial></devices>",
    "<devices><serial type='pty'><log file='{p}'/></serial></devices>",
    "<devices><channel type='unix'><source mode='bind' path='{p}'/>"
    "<target type='virtio' name='a'/></channel></devices>",
    "<devices><lease><lockspace>s</lockspace><key>k</key>"
    "<target path='{p}'/></lease></devices>",
    "<devices><filesystem type='mount' accessmode='mapped'><source "
    "dir='{p}'/>"
    "<target dir='t'/></filesystem></devices>",
    "<devices><graphics type='vnc' socket='{p}'/></devices>",
    "<devices><rng model='virtio'><backend model='random'>{p}</backend>"
    "</rng></devices>",
    "<devices><interface type='bridge'><source bridge='b'/>"
    "<rom file='{p}'/></interface></devices>",
]


def table_slot(key, attr):
    """A template for one host path slot of the table, built from its key
    alone (an element chain from <domain>): the grammar's own slots, beside
    the hand-made ones above that libvirt's test driver takes."""
    tags = key.split("/")[1:]
    value = "" if attr is None else f" {attr}='{{p}}'"
    inner = "{p}" if attr is None else ""
    opened = "".join(f"<{t}>" for t in tags[:-1]) + \
        f"<{tags[-1]}{value}>{inner}</{tags[-1]}>" + \
        "".join(f"</{t}>" for t in reversed(tags[:-1]))
    if tags[0] == "os":
        opened = opened.replace("<os>", "<os><type>hvm</type>", 1)
    return opened


TABLE_SLOTS = [table_slot(key, attr)
               for key, attr, _ in allowlist.host_path_slots()
               if key != "domain/devices/emulator"]


def paths(images, victim):
    inside = [f"{images}/disk.img", f"{images}/sub/file",
              f"{images}/link-in", "/dev/urandom"]
    return st.sampled_from(inside * 4 + [
        f"{images}/disk.img", f"{images}/sub/file", f"{images}/link-in",
        f"{images}/link-out", f"{images}/../victim/shadow",
        f"{victim}/shadow", "disk.img", "../victim/shadow", "./disk.img",
        f"{images}//disk.img", f"{images}/disk.img/", f"{images}",
        "/dev/urandom", "/dev/random", "/dev/mem", "/etc/shadow",
        f" {images}/disk.img", f"{images}/sub/../../victim/shadow"])


def mutate(text, path, how, cut):
    """The slot's text with `path` in it, mutated by `how`."""
    cut = min(cut, len(path))
    head, tail = path[:cut], path[cut:]
    if how == "split-child":
        path = f"{head}<b/>{tail}"
    elif how == "comment":
        path = f"{head}<!-- x -->{tail}"
    elif how == "cdata":
        path = f"{head}<![CDATA[{tail}]]>"
    elif how == "entity":
        path = path.replace("/", "&#47;")
    elif how == "namespaced-attribute":
        # libvirt reads an attribute by its name, whatever its namespace
        text = re.sub(r" (\w+)='\{p\}'", r" x:\1='{p}'", text)
    return text.replace("{p}", path)


def domain(vm_id, body, extra):
    os_part = "" if "<os>" in body else "<os><type>hvm</type></os>"
    ns = "xmlns:x='urn:x'"
    return (f"<domain type='test' {ns}><name>d-{vm_id}</name>"
            f"<memory unit='MiB'>64</memory>{os_part}{body}{extra}"
            "</domain>")


def host_values(xml):
    """Every attribute value and text libvirt's reading holds, but for
    <metadata> and texts that are not file names."""
    root = ET.fromstring(xml)
    stack = [root]
    while stack:
        element = stack.pop()
        if element.tag in ("metadata", "cmdline", "partition"):
            continue
        yield from element.attrib.values()
        if element.text and element.text.strip():
            yield element.text
        stack.extend(element)


def inside(value, images):
    if value in HARMLESS or (value.startswith("/dev/pts/")):
        return True
    if not value.startswith("/") or os.path.normpath(value) != value:
        return False
    real = os.path.realpath(value)
    return real.startswith(os.path.realpath(images) + "/")


@pytest.fixture
def world(tmp_path):
    images, victim = tmp_path / "images", tmp_path / "victim"
    for d in (images, victim, images / "sub"):
        d.mkdir()
    for f in (images / "disk.img", images / "sub" / "file",
              victim / "shadow"):
        f.write_bytes(b"\0" * 4096)
    os.symlink(images / "disk.img", images / "link-in")
    os.symlink(victim / "shadow", images / "link-out")
    node = tmp_path / "node.xml"
    node.write_text("<node/>")
    conn = libvirt.open(f"test://{node}")
    yield str(images), str(victim), conn
    conn.close()


def test_accepted_xml_names_no_host_path_outside_as_libvirt_reads_it(
        world, capsys):
    images, victim, conn = world
    ctx = allowlist.Confinement((images,))
    counts = {"cases": 0, "accepted": 0, "defined by libvirt": 0,
              "libvirt paths checked": 0}
    libvirt.registerErrorHandler(lambda *_: None, None)

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(slot=st.sampled_from(SLOTS + TABLE_SLOTS),
           path=paths(images, victim),
           how=st.sampled_from(["plain"] * 4 + ["split-child", "comment",
                                "cdata", "entity", "namespaced-attribute"]),
           cut=st.integers(0, 40),
           extra=st.sampled_from([
               "", "<vdpa/>", "<devices><x:disk/></devices>",
               "<metadata><x:m>/etc/shadow</x:m></metadata>",
               "<devices><disk type='file' device='cdrom' x:file="
               "'/etc/shadow'><target dev='hdd'/></disk></devices>"]),
           n=st.integers(0, 10**9))
    def case(slot, path, how, cut, extra, n):
        counts["cases"] += 1
        text = domain(n, mutate(slot.replace("{images}", images), path, how,
                                cut), extra)
        try:
            policy.check_domain_xml(text, ctx)
        except (policy.Refused, ValueError):
            return
        counts["accepted"] += 1
        try:
            dom = conn.defineXML(text)
        except libvirt.libvirtError:
            return      # libvirt refuses it too
        try:
            reading = dom.XMLDesc(0)
        finally:
            dom.undefine()
        counts["defined by libvirt"] += 1
        for value in host_values(reading):
            if "/" in value:
                counts["libvirt paths checked"] += 1
                assert inside(value, images), (value, text, reading)

    case()
    with capsys.disabled():
        print(f"\ndifferential: {counts}")
    assert counts["defined by libvirt"] > 20
