"""What a domain XML names on the host, as a set of facts: the differential
checker of the hostile-caller audit, round 15 (docs/security.md).

`view(root)` reads a parsed <domain> (the allowlist's own reading of a
caller's XML, or libvirt's reading of it: XMLDesc after a define) and
says what it names that the host acts on:

  ("path", key, name, value)       a host path, in any slot the
                                   allowlist's table types as one (name
                                   None: the element's text)
  ("device", tag)                  a device under <devices>
  ("attr", key, name, value)       a value that chooses a backend or a
                                   source: a device's or its source's,
                                   backend's, host's, driver's, listen's
                                   type, model, mode, protocol, network,
                                   bridge, volume or host name, port...
  ("text", key, value)             free text libvirt keeps and hands
                                   on (a title, a description, a kernel
                                   command line, an SMBIOS string)
  ("image", real path, format)     a disk image and the format it is
                                   opened as (a disk's source and
                                   driver, a backing store's)
  ("namespace", tag)               an element in a namespace outside
                                   <metadata> (libvirt keeps only its
                                   own, and qemu:commandline)
  ("element", key)                 an element where the table has none

`unjudged(caller, ctx, libvirt)` is what libvirt read that the caller's
XML, as the allowlist judged it (`judged`: its view, with the images as
the check read their headers, the backing files it found there and the
overlays of transient disks), did not name: empty for every XML the
allowlist accepts, but for what libvirt writes of its own
(_added_by_libvirt): LIBVIRT_ADDS, each saying why it names nothing on
the host; a value in a slot where the caller's XML had none that the
allowlist's own table would accept there (libvirt's default emulator,
balloon, audio backend: checked by the slot's Kind, so the nvram file
libvirt picks outside the image dirs is unjudged); a device the table
knows (its paths and backends are facts of their own); the console
libvirt writes for a serial port and the reverse; a running guest's
ptys, generated taps, console ports and labels.

The view does not use the allowlist's verdicts, only its table's keys and
which slots it types as host paths, so a slot the table does not know
shows in libvirt's reading as an ("element", key) nobody judged. It is a
set for the whole domain: which device a fact belongs to is not kept,
but for the images, whose path and format are one fact.
"""

import os
import re
import uuid
import xml.etree.ElementTree as ET

from vmjobs import allowlist

# The attributes that choose what a device is backed by on the host, on a
# device element and on the children that say where it reaches.
CHOOSERS = {"type", "model", "mode", "protocol", "network", "bridge",
            "name", "port", "tlsPort", "autoport", "transport", "socket",
            "accessmode", "device", "portgroup", "address", "managed",
            "filter", "file", "dev", "dir", "path", "volume", "pool",
            "tty", "append", "snapshot", "template", "listen"}
SUBJECTS = {"source", "backend", "host", "driver", "listen", "target",
            "log", "protocol", "config", "reconnect", "model", "rom",
            "channel", "virtualport", "parameters", "format"}
PATH_SLOTS = {(key, attr) for key, attr, _ in allowlist.host_path_slots()}
METADATA = "domain/metadata"

# What libvirt writes of its own into a domain it read, naming nothing on
# the host: (fact kind, key or tag, attribute, value or None for any).
LIBVIRT_ADDS = {
    # The default video model, which libvirt adds beside graphics, and
    # the default controllers and input devices of a machine type:
    # emulated, no host resource.
    ("attr", "domain/devices/video/model", "type", None),
    ("attr", "domain/devices/controller", "type", None),
    ("attr", "domain/devices/controller", "model", None),
    ("attr", "domain/devices/input", "type", None),
    # An emulated NIC's model (libvirt writes one for a NIC of none, and
    # in lower case): which device the guest sees, no host resource.
    ("attr", "domain/devices/interface/model", "type", None),
    # The raw format libvirt writes for a disk whose <driver> names none:
    # the format each image is opened as is compared with the one the
    # allowlist checked its header against in the ("image", ...) facts.
    ("attr", "domain/devices/disk/driver", "type", "raw"),
    # A disk's bus libvirt derives from its target's name.
    ("attr", "domain/devices/disk/target", "bus", None),
    # A graphics listen of libvirt's own (`listen type='address'`, no
    # address: the console's configured default).
    ("attr", "domain/devices/graphics/listen", "type", "address"),
    # A console's port choice (autoport) when the caller gave -1 or none:
    # libvirt picks a free port of its console range.
    ("attr", "domain/devices/graphics", "autoport", "yes"),
    # A console's port number libvirt counts (its index, not a TCP port).
    ("attr", "domain/devices/console/target", "port", None),
    ("attr", "domain/devices/serial/target", "port", None),
    ("attr", "domain/devices/console/target", "type", None),
    ("attr", "domain/devices/serial/target", "type", None),
    # Defaults libvirt writes for an attribute left out, each one the
    # allowlist judges as that default (disk_rule: a disk of no type is
    # a file; a filesystem is a mount; port -1: libvirt's choice).
    ("attr", "domain/devices/disk", "device", "disk"),
    ("attr", "domain/devices/disk", "type", "file"),
    ("attr", "domain/devices/filesystem", "type", "mount"),
    ("attr", "domain/devices/graphics", "port", "-1"),
    ("attr", "domain/devices/graphics", "tlsPort", "-1"),
}


_BLANKS = re.compile("[\t\n\r]")
# A tap's name libvirt generates (vnetN; testnetN on the test driver).
GENERATED_TAP = re.compile(r"(vnet|testnet)[0-9]+")
# The chardevs, whose type libvirt reads as pty when absent.
CHARDEVS = ("serial", "console", "channel", "parallel")


def _number(value):
    """A decimal number as the number it is (libvirt reads ` 06789` and
    `+6789` as the port 6789, and writes 6789); any other value as it
    is."""
    text = value.strip(" ")
    digits = text[1:] if text[:1] == "+" else text
    if digits.isascii() and digits.isdigit():
        return str(int(digits))
    return value


def _smbios_uuid(entry):
    """An SMBIOS entry's text; its `uuid` entry as the UUID it is (libvirt
    reads it as one, the domain's, and writes it canonical: ` ABC...`
    is `abc...`)."""
    if entry.get("name") == "uuid":
        try:
            return str(uuid.UUID(entry.text.strip()))
        except ValueError:
            pass
    return entry.text


def _key(parent_key, tag):
    return allowlist._child_key(parent_key, tag)


def view(root):
    """The facts (see the module) the parsed <domain> `root` names."""
    facts = set()
    stack = [(root, "domain")]
    while stack:
        element, key = stack.pop()
        if key == METADATA:
            continue
        tag = element.tag
        if not isinstance(tag, str):
            continue
        if tag.startswith("{"):
            facts.add(("namespace", tag))
            continue
        if key not in allowlist.TABLE:
            facts.add(("element", key))
        parts = key.split("/")
        if len(parts) == 3 and parts[1] == "devices":
            facts.add(("device", tag))
        in_devices = len(parts) >= 3 and parts[1] == "devices"
        chooses = in_devices and (len(parts) == 3 or parts[-1] in SUBJECTS)
        # As a parser reads libvirt's own writing of it: libvirt writes a
        # tab or a newline in an attribute as it is, which any parser
        # reads back as a blank (XML's attribute normalization).
        attrs = {name: _BLANKS.sub(" ", value)
                 for name, value in element.attrib.items()}
        if len(parts) == 3 and tag in CHARDEVS:
            attrs.setdefault("type", "pty")
        for name, value in attrs.items():
            if key == "domain/devices/graphics" and name == "listen":
                # libvirt reads it as its first <listen address=...>
                key, name = "domain/devices/graphics/listen", "address"
                facts.add(("attr", key, name, value))
                key = "domain/devices/graphics"
                continue
            if name.startswith("{"):
                facts.add(("namespace", name))
            elif (key, name) in PATH_SLOTS:
                facts.add(("path", key, name, value))
            elif chooses and name in CHOOSERS:
                facts.add(("attr", key, name, _number(value)))
        if (key, None) in PATH_SLOTS and element.text and \
                element.text.strip():
            facts.add(("path", key, None, element.text))
        elif isinstance(getattr(allowlist.TABLE.get(key), "text", None),
                        allowlist.Text) and element.text:
            facts.add(("text", key, _smbios_uuid(element)))
        stack.extend((child, _key(key, child.tag)) for child in element
                     if isinstance(child.tag, str))
    return facts | images(root)


def images(root):
    """("image", path, format) of each disk image `root` names as libvirt
    reads it: a file or block disk's first <source> with its first
    <driver>'s format (raw when none), each stated <backingStore> level
    with its <format>."""
    facts = set()
    for disk in root.iterfind("devices/disk"):
        kind = disk.get("type", "file")
        source = disk.find("source")
        if kind not in ("file", "block") or source is None:
            continue
        path = source.get("file" if kind == "file" else "dev")
        driver = disk.find("driver")
        if path:
            facts.add(("image", os.path.realpath(path), "raw" if driver is None else
                       driver.get("type", "raw")))
        level = disk.find("backingStore")
        while level is not None and level.find("source") is not None:
            fmt = level.find("format")
            facts.add(("image",
                       os.path.realpath(level.find("source").get("file")),
                       "raw" if fmt is None else fmt.get("type", "raw")))
            level = level.find("backingStore")
    return facts


def judged(root, ctx):
    """The allowlist's view of the caller's XML `root` it accepted in
    `ctx` (an allowlist.Confinement the check ran in): what it names,
    with the images as the check read them (path, declared format), the
    backing files it read from their headers, and the overlay libvirt
    makes for each <transient/> disk (allowlist.transient_overlays),
    which a running guest's XML names as its disk."""
    facts = view(root) - images(root)
    facts |= {("image", os.path.realpath(path), declared)
              for path, declared in ctx.checked}
    facts |= {("image", real, fmt) for chain in ctx.chains.values()
              for real, fmt in chain}
    for overlay in allowlist.transient_overlays(root):
        facts |= {("path", "domain/devices/disk/source", "file", overlay),
                  ("image", os.path.realpath(overlay), "qcow2"),
                  ("attr", "domain/devices/disk/driver", "type", "qcow2")}
    return facts


def _chosen_by_libvirt(fact, judged, ctx):
    """A value libvirt wrote where the caller's XML had none in that slot
    (libvirt's default: the emulator of its capabilities, a balloon, an
    audio backend, a NIC model), and the allowlist's own table accepts
    as if the caller had written it. A value the table would refuse
    there (the nvram file libvirt picks outside the image dirs) is not."""
    kind_of, key, name, value = fact
    if any(f[:3] == (kind_of, key, name) for f in judged):
        return False
    spec = allowlist.TABLE.get(key)
    kind = None if spec is None else (
        spec.text if name is None else spec.attrs.get(name))
    if kind is None:
        return False
    try:
        kind.check(value, f"<{key}> {name}", None, ctx)
    except allowlist.Refused:
        return False
    return True


def _added_by_libvirt(fact, judged, ctx):
    if fact in LIBVIRT_ADDS:
        return True
    if fact[0] == "device":
        return f"domain/devices/{fact[1]}" in allowlist.TABLE and \
            fact[1] not in allowlist.REFUSED
    if fact[0] in ("path", "attr") and _chosen_by_libvirt(fact, judged, ctx):
        return True
    if fact[:3] == ("attr", "domain/devices/interface/target", "dev") and \
            GENERATED_TAP.fullmatch(fact[3]):
        return True
    # The console libvirt writes for a domain's first serial port is that
    # port (its type and paths, judged as the serial's), and the serial
    # port it writes for a console of target type serial is that console.
    for this, that in (("console", "serial"), ("serial", "console")):
        prefix = f"domain/devices/{this}"
        if fact[0] in ("path", "attr") and (fact[1] == prefix or
                                            fact[1].startswith(prefix + "/")):
            mirror = f"domain/devices/{that}" + fact[1][len(prefix):]
            if (fact[0], mirror, *fact[2:]) in judged:
                return True
    # The TCP port libvirt took for a console (the allowlist accepts none
    # but libvirt's own choice: graphics_rule), in a running guest's XML.
    if fact[:3] in (("attr", "domain/devices/graphics", "port"),
                    ("attr", "domain/devices/graphics", "tlsPort")):
        return not any(f[:3] == fact[:3] and f[3] != "-1" for f in judged)
    # The pseudo-terminal libvirt opened for a pty chardev.
    if fact[0] == "path" and fact[2] == "path" and \
            allowlist.PTY.regex.fullmatch(fact[3]):
        return True
    # The labels libvirt gave a running guest (its default seclabel).
    if fact in (("element", "domain/seclabel/label"),
                ("element", "domain/seclabel/imagelabel")):
        return True
    # A graphics <listen> of the kind its attributes say (a socket, an
    # address, none): what it names is judged as its own facts.
    if fact[:3] == ("attr", "domain/devices/graphics/listen", "type"):
        return fact[3] in ("address", "socket", "none")
    # The port libvirt connects to on a host judged by name: the
    # protocol's own (NBD 10809, iSCSI 3260, ...).
    if fact[:3] == ("attr", "domain/devices/disk/source/host", "port"):
        host = ("attr", "domain/devices/disk/source/host")
        return any(f[:3] == (*host, "name") for f in judged) and \
            not any(f[:3] == (*host, "port") for f in judged)
    if fact[0] == "attr":
        return (fact[0], fact[1], fact[2], None) in LIBVIRT_ADDS
    return False


def unjudged(caller_root, ctx, libvirt_xml):
    """The facts of libvirt's reading (its XML, text) that the caller's XML
    as the allowlist judged it (`caller_root`, accepted in `ctx`) does not
    hold, but for what libvirt adds of its own (LIBVIRT_ADDS)."""
    seen = judged(caller_root, ctx)
    # libvirt writes a carriage return it read as it is, which a parser
    # reads back as a newline: kept as the one libvirt read.
    read = view(ET.fromstring(libvirt_xml.replace("\r", "&#13;")))
    return {fact for fact in read - seen
            if not _added_by_libvirt(fact, seen, ctx)}
