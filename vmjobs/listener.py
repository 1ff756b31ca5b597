"""Who may connect: the checks the server makes on its listener at start
and on each request before anything runs.

- A Unix socket (the default) is reached only by root: the socket is
  created 0600 and its directory, if the service creates it, 0700 (the
  default's, /run/vmjobs, is made 0700 even if it was there).
- A TCP listener needs mutual TLS. Plain TCP starts only with `insecure`,
  and then only on a loopback address, where it answers 403 to a request
  whose Host header is not loopback (DNS rebinding).
- A POST must say `Content-Type: application/json`: a web page cannot send
  one without a CORS preflight, which the server never grants.
- The metrics listener (rpc.metrics_listen) serves GET /metrics and
  /healthz only, never a verb: a Unix socket made 0666, or plain TCP on a
  loopback address only.

How a request is read (its head, its length, its deadline):
request_head.py.
"""

import ipaddress
import os
import re
import socket
import ssl
import stat

from . import rundir
from .config import ConfigError, parse_listen

# A port in a Host header: ASCII digits, perhaps none.
_ASCII_DIGITS = re.compile(r"[0-9]*")

JSON_MEDIA_TYPE = "application/json"


def check_listener(config):
    """Refuse (ConfigError, saying why) a listener that is not secure:
    plain TCP without `insecure`, or plain TCP off loopback."""
    kind, address = parse_listen(config.listen)
    if kind == "unix" or config.tls_cert:
        return
    host = address[0]
    if not config.insecure:
        raise ConfigError(
            f"listen {config.listen}: plain TCP lets anyone who reaches the "
            "port act as root here; give rpc.tls_cert, tls_key and tls_ca "
            "(mutual TLS), listen on unix:PATH, or pass --insecure "
            "(rpc.insecure = true) to serve plain TCP on loopback")
    if not is_loopback(host):
        raise ConfigError(
            f"listen {config.listen}: --insecure serves plain TCP only on a "
            "loopback address (127.0.0.1, ::1, localhost); use mutual TLS "
            "to listen elsewhere")


def check_metrics_listener(config):
    """Refuse (ConfigError) a metrics listener on plain TCP off loopback.
    It serves no verb, but its figures (VM counts, job rates, the
    version) are the host's business: on TCP it listens on loopback only,
    without TLS; a Unix socket is open to every local user."""
    if config.metrics_listen is None:
        return
    kind, address = parse_listen(config.metrics_listen)
    if kind == "tcp" and not is_loopback(address[0]):
        raise ConfigError(
            f"metrics_listen {config.metrics_listen}: the metrics listener "
            "is plain TCP, so it listens only on a loopback address "
            "(127.0.0.1, ::1, localhost); scrape from another host "
            "through a proxy or the main listener's mutual TLS")


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_header_allowed(value):
    """True if a Host header names loopback or localhost (any port)."""
    if not value:
        return False
    value = value.strip()
    if value.startswith("["):              # [::1]:port
        host, bracket, port = value[1:].partition("]")
        if not bracket:
            return False
    elif value.count(":") == 1:            # host:port
        host, _, port = value.partition(":")
        port = ":" + port
    else:
        host, port = value, ""
    # Nothing but a port after the host (RFC 9110, 7.2: ":" and digits,
    # perhaps none): `[::1]evil.example` was taken for ::1.
    if port and not (port[0] == ":" and _ASCII_DIGITS.fullmatch(port[1:])):
        return False
    return is_loopback(host.lower().rstrip("."))


def content_type_allowed(value):
    """True for application/json, with parameters (charset...) or not."""
    media_type = (value or "").partition(";")[0].strip().lower()
    return media_type == JSON_MEDIA_TYPE


def prepare_unix_socket(path, dir_mode=0o700):
    """Make way for a socket at `path`: create its directory (`dir_mode`,
    0700 by default) if it is missing (the run directory, the default
    listener's, is made 0700 if it was there more open); remove a stale
    socket left by a server that died. Refuse (OSError) if something else
    is there, or a live server listens."""
    rundir.prepare(os.path.dirname(path), dir_mode)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket: refusing to "
                      "replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)   # nobody accepts on it: left by a dead server
        return
    finally:
        probe.close()
    raise OSError(f"{path}: another server is listening there")


def tls_context(cert, key, ca):
    """A server context that requires a client certificate signed by ca;
    ConfigError naming the setting and its file if one cannot be read."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # A client's certificate is the handshake's for the connection's life
    # (the audit reads it once per connection): no renegotiation (TLS
    # 1.2's; 1.3 has none).
    context.options |= ssl.OP_NO_RENEGOTIATION
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"rpc.tls_cert = {cert}, rpc.tls_key = {key}: "
                          f"cannot load the certificate and its key: "
                          f"{exc.strerror or exc}") from None
    try:
        context.load_verify_locations(ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"rpc.tls_ca = {ca}: cannot load the CA: "
                          f"{exc.strerror or exc}") from None
    context.verify_mode = ssl.CERT_REQUIRED
    return context
