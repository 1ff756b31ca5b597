"""The domain XML vmjobs accepts: an allowlist of elements, each with the
attributes it may carry, each attribute (and each element's text) typed.

A domain XML from a caller (vmParams.xml, VM.migrationCreate's xml, the
XML inside a state file) is walked against TABLE, keyed by the element's
path from <domain>. Whatever is not in the table is refused, naming it:
an unknown element, an unknown attribute, any namespace outside
<metadata>, text where none is expected, mixed content (libvirt joins
all of an element's text, around its children, so text beside a child
element would be read differently by libvirt and by us), and a carriage
return in a text (which libvirt reads as a newline from what vmjobs
writes).

The types keep a host path where it belongs: a slot libvirt reads as a
host path is typed PATH, IMAGE, ENTROPY, CHARDEV_PATH or EMULATOR, each
confined (hostfiles.py; images.py for what an image file names). TOKEN,
the type of most names (models, buses, aliases...), cannot hold a '/'.
Beside those, a '/' is taken only where libvirt reads no local path: TEXT
(a VM's name, its description, a kernel command line), PTY (`/dev/pts/N`,
ignored on input), REMOTE_NAME (a network disk's volume) and the cgroup
partition `/machine`.

To teach vmjobs an element: add its row, and a test beside the engine
XMLs in tests/test_allowlist.py (and, if it names anything on the host, a
refused case with its control in tests/test_hostile_xml.py); then
`python -m vmjobs.tools.allowlist_doc` regenerates docs/allowlist.md
(test_allowlist.py fails while it is stale).
"""

import dataclasses
import functools
import ipaddress
import os
import re

from . import decimals, hostfiles, images
from .hostpaths import Use

MAX_DEPTH = 64
QEMU_NAMESPACE = "http://libvirt.org/schemas/domain/qemu/1.0"


class Refused(ValueError):
    """The domain XML asks the host for something a caller may not."""


@dataclasses.dataclass(frozen=True)
class Confinement:
    """Where a domain XML may reach on the host (from the config); made
    per request, so the image dirs' own symlinks are resolved once per
    request (when its first path is judged: a request without a domain
    XML names none), not once per path."""
    image_dirs: tuple
    network_hosts: tuple = ()
    # True for XML libvirt itself wrote (a state file, an incoming
    # migration's XML from the source libvirtd): it may carry the default
    # <seclabel> libvirt adds to a running guest; an engine's never does.
    written_by_libvirt: bool = False
    # network_bridge(name): the host bridge libvirt network `name` joins
    # its guests' taps to, or None (no such network, or one without a
    # bridge): libvirt's to say (Hypervisor.network_bridge). None here:
    # no libvirt to ask, and a NIC's MTU on a network cannot be judged.
    network_bridge: object = None
    # Filled by the check: {image path as the XML names it: the backing
    # chain read from its header, [(real path, format), ...]}, for
    # domxml.compose to state (images.py says why).
    chains: dict = dataclasses.field(init=False, default_factory=dict)
    # {(image path, declared format): its chain, or the refusal}: an image
    # named by many disks is read once (a 4 MiB XML names one thousands
    # of times: each read its header and chain again, 29 s for one
    # request).
    checked: dict = dataclasses.field(init=False, default_factory=dict)
    # Filled once the check passed (policy.check_domain_xml): the host
    # paths the domain holds while it runs (hostpaths.Hold), for its VM to
    # take with its vmId's stage.
    paths: list = dataclasses.field(init=False, default_factory=list)

    @functools.cached_property
    def real_image_dirs(self):
        return tuple(os.path.realpath(d) for d in self.image_dirs)

    @functools.cached_property
    def listening(self):
        """The host's listening unix sockets, read once a request, when
        its first socket path that is a socket file is judged
        (hostfiles.listening_sockets)."""
        return hostfiles.listening_sockets()


# -- the types of a value --------------------------------------------------

class Kind:
    """A value's type: `doc` describes it, check() refuses what it is not.
    `where` names the value in a refusal; `parent` is the parent of the
    element the value is on (a chardev's path depends on its type).
    held() says how a domain holds the host path the value is while it
    runs (hostpaths.Use), or None: the host makes or writes nothing there
    (`element`: the element the value is on)."""
    doc = ""

    def check(self, value, where, parent, ctx):
        raise NotImplementedError

    def held(self, value, element, parent):
        return None

    def also_held(self, value, element, parent):
        """Other host paths the host writes for this value (path, Use)."""
        return ()


class Enum(Kind):
    def __init__(self, *values):
        self.values = frozenset(values)
        self.doc = "one of " + ", ".join(f"`{v}`" for v in sorted(values))

    def check(self, value, where, parent, ctx):
        if value.strip() not in self.values:
            raise Refused(f"{where} {value!r} is not one of "
                          f"{', '.join(sorted(self.values))}")


class Pattern(Kind):
    """`exact`: the value as written, blanks and all, where libvirt takes
    it so (else blanks around it are let through: libvirt's own parsers
    of numbers, enums and names refuse or skip them)."""
    def __init__(self, doc, regex, exact=False):
        self.doc = doc
        self.regex = re.compile(regex)
        self.exact = exact

    def check(self, value, where, parent, ctx):
        if not self.regex.fullmatch(value if self.exact else value.strip()):
            raise Refused(f"{where} {value!r} is not {self.doc}")


class Count(Kind):
    """A count or an index that libvirt sizes its own memory by, as it
    parses the XML (an array of that many entries, a bitmap, a controller
    added for each index below it): a decimal number (libvirt reads them
    base 10) from `least` to `most`, what a guest can use. Unbounded, one
    define made the root libvirtd allocate what the number said, and
    abort when it could not (round 11)."""
    def __init__(self, what, least, most):
        self.least, self.most = least, most
        self.doc = f"{what}: a decimal number from {least} to {most}"

    def check(self, value, where, parent, ctx):
        value = value.strip()
        number = decimals.parse(value, len(str(self.most)))
        if number is None or not self.least <= number <= self.most:
            raise Refused(f"{where} {value!r} is not {self.doc}")


class Text(Kind):
    doc = "free text (no control characters), never read as a path"

    def check(self, value, where, parent, ctx):
        if _CONTROL.search(value):
            raise Refused(f"{where} holds control characters")


class OneLine(Text):
    """Free text libvirt takes on one line only (a title): a newline in
    it is refused at the define, after the verb had accepted it."""
    doc = "free text on one line (no control characters, no newline)"

    def check(self, value, where, parent, ctx):
        super().check(value, where, parent, ctx)
        if "\n" in value:
            raise Refused(f"{where} holds a newline (libvirt takes none "
                          "there)")


class DomainName(OneLine):
    """The domain's name: libvirt makes directories of it, bare (a
    snapshot's, a checkpoint's), and deletes their tree at a define."""
    doc = ("free text on one line (no control characters, no newline), a "
           "file name libvirt makes directories of: no `/`, not `.` or "
           "`..`")

    def check(self, value, where, parent, ctx):
        super().check(value, where, parent, ctx)
        if not hostfiles.is_entry_name(value):
            raise Refused(f"{where} {value!r} is not a name libvirt can "
                          "make a directory of its own (no '/', not '.' "
                          "or '..')")


class Path(Kind):
    """A host file libvirt or QEMU opens: confined to storage.image_dirs."""
    doc = "host path inside `storage.image_dirs`"

    def check(self, value, where, parent, ctx):
        confine(value, where, ctx)


class Image(Path):
    """A disk image: confined, and what its header names too (images.py,
    checked by the disk's rule, where its declared format is known). A
    disk's own image, unless read-only (<readonly/>, a cdrom, a
    <transient/> disk, whose writes go to an overlay), is written: its VM
    holds it (shared with other VMs only where each says <shareable/>).
    A read-only one and a backing store are read for as long as the
    guest runs: held too, as read (hostpaths.Use.READ), which only
    writers clash with (round 12: another guest's writable share of
    their directory wrote into them, through 9p, which takes no image
    lock)."""
    doc = ("disk image inside `storage.image_dirs` (format read from the "
           "file; its backing and data files confined too); empty: no "
           "medium, for a cdrom or floppy only. Held by its VM: written, "
           "unless read-only; a read-only one, and a backing file, as read "
           "(no other VM may write it)")

    def check(self, value, where, parent, ctx):
        if value:          # empty: the disk's rule says whether it may be
            confine(value, where, ctx)

    def held(self, value, element, parent):
        if not value or parent is None:
            return None
        if parent.tag == "backingStore":
            return Use.READ
        if parent.tag != "disk":
            return None
        if parent.get("device") == "cdrom" or any(
                parent.find(tag) is not None
                for tag in ("readonly", "transient")):
            return Use.READ
        if parent.find("shareable") is not None:
            return Use.SHARED_DISK
        return Use.DISK


class Firmware(Path):
    """A guest's firmware: read, but for a pflash loader libvirt does not
    mark read-only, which QEMU writes like a disk."""
    doc = ("host path inside `storage.image_dirs`; a pflash loader without "
           "`readonly='yes'` is written, and held by its VM")

    def held(self, value, element, parent):
        if element.get("type") == "pflash" and \
                element.get("readonly") != "yes":
            return Use.DISK
        return None


class VarStore(Path):
    """A guest's firmware variables (<nvram>): QEMU writes them. libvirt
    makes an absent one from its template by writing PATH.new (opened
    O_TRUNC, chowned, as root) and renaming it to PATH (virFileRewrite):
    a file the XML never names, which must be free too (round 10: a
    running guest's disk named a.fd.new was emptied, overwritten with the
    template and moved to a.fd by another guest naming a.fd)."""
    doc = ("host path inside `storage.image_dirs`, written: held by its VM; "
           "libvirt makes an absent one at `PATH.new`, renamed to PATH: "
           "nothing may be at `PATH.new`, which its VM holds too")

    def check(self, value, where, parent, ctx):
        confine(value, where, ctx)
        must_be_free(value + NVRAM_STAGING, f"{where} {value!r}: libvirt "
                     "makes it by truncating and renaming", ctx)

    def held(self, value, element, parent):
        return Use.DISK

    def also_held(self, value, element, parent):
        return ((value + NVRAM_STAGING, Use.WRITE),)


# What libvirt (virFileRewrite) names the file it writes a new <nvram> into.
NVRAM_STAGING = ".new"


class SharedDir(Path):
    """A directory shared with the guest (<filesystem>): unless
    <readonly/>, the guest writes its files; if it is, it reads them for
    as long as it runs, and no other guest may write there (round 12:
    another's writable share of it, or an output inside it, was
    accepted)."""
    doc = ("host directory inside `storage.image_dirs`, held by its VM "
           "with everything below it: written unless the share is "
           "`<readonly/>`; read, so no other VM may write there, if it is")

    def held(self, value, element, parent):
        if parent is not None and parent.find("readonly") is not None:
            return Use.READ_DIR
        return Use.DIR


class Entropy(Path):
    doc = "`/dev/urandom`, `/dev/random`, or a host path"
    HOST_SOURCES = frozenset({"/dev/urandom", "/dev/random"})

    def check(self, value, where, parent, ctx):
        if value not in self.HOST_SOURCES:
            confine(value, where, ctx)


class SocketPath(Path):
    """Where the host binds a unix socket: libvirt unlinks whatever is
    there first (hostfiles.bind_would_take)."""
    doc = ("host path inside `storage.image_dirs` where nothing is, or a "
           "socket no one listens on; held by its VM")

    def check(self, value, where, parent, ctx):
        confine(value, where, ctx)
        _refuse_taking(hostfiles.bind_would_take(
            value, lambda: ctx.listening), value, where)

    def held(self, value, element, parent):
        return Use.BIND


class OutputPath(Path):
    """A file the host writes from its start (a chardev's output, a log,
    an nvdimm's memory): hostfiles.write_would_take."""
    doc = ("host path inside `storage.image_dirs` where nothing is, or a "
           "regular file no process holds locked; held by its VM")

    def check(self, value, where, parent, ctx):
        confine(value, where, ctx)
        _refuse_taking(hostfiles.write_would_take(value), value, where)

    def held(self, value, element, parent):
        return Use.WRITE


class LogPath(OutputPath):
    """A chardev's output or log. Under libvirt's default stdio_handler
    ('logd') virtlogd writes it and, once it reaches its max_size (2
    MiB), renames it to PATH.0, PATH.0 to PATH.1 and so on, deleting the
    last of its max_backups (3) copies: files the XML never names, renamed
    over and deleted whatever they are (round 12, measured on the private
    daemon with virtlogd: a guest writing its serial port replaced two
    images named PATH.0 and PATH.1 with its own bytes in ten seconds, and
    deleted them at the next rotations). So nothing may be at PATH.0 to
    PATH.9 (virtlogd's default and more, for an operator's max_backups up
    to ten), and its VM holds them too."""
    doc = ("as OUTPUT_PATH, and nothing at `PATH.0` to `PATH.9`, the copies "
           "virtlogd rotates it to, which its VM holds too")

    def check(self, value, where, parent, ctx):
        super().check(value, where, parent, ctx)
        for rotated in rotated_names(value):
            must_be_free(rotated, f"{where} {value!r}: virtlogd renames "
                         "it, as it grows, to", ctx)

    def also_held(self, value, element, parent):
        return tuple((rotated, Use.WRITE) for rotated in rotated_names(value))


# The rotated copies of a log virtlogd may make (its max_backups, 3 by
# default), kept free for up to this many.
ROTATED_COPIES = 10


def rotated_names(path):
    """The names virtlogd rotates `path` to: PATH.0, PATH.1, ..."""
    return tuple(f"{path}.{n}" for n in range(ROTATED_COPIES))


def _refuse_taking(why, value, where):
    if why is not None:
        raise Refused(f"{where} {value!r} {why}")


class ChardevPath(Path):
    """A chardev's source path: for a pty, the pty libvirt allocated (it
    ignores the value on input); for a unix chardev, a socket the host
    binds; for a file, a file it writes; else (no path read) confined."""
    doc = ("for a `pty`: `/dev/pts/N`; `unix`: as SOCKET_PATH; `file`: as "
           "LOG_PATH; else a host path")

    def check(self, value, where, parent, ctx):
        self._of(parent).check(value, where, parent, ctx)

    def held(self, value, element, parent):
        return self._of(parent).held(value, element, parent)

    def also_held(self, value, element, parent):
        return self._of(parent).also_held(value, element, parent)

    @staticmethod
    def _of(parent):
        kind = "pty" if parent is None else parent.get("type", "pty")
        return {"pty": PTY, "unix": SOCKET_PATH, "file": LOG_PATH}.get(
            kind, PATH)


class Emulator(Kind):
    doc = "`/usr/bin/qemu-system-*`, `/usr/bin/qemu-kvm` or in /usr/libexec"
    DIRS = ("/usr/bin", "/usr/libexec", "/usr/local/bin")
    NAME = re.compile(r"qemu-system-[a-z0-9_]+|qemu-kvm")

    def check(self, value, where, parent, ctx):
        real = os.path.realpath(value)
        if value != os.path.normpath(value) or \
                os.path.dirname(real) not in self.DIRS or \
                not self.NAME.fullmatch(os.path.basename(real)):
            raise Refused(f"{where} {value!r} is not a QEMU binary in "
                          f"{', '.join(self.DIRS)}")


class ListenAddress(Kind):
    """Where a console (VNC, SPICE) listens: written by libvirt into
    QEMU's option string, so an address and nothing else."""
    doc = "an IP address (IPv4, or IPv6 without a zone), or `0` (VDSM's)"

    def check(self, value, where, parent, ctx):
        if value == "0":    # what VDSM writes: every address, as 0.0.0.0
            return
        try:
            ipaddress.ip_address(value)   # takes a zone: `fe80::1%eth0`
        except ValueError:
            pass
        else:
            if "%" not in value:
                return
        raise Refused(f"{where} {value!r} is not {self.doc}")


class NetworkHost(Kind):
    doc = "a host named in `storage.network_hosts`"

    def check(self, value, where, parent, ctx):
        if value not in ctx.network_hosts:
            raise Refused(f"{where} {value!r} is not in storage."
                          "network_hosts (the host connects to it for the "
                          "guest)")


_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")

# No `,` or `=` in a name: they separate QEMU's options, and libvirt 9.0
# writes some values into an option string unescaped (a SPICE listen
# address became `-spice addr=x,unix=on`: QEMU, as root, replaced a file
# in `/` with a socket). A value that needs a comma has its own kind.
TOKEN = Pattern("a name: letters, digits and `_ . : + @ - ^ ~`",
                r"[A-Za-z0-9_.:+@^~-]{1,256}")
CPU_SET = Pattern("a set of CPUs or NUMA nodes, e.g. `0-3,^2,8`",
                  r"\^?[0-9]{1,5}(-[0-9]{1,5})?"
                  r"(,\^?[0-9]{1,5}(-[0-9]{1,5})?){0,1023}")
NUMBER = Pattern("a number (decimal or 0x hex)",
                 r"[+-]?(0x[0-9a-fA-F]{1,16}|[0-9]{1,20}(\.[0-9]{1,9})?)")
UUID = Pattern("a UUID", r"[0-9a-fA-F-]{32,36}")
# Decimal, as libvirt reads it (base 10; no hex, no sign).
MTU = Pattern("a size in bytes (decimal)", r"[0-9]{1,6}")
# A network disk's volume on its (allowed) host: ceph's pool/image, an nbd
# export, an iSCSI target/lun; never a path on this host.
REMOTE_NAME = Pattern("a volume name on the network host",
                      r"[A-Za-z0-9_.:+@-][A-Za-z0-9_.:+@/-]{0,1023}")
# A guest's tap. libvirt names host objects after it (the tap's network
# filter binding, an OVS port) and, when a start fails, tears down those
# of the name the XML gave: a tap named after another guest's made the
# start fail and deleted that guest's filter (a hostile-caller audit,
# round 9). So only a name libvirt generates, which it discards on input
# (define, restore; measured on libvirt 9.0) for one of its own. Exact:
# libvirt discards a name starting with `vnet` as written, and keeps
# `\tvnet7` (round 10: accepted as `vnet7` before).
GENERATED_TAP = Pattern("`vnetN`, a tap name libvirt generates (and "
                        "discards on input, naming the tap itself)",
                        r"vnet[0-9]{1,10}", exact=True)
# The pty libvirt allocated, as a running domain's XML shows it (an
# incoming migration's XML); libvirt ignores it on input.
PTY = Pattern("`/dev/pts/N`", r"/dev/pts/[0-9]{1,7}")
# A console's keyboard layout: QEMU's -k, which QEMU opens as a file
# name first (qemu_find_file: "the name as a straight path"), relative to
# its working directory, `/` under libvirt, and only then in its keymaps
# directory: as a name (a TOKEN), any file of `/` was a keymap QEMU read,
# as root (round 10). So one of QEMU's own keymaps (QEMU 7.2's list).
KEYMAP = Enum("ar", "bepo", "cz", "da", "de", "de-ch", "en-gb", "en-us",
              "es", "et", "fi", "fo", "fr", "fr-be", "fr-ca", "fr-ch", "hr",
              "hu", "is", "it", "ja", "lt", "lv", "mk", "nl", "no", "pl",
              "pt", "pt-br", "ru", "sl", "sv", "th", "tr")
# A guest's vCPUs, each a thread of its QEMU: as many as vmjobs lets a
# caller ask for in vmParams too (params.SMP_RANGE). libvirt 9.0 makes an
# array of `<vcpu>` entries at parse: `<vcpu>4294967295</vcpu>` made the root
# libvirtd ask for 32 GiB and abort (round 11, measured on the private
# daemon: GLib "failed to allocate 34359738360 bytes").
MAX_VCPUS = 512
VCPUS = Count("vCPUs", 1, MAX_VCPUS)
# A guest's I/O threads, each a thread of its QEMU, serving its disks (an
# engine gives one, or a few): no more than it may have vCPUs. libvirt
# 9.0 makes a bitmap and an array of `<iothreads>` entries at parse:
# 4294967295 made the root libvirtd ask for 32 GiB and abort (round 11,
# measured on the private daemon), and a count that fits would have its
# QEMU, as root, start that many threads (this host's pid_max: 32768).
IOTHREADS = Count("I/O threads", 0, MAX_VCPUS)
# A controller's index, and the controller a device's address names: a
# PCI bus number at most (8 bits), far more than a guest's disk, serial or
# smartcard controllers. libvirt 9.0 sizes its address sets by the largest
# index and adds the controllers a device's address names with all those
# below them: `<controller type='scsi' index='2147483647'>` made the root
# libvirtd ask for 2 EiB and abort, a usb one took it 49 s of CPU, and
# `<address type='drive' controller='2147483647'>` kept a core busy for
# minutes until it was killed (round 11, measured on the private daemon).
CONTROLLER_INDEX = Count("a controller index", 0, 255)
# A NIC's queues: libvirt opens a tap and a vhost-net device for each at
# the start, in arrays of that many, and each vhost device is a kernel
# thread of the host; the kernel gives a tap at most 256. Unbounded, the
# start of one NIC of queues='4294967295' made the root libvirtd grow by
# 380 MB/s, 12 GB in 30 s of this 24 GB host before it was killed (round
# 11, measured on the private daemon). 0: libvirt's default, one.
NIC_QUEUES = Count("queues", 0, 256)
ONOFF = Enum("on", "off")
YESNO = Enum("yes", "no")
TEXT = Text()
ONE_LINE = OneLine()
PATH = Path()
FIRMWARE = Firmware()
VAR_STORE = VarStore()
SHARED_DIR = SharedDir()
SOCKET_PATH = SocketPath()
OUTPUT_PATH = OutputPath()
LOG_PATH = LogPath()
IMAGE = Image()
ENTROPY = Entropy()
CHARDEV_PATH = ChardevPath()
EMULATOR = Emulator()
NETWORK_HOST = NetworkHost()
LISTEN_ADDRESS = ListenAddress()


def confine(path, where, ctx):
    """A host path (hostfiles.confine, its target resolved) that is not an
    image directory itself; else Refused."""
    try:
        hostfiles.confine(path, ctx.image_dirs, "storage.image_dirs",
                          resolve_last=True, real_dirs=ctx.real_image_dirs)
    except hostfiles.OutsideDirs as exc:
        raise Refused(f"{where} names a host path: {exc}") from None
    if hostfiles.is_one_of(path, ctx.image_dirs) or \
            hostfiles.is_one_of(os.path.realpath(path), ctx.real_image_dirs):
        raise Refused(f"{where} {path!r} is an image directory itself, not "
                      "a file in one")


def must_be_free(path, why, ctx):
    """A path libvirt (or virtlogd) makes beside one the XML names, by
    truncating, renaming or creating: inside the image directories as any
    path, and nothing there yet (what is there would be taken). `why`
    says who makes it, ending before the path."""
    confine(path, f"{why} {path!r}", ctx)
    if os.path.lexists(path):
        raise Refused(f"{why} {path!r}, and something is there")


# -- rules across attributes ------------------------------------------------

def chardev_rule(element, ctx):
    """A unix chardev must listen (mode='bind'): one that connects reaches
    any socket of the host on the guest's behalf."""
    source = element.find("source")
    if element.get("type") == "unix" and source is not None and \
            source.get("mode") != "bind":
        raise Refused(f"<{element.tag} type='unix'> connects to a host "
                      "socket: only mode='bind' is accepted")


# The pseudo-terminals one guest may take: each `pty` chardev (a serial
# port, a console, a channel; a chardev of no type is a pty to libvirt)
# is one of the host's, opened by its QEMU while it runs, and the host
# has few (kernel.pty.max: 4096 by default), shared with
# every login, terminal and guest console. An engine gives a guest one or
# two (its serial console); without a bound one domain XML of 4,100 pty
# channels (270 KB) took them all (round 11, measured on the private
# daemon: 1,000 channels, 1,000 ptys held by one QEMU).
MAX_PTYS = 16
PTY_CHARDEVS = ("serial", "console", "channel")


# The devices one domain may have, in all its <devices>: far more than a
# guest's disks, NICs, consoles and controllers (an engine's has tens),
# and few enough that judging their host paths stays under a second.
# Judging a path (resolved, looked at on the host) costs about 0.3 ms, in
# the caller's connection thread: a 4 MiB XML of 60,000 <serial
# type='file'> took 20 s of the service's CPU and was accepted (round 11),
# so 64 of them, one per connection slot, would have locked every other
# caller out for minutes on this 2-core host. Counted before anything in
# them is judged.
# Controllers are not counted (they name no host path, and libvirt adds
# one of its own for many devices: a pcie-root-port each on q35). XML
# libvirt wrote (a state file, an incoming migration) may hold a few more
# devices it adds by itself (a console for the first serial port, the
# PS/2 mouse and keyboard, a video, a balloon...): a guest accepted at the
# bound is restored and migrated too.
MAX_DEVICES = 1024
LIBVIRT_ADDED_DEVICES = 16

class DiskTarget(Kind):
    """A disk's name in the guest (<target dev>). libvirt reads a name of
    its own pattern (`hd`, `sd`, `vd`, `xvd`, `ubd` or `fd`, lower-case
    letters counting from `a` as a bijective base 26, then a partition's
    digits: virDiskNameParse) as the disk's index, and puts a disk without
    an address on the controller that index implies, adding every
    controller below it: `sdzzzz` (475,253) on sata kept the root libvirtd
    busy 61 s in one define, `sdzzzzz` for minutes, until it was stopped
    (round 12, measured on the private daemon; round 11 bounded the
    controller an address names, not this one). So such a name's index is
    at most the devices a guest may have (a disk past it is no disk of
    its); any other name is a TOKEN."""
    PREFIXES = ("fd", "hd", "vd", "sd", "xvd", "ubd")   # libvirt's order
    NAME = re.compile(r"([a-z]*)([0-9]*)")

    def __init__(self, most):
        self.most = most
        self.doc = (f"{TOKEN.doc}; a name of libvirt's disk pattern "
                    "(`hd`, `sd`, `vd`, `xvd`, `ubd` or `fd`, letters, "
                    f"digits) names an index, at most {most} (`sdamz`)")

    def check(self, value, where, parent, ctx):
        TOKEN.check(value, where, parent, ctx)
        index = self.index(value)
        if index is not None and index > self.most:
            raise Refused(f"{where} {value!r} is disk index {index} to "
                          f"libvirt: at most {self.most}")

    @classmethod
    def index(cls, name):
        """The index libvirt reads `name` as, or None if it reads none."""
        prefix = next((p for p in cls.PREFIXES if name.startswith(p)), None)
        if prefix is None:
            return None
        match = cls.NAME.fullmatch(name[len(prefix):])
        if match is None or not match.group(1):
            return None
        index = 0
        for position, letter in enumerate(match.group(1)):
            index = (index + (1 if position else 0)) * 26 + ord(letter) - 97
        return index


# A serial port's or a console's number: an index of the guest's serial
# ports or consoles, so never more than its devices. libvirt 9.0 reads it
# unsigned and keeps it in an int: 2147483648 (INT_MIN) passed its check
# that an ISA serial port is below 4 and indexed a bool array of 4 on its
# stack at the start, and the root libvirtd segfaulted, one VM.create;
# `-2` (read as 4294967294) wrote a byte below the array and started
# (round 12, measured on the private daemon).
CHARDEV_PORT = Count("a serial or console port", 0,
                     MAX_DEVICES + LIBVIRT_ADDED_DEVICES)
DISK_TARGET = DiskTarget(MAX_DEVICES + LIBVIRT_ADDED_DEVICES - 1)


def check_device_count(root, ctx):
    """Refuse a domain with more than MAX_DEVICES devices but its
    controllers (libvirt reads them across every <devices> element)."""
    bound = MAX_DEVICES + (LIBVIRT_ADDED_DEVICES if ctx.written_by_libvirt
                           else 0)
    count = sum(1 for devices in root.iterfind("devices")
                for device in devices if device.tag != "controller")
    if count > bound:
        raise Refused(f"{count} devices (controllers apart): at most "
                      f"{bound}")


# The NIC queues of one domain, all its NICs together (a NIC without
# queues= has one): each is a tap queue the host opens and, on a KVM
# host, a vhost-net worker task of the host's (one per queue, read in
# the kernel's vhost driver; this host has no vhost-net to measure), and
# each NIC a port of its host bridge (a bridge takes 1,024). As many as
# one NIC may have (NIC_QUEUES): an engine gives a few NICs of one to
# four. Without it one domain of 1,024 NICs of 256 queues asked for
# 262,144 tasks, where pid_max is 32,768 here (round 11).
MAX_NIC_QUEUES = NIC_QUEUES.most


def domain_rule(element, ctx):
    """At most MAX_PTYS pty chardevs, and MAX_NIC_QUEUES queues of its
    NICs together, in all its <devices> (libvirt reads the devices across
    every <devices> element). Nothing where libvirt makes a transient
    disk's overlay."""
    for overlay in transient_overlays(element):
        must_be_free(overlay, "a <transient/> disk's overlay: libvirt "
                     "makes it at", ctx)
    ptys = _pty_count(element)
    if ptys > MAX_PTYS:
        raise Refused(f"{ptys} pty chardevs: at most {MAX_PTYS} (each "
                      "takes one of the host's pseudo-terminals while the "
                      "guest runs)")
    queues = sum(_queues_of(nic)
                 for nic in element.iterfind("devices/interface"))
    if queues > MAX_NIC_QUEUES:
        raise Refused(f"its NICs have {queues} queues in all: at most "
                      f"{MAX_NIC_QUEUES} (each a tap queue, and a vhost "
                      "task of the host's)")


def transient_overlays(domain):
    """Where libvirt 9.0 makes the overlay of each <transient/> disk of
    `domain`: beside the disk's image, named after it and the domain
    (IMAGE.TRANSIENT-NAME), created by QEMU's blockdev-create as root when
    the guest starts, written by the guest, unlinked when it stops. A path
    the XML never names: the VM holds it, so that no other VM names it
    (its output opened over the overlay of a guest started in between
    wrote into that guest's disk; round 12)."""
    name = domain.findtext("name")
    if name is None:
        return
    for disk in domain.iterfind("devices/disk"):
        source = disk.find("source")
        if disk.find("transient") is None or source is None:
            continue
        image = source.get("file") or source.get("dev")
        if image:
            yield f"{image}.TRANSIENT-{name}"


def _pty_count(domain):
    """The pseudo-terminals its chardevs open. The first <console> of a
    domain with a serial port, when its target is a serial port (libvirt's
    default), is that port, its pty shared: libvirt writes such a console
    into every running guest's XML that has a serial port."""
    count = 0
    has_serial = domain.find("devices/serial") is not None
    for tag in PTY_CHARDEVS:
        for index, chardev in enumerate(domain.iterfind(f"devices/{tag}")):
            if chardev.get("type", "pty").strip() != "pty":
                continue
            target = chardev.find("target")
            target_type = "" if target is None else \
                target.get("type", "").strip()
            if tag == "console" and index == 0 and has_serial and \
                    target_type in ("", "serial"):
                continue
            count += 1
    return count


def _queues_of(nic):
    """A NIC's queues, as libvirt counts them (none given, or 0: one);
    its queues= is already known to be NIC_QUEUES."""
    queues = max((int(driver.get("queues", "0").strip() or 0)
                  for driver in nic.iterfind("driver")), default=0)
    return max(queues, 1)


# The least MTU that keeps a link's IPv6: below it the kernel removes the
# device's IPv6 addresses, and they do not come back with a larger one.
IPV6_MIN_MTU = 1280


def interface_rule(element, ctx):
    """A guest's <mtu> does not lower its bridge's: the kernel gives a
    bridge the least MTU of its ports, so a tap's smaller one shrinks the
    host's own network on that bridge while the guest runs, and below
    1280 takes the bridge's IPv6 addresses away for good. At least 1280,
    and at least the MTU of the host bridge the NIC's tap joins: a
    `type='bridge'` NIC's own, a `type='network'` NIC's network's (as
    libvirt names it); without <mtu> libvirt gives the tap its bridge's."""
    mtus = element.findall("mtu")
    if not mtus:
        return
    floor = max([IPV6_MIN_MTU] + [_bridge_mtu(bridge)
                                  for bridge in _bridges(element, ctx)
                                  if bridge])
    for mtu in mtus:
        size = int(mtu.get("size", "0"))
        if size < floor:
            raise Refused(f"<interface> <mtu size='{size}'> would lower "
                          f"its bridge's MTU (at least {floor}: 1280, "
                          "IPv6's least, and the bridge's own)")


def _bridges(element, ctx):
    """The host bridges the tap of NIC `element` joins."""
    kind = element.get("type")
    for source in element.findall("source"):
        if kind == "bridge":
            yield source.get("bridge")
        elif kind == "network" and source.get("network"):
            if ctx.network_bridge is None:
                raise Refused("<interface type='network'> with an <mtu>: "
                              "its network's bridge cannot be looked up "
                              "here (no libvirt connection)")
            yield ctx.network_bridge(source.get("network"))


def _bridge_mtu(name):
    """The MTU of host network device `name`, or 0 if the host has none
    of that name (libvirt would then not start the guest)."""
    if not hostfiles.is_entry_name(name):
        return 0
    try:
        with open(f"/sys/class/net/{name}/mtu") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


def graphics_rule(element, ctx):
    """A console's TCP ports are libvirt's to choose (autoport='yes', or
    port and tlsPort -1, its legacy form: libvirt then takes free ones of
    its console range, and discards the ports a running guest's XML
    shows): a fixed port made the root QEMU listen on any TCP port of the
    host, a privileged one or a host service's (round 10: SPICE on
    127.0.0.1:1023)."""
    if element.get("autoport") == "yes":
        return
    for name in ("port", "tlsPort"):
        value = element.get(name)
        if value is not None and value.strip() != "-1":
            raise Refused(f"<graphics {name}='{value}'> fixes the TCP port "
                          "the host listens on: only libvirt's own choice "
                          "(autoport='yes', or -1) is accepted")


def disk_rule(element, ctx):
    """A disk's image (read from its header) is the declared format and
    names no file outside; a network disk names its host and is raw."""
    source = element.find("source")
    kind = element.get("type", "file")
    driver = element.find("driver")
    declared = driver.get("type", "raw") if driver is not None else "raw"
    if kind == "network":
        hosts = [] if source is None else source.findall("host")
        if not hosts or not all(host.get("name") for host in hosts):
            raise Refused("<disk type='network'> names no host in one of "
                          "its <host>: libvirt would connect to a default "
                          "one")
        # Its header is on the network host, where vmjobs cannot read it,
        # and QEMU opens on this host what a qcow2 header names (a backing
        # file, a data file): only raw, with nothing beneath, names
        # nothing.
        if declared != "raw":
            raise Refused(f"<disk type='network'> is {declared}: a network "
                          "disk is raw (its header, on another host, "
                          "cannot be checked for the host files it names)")
        if element.find("backingStore") is not None:
            raise Refused("<disk type='network'> states a <backingStore>: "
                          "a network disk is raw, with nothing beneath")
        return
    if source is None:
        return
    path = source.get("file" if kind == "file" else "dev")
    if not path:
        if element.get("device") in ("cdrom", "floppy"):
            return          # no medium
        raise Refused(f"<disk type='{kind}'> names no image")
    _check_image(path, declared, ctx)


def seclabel_rule(element, ctx):
    """The domain's default label is libvirt's own writing, not a
    caller's choice: accepted only in XML libvirt wrote."""
    if not ctx.written_by_libvirt:
        raise Refused("<seclabel> chooses how the guest is confined: an "
                      "engine's domain XML names none (guests run under the "
                      "host's default labels)")


def os_rule(element, ctx):
    """A guest with writable firmware variables (a pflash loader, or
    firmware='efi') names its <nvram> file: without one, libvirt picks
    /var/lib/libvirt/qemu/nvram/NAME_VARS.fd, outside storage.image_dirs
    (and reuses what is there, another guest's variables included)."""
    loader = element.find("loader")
    pflash = loader is not None and loader.get("type") == "pflash"
    if not (pflash or element.get("firmware") == "efi"):
        return
    nvram = element.find("nvram")
    if nvram is None or not (nvram.text or "").strip():
        raise Refused("a pflash or EFI guest names no <nvram> file: libvirt "
                      "would choose one outside storage.image_dirs; name "
                      "one inside")


def filesystem_rule(element, ctx):
    """A shared directory only in `mapped` mode (QEMU's mapped-xattr): the
    guest's symlinks, device nodes and owners are kept as regular files
    and attributes. In `passthrough` (libvirt's default) and in `squash`
    (QEMU's security_model=none) a root QEMU makes real symlinks and
    nodes for the guest in the image directory, which a later XML or a
    qcow2 header could then name to reach any host file."""
    if element.get("accessmode") is None:
        raise Refused("<filesystem> without accessmode is passthrough: "
                      "only 'mapped' is accepted")


def backing_store_rule(element, ctx):
    source = element.find("source")
    if source is None:
        return
    if not source.get("file"):
        raise Refused("<backingStore> names no image")
    fmt = element.find("format")
    _check_image(source.get("file"),
                 fmt.get("type", "raw") if fmt is not None else "raw", ctx)


def _check_image(path, declared, ctx):
    key = (path, declared)
    if key not in ctx.checked:
        try:
            ctx.checked[key] = images.check(path, declared, ctx.image_dirs)
        except images.BadImage as exc:
            ctx.checked[key] = Refused(str(exc))
    outcome = ctx.checked[key]
    if isinstance(outcome, Refused):
        raise outcome
    ctx.chains[path] = outcome


# -- the table ---------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class E:
    """An element: its attributes (name -> Kind), the type of its text
    (None: none allowed), a rule across them, opaque (its subtree is not
    libvirt's: <metadata>), defaults: the value libvirt reads for an
    attribute that is absent, checked as if it were written (a typeless
    <interface> is libvirt's type='user'), and once: at most one under
    its parent (libvirt reads its children across all of them, so a rule
    looking inside one would judge what libvirt does not read)."""
    attrs: dict = dataclasses.field(default_factory=dict)
    text: Kind | None = None
    rule: object = None
    opaque: bool = False
    defaults: dict = dataclasses.field(default_factory=dict)
    once: bool = False


# Elements refused with a reason, wherever they appear (checked before the
# table, so the refusal says why).
REFUSED = {
    "seclabel": "chooses how the guest is confined: guests run under the "
                "host's default labels (only <domain>'s <seclabel "
                "type='dynamic' relabel='yes'/>, which says just that, is "
                "accepted, and only in XML libvirt wrote: a state file or "
                "an incoming migration's)",
    "hostdev": "assigns a host device",
    "script": "runs a host script",
    "downscript": "runs a host script",
    "binary": "runs a host program",
    "backend": "names host devices (tap, vhost) of an interface",
    "certificate": "hands QEMU a host certificate store",
    "database": "hands QEMU a host certificate store",
    "auth": "uses a host secret",
    "shmem": "maps a host shared-memory object by its name (/dev/shm/NAME: "
             "any of the host's), and its doorbell <server> connects to a "
             "host socket",
    "encryption": "uses a host secret",
}

DEVICE_COMMON = {
    "alias": E({"name": TOKEN}),
    "address": E({"type": Enum("pci", "drive", "virtio-serial", "ccid",
                               "usb", "isa", "dimm", "unassigned"),
                  **{a: TOKEN for a in (
                      "domain", "bus", "slot", "function", "multifunction",
                      "target", "unit", "port", "reg", "base", "iobase",
                      "irq")},
                  "controller": CONTROLLER_INDEX}),
    "boot": E({"order": NUMBER, "loadparm": TOKEN}),
    "acpi": E({"index": NUMBER}),
}


def device(name, attrs=None, children=None, **element):
    """Rows for a device under <devices>: its own, its children's, and the
    alias, address and boot order every device may carry."""
    base = f"domain/devices/{name}"
    rows = {base: E(attrs or {}, **element)}
    for child, spec in {**DEVICE_COMMON, **(children or {})}.items():
        rows[f"{base}/{child}"] = spec
    return rows


def chardev(name, target):
    """A character device: pty, a unix socket it listens on, a file, spice
    or nothing; never tcp, udp or a host device."""
    return device(name, {"type": Enum("pty", "unix", "file", "spicevmc",
                                      "null"), "tty": PTY}, {
        "source": E({"mode": Enum("bind"), "path": CHARDEV_PATH,
                     "append": ONOFF}),
        "log": E({"file": LOG_PATH, "append": ONOFF}),
        "target": E(target),
        "target/model": E({"name": TOKEN}),
    }, rule=chardev_rule)


IOTUNE = {f"iotune/{name}": E(text=NUMBER) for name in (
    "total_bytes_sec", "read_bytes_sec", "write_bytes_sec",
    "total_iops_sec", "read_iops_sec", "write_iops_sec",
    "total_bytes_sec_max", "read_bytes_sec_max", "write_bytes_sec_max",
    "total_iops_sec_max", "read_iops_sec_max", "write_iops_sec_max",
    "size_iops_sec", "group_name")}

HYPERV = ("relaxed", "vapic", "vpindex", "runtime", "synic", "reset",
          "frequencies", "reenlightenment", "tlbflush", "ipi", "evmcs",
          "avic")

TABLE = {
    "domain": E({"type": Enum("kvm", "qemu", "test"), "id": NUMBER},
                rule=domain_rule),
    "domain/name": E(text=DomainName()),
    "domain/uuid": E(text=UUID),
    "domain/title": E(text=ONE_LINE),
    "domain/description": E(text=TEXT),
    "domain/metadata": E(opaque=True),
    "domain/maxMemory": E({"slots": NUMBER, "unit": TOKEN}, NUMBER),
    "domain/memory": E({"unit": TOKEN, "dumpCore": ONOFF}, NUMBER),
    "domain/currentMemory": E({"unit": TOKEN}, NUMBER),
    "domain/vcpu": E({"placement": Enum("static", "auto"), "cpuset": CPU_SET,
                      "current": VCPUS}, VCPUS),
    "domain/vcpus": E(),
    "domain/vcpus/vcpu": E({"id": NUMBER, "enabled": YESNO,
                            "hotpluggable": YESNO, "order": NUMBER}),
    "domain/iothreads": E(text=IOTHREADS),
    "domain/cputune": E(),
    "domain/cputune/shares": E(text=NUMBER),
    "domain/cputune/period": E(text=NUMBER),
    "domain/cputune/quota": E(text=NUMBER),
    "domain/cputune/vcpupin": E({"vcpu": NUMBER, "cpuset": CPU_SET}),
    "domain/cputune/emulatorpin": E({"cpuset": CPU_SET}),
    "domain/numatune": E(),
    "domain/numatune/memory": E({"mode": Enum("strict", "interleave",
                                              "preferred", "restrictive"),
                                 "nodeset": CPU_SET, "placement": TOKEN}),
    "domain/numatune/memnode": E({"cellid": NUMBER, "mode": TOKEN,
                                  "nodeset": CPU_SET}),
    "domain/memoryBacking": E(),
    "domain/memoryBacking/hugepages": E(),
    "domain/memoryBacking/hugepages/page": E({"size": NUMBER, "unit": TOKEN,
                                              "nodeset": CPU_SET}),
    "domain/memoryBacking/nosharepages": E(),
    "domain/memoryBacking/locked": E(),
    "domain/memoryBacking/source": E({"type": Enum("anonymous", "memfd")}),
    "domain/memoryBacking/access": E({"mode": Enum("shared", "private")}),
    "domain/memoryBacking/allocation": E({"mode": Enum("immediate",
                                                       "ondemand")}),
    "domain/blkiotune": E(),
    "domain/blkiotune/weight": E(text=NUMBER),
    "domain/blkiotune/device": E(),
    "domain/blkiotune/device/path": E(text=PATH),
    "domain/blkiotune/device/weight": E(text=NUMBER),
    "domain/resource": E(),
    "domain/resource/partition": E(text=Enum("/machine")),
    "domain/sysinfo": E({"type": Enum("smbios")}),
    **{f"domain/sysinfo/{part}": E() for part in (
        "bios", "system", "baseBoard", "chassis", "oemStrings")},
    **{f"domain/sysinfo/{part}/entry": E({"name": TOKEN}, TEXT) for part in (
        "bios", "system", "baseBoard", "chassis", "oemStrings")},
    # Once: libvirt reads ./os/nvram and the rest across every <os> (the
    # first of any), and os_rule reads one <os>: an empty <nvram> in a
    # first <os> put a second's pflash variables outside (a hostile-caller
    # audit, round 9).
    "domain/os": E({"firmware": Enum("bios", "efi")}, rule=os_rule,
                   once=True),
    "domain/os/type": E({"arch": TOKEN, "machine": TOKEN}, Enum("hvm")),
    "domain/os/loader": E({"readonly": YESNO, "secure": YESNO,
                           "type": Enum("rom", "pflash")}, FIRMWARE),
    "domain/os/nvram": E({"template": PATH}, VAR_STORE),
    "domain/os/kernel": E(text=PATH),
    "domain/os/initrd": E(text=PATH),
    "domain/os/dtb": E(text=PATH),
    "domain/os/cmdline": E(text=TEXT),
    "domain/os/boot": E({"dev": Enum("hd", "cdrom", "network", "fd")}),
    "domain/os/bootmenu": E({"enable": YESNO, "timeout": NUMBER}),
    # Not mode='host': it copies the host's SMBIOS into the guest, serial
    # numbers included, which only root reads on the host.
    "domain/os/smbios": E({"mode": Enum("sysinfo", "emulate")}),
    "domain/os/bios": E({"useserial": YESNO, "rebootTimeout": NUMBER}),
    "domain/os/acpi": E(),
    "domain/os/acpi/table": E({"type": Enum("slic", "raw")}, PATH),
    "domain/features": E(),
    **{f"domain/features/{name}": E() for name in (
        "acpi", "pae", "hap", "vmcoreinfo", "pvspinlock", "vmport")},
    "domain/features/apic": E({"eoi": ONOFF}),
    "domain/features/smm": E({"state": ONOFF}),
    "domain/features/ioapic": E({"driver": Enum("kvm", "qemu")}),
    "domain/features/hyperv": E({"mode": Enum("custom", "passthrough")}),
    **{f"domain/features/hyperv/{name}": E({"state": ONOFF})
       for name in HYPERV},
    "domain/features/hyperv/spinlocks": E({"state": ONOFF,
                                           "retries": NUMBER}),
    "domain/features/hyperv/stimer": E({"state": ONOFF}),
    "domain/features/hyperv/stimer/direct": E({"state": ONOFF}),
    "domain/features/hyperv/vendor_id": E({"state": ONOFF, "value": TOKEN}),
    "domain/features/kvm": E(),
    **{f"domain/features/kvm/{name}": E({"state": ONOFF}) for name in (
        "hidden", "hint-dedicated", "poll-control")},
    "domain/cpu": E({"mode": Enum("custom", "host-model", "host-passthrough",
                                  "maximum"),
                     "match": Enum("minimum", "exact", "strict"),
                     "check": Enum("none", "partial", "full"),
                     "migratable": ONOFF}),
    "domain/cpu/model": E({"fallback": Enum("allow", "forbid"),
                           "vendor_id": TOKEN}, TOKEN),
    "domain/cpu/vendor": E(text=TOKEN),
    "domain/cpu/topology": E({name: NUMBER for name in (
        "sockets", "dies", "clusters", "cores", "threads")}),
    "domain/cpu/feature": E({"policy": Enum("force", "require", "optional",
                                            "disable", "forbid"),
                             "name": TOKEN}),
    "domain/cpu/cache": E({"level": NUMBER, "mode": Enum(
        "emulate", "passthrough", "disable")}),
    "domain/cpu/numa": E(),
    "domain/cpu/numa/cell": E({"id": NUMBER, "cpus": CPU_SET, "memory": NUMBER,
                               "unit": TOKEN, "memAccess": Enum(
                                   "shared", "private"),
                               "discard": YESNO}),
    "domain/clock": E({"offset": Enum("utc", "localtime", "variable",
                                      "timezone"),
                       "adjustment": TOKEN, "basis": Enum("utc",
                                                          "localtime")}),
    "domain/clock/timer": E({"name": TOKEN, "present": YESNO,
                             "tickpolicy": Enum("delay", "catchup", "merge",
                                                "discard"),
                             "track": TOKEN}),
    # No coredump-*: a dump of the guest's memory, written by libvirt into
    # the host's own dump directory, outside storage.image_dirs.
    **{f"domain/{event}": E(text=Enum(
        "destroy", "restart", "preserve", "rename-restart"))
       for event in ("on_poweroff", "on_reboot", "on_crash")},
    "domain/on_lockfailure": E(text=Enum("poweroff", "restart", "pause",
                                         "ignore")),
    "domain/pm": E(),
    "domain/pm/suspend-to-mem": E({"enabled": YESNO}),
    "domain/pm/suspend-to-disk": E({"enabled": YESNO}),
    "domain/perf": E(),
    "domain/perf/event": E({"name": TOKEN, "enabled": YESNO}),
    # Only the host's default confinement, as libvirt itself writes it in a
    # running guest's migratable XML and in a state file: a label libvirt
    # chooses (dynamic), files relabelled, nothing named. Any other form,
    # and any seclabel on a device, is refused (REFUSED).
    "domain/seclabel": E({"type": Enum("dynamic"),
                          "model": Enum("dac", "selinux", "apparmor"),
                          "relabel": Enum("yes")}, rule=seclabel_rule),
    "domain/devices": E(),
    "domain/devices/emulator": E(text=EMULATOR),
    **device("disk", {"type": Enum("file", "block", "network"),
                      "device": Enum("disk", "cdrom", "floppy"),
                      "snapshot": TOKEN, "model": TOKEN}, {
        "driver": E({"name": Enum("qemu"), "type": Enum("raw", "qcow2"),
                     **{a: TOKEN for a in (
                         "cache", "error_policy", "rerror_policy", "io",
                         "ioeventfd", "event_idx", "copy_on_read", "discard",
                         "iothread", "detect_zeroes", "queues")}}),
        "source": E({"file": IMAGE, "dev": IMAGE, "startupPolicy": Enum(
            "mandatory", "requisite", "optional"), "index": NUMBER,
            "protocol": Enum("nbd", "iscsi", "rbd", "gluster"),
            "name": REMOTE_NAME}),
        "source/host": E({"name": NETWORK_HOST, "port": NUMBER,
                          "transport": Enum("tcp")}),
        "backingStore": E({"type": Enum("file"), "index": NUMBER},
                          rule=backing_store_rule),
        "backingStore/format": E({"type": Enum("raw", "qcow2")}),
        "backingStore/source": E({"file": IMAGE}),
        "backingStore/backingStore": E(),
        "target": E({"dev": DISK_TARGET,
                     "bus": Enum("virtio", "scsi", "sata", "ide", "usb",
                                 "fdc"),
                     "tray": Enum("open", "closed"), "removable": ONOFF,
                     "rotation_rate": NUMBER}),
        "readonly": E(),
        "shareable": E(),
        "transient": E(),
        "serial": E(text=TOKEN),
        "wwn": E(text=TOKEN),
        "blockio": E({"logical_block_size": NUMBER,
                      "physical_block_size": NUMBER}),
        "iotune": E(),
        **IOTUNE,
    }, rule=disk_rule),
    **device("interface", {"type": Enum("network", "bridge"),
                           "trustGuestRxFilters": YESNO},
             rule=interface_rule, defaults={
                               # user-mode networking: QEMU's own stack
                               # reaches the host's network for the guest
                               "type": "user"}, children={
        "mac": E({"address": Pattern("a MAC address",
                                     r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")}),
        "source": E({"network": TOKEN, "bridge": TOKEN,
                     "portgroup": TOKEN}),
        "model": E({"type": TOKEN}),
        "driver": E({"name": Enum("vhost", "qemu"), "queues": NIC_QUEUES,
                     "txmode": TOKEN, "ioeventfd": ONOFF, "event_idx": ONOFF,
                     "rx_queue_size": NUMBER, "tx_queue_size": NUMBER}),
        "filterref": E({"filter": TOKEN}),
        "filterref/parameter": E({"name": TOKEN, "value": TOKEN}),
        "link": E({"state": Enum("up", "down")}),
        "mtu": E({"size": MTU}),
        "target": E({"dev": GENERATED_TAP}),
        "bandwidth": E(),
        "bandwidth/inbound": E({"average": NUMBER, "peak": NUMBER,
                                "burst": NUMBER, "floor": NUMBER}),
        "bandwidth/outbound": E({"average": NUMBER, "peak": NUMBER,
                                 "burst": NUMBER}),
        "vlan": E(),
        "vlan/tag": E({"id": NUMBER}),
        "virtualport": E({"type": Enum("openvswitch")}),
        "virtualport/parameters": E({"interfaceid": UUID,
                                     "instanceid": UUID,
                                     "profileid": TOKEN}),
        "tune": E(),
        "tune/sndbuf": E(text=NUMBER),
        "rom": E({"bar": ONOFF, "enabled": YESNO, "file": PATH}),
    }),
    **chardev("serial", {"type": TOKEN, "port": CHARDEV_PORT}),
    **chardev("console", {"type": Enum("serial", "virtio"),
                          "port": CHARDEV_PORT}),
    **chardev("channel", {"type": Enum("virtio"), "name": TOKEN,
                          "state": Enum("connected", "disconnected")}),
    **device("graphics", {"type": Enum("vnc", "spice"), "port": NUMBER,
                          "autoport": YESNO, "tlsPort": NUMBER,
                          "listen": LISTEN_ADDRESS, "passwd": TEXT,
                          "passwdValidTo": TOKEN, "connected": TOKEN,
                          "keymap": KEYMAP, "defaultMode": TOKEN,
                          "sharePolicy": TOKEN, "socket": SOCKET_PATH},
             rule=graphics_rule, children={
        "listen": E({"type": Enum("address", "network", "none", "socket"),
                     "address": LISTEN_ADDRESS, "network": TOKEN,
                     "socket": SOCKET_PATH,
                     "autoGenerated": YESNO}),
        "channel": E({"name": TOKEN, "mode": Enum("secure", "insecure",
                                                  "any")}),
        **{name: E({attr: TOKEN}) for name, attr in (
            ("image", "compression"), ("jpeg", "compression"),
            ("zlib", "compression"), ("playback", "compression"),
            ("streaming", "mode"), ("clipboard", "copypaste"),
            ("mouse", "mode"), ("filetransfer", "enable"))},
    }),
    **device("video", children={
        "model": E({"type": Enum("qxl", "vga", "cirrus", "virtio", "bochs",
                                 "ramfb", "none"),
                    **{a: NUMBER for a in ("vram", "ram", "vgamem", "heads",
                                           "vram64")},
                    "primary": YESNO}),
        "model/acceleration": E({"accel3d": YESNO, "accel2d": YESNO}),
    }),
    **device("input", {"type": Enum("mouse", "keyboard", "tablet"),
                       "bus": Enum("ps2", "usb", "virtio")}),
    **device("sound", {"model": TOKEN}, {"audio": E({"id": NUMBER})}),
    **device("audio", {"id": NUMBER, "type": Enum("none", "spice")}),
    **device("memballoon", {"model": Enum("virtio", "virtio-transitional",
                                          "virtio-non-transitional", "none"),
                            "autodeflate": ONOFF,
                            "freePageReporting": ONOFF},
             {"stats": E({"period": NUMBER})}),
    **device("rng", {"model": Enum("virtio", "virtio-transitional",
                                   "virtio-non-transitional")}, {
        "rate": E({"bytes": NUMBER, "period": NUMBER}),
        "backend": E({"model": Enum("random", "builtin")}, ENTROPY),
    }),
    **device("controller", {"type": Enum("usb", "pci", "scsi",
                                         "virtio-serial", "ide", "sata",
                                         "fdc", "ccid"),
                            "index": CONTROLLER_INDEX, "model": TOKEN,
                            "ports": NUMBER, "vectors": NUMBER}, {
        "driver": E({"queues": NUMBER, "iothread": NUMBER,
                     "cmd_per_lun": NUMBER, "max_sectors": NUMBER}),
        "master": E({"startport": NUMBER}),
        "model": E({"name": TOKEN}),
        "target": E({"chassisNr": NUMBER, "chassis": NUMBER,
                     "port": TOKEN, "busNr": NUMBER, "hotplug": ONOFF,
                     "index": NUMBER}),
    }),
    **device("watchdog", {"model": TOKEN, "action": Enum(
        "reset", "shutdown", "poweroff", "pause", "none", "inject-nmi")}),
    **device("panic", {"model": TOKEN}),
    **device("vsock", {"model": TOKEN}, {"cid": E({"auto": YESNO,
                                                  "address": NUMBER})}),
    **device("tpm", {"model": TOKEN}, {
        "backend": E({"type": Enum("emulator"), "version": TOKEN})}),
    **device("redirdev", {"bus": Enum("usb"), "type": Enum("spicevmc")}),
    **device("smartcard", {"mode": Enum("passthrough"),
                           "type": Enum("spicevmc")}),
    **device("hub", {"type": Enum("usb")}),
    **device("iommu", {"model": TOKEN}),
    **device("memory", {"model": Enum("dimm", "nvdimm"),
                        "access": Enum("shared", "private")}, {
        "source": E(),
        "source/path": E(text=OUTPUT_PATH),
        "source/pagesize": E({"unit": TOKEN}, NUMBER),
        "target": E(),
        "target/size": E({"unit": TOKEN}, NUMBER),
        "target/node": E(text=NUMBER),
        "target/label": E(),
        "target/label/size": E({"unit": TOKEN}, NUMBER),
    }),
    **device("lease", children={
        "lockspace": E(text=TOKEN),
        "key": E(text=TOKEN),
        "target": E({"path": PATH, "offset": NUMBER}),
    }),
    **device("filesystem", {"type": Enum("mount"),
                            "accessmode": Enum("mapped")}, {
        "driver": E({"type": Enum("path"), "wrpolicy": TOKEN}),
        "source": E({"dir": SHARED_DIR}),
        "target": E({"dir": TOKEN}),
        "readonly": E(),
    }, rule=filesystem_rule),
}


# -- the walk ----------------------------------------------------------------

def check(root, ctx):
    """Refuse (Refused, naming what) the parsed <domain> `root` unless
    everything in it is in TABLE and of its type."""
    if root.tag != "domain":
        raise Refused(f"the root element is <{_local(root.tag)}>, not "
                      "<domain>")
    check_device_count(root, ctx)
    stack = [(root, "domain", None, 1)]
    rules = []    # run once every value is known to be of its type
    while stack:
        element, key, parent, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise Refused(f"nesting deeper than {MAX_DEPTH} levels")
        spec = _spec(element, key)
        if spec.opaque:
            check_depth(element, depth)
            continue
        where = f"<{key.rpartition('/')[2]}>"
        for name, value in element.attrib.items():
            if name.startswith("{"):
                _refuse_namespace(name, f"attribute {_local(name)!r} of "
                                  f"{where}")
            kind = spec.attrs.get(name)
            if kind is None:
                raise Refused(f"{where} has an attribute {name!r} vmjobs "
                              "does not know")
            kind.check(value, f"{where} {name}=", parent, ctx)
        for name, value in spec.defaults.items():
            if name not in element.attrib:
                spec.attrs[name].check(
                    value, f"{where} without {name}= (libvirt reads it "
                    "as)", parent, ctx)
        text = element.text or ""
        if "\r" in text:
            # Only a reference (&#13;) writes one: a parser reads a raw
            # carriage return as a newline, and vmjobs writes the text it
            # judged for libvirt raw (domxml.compose), so libvirt would
            # read a newline where this judged a carriage return.
            raise Refused(f"{where} holds a carriage return (libvirt would "
                          "read it as a newline)")
        if len(element):
            if text.strip() or any((child.tail or "").strip()
                                   for child in element):
                raise Refused(f"{where} mixes text and elements (libvirt "
                              "joins the text around the elements)")
        elif text.strip() or (text and spec.text is not None):
            if spec.text is None:
                raise Refused(f"{where} holds text, where vmjobs knows "
                              "none")
            spec.text.check(text, where, parent, ctx)
        if spec.rule is not None:
            rules.append((spec.rule, element))
        seen = set()
        for child in element:
            child_key = f"{key}/{child.tag}"
            if child_key in seen:
                raise Refused(f"<{child.tag}> more than once in {where} "
                              "(libvirt reads its children across all of "
                              "them)")
            child_spec = TABLE.get(child_key)
            if child_spec is not None and child_spec.once:
                seen.add(child_key)
            stack.append((child, child_key, element, depth + 1))
    for rule, element in rules:
        rule(element, ctx)


def _spec(element, key):
    tag = element.tag
    if not isinstance(tag, str):
        raise Refused("a comment or processing instruction where an "
                      "element is expected")
    if tag.startswith("{"):
        _refuse_namespace(tag, f"<{_local(tag)}>")
    spec = TABLE.get(key)
    if spec is None:
        why = REFUSED.get(tag)
        if why:
            raise Refused(f"<{tag}> {why}")
        raise Refused(f"<{tag}> at {key} is an element vmjobs does not "
                      "know")
    return spec


def check_depth(root, depth):
    """Nesting deeper than MAX_DEPTH (counted without recursion, so XML as
    deep as the parser took is refused, not a crash); `depth`: root's."""
    stack = [(root, depth)]
    while stack:
        element, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise Refused(f"nesting deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in element)


def _refuse_namespace(name, what):
    namespace = name[1:].partition("}")[0]
    if namespace == QEMU_NAMESPACE:
        raise Refused(f"{what} passes arguments to QEMU directly (the qemu: "
                      "namespace)")
    raise Refused(f"{what} is in namespace {namespace!r}: outside "
                  "<metadata> only libvirt's own elements are accepted")


def _local(tag):
    return tag.rpartition("}")[2]


def held(root):
    """(path, hostpaths.Use) of every host path the domain `root` holds
    while it runs, as the table types its slots (Kind.held): for an XML
    check() accepted, and for one libvirt wrote (a running domain's, read
    back at recovery), whose elements the table does not know (libvirt's
    own additions) are passed over: they name nothing a caller chose."""
    if root.tag != "domain":
        return
    yield from ((overlay, Use.WRITE) for overlay in transient_overlays(root))
    stack = [(root, "domain", None)]
    while stack:
        element, key, parent = stack.pop()
        spec = TABLE.get(key)
        if spec is None or spec.opaque:
            continue
        for name, value in element.attrib.items():
            kind = spec.attrs.get(name)
            use = None if kind is None else kind.held(value, element, parent)
            if use is not None:
                yield value, use
            if kind is not None:
                yield from kind.also_held(value, element, parent)
        # The text as libvirt reads it, whitespace and all (`/i/a.mem `
        # is a file of its own, not `/i/a.mem`: held as the stripped text,
        # a running guest's nvdimm file was free to another VM's serial
        # output, round 10); stripped only to see whether there is any.
        text = element.text or ""
        if spec.text is not None and text.strip() and not len(element):
            use = spec.text.held(text, element, parent)
            if use is not None:
                yield text, use
            yield from spec.text.also_held(text, element, parent)
        stack.extend((child, _child_key(key, child.tag), element)
                     for child in element if isinstance(child.tag, str))


def _child_key(key, tag):
    """The table's key of a child `tag` of the element at `key`; a
    <backingStore> below another is one more level of the same chain
    (libvirt's XML of a running guest states it whole, each level
    nested in the one above), read as the first level is."""
    if tag == "backingStore" and key.endswith("/backingStore"):
        return key
    return f"{key}/{tag}"


def host_path_slots():
    """(element path, attribute or None for text, Kind) of every slot that
    holds a host path: what the differential test and the doc list."""
    for key, spec in TABLE.items():
        for name, kind in spec.attrs.items():
            if isinstance(kind, (Path, Emulator)):
                yield key, name, kind
        if isinstance(spec.text, (Path, Emulator)):
            yield key, None, spec.text

