"""The allowlist's view against libvirt's own (the hostile-caller audit,
round 15, docs/security.md): for a domain XML the allowlist accepts, what
libvirt read from it (XMLDesc after a define, and the live XML after a
start) names nothing the allowlist did not see and judge: no host path,
device, backend, source, network or namespaced element beyond the
caller's XML as the allowlist read it, but what libvirt adds of its own
(tests/xmlview.py, the checker, says which and why).

Seeded with the accepted XMLs of the other tests (the controls of
test_hostile_xml.py, the engine XMLs), then mutated as a caller would try
a parser difference: a value with blanks, another case, another number
form; an element given twice (before or after, its paths changed); an
attribute left out (libvirt's default); an attribute or an element
prefixed (a namespace of its own, qemu's, xml:); a value split by a
comment, a processing instruction, CDATA or an element, or written as
character references; an encoding declaration other than UTF-8, a byte
order mark, namespace declarations. Each mutant the allowlist accepts is defined twice on
libvirt's test driver (whose parser is the QEMU driver's, domain_conf):
as the caller wrote it, and as vmjobs gives it to libvirt
(domxml.compose's writing of the tree the allowlist judged). The real
daemon reads the seeds in test_real_allowlist_view.py. VIEW_EXAMPLES in
the environment runs more mutants (20,000: 50 s) than the suite's."""

import copy
import os
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

import libvirt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine_xml
import test_allowlist_differential
import test_hostile_xml
import xmlview
from conftest import new_id
from vmjobs import allowlist, domxml, params, policy

EXAMPLES = int(os.environ.get("VIEW_EXAMPLES", 1500))
# Seeds larger than this (the controls at the device bounds) only slow
# the mutations down: each holds the same few elements many times. The
# largest engine XML (q35-server, 6.9 KB) is below it.
SEED_BYTES = 8000


def seeds(images, victim, domain_type="test"):
    """{name: XML}: every positive control of test_hostile_xml.py and the
    engine XMLs."""
    found = {}
    for name, (_refused, control) in test_hostile_xml.CASES.items():
        found[f"control {name}"] = test_hostile_xml.build(
            control, images, victim)[1]
    for name, make in engine_xml.ENGINE_XMLS.items():
        found[f"engine {name}"] = make(new_id(), str(images),
                                       domain_type=domain_type)
    return {name: text for name, text in found.items()
            if len(text) <= SEED_BYTES}


def judge(text, images):
    """The Confinement the allowlist accepted `text` in, or None."""
    ctx = allowlist.Confinement((str(images),), ("nbd.example",))
    try:
        policy.check_domain_xml(text, ctx)
    except (policy.Refused, ValueError):
        return None
    return ctx


# -- the mutations -----------------------------------------------------------

def _values(root):
    """(element, attribute or None for its text) of every value, those
    holding a '/' (the paths, where a difference matters most) first."""
    found = []
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        found.extend((element, name) for name in element.attrib)
        if element.text and element.text.strip() and not len(element):
            found.append((element, None))
    return sorted(found, key=lambda value: "/" not in _get(*value))


def _set(element, name, value):
    if name is None:
        element.text = value
    else:
        element.set(name, value)


def _get(element, name):
    return element.text if name is None else element.get(name)


VALUE_FORMS = {
    "blank before": lambda v: " " + v,
    "blank after": lambda v: v + " ",
    "tab before": lambda v: "\t" + v,
    "newline after": lambda v: v + "\n",
    "upper case": str.upper,
    "title case": lambda v: v[:1].upper() + v[1:],
    "hex": lambda v: hex(int(v)) if v.isdigit() else v,
    "leading zero": lambda v: "0" + v if v.isdigit() else v,
    "plus sign": lambda v: "+" + v if v.isdigit() else v,
}


def _lexical_forms(value, in_text):
    """The ways to write `value` that a parser may read differently."""
    cut = len(value) // 2
    head, tail = escape(value[:cut]), escape(value[cut:])
    forms = {
        "character references": "".join(f"&#{ord(c)};" for c in value),
        "hex character references": "".join(f"&#x{ord(c):X};"
                                            for c in value),
        "carriage return as a reference": f"{head}&#13;{tail}",
        "tab as a reference": f"{head}&#9;{tail}"}
    if in_text:
        forms.update({
            "comment inside": f"{head}<!--c-->{tail}",
            "processing instruction inside": f"{head}<?pi x?>{tail}",
            "CDATA tail": f"{head}<![CDATA[{value[cut:]}]]>",
            "empty CDATA inside": f"{head}<![CDATA[]]>{tail}",
            # libvirt joins the text around an element
            "element inside": f"{head}<b/>{tail}"})
    return forms


WHOLE_TEXT = {
    "UTF-7 declared": lambda t: "<?xml version='1.0' encoding='UTF-7'?>" + t,
    "Latin-1 declared": lambda t: "<?xml version='1.0' encoding='ISO-8859-1'"
                                  "?>" + t,
    "byte order mark": lambda t: "\ufeff" + t,
    "empty default namespace": lambda t: t.replace(
        "<devices>", "<devices xmlns=''>", 1),
    "qemu namespace declared": lambda t: t.replace(
        "<domain ", "<domain xmlns:qemu='http://libvirt.org/schemas/domain/"
        "qemu/1.0' ", 1),
    "qemu namespace as default": lambda t: t.replace(
        "<devices>", "<devices xmlns='http://libvirt.org/schemas/domain/"
        "qemu/1.0'>", 1),
}
MUTATIONS = ["value", "lexical", "duplicate", "drop", "prefixed", "whole"]
PREFIXED = "QQ15PREFIXQQ"


def mutate(text, how, index, form):
    """`text` mutated (`how`, at its `index`th value or element, with the
    `form`th variant), or None when that mutation does not apply."""
    root = domxml.parse_untrusted(text)
    if how == "whole":
        return list(WHOLE_TEXT.values())[form % len(WHOLE_TEXT)](text)
    if how == "duplicate":
        pairs = [(parent, child) for parent in root.iter()
                 for child in parent if isinstance(child.tag, str)]
        parent, child = pairs[index % len(pairs)]
        twin = copy.deepcopy(child)
        for element, name in _values(twin):
            value = _get(element, name)
            if "/" in value:    # another path, inside still
                _set(element, name, value + ".twin")
        position = list(parent).index(child) + (form % 2)
        parent.insert(position, twin)
        return ET.tostring(root, encoding="unicode")
    values = _values(root)
    element, name = values[index % len(values)]
    value = _get(element, name)
    if how == "drop":
        if name is None:
            return None
        del element.attrib[name]
        return ET.tostring(root, encoding="unicode")
    if how == "prefixed":
        # The attribute (form even) or the element (form odd) in a
        # namespace of its own, libvirt's or another: libvirt reads an
        # attribute by its local name.
        namespace = ("urn:x", "http://libvirt.org/schemas/domain/qemu/1.0",
                     "http://www.w3.org/XML/1998/namespace")[form % 3]
        if form % 2 == 0 and name is not None:
            del element.attrib[name]
            element.set(PREFIXED + name, value)
        elif element is not root:
            element.tag = PREFIXED + element.tag
        else:
            return None
        written = ET.tostring(root, encoding="unicode")
        prefix = "xml" if namespace.endswith("namespace") else "x"
        declared = "" if prefix == "xml" else f" xmlns:x='{namespace}'"
        return written.replace(PREFIXED, f"{prefix}:").replace(
            "<domain", f"<domain{declared}", 1)
    if how == "value":
        new = list(VALUE_FORMS.values())[form % len(VALUE_FORMS)](value)
        if new == value:
            return None
        _set(element, name, new)
        return ET.tostring(root, encoding="unicode")
    forms = list(_lexical_forms(value, name is None).values())
    marker = "QQ15MARKQQ"
    _set(element, name, marker)
    return ET.tostring(root, encoding="unicode").replace(
        marker, forms[form % len(forms)], 1)


# -- libvirt's reading -------------------------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The image dirs of test_hostile_xml.py (and the engine XMLs'
    files), and a private test driver."""
    tmp = tmp_path_factory.mktemp("view")
    images, victim = tmp / "images", tmp / "victim"
    for d in (images, victim, images / "share"):
        d.mkdir()
    test_hostile_xml._dirs(images, victim)
    engine_xml.make_images(str(images))
    node = tmp / "node.xml"
    node.write_text("<node/>")
    libvirt.registerErrorHandler(lambda *_: None, None)
    conn = libvirt.open(f"test://{node}")
    yield images, victim, conn
    conn.close()


def readings(conn, text, live=False):
    """libvirt's reading of `text`: its INACTIVE XML once defined (and its
    live XML once started, if `live`); [] if libvirt refuses it."""
    try:
        dom = conn.defineXML(text)
    except libvirt.libvirtError:
        return []
    try:
        found = [dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)]
        if live:
            dom.create()
            found.append(dom.XMLDesc(0))
            dom.destroy()
        return found
    finally:
        dom.undefine()


def test_every_seed_names_only_what_the_allowlist_judged(world, capsys):
    images, victim, conn = world
    cases = seeds(images, victim)
    counts = {"seeds": len(cases), "accepted": 0, "read by libvirt": 0}
    for name, text in cases.items():
        ctx = judge(text, images)
        if ctx is None:
            continue
        counts["accepted"] += 1
        root = domxml.parse_untrusted(text)
        for reading in readings(conn, text, live=True):
            counts["read by libvirt"] += 1
            assert xmlview.unjudged(root, ctx, reading) == set(), \
                (name, text, reading)
    with capsys.disabled():
        print(f"\nallowlist against libvirt, seeds: {counts}")
    assert counts["read by libvirt"] >= 150


def vmjobs_writes(text, ctx):
    """What vmjobs gives libvirt for `text`, accepted in `ctx`: its
    writing of the tree the allowlist judged (domxml.compose, with its
    metadata and the backing chains the check read)."""
    return domxml.compose(params.VmSpec(vm_id=new_id(), params={},
                                        xml=text), None, ctx.chains)


def all_mutations(text):
    """(how, index, form) of every mutation of `text`, once each."""
    root = domxml.parse_untrusted(text)
    values = len(_values(root))
    elements = sum(1 for parent in root.iter() for child in parent
                   if isinstance(child.tag, str))
    sizes = {"value": (values, len(VALUE_FORMS)), "lexical": (values, 10),
             "duplicate": (elements, 2), "drop": (values, 1),
             "prefixed": (values, 6),
             "whole": (1, len(WHOLE_TEXT))}
    for how, (indices, forms) in sizes.items():
        for index in range(indices):
            for form in range(forms):
                yield how, index, form


def test_a_mutated_xml_names_only_what_the_allowlist_judged(world, capsys):
    """EXAMPLES mutants drawn by hypothesis; with VIEW_EXHAUSTIVE=1 in the
    environment, every mutation of every seed instead (28,080: 40 s)."""
    images, victim, conn = world
    cases = seeds(images, victim)
    names = sorted(name for name, text in cases.items()
                   if judge(text, images) is not None)
    counts = {"mutants": 0, "accepted": 0, "read as written": 0,
              "read as vmjobs writes it": 0}
    seen = set()

    def check(seed, how, index, form):
        text = mutate(cases[seed], how, index, form)
        if text is None or text in seen:
            return
        seen.add(text)
        counts["mutants"] += 1
        ctx = judge(text, images)
        if ctx is None:
            return
        counts["accepted"] += 1
        root = domxml.parse_untrusted(text)
        for given_as, given_text in (
                ("read as written", text),
                ("read as vmjobs writes it", vmjobs_writes(text, ctx))):
            for reading in readings(conn, given_text):
                counts[given_as] += 1
                assert xmlview.unjudged(root, ctx, reading) == set(), \
                    (seed, how, given_as, text, reading)

    if os.environ.get("VIEW_EXHAUSTIVE"):
        for seed in names:
            for how, index, form in all_mutations(cases[seed]):
                check(seed, how, index, form)
    else:
        settings(max_examples=EXAMPLES, deadline=None, database=None,
                 suppress_health_check=list(HealthCheck))(given(
                     seed=st.sampled_from(names),
                     how=st.sampled_from(MUTATIONS),
                     # a path half the time (they come first)
                     index=st.one_of(st.integers(0, 2),
                                     st.integers(0, 400)),
                     form=st.integers(0, 20))(check))()
    with capsys.disabled():
        print(f"\nallowlist against libvirt, mutants: {counts}")
    assert counts["read as vmjobs writes it"] > EXAMPLES // 4


@pytest.mark.parametrize("device, unjudged", [
    # No accessmode: libvirt's passthrough, which the allowlist refuses.
    ("<filesystem type='mount'><source dir='{images}/share'/>"
     "<target dir='t'/></filesystem>",
     ("attr", "domain/devices/filesystem", "accessmode", "passthrough")),
    # No type: libvirt's user networking, which the allowlist refuses.
    ("<interface><mac address='52:54:00:00:00:01'/></interface>",
     ("attr", "domain/devices/interface", "type", "user")),
])
def test_the_checker_sees_what_libvirt_reads_unjudged(world, device,
                                                      unjudged):
    """The checker can fail: XML the allowlist refuses because of what
    libvirt reads where the caller wrote nothing is, to the checker,
    what it is (a fact of libvirt's reading not in the caller's), beside
    the same device written out, which it sees judged."""
    images, _victim, conn = world
    text = test_hostile_xml.domain(
        new_id(), devices=device.replace("{images}", str(images)))
    assert judge(text, images) is None
    ctx = allowlist.Confinement((str(images),))
    [reading] = readings(conn, text)
    root = domxml.parse_untrusted(text)
    assert unjudged in xmlview.unjudged(root, ctx, reading)
    # The control: written as libvirt reads it, nothing is unjudged.
    key, name, value = unjudged[1].rpartition("/")[2], unjudged[2], \
        unjudged[3]
    written = text.replace(f"<{key}", f"<{key} {name}='{value}'", 1)
    [reading] = readings(conn, written)
    assert xmlview.unjudged(domxml.parse_untrusted(written), ctx,
                            reading) == set()


ENTRY_NAMES = {"bios": "vendor", "system": "serial", "baseBoard": "serial",
               "chassis": "serial", "oemStrings": None}


def text_slots():
    """(key, the elements below <domain> with {v} where the text goes) of
    every element whose text the table types as free text
    (allowlist.Text)."""
    for key, spec in allowlist.TABLE.items():
        if not isinstance(spec.text, allowlist.Text):
            continue
        slot = test_allowlist_differential.table_slot(key, None).replace(
            "{p}", "{v}")
        if key.startswith("domain/sysinfo/"):
            name = ENTRY_NAMES[key.split("/")[2]]
            slot = slot.replace("<sysinfo>", "<sysinfo type='smbios'>")
            if name:
                slot = slot.replace("<entry>", f"<entry name='{name}'>")
        if key != "domain/name":
            slot = "<name>t</name>" + slot
        if not key.startswith("domain/os/"):
            slot += "<os><type>hvm</type></os>"
        yield key, slot


@pytest.mark.parametrize("form, read", [
    # A carriage return: refused in every slot (round 15: libvirt read a
    # newline from what vmjobs wrote, where the allowlist judged it).
    ("&#13;", 0),
    # libvirt takes no newline in a name or a title (the allowlist refuses
    # them since round 15; libvirt did at the define): every other slot is
    # read.
    ("&#10;", 7),
    ("&#9;", 9), ("<!--c-->", 9), ("<![CDATA[ ]]>", 9), ("<?pi x?>", 9),
    ("&amp;", 9)])
def test_free_text_reads_as_judged(world, form, read):
    """Every free-text slot (a title, a description, a kernel command
    line, an SMBIOS string, the name) with a character written as a
    reference, a comment, CDATA or a processing instruction inside:
    what libvirt reads from what vmjobs gives it (domxml.compose) is the
    text the allowlist judged, or the allowlist refuses it."""
    images, _victim, conn = world
    checked = []
    for key, slot in text_slots():
        text = ("<domain type='test'><memory unit='MiB'>64</memory>"
                f"{slot.format(v=f't{form}b')}</domain>")
        ctx = judge(text, images)
        if ctx is None:
            continue
        root = domxml.parse_untrusted(text)
        for reading in readings(conn, vmjobs_writes(text, ctx)):
            checked.append(key)
            assert xmlview.unjudged(root, ctx, reading) == set(), \
                (key, text, reading)
    assert len(checked) == read, checked
