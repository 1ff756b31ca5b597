"""The command line's load-test commands: `loadtest` (its flags checked,
and its output paths and plot dependency, before the storm starts) and
`report` (a saved run again)."""

import argparse
import os
import shutil
import sys
import tempfile

from . import logs
from .cli_errors import CliError, number
from .tools import loadtest as loadtest_module
from .tools import loadtest_hosts
from .tools import report as report_module
from .tools.mix import parse_mix


def add_flags(lt):
    lt.add_argument("--vms", type=number(int, 1), default=500,
                    help="VMs to start (default 500)")
    lt.add_argument("--mix", default="create=100", type=_mix,
                    help="startup modes and their weights, e.g. "
                    "create=70,restore=20,migration=10 (default: create "
                    "only); migrations are simulated (the load test plays "
                    "the source host); over two servers or more: "
                    "create=60,migrate=40 (VMs migrated between the hosts "
                    "with VM.migrate)")
    lt.add_argument("--rate", type=number(float, 0, above=True), default=None,
                    help="requests per second (default: as fast as they "
                    "are taken)")
    lt.add_argument("--server", action="append",
                    help="drive a running `vmjobs serve` at HOST:PORT or "
                    "unix:/path (default: vmjobs in this process); give it "
                    "twice or more to play the engine over several hosts")
    lt.add_argument("--dst-uri", action="append", default=[],
                    help="with several --server: each one's libvirtd as "
                    "the others' reach it, in the same order")
    lt.add_argument("--migration-uri",
                    help="with several --server: where migration data goes "
                    "(e.g. tcp://127.0.0.1 for sandboxes on one machine)")
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
    lt.add_argument("--workers", type=number(int, 1), default=4,
                    help="jobs running at once, in process (default 4)")
    lt.add_argument("--adaptive", action=argparse.BooleanOptionalAction,
                    default=False, help="in process: the admission limit "
                    "of startups moves by what it measures ([pool] "
                    "adaptive)")
    lt.add_argument("--queue-size", type=number(int, 1), default=1000,
                    help="jobs waiting at most, in process (default 1000)")
    lt.add_argument("--domain-type", choices=("kvm", "qemu", "test"),
                    help="guests' domain type (default: the fastest "
                    "offered)")
    lt.add_argument("--mem", type=number(int, 16), default=64,
                    help="memory per VM in MiB (default 64)")
    lt.add_argument("--keep", action="store_true",
                    help="leave the VMs running at the end, and the run's "
                    "directory (its log) under the temporary directory")
    lt.add_argument("--json", metavar="FILE",
                    help="write every VM's timings (enqueued, started, "
                    "Up, verb latency) as JSON")
    lt.add_argument("--plot", metavar="FILE.png",
                    help="draw the storm (needs matplotlib: the 'plot' "
                    "extra)")
    lt.add_argument("--log-file", default=None,
                    help="log file, '-' for stderr (default: a new file in "
                    "a new directory under the temporary directory, named "
                    "at the start)")


def loadtest(args):
    _check_loadtest(args)
    # The run's own private directory (0700): the log unless --log-file
    # says where, and the log's lock file. Removed at the end unless --keep
    # or the run failed (then its log is what tells why).
    run_dir = tempfile.mkdtemp(prefix="vmjobs-loadtest-")
    if args.log_file is None:
        args.log_file = os.path.join(run_dir, "loadtest.log")
    if args.log_file != "-":
        print(f"log: {args.log_file}", flush=True)
    ok = False
    try:
        handler = logs.configure(args.log_file, lock_dir=run_dir)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    try:
        if args.server and len(args.server) > 1:
            summary = loadtest_hosts.run_hosts(
                args.server, args.dst_uri, vms=args.vms, mix=args.mix,
                mem_mib=args.mem, migration_uri=args.migration_uri,
                tls=(args.cert, args.key, args.ca), keep=args.keep)
            ok = not summary["failed"] and not summary["misplaced"]
        else:
            summary = loadtest_module.run(
                vms=args.vms, workers=args.workers, uri=args.uri,
                queue_size=args.queue_size, mem_mib=args.mem, mix=args.mix,
                rate=args.rate, keep=args.keep,
                server=args.server[0] if args.server else None,
                tls=(args.cert, args.key, args.ca), json_path=args.json,
                plot_path=args.plot, domain_type=args.domain_type,
                state_root=args.state_dir, adaptive=args.adaptive)
            ok = summary["failed"] == 0
    finally:
        logs.unconfigure(handler)
        in_run_dir = args.log_file.startswith(run_dir + os.sep)
        if ok and not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
            if in_run_dir:
                print(f"log: removed with {run_dir} (--keep keeps it)")
        if args.log_file != "-" and (args.keep or not ok or not in_run_dir):
            print(f"log: {args.log_file}")
    return 0 if ok else 1


def _check_loadtest(args):
    """Everything that can be checked before the storm, so that nothing
    fails after it."""
    if args.cert and not args.ca:
        raise CliError("--cert needs --ca (the CA that signed "
                                  "the server's certificate)")
    for flag, path in (("--json", args.json), ("--plot", args.plot),
                       ("--log-file", args.log_file)):
        if path and path != "-":
            _check_writable(flag, path)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CliError(
                "--plot needs matplotlib: pip install 'vmjobs[plot]' (or "
                "drop --plot; --json saves the timings to plot later with "
                "`vmjobs report`)") from None


def _check_writable(flag, path):
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CliError(f"{flag} {path}: is a directory; give a "
                                  "file name")
    if not os.path.isdir(directory):
        raise CliError(f"{flag} {path}: no directory {directory}")
    if not os.access(directory, os.W_OK) or (
            os.path.exists(path) and not os.access(path, os.W_OK)):
        raise CliError(f"{flag} {path}: not writable by this "
                                  "user")


def report(args):
    try:
        records, summary = report_module.load(args.json)
    except OSError as exc:
        raise CliError(f"{args.json}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise CliError(
            f"{args.json}: not a saved load test ({type(exc).__name__}: "
            f"{exc}); give a file written by `vmjobs loadtest --json`") \
            from None
    if args.plot:
        _check_writable("--plot", args.plot)
    print(f"{args.json}: {summary['vms']} VMs")
    report_module.print_summary(summary, sys.stdout)
    if args.plot:
        report_module.plot(records, args.plot)
        print(f"plot: {args.plot}")
    return 0


def _mix(text):
    try:
        return parse_mix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
