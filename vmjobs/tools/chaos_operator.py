"""The operator mix's hands: what an operator does with virsh on a vmjobs
host, behind the service's back, on vmjobs' own domains (docs/chaos.md,
"The operator mix"). Each is one libvirt call or two, as another client of
the host's libvirtd, the way virsh makes it; libvirt refuses what its own
job on the domain forbids, and the refusal is the outcome.

What the product promises for each (API.md "VM statuses", "Recovery";
docs/recovery.md, "A VM never listed without a domain"; docs/guarantees.md)
is what chaos_checks checks once the hosts are quiet: a vmjobs VM is
listed with the status its domain has and goes Down when its domain goes;
a vmjobs domain in no registry is counted (stopped or unowned, by
Host.getStats); an external domain is never touched."""

import xml.etree.ElementTree as ET

import libvirt

# The operator's actions on one vmjobs domain, and the libvirt call each
# is (virsh's): by name, so that a step's record says which.
ACTIONS = ("undefine", "destroy", "reset", "reboot", "managedsave",
           "setmem", "setvcpus", "define")

# Actions after which the VM's guest is gone (its VM goes Down): the run
# then looks for the VM instead of expecting it.
STOPS_THE_GUEST = ("destroy", "managedsave")


def act(dom, action, draw):
    """Do `action` to `dom` (raises libvirt.libvirtError if libvirt
    refuses); returns what was done, for the step's record."""
    if action == "undefine":
        # virsh undefine of a running guest: it runs on, transient.
        dom.undefine()
    elif action == "destroy":
        dom.destroy()
    elif action == "reset":
        dom.reset(0)
    elif action == "reboot":
        # virsh reboot: the agent or ACPI; a guest without an OS (the
        # run's) ignores the request, libvirt keeps it asked.
        dom.reboot(0)
    elif action == "managedsave":
        dom.managedSave(0)
    elif action == "setmem":
        # Live, down to 3/4 to 1 of its maximum (virsh setmem --live).
        kib = dom.maxMemory()
        target = int(kib * (0.75 + 0.25 * draw))
        dom.setMemoryFlags(target, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        return f"setmem {target} KiB"
    elif action == "setvcpus":
        # Live: only up to the definition's maximum (the run's guests
        # have one vCPU and a maximum of one: libvirt refuses more).
        dom.setVcpusFlags(2 if draw < 0.5 else 1,
                          libvirt.VIR_DOMAIN_AFFECT_LIVE)
    elif action == "define":
        return redefine(dom, draw)
    else:
        raise ValueError(action)
    return action


def redefine(dom, draw):
    """virsh define of the domain's own XML, changed (its description, and
    one time in two its memory), as an operator's `virsh edit`: its next
    start takes it; a transient domain becomes persistent again."""
    flags = libvirt.VIR_DOMAIN_XML_SECURE
    if dom.isPersistent():
        flags |= libvirt.VIR_DOMAIN_XML_INACTIVE
    root = ET.fromstring(dom.XMLDesc(flags))
    description = root.find("description")
    if description is None:
        description = ET.SubElement(root, "description")
    description.text = f"edited by the operator ({draw:.3f})"
    changed = "description"
    if draw < 0.5:
        memory = root.find("memory")
        current = root.find("currentMemory")
        kib = int(memory.text) * (1024 if memory.get("unit") in
                                  ("MiB", "M") else 1)
        kib += 4096
        for element in (memory, current):
            if element is not None:
                element.set("unit", "KiB")
                element.text = str(kib)
        changed += f", memory {kib} KiB"
    dom.connect().defineXML(ET.tostring(root, encoding="unicode"))
    return f"define ({changed})"


def external_xml(model_xml, name, uuid):
    """An operator's own domain: `model_xml` (another domain's XML, as
    `virsh dumpxml` gives it) without vmjobs' metadata, named `name`,
    with UUID `uuid`."""
    root = ET.fromstring(model_xml)
    for tag in ("metadata", "uuid", "description"):
        for element in root.findall(tag):
            root.remove(element)
    root.find("name").text = name
    ET.SubElement(root, "uuid").text = uuid
    return ET.tostring(root, encoding="unicode")


def create_external(conn, model_dom, name, uuid):
    """virsh create of an external domain (transient, running) named
    `name`; returns its UUID."""
    xml = external_xml(model_dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE),
                       name, uuid)
    return conn.createXML(xml, 0).UUIDString()
