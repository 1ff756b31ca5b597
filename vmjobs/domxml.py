"""Domain XML: the minimal guest vmjobs builds, and the metadata element
that marks a domain as ours and carries what recovery needs (the vmId and
the engine's original parameters).

XML from outside (the engine's domain XML, metadata read back from libvirt)
is parsed with defusedxml and DTDs are refused, so no entity is ever
expanded. XML we build goes through ElementTree, which escapes every value:
a vmName like `</name><devices>` stays text.
"""

import functools
import json
import uuid
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

import defusedxml
import defusedxml.ElementTree

from . import strictjson

# The longest domain XML libvirt takes over its RPC (REMOTE_STRING_MAX):
# a longer one is refused before it is sent ("Unable to encode message
# payload", measured on libvirt 9.0), so it can never be defined.
LIBVIRT_MAX_XML_BYTES = 4 * 1024 * 1024

METADATA_NS = "urn:vmjobs:domain:1"
METADATA_PREFIX = "vmjobs"

ET.register_namespace(METADATA_PREFIX, METADATA_NS)


class BadDomainXML(ValueError):
    pass


def parse_untrusted(text):
    """Parse XML from outside; raise BadDomainXML on anything wrong."""
    try:
        return defusedxml.ElementTree.fromstring(text, forbid_dtd=True)
    except (ET.ParseError, defusedxml.DefusedXmlException) as exc:
        raise BadDomainXML(f"not acceptable XML: {exc}") from None


def domain_uuid(domain_xml):
    """The canonical <uuid> of a <domain> document."""
    root = parse_untrusted(domain_xml)
    if root.tag != "domain":
        raise BadDomainXML(f"root element is <{root.tag}>, not <domain>")
    text = root.findtext("uuid")
    if not text:
        raise BadDomainXML("the domain has no <uuid>")
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        raise BadDomainXML(f"<uuid> {text!r} is not a UUID") from None


def compose(spec, guest, chains=None):
    """The domain XML to define for `spec`: the engine's own XML, or a
    minimal diskless guest of spec.name, spec.mem_mib and spec.smp that the
    connection described by `guest` (a GuestKind) accepts; either way with
    our metadata element (replacing any the engine's XML carried).

    `chains`: the backing chains the policy checked, {image path: [(real
    path, format), ...]} (allowlist.Confinement.chains); each qcow2 image
    whose XML does not say what lies beneath it gets its chain stated."""
    if spec.xml is None:
        return _minimal_domain(spec, guest)
    root = parse_untrusted(spec.xml)
    if chains:
        _state_backing_chains(root, chains, _room_left(spec.xml))
    _set_metadata(root, spec.vm_id, spec.params)
    return ET.tostring(root, encoding="unicode")


def with_chains(domain_xml, chains):
    """`domain_xml` (libvirt's, already judged) with the backing chains
    checked stated, as compose states them; the text itself when there is
    none to state."""
    if not chains:
        return domain_xml
    root = parse_untrusted(domain_xml)
    _state_backing_chains(root, chains, _room_left(domain_xml))
    return ET.tostring(root, encoding="unicode")


def _room_left(domain_xml):
    """The bytes the stated chains may add to `domain_xml` before libvirt
    could not take it."""
    return LIBVIRT_MAX_XML_BYTES - len(domain_xml.encode("utf-8",
                                                         "surrogatepass"))


def _state_backing_chains(root, chains, room):
    """Below each disk's last stated level, if it is a qcow2 image, write
    the chain that was checked, ending with an empty <backingStore/>.
    libvirt then gives QEMU that chain (`"backing": null` at its end) and
    QEMU reads no backing name from a header: one rewritten after the
    check (by a guest owning the file as another VM's raw disk) names
    nothing. A level the XML states, the caller's, was checked as an image
    of its own (allowlist's backing_store_rule).

    The chains stated may add at most `room` bytes (BadDomainXML past it,
    before more is built): stated once per disk, a chain 16 deep below
    each of a 4 MiB XML's thousands of disks made a 64 MB XML, and 780 MB
    of elements while it was built, for an XML libvirt can never take."""
    sizes = {}    # a chain's size as stated, by image path
    for disk in root.iterfind("devices/disk"):
        kind = disk.get("type", "file")
        if kind not in ("file", "block"):
            continue
        driver = disk.find("driver")
        level, fmt = disk, "raw" if driver is None else driver.get(
            "type", "raw")
        source = disk.find("source")
        path = None if source is None else source.get(
            "file" if kind == "file" else "dev")
        while (below := level.find("backingStore")) is not None:
            level = below
            source, fmt_element = below.find("source"), below.find("format")
            path = None if source is None else source.get("file")
            fmt = "raw" if fmt_element is None else fmt_element.get(
                "type", "raw")
        if fmt != "qcow2" or path not in chains:
            continue
        if path not in sizes:
            sizes[path] = _stated_size(chains[path])
        room -= sizes[path]
        if room < 0:
            raise BadDomainXML(
                "the backing chains of its qcow2 disks, stated, would make "
                f"it longer than libvirt takes ({LIBVIRT_MAX_XML_BYTES} "
                "bytes)")
        _state_chain(level, chains[path])


def _state_chain(level, chain):
    """Write `chain` ((path, format) of each backing file, top first)
    below element `level`, ending with an empty <backingStore/>."""
    for real, real_format in chain:
        level = ET.SubElement(level, "backingStore", type="file")
        ET.SubElement(level, "format", type=real_format)
        ET.SubElement(level, "source", file=real)
    ET.SubElement(level, "backingStore")


def _stated_size(chain):
    """The bytes `chain` adds to a disk once stated (as ElementTree
    writes it)."""
    top = ET.Element("disk")
    _state_chain(top, chain)
    return len(ET.tostring(top, encoding="utf-8")) - len(b"<disk></disk>")


# The minimal guest as a template: building it as an ElementTree and
# serializing it cost more than libvirt's define (framework benchmark).
# Every value goes through quoteattr() or escape(), as ElementTree would.
_MINIMAL_DOMAIN = (
    "<domain type={type}><name>{name}</name><uuid>{uuid}</uuid>"
    "<memory unit='MiB'>{mem}</memory><vcpu>{smp}</vcpu>"
    "<os><type arch={arch}{machine}>hvm</type></os>"
    "<on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot>"
    "<on_crash>destroy</on_crash>"
    "<devices><serial type='pty'/><memballoon model='none'/></devices>"
    "<metadata><vmjobs:vm xmlns:vmjobs={ns}><vmjobs:vmId>{uuid}"
    "</vmjobs:vmId><vmjobs:params>{params}</vmjobs:params></vmjobs:vm>"
    "</metadata></domain>")


def _minimal_domain(spec, guest):
    return _guest_template(guest).format(
        name=escape(spec.name), uuid=escape(spec.vm_id),
        mem=int(spec.mem_mib), smp=int(spec.smp),
        params=escape(json.dumps(spec.params, sort_keys=True)))


@functools.lru_cache(maxsize=8)
def _guest_template(guest):
    """_MINIMAL_DOMAIN with what depends only on the connection's kind of
    guest filled in, once per kind instead of once per VM."""
    def attr(value):
        return quoteattr(value).replace("{", "{{").replace("}", "}}")
    machine = f" machine={attr(guest.machine)}" if guest.machine else ""
    return _MINIMAL_DOMAIN.format(
        type=attr(guest.domain_type), arch=attr(guest.arch),
        machine=machine, ns=attr(METADATA_NS), name="{name}",
        uuid="{uuid}", mem="{mem}", smp="{smp}", params="{params}")


def _set_metadata(root, vm_id, params):
    metadata = root.find("metadata")
    if metadata is None:
        metadata = ET.SubElement(root, "metadata")
    # Every element in our namespace goes, not only a <vm>: libvirt keeps
    # one element per namespace, the first, so another one before ours
    # would stand in for it (the domain then carries no vmId: recovery
    # could not find its VM, and the vmId could be created twice).
    for old in [e for e in metadata
                if e.tag.startswith(f"{{{METADATA_NS}}}")]:
        metadata.remove(old)
    metadata.append(_metadata_element(vm_id, params, f"{{{METADATA_NS}}}"))


def _metadata_element(vm_id, params, ns=""):
    vm = ET.Element(f"{ns}vm")
    ET.SubElement(vm, f"{ns}vmId").text = vm_id
    ET.SubElement(vm, f"{ns}params").text = json.dumps(params, sort_keys=True)
    return vm


def metadata_element(vm_id, params):
    """Our metadata element alone, as libvirt's setMetadata takes it:
    without a namespace, which libvirt adds from its own arguments."""
    return ET.tostring(_metadata_element(vm_id, params), encoding="unicode")


def metadata_of_domain(domain_xml):
    """(vm_id, params) from the metadata of a whole domain XML (a saved
    state file's, say), or None if it carries none of ours."""
    return metadata_of(parse_untrusted(domain_xml))


def metadata_of(root):
    """metadata_of_domain's, of the domain XML parsed (parse_untrusted)."""
    element = root.find(f"metadata/{{{METADATA_NS}}}vm")
    if element is None:
        return None
    return _read_metadata_element(element)


def read_metadata(text):
    """(vm_id, params) from our metadata element as libvirt returns it
    (libvirt drops the namespace prefix, so tags are matched by local name).
    Raises BadDomainXML if it is not ours or is damaged."""
    return _read_metadata_element(parse_untrusted(text))


# The most JSON a VM's opaque parameters (every vmParams key but `xml`)
# may take. They are kept in the domain's metadata and returned by
# VM.getStats and Host.getAllVmStats: five VMs of 4 MiB each made every
# Host.getAllVmStats answer too large (a hostile-caller audit). An
# engine's are a few KiB.
MAX_PARAMS_BYTES = 64 * 1024


def params_fit(params):
    """Whether `params` fit in our metadata (MAX_PARAMS_BYTES of JSON)."""
    return len(json.dumps(params)) <= MAX_PARAMS_BYTES


def _read_metadata_element(root):
    """(vmId, params) of our metadata element, read by the rules a verb
    holds them to (a domain's metadata is not trusted more than the
    request that made it: recovery adopts what it reads): strict JSON
    (strictjson.py), no lone surrogate, nested no deeper than the parser
    goes, at most MAX_PARAMS_BYTES; else BadDomainXML."""
    fields = {_local(child.tag): child.text or "" for child in root}
    if _local(root.tag) != "vm" or "vmId" not in fields:
        raise BadDomainXML("metadata has no vmId")
    text = fields.get("params") or "{}"
    if len(text) > MAX_PARAMS_BYTES:
        raise BadDomainXML(f"damaged metadata: params over "
                           f"{MAX_PARAMS_BYTES} bytes")
    try:
        vm_id = str(uuid.UUID(fields["vmId"].strip()))
        params = strictjson.loads(text)
        json.dumps(params, ensure_ascii=False).encode()   # no surrogate
    except (ValueError, RecursionError) as exc:
        raise BadDomainXML(f"damaged metadata: {exc}") from None
    if not isinstance(params, dict):
        raise BadDomainXML("damaged metadata: params is not an object")
    return vm_id, params


def _local(tag):
    return tag.rpartition("}")[2]
