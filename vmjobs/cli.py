"""The `vmjobs` command line."""

import argparse
import os
import sys
import tempfile

from . import loadtest, logs


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="vmjobs", description="Start VMs fast, in bounded parallel, "
        "and never leave a half-made one behind.")
    commands = parser.add_subparsers(dest="command", required=True)

    lt = commands.add_parser(
        "loadtest", help="start many VMs through the verbs and summarise")
    lt.add_argument("--vms", type=int, default=500,
                    help="VMs to start (default 500)")
    lt.add_argument("--workers", type=int, default=4,
                    help="jobs running at once (default 4)")
    lt.add_argument("--uri", default=None,
                    help="libvirt URI (default: a private instance of "
                    "libvirt's test driver)")
    lt.add_argument("--queue-size", type=int, default=1000,
                    help="jobs waiting at most (default 1000)")
    lt.add_argument("--mem", type=int, default=64,
                    help="memory per VM in MiB (default 64)")
    lt.add_argument("--mix", default="create=100", type=_mix,
                    help="startup modes and their weights, e.g. "
                    "create=70,restore=20,migration=10 (default: create "
                    "only); migrations are simulated (the load test plays "
                    "the source host)")
    lt.add_argument("--keep", action="store_true",
                    help="leave the VMs running at the end")
    lt.add_argument("--log-file", default=os.path.join(
        tempfile.gettempdir(), "vmjobs-loadtest.log"),
        help="log file, '-' for stderr (default: %(default)s)")

    args = parser.parse_args(argv)
    if args.command == "loadtest":
        handler = logs.configure(args.log_file)
        try:
            figures = loadtest.run(
                vms=args.vms, workers=args.workers, uri=args.uri,
                queue_size=args.queue_size, mem_mib=args.mem, mix=args.mix,
                keep=args.keep)
        finally:
            logs.unconfigure(handler)
        if args.log_file != "-":
            print(f"log: {args.log_file}")
        return 0 if figures["failed"] == 0 else 1
    return 2


def _mix(text):
    try:
        return loadtest.parse_mix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


if __name__ == "__main__":
    sys.exit(main())
