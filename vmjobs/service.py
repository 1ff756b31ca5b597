"""`vmjobs serve`: the verbs, recovery at start, the JSON-RPC server, and
a clean stop on SIGTERM or SIGINT; one service per libvirt (a lock file),
systemd told when it is ready and when it stops, SIGHUP to reopen the log
file."""

import contextlib
import logging
import signal
import sys

import workers

from . import descriptors, hostfiles, instance_lock, logs
from .api import API
from .config import DEFAULT_URI
from .host import our_domains_running
from .hypervisor import HypervisorError
from .instance_lock import InstanceLock
from .listener import check_listener, check_metrics_listener
from .sdnotify import Readiness
from .server import Server

log = logging.getLogger("vmjobs.service")


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
SIGNALS = STOP_SIGNALS | {signal.SIGHUP}
# Seconds of stop_timeout a drain keeps to abort what it could not run to
# its end (stop_jobs).
DRAIN_ABORT_GRACE = 60.0


def serve(config, out=sys.stdout):
    """Run until SIGTERM or SIGINT; returns the exit status."""
    # Blocked before any thread starts, so every thread inherits the mask
    # and the signal waits for sigwait() below. (A Python handler would
    # only run once the main thread wakes up, which it may not do if the
    # kernel delivers the signal to another thread.)
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    check_listener(config)   # an insecure listener: refused before all else
    check_metrics_listener(config)
    # Before any descriptor is opened for a caller: the caps must fit the
    # process's limit, where libvirt would abort the service.
    descriptors.make_room(config)
    path = instance_lock.path_of(config)
    with InstanceLock(path) if path else contextlib.nullcontext():
        return _serve_locked(config, out)


def _serve_locked(config, out):
    hostfiles.prepare_dirs(config, log)
    api = API(config)
    if api.hv.is_test_driver:
        warn_test_driver(api.hv.uri, out)
    servers = []
    try:
        server = Server(api, config)
        servers.append(server)
        # The metrics listener stays open until the jobs have stopped, so
        # that /healthz says "stopping" (503) meanwhile.
        if config.metrics_listen is not None:
            servers.append(Server(api, config, metrics_only=True))
    except Exception:
        for opened in servers:
            opened.stop()
        api.close()
        raise
    for started in servers:
        started.start()
    readiness = Readiness(api, server.address)
    readiness.start()
    print(f"vmjobs: serving on {server.address}", file=out, flush=True)
    for metrics_server in servers[1:]:
        print(f"vmjobs: metrics and health on {metrics_server.address}",
              file=out, flush=True)
    while (signum := signal.sigwait(SIGNALS)) == signal.SIGHUP:
        paths = logs.reopen()
        log.info("SIGHUP: log file reopened: %s",
                 ", ".join(paths) or "(none: logging to stderr)")
        readiness.status(f"serving on {server.address}; log file reopened")
    api.stopping.set()
    readiness.stop()
    log.info("%s: stopping: no new requests; %s what is queued and running",
             signal.Signals(signum).name, config.stop_mode)
    # The pool stops taking jobs now (in abort mode the queued ones are
    # aborted), not once the listener has stopped, which takes up to its
    # poll interval.
    api.pool.shutdown(config.stop_mode, wait=False)
    server.stop()
    if not stop_jobs(api.pool, config.stop_mode, config.stop_timeout):
        log.error("stop: jobs still running after %g s: exiting without "
                  "them: %s", config.stop_timeout, ", ".join(
                      f"{j.id} ({j.job_type})" for j in api.jobs.jobs()
                      if not j.status.ended))
        print(f"vmjobs: stopped with jobs still running; "
              f"{stop_summary(api)}", file=out, flush=True)
        stop_metrics(servers)
        return 1
    print(f"vmjobs: stopped; {stop_summary(api)}", file=out, flush=True)
    stop_metrics(servers)
    api.close()
    return 0


def stop_jobs(pool, mode, timeout):
    """Every job to a safe end within `timeout` seconds: a job stuck behind
    libvirt (a hung call) must not keep the service from stopping. A
    drain runs what it can until the last DRAIN_ABORT_GRACE seconds (at
    most half), then aborts what is left: a job that waits for the
    outside (an incoming migration whose guest never comes) would
    otherwise outlive the stop, and leave what arrived without its
    rollback. True if every job ended."""
    if mode == workers.DRAIN:
        grace = min(DRAIN_ABORT_GRACE, timeout / 2)
        if pool.shutdown(workers.DRAIN, timeout=timeout - grace):
            return True
        log.warning("stop: jobs still running after %g s of draining: "
                    "aborting them", timeout - grace)
        timeout = grace
    return pool.shutdown(workers.ABORT, timeout=timeout)


def stop_metrics(servers):
    for metrics_server in servers[1:]:
        metrics_server.stop()


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
    them); nothing staged; every vmjobs domain is a public VM. The jobs
    have ended: nothing waits for a daemon that is gone any more (a stop
    with libvirtd down waited twice its reconnect_wait, two minutes)."""
    counts = api.registry.counts()
    api.hv.stop_waiting_for_the_daemon()
    try:
        running = our_domains_running(api.hv)
    except HypervisorError as exc:
        running = f"unknown ({exc})"
    summary = (f"public={counts['public']} staged={counts['staged']} "
               f"vmjobs_domains_running={running}")
    log.info("stopped: %s", summary)
    return summary
