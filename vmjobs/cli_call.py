"""The command line's client commands: `call` (one verb), `jobs` (the job
table) and `vms` (the public VMs) on a running service."""

import json
import sys
import time

from .cli_errors import CliError, remote_error_json
from .tools.client import Client, RemoteError

# A value starting with one of these is meant as JSON and must parse.
_JSON_STARTS = ("{", "[", '"')


def client(args):
    if args.cert and not args.ca:
        raise CliError("--cert needs --ca (the CA that signed the server's "
                       "certificate): TLS is on only with --ca")
    if bool(args.cert) != bool(args.key):
        raise CliError("--cert and --key go together")
    return Client(args.server, cert=args.cert, key=args.key, ca=args.ca)


def parse_params(items, path=None):
    """The params of `call`: a JSON object from `path` ('-': stdin), then
    each key=value (the value is JSON when it parses as JSON, else a
    string; a value starting with {, [ or \" must be valid JSON)."""
    params = {}
    if path is not None:
        try:
            text = sys.stdin.read() if path == "-" else open(path).read()
            params = json.loads(text)
        except OSError as exc:
            raise CliError(f"-f {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise CliError(f"-f {path}: not valid JSON ({exc})") from None
        if not isinstance(params, (dict, list)):
            raise CliError(f"-f {path}: params are a JSON object (by name) "
                           "or array (by position)")
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise CliError(f"{item!r}: params are key=value")
        if not isinstance(params, dict):
            raise CliError("key=value cannot add to a params array from -f")
        try:
            params[key] = json.loads(text)
        except ValueError as exc:
            if text.lstrip().startswith(_JSON_STARTS):
                raise CliError(f"{key}: {text!r} is not valid JSON "
                               f"({exc}); quote the whole key=value for "
                               "the shell") from None
            params[key] = text
    return params


def call(args):
    if args.list:
        from .api import VERBS
        for verb, (_, names) in sorted(VERBS.items()):
            print(f"{verb:22} {' '.join(names)}".rstrip())
        return 0
    if not args.method:
        raise CliError("give a verb, e.g. `vmjobs call Host.ping` "
                       "(`vmjobs call --list` lists them)")
    params = parse_params(args.params, args.file)
    with client(args) as c:
        try:
            result = c.call(args.method, params)
        except RemoteError as exc:
            if not args.json:
                raise
            print(remote_error_json(exc))
            return 1
    if args.json:
        print(json.dumps({"result": result}))
    else:
        print(json.dumps(result, indent=2))
    return 0


def jobs(args):
    """The job table once (--watch: cli_events.watch_jobs)."""
    with client(args) as c:
        print(job_table(c.call("Host.getJobs"), time.time(), args.prefix),
              flush=True)
    return 0


def job_table(jobs, now, prefix=None):
    """Every job (whose id starts with `prefix`), ids whole (Job.abort
    needs them), with the error of a failed one."""
    rows = [("ID", "TYPE", "VM", "STATUS", "STEP", "AGE", "ERROR")]
    shown = [info for info in jobs.values()
             if prefix is None or info["id"].startswith(prefix)]
    if prefix is not None and not shown:
        raise CliError(f"no job id starts with {prefix!r} (`vmjobs jobs` "
                       "lists them all)")
    for info in sorted(shown, key=lambda i: i["created"]):
        rows.append((info["id"], info["job_type"], info.get("vm_id", "-"),
                     info["status"] + (" (stuck)" if info.get("stuck") else
                                       ""),
                     info["step"], f"{now - info['created']:.0f}s",
                     info.get("error", {}).get("message", "")))
    return format_table(rows)


def vms(args):
    with client(args) as c:
        listed = c.call("Host.getVMList", {"fullStatus": True})
    print(format_table([("VM", "STATUS")] + [(vm["vmId"], vm["status"])
                                             for vm in listed]))
    return 0


def format_table(rows):
    widths = [max(len(str(row[i])) for row in rows)
              for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(cell).ljust(width)
                               for cell, width in zip(row, widths, strict=False)).rstrip()
                     for row in rows)

