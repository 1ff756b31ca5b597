"""The `vmjobs` command line: serve, config, call, jobs, vms, loadtest,
sandbox."""

import argparse
import json
import os
import sys
import tempfile
import time

from . import config as configuration
from . import logs
from .tools import loadtest, report
from .tools.client import DEFAULT_SERVER, Client, RemoteError

# Flags that override the configuration file: flag -> Config field.
SERVICE_FLAGS = {
    "uri": "uri", "listen": "listen", "workers": "workers",
    "queue_size": "queue_size", "log_file": "log_file",
    "stop_mode": "stop_mode", "insecure": "insecure",
    "state_dir": "state_dirs", "image_dir": "image_dirs",
    "publish": "publish",
}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="vmjobs", description="Start VMs fast, in bounded parallel, "
        "and never leave a half-made one behind.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the service (JSON-RPC)")
    _service_flags(serve)
    show = commands.add_parser("config", help="the effective configuration")
    show.add_argument("--show", action="store_true", required=True,
                      help="print it (INI, as --config reads it)")
    _service_flags(show)

    call = commands.add_parser("call", help="call one verb on a server")
    call.add_argument("method", help="e.g. Host.getVMList")
    call.add_argument("params", nargs="*", metavar="key=value",
                      help="named params; values parsed as JSON where they "
                      "parse, else taken as strings")
    _client_flags(call)
    jobs = commands.add_parser("jobs", help="the job table of a server")
    jobs.add_argument("--watch", action="store_true",
                      help="refresh every second until interrupted")
    _client_flags(jobs)
    vms = commands.add_parser("vms", help="the public VMs of a server")
    _client_flags(vms)

    sandbox = commands.add_parser(
        "sandbox", help="a private libvirtd with QEMU (root; for trying "
        "vmjobs on real VMs and for the tests)")
    sandbox.add_argument("action", choices=("start", "restart", "stop"))
    sandbox.add_argument("dir", help="its directory (socket, config, logs)")

    lt = commands.add_parser(
        "loadtest", help="start many VMs through the verbs and summarise")
    lt.add_argument("--vms", type=int, default=500,
                    help="VMs to start (default 500)")
    lt.add_argument("--mix", default="create=100", type=_mix,
                    help="startup modes and their weights, e.g. "
                    "create=70,restore=20,migration=10 (default: create "
                    "only); migrations are simulated (the load test plays "
                    "the source host)")
    lt.add_argument("--rate", type=float, default=None,
                    help="requests per second (default: as fast as they "
                    "are taken)")
    lt.add_argument("--server", default=None,
                    help="drive a running `vmjobs serve` at HOST:PORT or "
                    "unix:/path (default: vmjobs in this process)")
    lt.add_argument("--state-dir", help="where restores' state files go "
                    "(a directory of their own is made in it): with "
                    "--server, one of the server's --state-dir (default "
                    "/var/lib/vmjobs/states); in process, a temporary one")
    lt.add_argument("--cert", help="client certificate (mutual TLS)")
    lt.add_argument("--key", help="its private key")
    lt.add_argument("--ca", help="CA of the server's certificate")
    lt.add_argument("--uri", default=None,
                    help="libvirt URI (default: a private instance of "
                    "libvirt's test driver); with --server, the one the "
                    "server uses, needed to simulate migrations")
    lt.add_argument("--workers", type=int, default=4,
                    help="jobs running at once, in process (default 4)")
    lt.add_argument("--queue-size", type=int, default=1000,
                    help="jobs waiting at most, in process (default 1000)")
    lt.add_argument("--domain-type", choices=("kvm", "qemu", "test"),
                    help="guests' domain type (default: the fastest "
                    "offered)")
    lt.add_argument("--mem", type=int, default=64,
                    help="memory per VM in MiB (default 64)")
    lt.add_argument("--keep", action="store_true",
                    help="leave the VMs running at the end")
    lt.add_argument("--json", metavar="FILE",
                    help="write every VM's timings (enqueued, started, "
                    "Up, verb latency) as JSON")
    lt.add_argument("--plot", metavar="FILE.png",
                    help="draw the storm (needs matplotlib: the 'plot' "
                    "extra)")
    lt.add_argument("--log-file", default=os.path.join(
        tempfile.gettempdir(), "vmjobs-loadtest.log"),
        help="log file, '-' for stderr (default: %(default)s)")

    rep = commands.add_parser(
        "report", help="the summary (and plot) of a saved load test")
    rep.add_argument("json", metavar="FILE.json")
    rep.add_argument("--plot", metavar="FILE.png")

    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (configuration.ConfigError, ValueError, OSError,
            RuntimeError) as exc:
        print(f"vmjobs {args.command}: {exc}", file=sys.stderr)
        return 2
    except RemoteError as exc:
        print(json.dumps({"code": exc.code, "message": exc.message,
                          "data": exc.data}), file=sys.stderr)
        return 1


def _service_flags(parser):
    parser.add_argument("--config", help="INI file (see `vmjobs config "
                        "--show` for every key)")
    parser.add_argument("--uri", help="libvirt URI (default: a private "
                        "instance of libvirt's test driver)")
    parser.add_argument("--listen", help="unix:/path (default "
                        "unix:/run/vmjobs/vmjobs.sock) or HOST:PORT (mutual "
                        "TLS, or --insecure on loopback)")
    parser.add_argument("--insecure", action="store_true", default=None,
                        help="allow plain TCP (no authentication) on a "
                        "loopback address")
    parser.add_argument("--state-dir", action="append", help="a directory "
                        "state files may be in (repeatable; default "
                        "/var/lib/vmjobs/states)")
    parser.add_argument("--image-dir", action="append", help="a directory "
                        "a domain XML's host files may be in (repeatable; "
                        "default /var/lib/vmjobs/images)")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--queue-size", type=int)
    parser.add_argument("--log-file", help="path, or '-' for stderr")
    parser.add_argument("--stop-mode", choices=("drain", "abort"))
    parser.add_argument("--publish", choices=("commit", "accept"),
                        help="list a VM from its job's commit (default) or "
                        "from the moment its verb answers, with its staged "
                        "status")


def _client_flags(parser):
    parser.add_argument("--server", default=DEFAULT_SERVER,
                        help="HOST:PORT or unix:/path (default %(default)s)")
    parser.add_argument("--cert", help="client certificate (mutual TLS)")
    parser.add_argument("--key", help="its private key")
    parser.add_argument("--ca", help="CA that signed the server's "
                        "certificate (turns TLS on)")


def effective_config(args):
    config = configuration.Config()
    if args.config:
        config = configuration.load(args.config, config)
    for flag, field in SERVICE_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            setattr(config, field, value)
    return config.validate()


def _serve(args):
    from .service import serve
    config = effective_config(args)
    handler = logs.configure(config.log_file or "-", config.log_level,
                             config.log_max_bytes, config.log_backups)
    try:
        return serve(config)
    finally:
        logs.unconfigure(handler)


def _config(args):
    print(configuration.dump(effective_config(args)), end="")
    return 0


def _client(args):
    return Client(args.server, cert=args.cert, key=args.key, ca=args.ca)


def _call(args):
    params = {}
    for item in args.params:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r}: params are key=value")
        try:
            params[key] = json.loads(text)
        except ValueError:
            params[key] = text
    with _client(args) as client:
        print(json.dumps(client.call(args.method, params), indent=2))
    return 0


def _jobs(args):
    with _client(args) as client:
        while True:
            table = job_table(client.call("Host.getJobs"), time.time())
            if args.watch:
                print("\x1b[H\x1b[2J", end="")
            print(table, flush=True)
            if not args.watch:
                return 0
            try:
                time.sleep(1)
            except KeyboardInterrupt:
                return 0


def job_table(jobs, now):
    rows = [("ID", "TYPE", "VM", "STATUS", "STEP", "AGE")]
    for info in sorted(jobs.values(), key=lambda i: i["created"]):
        rows.append((info["id"][:8], info["job_type"],
                     info.get("vm_id", "-")[:8],
                     info["status"] + (" (stuck)" if info.get("stuck") else
                                       ""),
                     info["step"], f"{now - info['created']:.0f}s"))
    return _format(rows)


def _vms(args):
    with _client(args) as client:
        vms = client.call("Host.getVMList", {"fullStatus": True})
    print(_format([("VM", "STATUS")] + [(vm["vmId"], vm["status"])
                                        for vm in vms]))
    return 0


def _format(rows):
    widths = [max(len(str(row[i])) for row in rows)
              for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(cell).ljust(width)
                               for cell, width in zip(row, widths)).rstrip()
                     for row in rows)


def _loadtest(args):
    handler = logs.configure(args.log_file)
    try:
        summary = loadtest.run(
            vms=args.vms, workers=args.workers, uri=args.uri,
            queue_size=args.queue_size, mem_mib=args.mem, mix=args.mix,
            rate=args.rate, keep=args.keep, server=args.server,
            tls=(args.cert, args.key, args.ca), json_path=args.json,
            plot_path=args.plot, domain_type=args.domain_type,
            state_root=args.state_dir)
    finally:
        logs.unconfigure(handler)
    if args.log_file != "-":
        print(f"log: {args.log_file}")
    return 0 if summary["failed"] == 0 else 1


def _report(args):
    records, summary = report.load(args.json)
    print(f"{args.json}: {summary['vms']} VMs")
    report.print_summary(summary, sys.stdout)
    if args.plot:
        report.plot(records, args.plot)
        print(f"plot: {args.plot}")
    return 0


def _sandbox(args):
    from .tools.sandbox import Sandbox, SandboxError
    sandbox = Sandbox(args.dir)
    try:
        if args.action == "start":
            sandbox.start()
            print(sandbox.uri)
        elif args.action == "restart":
            sandbox.restart_daemon()
        else:
            sandbox.stop()
    except SandboxError as exc:
        print(f"vmjobs sandbox: {exc}", file=sys.stderr)
        return 1
    return 0


def _mix(text):
    try:
        return loadtest.parse_mix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


COMMANDS = {"serve": _serve, "config": _config, "call": _call,
            "jobs": _jobs, "vms": _vms, "loadtest": _loadtest,
            "sandbox": _sandbox, "report": _report}


if __name__ == "__main__":
    sys.exit(main())
