"""The places a caller may make this host connect to, for VM.migrate:
judged against an allowlist, as libvirt (or our client) will read them.

- `dstUri`, the destination libvirtd as this host's libvirtd reaches it:
  `qemu+tls://HOST[:PORT]/system` (or `qemu://HOST[:PORT]/system`, tls
  being libvirt's default transport) or `qemu+tcp://HOST[:PORT]/system`, or
  `qemu+unix:///system?socket=PATH` with PATH inside
  `migration.socket_dirs`. Nothing else: libvirt's `ext` transport runs a
  program (`command=`), `ssh` and `libssh` run one or read host keys, and
  query parameters choose programs, key files or turn checks off
  (`netcat`, `keyfile`, `no_verify`, `pkipath`...). A URI without a
  transport (`qemu:///system`) is this host's own libvirtd.
- `dst`, the destination vmjobs service: `HOST:PORT`, or `unix:PATH`
  with PATH inside `migration.socket_dirs`; on dstUri's host
  (same_host).
- `migrationUri`, where the migration data goes: `tcp://HOST[:PORT]`,
  to the destination only (migration_uri says what that is).

A URI is taken apart by hand where Python's parser and libvirt's differ:
libvirt splits a query on ';' as well as '&' and decodes %XX but not '+';
urllib drops tabs and newlines silently. So a URI with anything but
printable ASCII without blanks, a ';', a '#' or user info is refused
outright, before it is split.
"""

import ipaddress
import os
import re
import urllib.parse

from . import decimals, hostfiles
from .errors import InvalidParams

# "qemu" names no transport: with a host it is libvirt's default, tls
# (without one, this host's own libvirtd: refused below).
LIBVIRT_SCHEMES = ("qemu+tls", "qemu+tcp", "qemu+unix", "qemu")
MIGRATION_SCHEMES = ("tcp",)
# A DNS name: dot-separated labels of letters, digits and inner hyphens.
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# Printable ASCII, no blank: what a URI or address may hold at all.
_URI_CHARS = re.compile(r"[!-~]+")


def dst_uri(value, socket_dirs, image_dirs):
    """VM.migrate's `dstUri`, checked (InvalidParams naming it); a unix
    socket never in `image_dirs` (_socket)."""
    return _uri("dstUri", value, socket_dirs, LIBVIRT_SCHEMES, image_dirs)


def migration_uri(value, dst_uri_text, networks, ports):
    """VM.migrate's `migrationUri`, tcp://HOST[:PORT], where this host's
    QEMU sends the guest's memory, which the guest writes: so only to the
    destination. HOST must be dstUri's own host, or an address inside one
    of `networks` (migration.networks: the destinations' migration
    networks), or, when dstUri is a unix socket (a destination libvirtd on
    this machine), a loopback address; a PORT must be in `ports`
    (migration.port_min..port_max, libvirt's migration ports). Anything
    else would make QEMU, as root, write guest-chosen bytes into any
    service it reaches (a hostile-caller audit: this host's own
    loopback)."""
    param = "migrationUri"
    text = _uri(param, value, (), MIGRATION_SCHEMES)
    parts = urllib.parse.urlsplit(text)
    if parts.port is not None and not ports[0] <= parts.port <= ports[1]:
        raise InvalidParams(param, f"{text!r}: port {parts.port} is not a "
                            f"migration port ({ports[0]}-{ports[1]}, "
                            "migration.port_min and port_max)")
    host = _canonical(parts.hostname)
    destination = urllib.parse.urlsplit(dst_uri_text).hostname
    if destination is not None and _same_host(host, destination):
        return text
    address = _address(host)
    if address is not None:
        if any(address in ipaddress.ip_network(net, strict=False)
               for net in networks):
            return text
        if destination is None and address.is_loopback:
            return text
    raise InvalidParams(param, f"{text!r}: {parts.hostname} is not the "
                        "destination's: dstUri's host, an address of "
                        "migration.networks, or a loopback address when "
                        "dstUri is a unix socket on this host")


def same_host(dst_text, dst_uri_text):
    """Refuse (-32602 naming `dst`) a destination service that is not on
    the host of the destination libvirtd: the guest goes where dstUri
    says, on the word of the service at dst that it staged the VM there.
    A hostile-caller audit's fake dst said yes, and a guest arrived on a
    libvirtd whose vmjobs never checked its XML (nor listed it). So: with
    a TCP or TLS dstUri, dst is HOST:PORT of its very host; with a unix
    dstUri (a destination libvirtd on this machine), dst is on this
    machine too: unix:PATH, or a loopback HOST:PORT."""
    destination = urllib.parse.urlsplit(dst_uri_text).hostname
    if dst_text.startswith("unix:"):
        if destination is None:
            return
    else:
        host = dst_text.rpartition(":")[0].strip("[]")
        if destination is not None:
            if _same_host(host, destination):
                return
        elif _is_loopback(host):
            return
    raise InvalidParams("dst", f"{dst_text!r} is not on the destination "
                        f"libvirtd's host ({destination or 'this machine'}"
                        "): the service that stages the VM must be where "
                        "dstUri sends it")


def _same_host(one, other):
    """Do hosts `one` and `other` name one machine, as far as their names
    say: the same name or address, or both this machine (localhost,
    127.0.0.1 and ::1 are one host written three ways)."""
    return _canonical(one) == _canonical(other) or \
        (_is_loopback(one) and _is_loopback(other))


def _is_loopback(host):
    """Does `host` name this machine: localhost, or a loopback address?"""
    host = _canonical(host)
    address = _address(host)
    return host == "localhost" or (address is not None and
                                   address.is_loopback)


def _canonical(host):
    """A host as compared: lower case, no final dot (DNS names), an
    address in its one written form."""
    host = host.lower().rstrip(".")
    address = _address(host)
    return host if address is None else str(address)


def _address(host):
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def dst(value, socket_dirs, image_dirs):
    """VM.migrate's `dst`: HOST:PORT, or unix:PATH inside socket_dirs
    (never in `image_dirs`: _socket)."""
    param = "dst"
    text = _chars(param, value)
    if text.startswith("unix:"):
        _socket(param, text[len("unix:"):], socket_dirs, image_dirs)
        return text
    host, sep, port = text.rpartition(":")
    if not sep:
        raise InvalidParams(param, f"{text!r}: expected HOST:PORT or "
                            "unix:PATH")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not _is_ipv6(host):
            raise InvalidParams(param, f"{text!r}: [{host}] is not an "
                                "IPv6 address")
    else:
        _host(param, host)
    _port(param, port)
    return text


def _uri(param, value, socket_dirs, schemes, image_dirs=()):
    text = _chars(param, value)
    for bad, why in ((";", "';' (libvirt splits parameters on it)"),
                     ("#", "a fragment"), ("@", "user information"),
                     ("\\", "a backslash")):
        if bad in text:
            raise InvalidParams(param, f"{text!r}: must not contain {why}")
    scheme, colon, rest = text.partition(":")
    if not colon or scheme not in schemes:
        raise InvalidParams(param, f"{text!r}: the scheme must be one of "
                            f"{', '.join(s + '://' for s in schemes)}; "
                            "other transports are refused")
    if not rest.startswith("//"):
        raise InvalidParams(param, f"{text!r}: expected {scheme}://...")
    parts = urllib.parse.urlsplit(text)
    if scheme == "qemu+unix":
        if parts.netloc:
            raise InvalidParams(param, f"{text!r}: a unix URI names no "
                                "host (qemu+unix:///system?socket=PATH)")
        _system(param, text, parts.path)
        _socket(param, _only_socket(param, text, parts.query), socket_dirs,
                image_dirs)
        return text
    if parts.query or "?" in text:
        raise InvalidParams(param, f"{text!r}: takes no query parameter "
                            "(command, netcat, keyfile, no_verify... are "
                            "refused)")
    netloc = parts.netloc
    if scheme == "qemu" and not parts.hostname:
        raise InvalidParams(param, f"{text!r}: a qemu URI without a "
                            "transport names a host (qemu://HOST/system, "
                            "over tls); without one it is this host's own "
                            "libvirtd")
    if netloc.startswith("["):
        host, bracket, port = netloc[1:].partition("]")
        if not bracket or not _is_ipv6(host) or \
                (port and not port.startswith(":")):
            raise InvalidParams(param, f"{text!r}: a bad [IPv6] host")
        port = port[1:] if port else None
    else:
        host, colon, port = netloc.partition(":")
        _host(param, host)
        port = port if colon else None
    if port is not None:
        _port(param, port)
    if scheme == "tcp":
        if parts.path not in ("", "/"):
            raise InvalidParams(param, f"{text!r}: expected "
                                "tcp://HOST[:PORT]")
    else:
        _system(param, text, parts.path)
    return text


def _chars(param, value):
    if not isinstance(value, str) or not _URI_CHARS.fullmatch(value):
        raise InvalidParams(param, "must be a non-empty string of "
                            "printable ASCII without blanks")
    return value


def _system(param, text, path):
    if path != "/system":
        raise InvalidParams(param, f"{text!r}: the path must be /system "
                            "(the destination's system libvirtd)")


def _only_socket(param, text, query):
    """The PATH of a query that is exactly `socket=PATH` (decoded as
    libvirt decodes it: %XX, '+' kept)."""
    name, equals, path = query.partition("=")
    if name != "socket" or not equals or "&" in path:
        raise InvalidParams(param, f"{text!r}: a unix URI takes one query "
                            "parameter, socket=PATH, and no other")
    try:
        return urllib.parse.unquote(path, errors="strict")
    except UnicodeDecodeError:
        raise InvalidParams(param, f"{text!r}: its socket path, decoded, "
                            "is not UTF-8") from None


def _socket(param, path, socket_dirs, image_dirs):
    """A unix socket inside `socket_dirs`, symlinks resolved, and not in
    one of `image_dirs` whatever the configuration (an API made in process
    is not validated): a socket there may be a guest's (a chardev, a
    console QEMU listens on), which would then be sent the VM, answer for
    the destination service or speak for its libvirtd (a hostile-caller
    audit, round 7, with one directory for both)."""
    if not socket_dirs:
        raise InvalidParams(param, f"{path!r}: no unix socket may be named "
                            "(migration.socket_dirs is empty; flag "
                            "--migration-socket-dir)")
    try:
        hostfiles.confine(path, socket_dirs, "migration.socket_dirs",
                          resolve_last=True)
    except hostfiles.OutsideDirs as exc:
        raise InvalidParams(param, str(exc)) from None
    if path in socket_dirs:
        raise InvalidParams(param, f"{path!r} is a socket directory, not a "
                            "socket in one")
    real = os.path.realpath(path)
    for image_dir in image_dirs:
        if hostfiles.overlapping(real, image_dir):
            raise InvalidParams(param, f"{path!r} is in the image directory "
                                f"{image_dir}, where guests' sockets are: "
                                "never a destination")


def _host(param, host):
    try:
        ipaddress.IPv4Address(host)
        return
    except ValueError:
        pass
    labels = host.rstrip(".").split(".") if host else []
    if not labels or len(host) > 253 or \
            not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidParams(param, f"{host!r} is not a host name or an "
                            "IPv4 address (IPv6 goes in brackets)")


def _is_ipv6(host):
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return "%" not in host    # no zone: it names a host interface


def _port(param, port):
    number = decimals.parse(port, 5)
    if number is None or not 1 <= number <= 65535:
        raise InvalidParams(param, f"port {port!r} is not from 1 to 65535")
