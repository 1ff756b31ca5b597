"""The `vmjobs` command line: serve, config, call, jobs, events, vms,
loadtest, report, sandbox, chaos. An error is one line saying what failed
and what to try (vmjobs.cli_errors); --debug shows its traceback."""

import argparse
import os
import select
import signal
import sys
import traceback

from . import (
    __version__,
    cli_call,
    cli_errors,
    cli_events,
    cli_loadtest,
    instance_lock,
    logs,
    rundir,
)
from . import config as configuration
from .client import DEFAULT_SERVER, RemoteError

# Flags that override the configuration file: flag -> Config field.
SERVICE_FLAGS = {
    "uri": "uri", "listen": "listen",
    "metrics_listen": "metrics_listen", "workers": "workers",
    "queue_size": "queue_size", "log_file": "log_file",
    "stop_mode": "stop_mode", "lock_file": "lock_file",
    "insecure": "insecure", "state_dir": "state_dirs",
    "image_dir": "image_dirs", "network_host": "network_hosts",
    "migration_socket_dir": "migration_socket_dirs",
    "migration_network": "migration_networks",
    "publish": "publish", "adaptive": "adaptive",
}


# The flows' job types (vmjobs.flows, not imported here: it loads libvirt;
# test_cli_errors checks the two agree): a `jobs --type` of another showed
# an empty table, as if no such job ran.
JOB_TYPES = ("create", "restore", "recover", "migration-destination",
             "migration-source", "hibernate")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        """A usage error in one line, with where to look."""
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser():
    parser = _Parser(
        prog="vmjobs", description="Start VMs fast, in bounded parallel, "
        "and never leave a half-made one behind.")
    parser.add_argument("--version", action="version",
                        version=f"vmjobs {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True,
                                     metavar="COMMAND")

    def command(name, help):
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("--debug", action="store_true",
                         default=argparse.SUPPRESS,
                         help="show the traceback of an error")
        return sub

    _service_flags(command("serve", "run the service (JSON-RPC)"))
    show = command("config", "print the effective configuration: every "
                   "key, its value, where it came from and what it does "
                   "(INI, as --config reads it), and the files read")
    show.add_argument("--show", action="store_true",
                      help="the same (the default, and the only action)")
    _service_flags(show)

    call = command("call", "call one verb on a running service")
    call.add_argument("method", nargs="?", help="the verb, e.g. "
                      "Host.getVMList, or as vdsm-client: Host getVMList")
    call.add_argument("params", nargs="*", metavar="key=value",
                      help="named params; a value is JSON when it parses "
                      "as JSON (numbers, true, lists...), else a string; "
                      "one starting with {, [ or \" must be valid JSON")
    call.add_argument("-f", "--file", metavar="FILE", help="params as a "
                      "JSON object (or array) from FILE, '-' for stdin; "
                      "key=value adds to them (as vdsm-client -f)")
    call.add_argument("--json", action="store_true", help="print the "
                      "answer as one JSON object, {\"result\": ...} or "
                      "{\"error\": ...} (for scripts)")
    call.add_argument("--list", action="store_true",
                      help="list the verbs and their params, with their "
                      "types ([optional])")
    call.add_argument("--timeout", type=cli_call.seconds, default=60.0,
                      metavar="SECONDS", help="give up on an answer after "
                      "this long (default %(default)s)")
    _client_flags(call)
    jobs = command("jobs", "the job table of a running service")
    jobs.add_argument("prefix", nargs="?", metavar="ID_PREFIX",
                      help="only the jobs whose id starts with this")
    jobs.add_argument("--watch", action="store_true",
                      help="keep it up to date from the service's events "
                      "until interrupted; ended jobs are shown for "
                      f"{cli_call.WATCH_ENDED_WITHIN:.0f} s (--ended-within)")
    jobs.add_argument("--ended-within", type=cli_call.ages, metavar="SECONDS",
                      help="show the ended jobs that ended at most this "
                      "long ago (default: all, or "
                      f"{cli_call.WATCH_ENDED_WITHIN:.0f} with --watch)")
    jobs.add_argument("--all", action="store_true", help="show every "
                      "ended job, with --watch too")
    jobs.add_argument("--active", action="store_true", help="show only "
                      "the jobs that have not ended")
    jobs.add_argument("--type", choices=JOB_TYPES,
                      help="only the jobs of this type")
    _client_flags(jobs)
    events = command("events", "print a running service's events (GET "
                     "/events) as they come, one line each")
    cli_events.add_flags(events)
    _client_flags(events)
    _client_flags(command("vms", "the VMs a running service lists"))

    sandbox = command("sandbox", "a private libvirtd with QEMU (root; for "
                      "trying vmjobs on real VMs and for the tests)")
    sandbox.add_argument("action", choices=("start", "restart", "stop"),
                         help="start it (prints its URI), restart libvirtd "
                         "alone (its VMs run on), or stop it (destroys its "
                         "domains)")
    sandbox.add_argument("dir", help="its directory (socket, config, logs)")

    chaos = command("chaos", "a seeded random run of every verb under "
                    "faults over two private libvirtds, checking the "
                    "invariants (root; docs/chaos.md)")
    chaos.add_argument("dir", help="its directory (daemons, logs, state "
                       "files, the violation file)")
    chaos.add_argument("--seed", type=int, default=None,
                       help="the schedule's seed (default: drawn, printed)")
    chaos.add_argument("--steps", type=int, default=None,
                       help="stop after this many steps")
    chaos.add_argument("--minutes", type=float, default=None,
                       help="stop after this long (default: 10 min unless "
                       "--steps)")
    chaos.add_argument("--max-vms", type=int, default=6,
                       help="VMs (and unconsumed state files) at most "
                       "(default 6)")
    chaos.add_argument("--mem", type=int, default=32, help="MiB per guest")
    chaos.add_argument("--fault-rate", type=float, default=0.03,
                       help="probability that a step is a fault")
    chaos.add_argument("--mix", choices=("deep", "wide", "classic",
                                         "partition", "log-full",
                                         "fd-limit", "operator", "hang"),
                       default="deep",
                       help="the operations and faults drawn (default "
                       "deep; wide and classic: the mixes before it, for "
                       "old seeds; partition: deep, the hosts on loopback "
                       "TCP, cut from each other while migrations run, "
                       "which needs nft; log-full: deep, a service's log "
                       "disk full for a few steps; fd-limit: deep, a "
                       "service out of file descriptors for a few "
                       "seconds; operator: deep, an operator's virsh on "
                       "vmjobs' domains behind the service's back; hang: "
                       "deep, a libvirtd, a guest's QEMU or a service "
                       "frozen 10 to 90 s, then each host must come back)")
    chaos.add_argument("--known", action="append", default=[],
                       choices=("arrival-without-source",
                                "unreadable-domain",
                                "glib-abort-at-fd-limit"),
                       help="a kind of violation already diagnosed: noted "
                       "in the figures instead of stopping the run "
                       "(repeatable)")

    cli_loadtest.add_flags(command("loadtest", "start many VMs through the "
                                   "verbs, summarise, destroy them"))
    rep = command("report", "the summary (and plot) of a saved load test")
    rep.add_argument("json", metavar="FILE.json",
                     help="what `vmjobs loadtest --json` wrote")
    rep.add_argument("--plot", metavar="FILE.png", help="draw the storm "
                     "(needs matplotlib: the 'plot' extra)")
    return parser


def main(argv=None):
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # `call`'s key=value params may come after its flags too.
        if args.command != "call" or any(e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.params += extra
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if isinstance(exc, BrokenPipeError) and _output_gone():
            # `vmjobs events | head -1`: the reader went away, not the
            # server. Ended as a filter killed by SIGPIPE, quietly (and
            # nothing more written: the exit's flush would fail again).
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 128 + signal.SIGPIPE
        line = cli_errors.explain(exc, args)
        if args.debug or line is None:
            traceback.print_exc()
        if line is None:
            line = (f"unexpected error: {type(exc).__name__}: {exc} "
                    "(a bug: please report it with the traceback above)")
        # The line may quote the server (a job's error echoes what a
        # caller sent): no control character reaches the terminal.
        print(f"vmjobs {args.command}: {logs.one_line(line)}",
              file=sys.stderr)
        return 1 if isinstance(exc, RemoteError) else 2


def _output_gone():
    """Whether the reader of stdout has gone (a pipe or socket whose other
    end closed reports POLLERR to its writer; a file never does)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, ValueError, OSError):
        return False


def _service_flags(parser):
    parser.add_argument("--config", help="INI file, read instead of "
                        f"{configuration.DEFAULT_PATH} and its .d directory "
                        "(see `vmjobs config --show` for every key)")
    parser.add_argument("--uri", help="libvirt URI (default "
                        f"{configuration.DEFAULT_URI}, the host's "
                        "hypervisor; test:///default for libvirt's test "
                        "driver, whose VMs are not real)")
    parser.add_argument("--listen", help="unix:/path (default "
                        "unix:/run/vmjobs/vmjobs.sock) or HOST:PORT (mutual "
                        "TLS, or --insecure on loopback)")
    parser.add_argument("--metrics-listen", help="a second listener for "
                        "GET /metrics and /healthz only (no verbs): "
                        "unix:/path (made 0666) or a loopback HOST:PORT")
    parser.add_argument("--insecure", action="store_true", default=None,
                        help="allow plain TCP (no authentication) on a "
                        "loopback address")
    parser.add_argument("--state-dir", action="append", help="a directory "
                        "state files may be in (repeatable; default "
                        "/var/lib/vmjobs/states)")
    parser.add_argument("--image-dir", action="append", help="a directory "
                        "a domain XML's host files may be in (repeatable; "
                        "default /var/lib/vmjobs/images)")
    parser.add_argument("--network-host", action="append", help="a host a "
                        "network disk may name (repeatable; default none)")
    parser.add_argument("--migration-socket-dir", action="append",
                        help="a directory VM.migrate's dst and dstUri may "
                        "name a unix socket in (repeatable; default none)")
    parser.add_argument("--migration-network", action="append",
                        help="a network (CIDR) VM.migrate's migrationUri "
                        "may name a host in, besides dstUri's (repeatable; "
                        "default none)")
    parser.add_argument("--workers", type=int, help="jobs running at once "
                        "(default: 2 x the cores)")
    parser.add_argument("--queue-size", type=int, help="jobs waiting at "
                        f"most (default {configuration.Config.queue_size}), "
                        "of each priority (creations, restores, "
                        "hibernations; migrations and recovery, which go "
                        "first); more are refused at once with error 1100, "
                        "ResourceExhausted")
    parser.add_argument("--adaptive", action=argparse.BooleanOptionalAction,
                        help="move the startups' admission limit by what it "
                        "measures ([pool] adaptive)")
    parser.add_argument("--log-file", help="path, or '-' for stderr")
    parser.add_argument("--stop-mode", choices=("drain", "abort"),
                        help="on SIGTERM: abort the jobs (rolled back) or "
                        "drain them")
    parser.add_argument("--lock-file", help="held while serving, so that "
                        "a second service of the same libvirt refuses to "
                        "start (default /run/vmjobs/vmjobs.lock for "
                        "qemu:///system, one of its own in /run/vmjobs for "
                        "another URI, none for test:///...)")
    parser.add_argument("--publish", choices=("commit", "accept"),
                        help="list a VM from its job's commit (default) or "
                        "from the moment its verb answers, with its staged "
                        "status")


def _client_flags(parser):
    parser.add_argument("--server", default=DEFAULT_SERVER,
                        help="HOST:PORT or unix:/path (default %(default)s)")
    parser.add_argument("--cert", help="client certificate (mutual TLS; "
                        "needs --key and --ca)")
    parser.add_argument("--key", help="its private key")
    parser.add_argument("--ca", help="CA that signed the server's "
                        "certificate (turns TLS on)")


def effective_config(args):
    if args.config:
        config = configuration.load(args.config)
    else:
        config = configuration.load_default()
    for flag, field in SERVICE_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            config.set_flag(field, value, "--" + flag.replace("_", "-"))
    config.validate()
    # For the error messages: what was used, from whichever source.
    args.effective_uri, args.effective_listen = config.uri, config.listen
    return config


def _serve(args):
    from .service import serve
    config = effective_config(args)
    # The log's lock file goes beside the instance lock: the run directory,
    # private to the service (0700), not the log directory.
    lock = instance_lock.path_of(config)
    handler = logs.configure(config.log_file or "-", config.log_level,
                             config.log_max_bytes, config.log_backups,
                             lock_dir=os.path.dirname(os.path.abspath(lock))
                             if lock else rundir.RUN_DIR)
    try:
        return serve(config)
    finally:
        logs.unconfigure(handler)


def _config(args):
    print(configuration.dump(effective_config(args)), end="")
    return 0


def _sandbox(args):
    from .tools.sandbox import Sandbox, SandboxError
    sandbox = Sandbox(args.dir)
    try:
        if args.action == "start":
            sandbox.start(detached=True)   # for later commands to use
            print(sandbox.uri)
        elif args.action == "restart":
            sandbox.restart_daemon()
        else:
            sandbox.stop()
    except SandboxError as exc:
        print(f"vmjobs sandbox: {exc}", file=sys.stderr)
        return 1
    return 0


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def _chaos(args):
    import json
    import random

    from .tools.chaos import ChaosRun
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    minutes = args.minutes if args.minutes is not None or args.steps else 10
    print(f"vmjobs chaos: seed {seed} (replay: vmjobs chaos {args.dir} "
          f"--seed {seed})", flush=True)
    # A SIGTERM ends the run as Ctrl-C does, through its cleanup (its
    # daemons stopped, its firewall tables removed), not in the middle.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    run = ChaosRun(args.dir, seed, steps=args.steps,
                   duration=minutes * 60 if minutes else None,
                   max_vms=args.max_vms, mem_mib=args.mem,
                   fault_rate=args.fault_rate, mix=args.mix,
                   known=args.known)
    ok = run.run()
    print(json.dumps(run.figures(), indent=1))
    return 0 if ok else 1


COMMANDS = {"serve": _serve, "chaos": _chaos, "config": _config, "call": cli_call.call,
            "jobs": lambda args: (cli_events.watch_jobs if args.watch
                                  else cli_call.jobs)(args),
            "events": cli_events.events, "vms": cli_call.vms,
            "loadtest": cli_loadtest.loadtest, "sandbox": _sandbox,
            "report": cli_loadtest.report}


if __name__ == "__main__":
    sys.exit(main())
