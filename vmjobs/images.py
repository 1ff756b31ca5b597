"""What a disk image names on the host, read from its own header.

QEMU trusts a qcow2 header: its backing file and its external data file
are opened as the image's, as root. A guest can write such a header into
a raw disk it owns. So, for every image a domain XML names (allowlist.py's
disk rule), before anything is staged:

- the real format is read from the file (its magic), never taken from
  `<driver type>`; a declared format that differs is refused;
- a qcow2 image's backing file and data file must be plain paths (no
  `json:` or other protocol prefix), inside storage.image_dirs once
  resolved as the kernel walks the path QEMU builds (the image's path as
  given, its directory joined with the name: a symlink is followed before
  a `..` after it is applied), and the backing chain is followed (its
  format read from each file, whatever the header declares), at most
  MAX_CHAIN deep;
- a backing file is raw or qcow2 (CHAIN_FORMATS), the formats whose
  header is read here: QEMU opens what other formats' headers name (a
  vmdk descriptor's extents are any host files, `"backing": null` does
  not cut them);
- an image that is not there has no header: nothing to check (its path
  was confined; QEMU cannot open it either). A backing file that is not
  there is refused: the image cannot be used, and its chain, which the
  domain XML then states, cannot be read.

check() returns the chain it checked, which the domain XML then states
(domxml.compose): libvirt gives QEMU that chain and QEMU never reads a
backing name from a header, so a header written between the check and
QEMU's open (a guest owning another disk of the same file) names nothing.

Header parsed here (no qemu-img run per request: 0.02 ms against about
10 ms for a process). This is checked when the VM is started; a guest can
rewrite its disk later (docs/security.md says what that can and cannot
reach).
"""

import os
import struct

from . import hostfiles

MAX_CHAIN = 16
HEADER_BYTES = 65536
QCOW2_MAGIC = b"QFI\xfb"
# Formats whose header QEMU would follow, by magic at offset 0.
OTHER_MAGICS = {b"QED\x00": "qed", b"KDMV": "vmdk", b"vhdxfile": "vhdx",
                b"conectix": "vpc", b"LUKS\xba\xbe": "luks",
                b"# Disk DescriptorFile": "vmdk",
                b"WithoutFreeSpace": "parallels", b"WithouFreSpacExt":
                "parallels"}
VDI_MAGIC = (64, b"\x7f\x10\xda\xbe")
# What a backing file may be: raw, which names nothing, and qcow2, whose
# names this module reads and confines. Any other format found below a
# qcow2 image is refused, whatever it names: libvirt gives QEMU the format
# read here, and QEMU's driver for it opens what its header says.
CHAIN_FORMATS = frozenset({"raw", "qcow2"})
# qcow2 header extensions and the incompatible feature bit of a data file.
# (The backing format's extension is not read: a backing file's format is
# read from the file itself, whatever the header declares.)
EXT_END, EXT_DATA_FILE = 0, 0x44415441
INCOMPAT_DATA_FILE = 1 << 2


class BadImage(ValueError):
    """An image that is not what it is declared to be, or names a file
    outside the image directories."""


def check(path, declared, image_dirs):
    """Refuse (BadImage) the image at `path` (already confined) unless its
    real format is `declared` and its chain stays in `image_dirs`; return
    its backing chain, [(real path, format), ...] from the image down
    ([] if it has no backing, or no file yet)."""
    header = _read_header(path)
    if header is None:
        return []   # nothing there yet: QEMU cannot open it either
    real = format_of(header)
    if real != declared:
        raise BadImage(f"image {path!r} is {real}, declared {declared}")
    chain = []
    _check_chain(path, header, image_dirs, MAX_CHAIN, chain)
    return chain


def format_of(header):
    if header[:4] == QCOW2_MAGIC:
        return "qcow2" if _u32(header, 4) >= 2 else "qcow"
    for magic, name in OTHER_MAGICS.items():
        if header.startswith(magic):
            return name
    offset, magic = VDI_MAGIC
    if header[offset:offset + len(magic)] == magic:
        return "vdi"
    return "raw"


def _read_header(path):
    """The file's first bytes, or None if there is no file (the path is
    already confined: a later file there is the operator's)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BadImage(f"cannot read image {path!r}: {exc.strerror}") \
            from None
    try:
        return os.pread(fd, HEADER_BYTES, 0)
    except OSError as exc:
        raise BadImage(f"cannot read image {path!r}: {exc.strerror}") \
            from None
    finally:
        os.close(fd)


def _check_chain(path, header, image_dirs, depth, chain):
    """Check the qcow2 `header` of the image at `path` (the path QEMU
    would open it by), appending its backing files to `chain`."""
    if format_of(header) != "qcow2":
        return
    if len(header) < 72:
        raise BadImage(f"image {path!r}: truncated qcow2 header")
    backing, data_file = _qcow2_names(path, header)
    if data_file is not None:
        if not data_file.startswith("/"):
            # QEMU opens a relative data file from its own working
            # directory, not the image's.
            raise BadImage(f"image {path!r}: its data file {data_file!r} "
                           "is not an absolute path")
        _confine_named(path, data_file, "data file", image_dirs)
    if backing is None:
        return
    if depth <= 1:
        raise BadImage(f"image {path!r}: backing chain deeper than "
                       f"{MAX_CHAIN}")
    target, real = _confine_named(path, backing, "backing file", image_dirs)
    # Whatever the header declares as the backing's format, QEMU may probe
    # it: follow what the file really is.
    header = _read_header(real)
    if header is None:
        raise BadImage(f"image {path!r}: its backing file {backing!r} "
                       "is not there")
    backing_format = format_of(header)
    if backing_format not in CHAIN_FORMATS:
        raise BadImage(f"image {path!r}: its backing file {backing!r} is "
                       f"{backing_format}: a backing file is raw or qcow2 "
                       "(QEMU opens the files other formats' headers name)")
    chain.append((real, backing_format))
    _check_chain(target, header, image_dirs, depth - 1, chain)


def _qcow2_names(path, header):
    """(backing file, data file) named by a qcow2 header, or None each."""
    version = _u32(header, 4)
    backing_offset, backing_size = _u64(header, 8), _u32(header, 16)
    backing = None
    if backing_offset:
        if backing_size > 1023 or \
                backing_offset + backing_size > len(header):
            raise BadImage(f"image {path!r}: backing file name out of "
                           "range")
        backing = _name(path, header[backing_offset:
                                     backing_offset + backing_size])
    data_file = None
    ext = 72
    if version >= 3:
        if len(header) < 104:
            raise BadImage(f"image {path!r}: truncated qcow2 header")
        ext = _u32(header, 100)
        if _u64(header, 72) & INCOMPAT_DATA_FILE:
            data_file = ""       # named by an extension, or by the caller
    while ext + 8 <= len(header):
        kind, length = _u32(header, ext), _u32(header, ext + 4)
        if kind == EXT_END:
            break
        if kind == EXT_DATA_FILE:
            data_file = _name(path, header[ext + 8:ext + 8 + length])
        ext += 8 + (length + 7) // 8 * 8
    if data_file == "":
        raise BadImage(f"image {path!r} has an external data file it does "
                       "not name")
    return backing, data_file


def _name(path, raw):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadImage(f"image {path!r}: a file name that is not "
                       "UTF-8") from None


def _confine_named(image, name, what, image_dirs):
    """(the path QEMU builds for `name` from `image`'s header, the file
    the kernel reaches by it), if that file is inside `image_dirs`.

    The path is `image`'s directory joined with `name`, as given, never
    normalized: `L/../x` with L a symlink is resolved by following L first
    and then going up from where it leads, as the kernel does."""
    if _has_protocol(name):
        raise BadImage(f"image {image!r}: its {what} {name!r} is a "
                       "protocol (json:, nbd:, file:...), not a path")
    path = os.path.join(os.path.dirname(image), name)
    try:
        real = hostfiles.resolve_inside(path, image_dirs,
                                        "storage.image_dirs")
    except hostfiles.OutsideDirs as exc:
        raise BadImage(f"image {image!r}: its {what} {name!r}: {exc}") \
            from None
    return path, real


def _has_protocol(name):
    """QEMU's path_has_protocol: a ':' before any '/'."""
    colon, slash = name.find(":"), name.find("/")
    return colon >= 0 and (slash < 0 or colon < slash)


def _u32(data, offset):
    return struct.unpack_from(">I", data, offset)[0]


def _u64(data, offset):
    return struct.unpack_from(">Q", data, offset)[0]
