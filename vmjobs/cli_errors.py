"""What the command line says when something fails: one line naming what
failed (the libvirt URI, the address, the path) and what to try. The
traceback is shown only with --debug, or for an error nobody expected (a
bug)."""

import argparse
import errno
import http.client
import json
import math
import socket
import ssl
import uuid

from . import errors
from .client import RemoteError
from .config import ConfigError
from .hypervisor import HypervisorError
from .logs import one_line

# VDSM's code -> its name, for `error 4 (exist): ...`.
CODE_NAMES = {cls.code: cls.name for cls in vars(errors).values()
              if isinstance(cls, type) and issubclass(cls, errors.VdsmError)}
CODE_NAMES.update({-32700: "ParseError", -32600: "InvalidRequest",
                   -32603: "InternalError"})


class CliError(Exception):
    """An error already said in one line a person can act on."""


def number(kind, low, above=False):
    """A flag's type: a finite number (`kind`: int or float) of `low` or
    more (above `low`, when `above`); else argparse's usage error, saying
    what is wanted. (An operator audit: `call --timeout 0`, -1 or nan
    timed out at once and blamed the address, inf was a traceback, and
    `events --count 0` waited for ever.)"""
    noun = "an integer" if kind is int else "a finite number"
    wanted = f"{noun} above {low}" if above else f"{noun} of {low} or more"

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {noun}") from None
        if not math.isfinite(value) or value < low or \
                (above and value == low):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text}")
        return value
    return parse


def vm_id(text):
    """A flag's type: a vmId, as the verbs take it (in capitals too), in
    the canonical form the service answers with (`events --vm` in
    capitals matched no event, for ever); else argparse's usage error."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a UUID (a "
                                         "vmId)") from None


def remote_error_line(exc):
    """`error 4 (exist): a VM with that id ...`"""
    if exc.code >= 400 and exc.code < 600 and exc.message.startswith("HTTP"):
        return f"the server refused the request: {exc.message}"
    line = f"error {exc.code} ({CODE_NAMES.get(exc.code, 'unknown')}): " \
        f"{exc.message}"
    if isinstance(exc.data, dict) and exc.data.get("param"):
        line += f" [param: {exc.data['param']}]"
    return line


def remote_error_json(exc):
    return json.dumps({"error": {"code": exc.code, "message": exc.message,
                                 "data": exc.data}})


def explain(exc, args):
    """One line for `exc` raised by command `args.command`, or None when
    it is unexpected (a bug: the caller shows its traceback)."""
    if isinstance(exc, (CliError, ConfigError)):
        return str(exc)
    if isinstance(exc, RemoteError):
        return remote_error_line(exc)
    if isinstance(exc, HypervisorError):
        uri = getattr(args, "effective_uri", None) or \
            getattr(args, "uri", None) or "the private test driver"
        if exc.call == "open":
            return (f"cannot connect to libvirt at {uri}: {exc.message} "
                    f"(libvirt error {exc.code}); is libvirtd running "
                    "(systemctl status libvirtd) and may this user use it "
                    "(root)? Or give another --uri (test:///default: libvirt's "
                    "test driver, whose VMs are not real)")
        return f"libvirt at {uri}: {exc}"
    server = getattr(args, "server", None)
    if args.command == "serve" and isinstance(exc, OSError) and \
            exc.filename is None:
        listen = getattr(args, "effective_listen", "?")
        if exc.errno == errno.EADDRINUSE:
            return (f"cannot listen on {listen}: address already in use; "
                    "stop what listens there (another vmjobs?) or choose "
                    "another address with --listen")
        if exc.errno in (errno.EACCES, errno.EPERM):
            return (f"cannot listen on {listen}: permission denied; run as "
                    "root or choose another address with --listen")
        if exc.errno == errno.EADDRNOTAVAIL:
            return (f"cannot listen on {listen}: no such address on this "
                    "host; choose another with --listen")
    if server is not None and isinstance(exc, (OSError, ssl.SSLError)):
        return _connection_error(exc, server, args)
    if server is not None and isinstance(exc, http.client.HTTPException):
        return (f"the vmjobs server at {server} answered what this "
                f"command does not take: {one_line(exc)}")
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    if isinstance(exc, (OSError, ValueError, RuntimeError)):
        return str(exc)
    return None


def _connection_error(exc, server, args):
    where = f"cannot talk to the vmjobs server at {server}"
    if isinstance(exc, ConnectionRefusedError):
        return (f"{where}: connection refused; is `vmjobs serve` running "
                "there? (give its address with --server)")
    if isinstance(exc, FileNotFoundError):
        return (f"{where}: no socket there; is `vmjobs serve` running? "
                "(give its address with --server)")
    if isinstance(exc, PermissionError):
        return (f"{where}: permission denied; the socket is its owner's "
                "only: run as root")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return (f"{where}: no answer in time; is the address right? "
                "(`vmjobs call --timeout SECONDS` waits longer)")
    if isinstance(exc, ssl.SSLError) or (
            isinstance(exc, ConnectionResetError) and
            getattr(args, "ca", None)):
        return (f"{where}: TLS failed ({exc}); check --cert/--key (signed "
                "by the server's tls_ca) and --ca (the CA of the server's "
                "certificate)")
    if isinstance(exc, ConnectionResetError):
        return (f"{where}: the connection was reset; if the server "
                "requires mutual TLS, give --cert, --key and --ca")
    if isinstance(exc, socket.gaierror):
        return f"{where}: unknown host ({exc.strerror})"
    return f"{where}: {exc.strerror or exc}"
