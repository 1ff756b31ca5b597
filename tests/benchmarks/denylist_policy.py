"""The denylist policy vmjobs had before issue 19 (vmjobs/policy.py at
3262ee7), kept only for the benchmarks to measure the allowlist against.
Not used by vmjobs; it is unsafe (issue 19).

What a domain XML may make the host do.

The service runs as root and libvirt does what a domain XML says; a caller
is trusted to run VMs, not to act as root. So a domain XML, the engine's
(`vmParams.xml`) or the one inside a state file, is refused if it:

- passes anything to QEMU directly, or uses any other foreign namespace
  outside <metadata> (FOREIGN_NAMESPACE);
- assigns or passes through a host device, runs a host script or
  program, or chooses QEMU's security label (REFUSED);
- names a host file outside `storage.image_dirs`: any attribute whose value
  is an absolute path (deny by default, but for HOST_FILE_EXEMPT), the text
  of HOST_FILE_TEXTS, and a relative path in PATH_ATTRIBUTES (libvirt
  would resolve it against a directory of its own choosing);
- names an emulator that is not a QEMU binary of the system (EMULATOR_*).

Parsed with defusedxml (domxml.parse_untrusted): no DTD, no entity.
"""

import fnmatch
import functools
import os

from vmjobs import domxml, hostfiles, statefiles
from vmjobs.errors import CreateError, InvalidParams
from vmjobs.hypervisor import HypervisorError

QEMU_NAMESPACE = "http://libvirt.org/schemas/domain/qemu/1.0"

# (XPath from <domain>, why): an element it finds refuses the XML.
REFUSED = (
    ("devices/hostdev", "assigns a host device"),
    ("devices/interface[@type='hostdev']", "assigns a host network device"),
    ("devices/disk[@type='nvme']", "assigns a host NVMe device"),
    ("devices/disk[@device='lun']",
     "passes SCSI commands through to a host device"),
    ("devices/smartcard[@mode='host']", "passes the host's smartcard "
     "through"),
    ("devices/input[@type='passthrough']", "passes a host input device "
     "through"),
    ("devices/input[@type='evdev']", "passes a host input device through"),
    ("devices/tpm/backend[@type='passthrough']", "passes the host's TPM "
     "through"),
    ("devices/interface/script", "runs a host script"),
    ("devices/interface/downscript", "runs a host script"),
    ("devices/filesystem/binary", "runs a host program (virtiofsd)"),
    ("devices/disk[@type='volume']", "names a storage pool volume, a host "
     "file outside storage.image_dirs"),
    (".//seclabel[@type='static']", "chooses the user or label QEMU runs "
     "as"),
)

# Elements whose text is a host file.
HOST_FILE_TEXTS = ("os/kernel", "os/initrd", "os/loader", "os/nvram",
                   "os/dtb", "os/acpi/table", "devices/memory/source/path",
                   "blkiotune/device/path", "devices/rng/backend")

# Attributes that hold a host path even when it is relative.
PATH_ATTRIBUTES = frozenset({"file", "path", "dir", "socket"})

# (XPath, attribute): absolute-looking values that are not host files.
HOST_FILE_EXEMPT = (
    # A remote path on a network disk's server.
    ("devices/disk[@type='network']/source", "name"),
    # A pty's path is allocated by libvirt (and shown in a running
    # domain's XML); on input libvirt ignores it.
    ("devices/*[@type='pty']/source", "path"),
    ("devices/*[@type='pty']", "tty"),
)

# Subtrees that name nothing on the host: our and others' metadata, and a
# device's target (its name inside the guest).
NOT_HOST_SIDE = ("metadata", ".//target")

# Host files any guest may read: entropy sources.
HARMLESS_HOST_FILES = frozenset({"/dev/urandom", "/dev/random",
                                 "/dev/hwrng"})

# An <emulator> must be the system's QEMU.
EMULATOR_DIRS = ("/usr/bin", "/usr/libexec", "/usr/local/bin")
EMULATOR_NAMES = ("qemu-system-*", "qemu-kvm")


class Refused(ValueError):
    """The domain XML asks the host for something a caller may not."""


def check_host_access(spec, hv, config):
    """What a VM.create or VM.migrationCreate request names on the host
    (its restoreState, or its domain XML): refused with -32602 before
    anything is staged or queued."""
    if spec.restore_state is not None:
        statefiles.confined(spec.restore_state, "restoreState",
                            config.state_dirs)
        check_state_file(hv, spec.restore_state, config.image_dirs)
    elif spec.xml is not None:
        check_engine_xml(spec.xml, config.image_dirs)


def check_engine_xml(text, image_dirs):
    """vmParams.xml (or an incoming migration's xml) -> -32602 'xml'."""
    try:
        check_domain_xml(text, image_dirs)
    except (Refused, domxml.BadDomainXML) as exc:
        raise InvalidParams("xml", f"domain XML refused: {exc}") from None


def check_state_file(hv, path, image_dirs):
    """A restoreState file (already confined to the state dirs): a regular
    file, not reached through a symlink, whose domain XML passes the
    policy; else -32602 'restoreState'. Only read, before anything runs."""
    statefiles.check_readable(path, functools.partial(InvalidParams,
                                                      "restoreState"))
    try:
        check_domain_xml(hv.saved_domain_xml(path), image_dirs)
    except HypervisorError as exc:
        # libvirt could not read it (not a state file, or libvirt failed):
        # the hypervisor refused the restore, as the flow would say.
        raise CreateError(f"cannot read the domain in {path}: {exc}") \
            from None
    except (ValueError, Refused, domxml.BadDomainXML) as exc:
        raise InvalidParams("restoreState", f"{path} refused: {exc}") \
            from None


def check_domain_xml(text, image_dirs):
    """Refuse (Refused, saying what) a domain XML text that breaks the
    policy; BadDomainXML if it is not acceptable XML."""
    check_domain(domxml.parse_untrusted(text), image_dirs)


def check_domain(root, image_dirs):
    skipped = {id(e) for xpath in NOT_HOST_SIDE for e in root.iterfind(xpath)}
    for xpath, why in REFUSED:
        element = root.find(xpath)
        if element is not None:
            raise Refused(f"<{_local(element.tag)}> {why}")
    exempt = {(id(e), attr) for xpath, attr in HOST_FILE_EXEMPT
              for e in root.iterfind(xpath)}
    for element in _host_side(root, skipped):
        _check_namespace(element.tag, f"<{_local(element.tag)}>")
        for name, value in element.attrib.items():
            _check_namespace(name, f"attribute {_local(name)!r}")
            if (id(element), name) in exempt:
                continue
            if value.startswith("/") or (name in PATH_ATTRIBUTES and value):
                _check_host_file(value, image_dirs,
                                 f"<{_local(element.tag)} {name}=...>")
    for xpath in HOST_FILE_TEXTS:
        for element in root.iterfind(xpath):
            if (element.text or "").strip():
                _check_host_file(element.text.strip(), image_dirs,
                                 f"<{_local(element.tag)}>")
    for element in root.iterfind("devices/emulator"):
        _check_emulator((element.text or "").strip())


def _host_side(element, skipped):
    """`element` and its descendants, but for the skipped subtrees."""
    yield element
    for child in element:
        if id(child) not in skipped:
            yield from _host_side(child, skipped)


def _check_namespace(name, what):
    if not name.startswith("{"):
        return
    namespace = name[1:].partition("}")[0]
    if namespace == QEMU_NAMESPACE:
        raise Refused(f"{what} passes arguments to QEMU directly (the qemu: "
                      "namespace)")
    raise Refused(f"{what} is in namespace {namespace!r}: outside "
                  "<metadata> only libvirt's own elements are accepted")


def _check_host_file(path, image_dirs, what):
    if path in HARMLESS_HOST_FILES:
        return
    try:
        hostfiles.confine(path, image_dirs, "storage.image_dirs",
                          resolve_last=True)
    except hostfiles.OutsideDirs as exc:
        raise Refused(f"{what} names a host file: {exc}") from None


def _check_emulator(path):
    real = os.path.realpath(path)
    if path != os.path.normpath(path) or \
            os.path.dirname(real) not in EMULATOR_DIRS or \
            not any(fnmatch.fnmatchcase(os.path.basename(real), pattern)
                    for pattern in EMULATOR_NAMES):
        raise Refused(f"<emulator> {path!r} is not a QEMU binary in "
                      f"{', '.join(EMULATOR_DIRS)}")


def _local(tag):
    return tag.rpartition("}")[2]
