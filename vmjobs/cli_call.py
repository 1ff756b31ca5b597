"""The command line's client commands: `call` (one verb), `jobs` (the job
table) and `vms` (the VMs it lists: Host.getAllVmStats, which in accept
mode shows staged VMs too) on a running service."""

import json
import sys
import time

from .cli_errors import CliError, number, remote_error_json
from .client import Client, RemoteError
from .logs import one_line

# A value starting with one of these is meant as JSON and must parse.
_JSON_STARTS = ("{", "[", '"')


# `vmjobs jobs --watch` shows a job that ended this long ago (seconds), no
# older (--ended-within, --all): a storm's thousand ended jobs would bury
# the running ones for the hour they stay queryable.
WATCH_ENDED_WITHIN = 60.0
_ENDED = ("done", "failed", "aborted")


# The longest answer the command line takes: sixteen times a service's
# default bound (rpc.max_response_bytes). The command runs as root on a
# hypervisor host: a server that answers without end (a hostile one, or
# the wrong address) must not bring the OOM killer to the guests.
MAX_ANSWER_BYTES = 1 << 28


# Durations (seconds above 0), ages (seconds, 0 or more), counts.
seconds = number(float, 0, above=True)
ages = number(float, 0)
positive = number(int, 1)


def client(args):
    if args.cert and not args.ca:
        raise CliError("--cert needs --ca (the CA that signed the server's "
                       "certificate): TLS is on only with --ca")
    if bool(args.cert) != bool(args.key):
        raise CliError("--cert and --key go together")
    return Client(args.server, cert=args.cert, key=args.key, ca=args.ca,
                  timeout=getattr(args, "timeout", 60.0), whole_call=True,
                  max_answer_bytes=MAX_ANSWER_BYTES)


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
        print(verb_list())
        return 0
    if not args.method:
        raise CliError("give a verb, e.g. `vmjobs call Host.ping` "
                       "(`vmjobs call --list` lists them)")
    if "." not in args.method and args.params and \
            "=" not in args.params[0]:
        # vdsm-client's form: `vmjobs call VM getStats vmID=...`.
        args.method = f"{args.method}.{args.params.pop(0)}"
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


# What each param of a verb is, for `vmjobs call --list` (API.md "Verbs"):
# name -> its JSON type; and the params a verb may go without. A verb
# declared with a param not named here fails test_cli_client's --list test.
PARAM_TYPES = {
    "vmID": "UUID", "vmParams": "object", "params": "object",
    "incomingLimit": "int", "hibernationVolHandle": "path",
    "gracefulAttempts": "int", "fullStatus": "bool",
    "vmList": "list of UUIDs", "onlyUUID": "bool", "job_type": "string",
    "job_ids": "list of job ids", "jobId": "job id",
}
OPTIONAL = {
    "Host.getVMList": {"fullStatus", "vmList", "onlyUUID"},
    "Host.getJobs": {"job_type", "job_ids"},
    "VM.migrationCreate": {"incomingLimit"},
    "VM.destroy": {"gracefulAttempts"},
}


def verb_list():
    """Each verb and its params in order (as positional params take
    them), with their types; [optional] ones in brackets."""
    from .api import VERBS
    rows = [("VERB", "PARAMS")]
    for verb, (_, names) in sorted(VERBS.items()):
        shown = []
        for name in names:
            item = f"{name}: {PARAM_TYPES[name]}"
            shown.append(f"[{item}]" if name in OPTIONAL.get(verb, ())
                         else item)
        rows.append((verb, ", ".join(shown) or "-"))
    return format_table(rows)


def jobs(args):
    with client(args) as c:
        listed = c.call("Host.getJobs", jobs_params(args))
    print(visible_table(listed, args, time.time()), flush=True)
    return 0


def jobs_params(args):
    """Host.getJobs' params for `vmjobs jobs`' flags."""
    return {"job_type": args.type} if args.type else None


def visible_table(listed, args, now):
    """The table of the jobs `vmjobs jobs`' flags show, of `listed`."""
    ended_within = args.ended_within
    if args.all:
        ended_within = None
    elif ended_within is None and args.watch:
        ended_within = WATCH_ENDED_WITHIN
    # The jobs the flags name (the watch's table holds every job the
    # stream told of, whatever its type); of those, the ended ones that
    # time or --active leaves out are counted under the table: not a job
    # of another type or id prefix, which --all would not show either.
    named = {job_id: info for job_id, info in listed.items()
             if (not args.type or info["job_type"] == args.type) and
             (args.prefix is None or job_id.startswith(args.prefix))}
    shown = {job_id: info for job_id, info in named.items()
             if shown_job(info, now, ended_within, args.active)}
    return job_table(shown, now, args.prefix,
                     hidden=len(named) - len(shown))


def shown_job(info, now, ended_within=None, active_only=False):
    """Whether `vmjobs jobs` shows the job: not an ended one with
    active_only, nor one that ended more than `ended_within` s ago."""
    if info["status"] not in _ENDED:
        return True
    if active_only:
        return False
    ended = info.get("ended", info["created"])
    return ended_within is None or now - ended <= ended_within


def job_table(jobs, now, prefix=None, hidden=0):
    """Every job (whose id starts with `prefix`), ids whole (Job.abort
    needs them), with the error of a failed one; `hidden` ended jobs left
    out are counted under it."""
    rows = [("ID", "TYPE", "VM", "STATUS", "STEP", "AGE", "ERROR")]
    shown = [info for info in jobs.values()
             if prefix is None or info["id"].startswith(prefix)]
    if prefix is not None and not shown and not hidden:
        raise CliError(f"no job id starts with {prefix!r} (`vmjobs jobs` "
                       "lists them all)")
    for info in sorted(shown, key=lambda i: i["created"]):
        rows.append((info["id"], info["job_type"], info.get("vm_id", "-"),
                     info["status"] + (" (stuck)" if info.get("stuck") else
                                       ""),
                     info["step"], f"{now - info['created']:.0f}s",
                     info.get("error", {}).get("message", "")))
    table = format_table(rows)
    if hidden:
        table += (f"\n({hidden} ended job(s) not shown: --all shows "
                  "them)")
    return table


def vms(args):
    with client(args) as c:
        listed = c.call("Host.getAllVmStats")
    print(format_table([("VM", "NAME", "STATUS")] + [
        (vm["vmId"], vm_name(vm.get("params") or {}), vm["status"])
        for vm in sorted(listed, key=lambda vm: vm_name(
            vm.get("params") or {}))]))
    return 0


def vm_name(params):
    """The VM's name as its engine gave it (vmParams' vmName); a VM made
    from a domain XML keeps no copy of it in its params: '-'."""
    name = params.get("vmName")
    return name if isinstance(name, str) and name else "-"


def format_table(rows):
    # A cell may hold what a caller sent (a job's error echoes it): its
    # control characters are escaped, so none reaches the terminal.
    rows = [[one_line(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows)
              for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width)
                               for cell, width in zip(row, widths, strict=False)).rstrip()
                     for row in rows)

