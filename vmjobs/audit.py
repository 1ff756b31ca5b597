"""The audit log: one INFO line per verb served over JSON-RPC, saying who
called what on which VM and job, with what result, in how long:

    audit VM.create caller=uid:0 vm=5f0c... job=81d2... result=ok ms=1.2
    audit VM.create caller=10.0.0.5:40212 vm=5f0c... job=- result=4 (exist) ms=0.3

The caller is the client certificate's subject under mutual TLS, the
peer's uid on a Unix socket (SO_PEERCRED), else the peer's address.

An audit line is at most about 2 KiB: what came from the caller (the
method, the ids, the error message, which may echo a value) is escaped
onto one line and cut with a mark (logs.one_line), so a request can
neither forge a line nor push earlier ones out with a few large ones."""

import logging
import socket
import struct
import time

from .logs import one_line

# Characters of each part of an audit line.
MAX_METHOD = 128
MAX_CALLER = 256
MAX_OUTCOME = 1024

log = logging.getLogger("vmjobs.audit")

_UCRED = struct.Struct("3i")   # pid, uid, gid


def caller_of(connection, client_address):
    """Who is on the other end of `connection` (a socket, maybe TLS)."""
    getpeercert = getattr(connection, "getpeercert", None)
    if getpeercert is not None:
        cert = getpeercert() or {}
        subject = ",".join(f"{key}={value}" for rdn in cert.get("subject", ())
                           for key, value in rdn)
        if subject:
            return subject
    if connection.family == socket.AF_UNIX:
        try:
            pid, uid, _ = _UCRED.unpack(connection.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
        except OSError:
            return "unix"
        return f"uid:{uid},pid:{pid}"
    host, port = client_address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Audit:
    def start(self):
        return time.monotonic()

    def verb(self, started, method, params, caller, result=None, error=None):
        """Log one verb's outcome; `error` is the VdsmError it raised (or
        None), `started` what start() returned before it ran."""
        ms = (time.monotonic() - started) * 1000
        vm_id = _param(params, "vmID", 0 if method.startswith("VM.") else None)
        job_id = _param(params, "jobId", 0 if method.startswith("Job.")
                        else None)
        if isinstance(result, dict):
            answer = result.get("params", result)
            vm_id = vm_id or answer.get("vmId")
            job_id = job_id or answer.get("jobId")
        if error is None:
            outcome = "ok"
        else:
            outcome = one_line(f"{error.code} ({error.name}): "
                               f"{error.message}", MAX_OUTCOME)
        log.info("audit %s caller=%s vm=%s job=%s result=%s ms=%.1f",
                 _word(method, MAX_METHOD), _word(caller, MAX_CALLER),
                 _short(vm_id), _short(job_id), outcome, ms)


def _param(params, name, position):
    if isinstance(params, dict):
        value = params.get(name)
    elif isinstance(params, list) and position is not None and params:
        value = params[position]
    else:
        value = None
    return value if isinstance(value, str) else None


def _short(value):
    """A value from the request, bounded and on one word of one line (it
    may be anything: a newline in it must not forge an audit line)."""
    if value is None:
        return "-"
    value = value if len(value) <= 64 else value[:64] + "..."
    return _word(value, 128)


def _word(value, limit):
    """`value` as one word of one line, at most `limit` characters and a
    mark saying it was cut."""
    value = str(value)
    if len(value) <= limit and value.isprintable() and " " not in value:
        return value
    word = value[:limit].encode("unicode_escape").decode("ascii").replace(
        " ", "\\x20")
    if len(value) > limit or len(word) > limit:
        word = f"{word[:limit]}...[cut:{len(value)}-characters-in-all]"
    return word
