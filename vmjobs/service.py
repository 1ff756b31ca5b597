"""`vmjobs serve`: the verbs, recovery at start, the JSON-RPC server, and
a clean stop on SIGTERM or SIGINT; one instance per host (a lock file),
systemd told when it is ready and when it stops, SIGHUP to reopen the log
file."""

import logging
import signal
import sys

from . import hostfiles, logs
from .api import API
from .config import DEFAULT_URI
from .host import our_domains_running
from .instance_lock import InstanceLock
from .listener import check_listener
from .sdnotify import Readiness
from .server import Server

log = logging.getLogger("vmjobs.service")


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
SIGNALS = STOP_SIGNALS | {signal.SIGHUP}


def serve(config, out=sys.stdout):
    """Run until SIGTERM or SIGINT; returns the exit status."""
    # Blocked before any thread starts, so every thread inherits the mask
    # and the signal waits for sigwait() below. (A Python handler would
    # only run once the main thread wakes up, which it may not do if the
    # kernel delivers the signal to another thread.)
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    check_listener(config)   # an insecure listener: refused before all else
    with InstanceLock(config.lock_file):
        return _serve_locked(config, out)


def _serve_locked(config, out):
    hostfiles.prepare_dirs(config, log)   # by the one instance only
    api = API(config)
    if api.hv.is_test_driver:
        warn_test_driver(api.hv.uri, out)
    try:
        server = Server(api, config)
    except Exception:
        api.close()
        raise
    server.start()
    readiness = Readiness(api, server.address)
    readiness.start()
    print(f"vmjobs: serving on {server.address}", file=out, flush=True)
    while (signum := signal.sigwait(SIGNALS)) == signal.SIGHUP:
        paths = logs.reopen()
        log.info("SIGHUP: log file reopened: %s",
                 ", ".join(paths) or "(none: logging to stderr)")
        readiness.status(f"serving on {server.address}; log file reopened")
    readiness.stop()
    log.info("%s: stopping: no new requests; %s what is queued and running",
             signal.Signals(signum).name, config.stop_mode)
    server.stop()
    # Every job reaches a safe end, within stop_timeout: a job stuck behind
    # libvirt (a hung call) must not keep the service from stopping.
    if not api.pool.shutdown(config.stop_mode, timeout=config.stop_timeout):
        log.error("stop: jobs still running after %g s: exiting without "
                  "them: %s", config.stop_timeout, ", ".join(
                      f"{j.id} ({j.job_type})" for j in api.jobs.jobs()
                      if not j.status.ended))
        print(f"vmjobs: stopped with jobs still running; "
              f"{stop_summary(api)}", file=out, flush=True)
        return 1
    print(f"vmjobs: stopped; {stop_summary(api)}", file=out, flush=True)
    api.close()
    return 0


def warn_test_driver(uri, out):
    """Said at start, on the console and in the log: on libvirt's test
    driver the verbs answer and VMs are "Up", but none runs anywhere."""
    message = (f"libvirt's test driver ({uri}): its VMs are not "
               "real and run nowhere; give --uri (default "
               f"{DEFAULT_URI}) for the host's hypervisor")
    log.warning("%s", message)
    print(f"vmjobs: warning: {message}", file=out, flush=True)


def stop_summary(api):
    """What a stop leaves: public VMs keep running (the next start recovers
    them); nothing staged; every vmjobs domain is a public VM."""
    counts = api.registry.counts()
    running = our_domains_running(api.hv)
    summary = (f"public={counts['public']} staged={counts['staged']} "
               f"vmjobs_domains_running={running}")
    log.info("stopped: %s", summary)
    return summary
