"""`vmjobs serve`: the verbs, recovery at start, the JSON-RPC server, and
a clean stop on SIGTERM or SIGINT."""

import logging
import signal
import sys
import threading

from . import domxml
from .api import API
from .server import Server

log = logging.getLogger("vmjobs.service")


def serve(config, out=sys.stdout):
    """Run until SIGTERM or SIGINT; returns the exit status."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    api = API(config)
    try:
        server = Server(api, config)
    except Exception:
        api.close()
        raise
    server.start()
    print(f"vmjobs: serving on {server.address}", file=out, flush=True)
    stop.wait()
    log.info("stopping: no new requests; %s what is queued and running",
             config.stop_mode)
    server.stop()
    api.pool.shutdown(config.stop_mode)   # every job reaches a safe end
    print(f"vmjobs: stopped; {stop_summary(api)}", file=out, flush=True)
    api.close()
    return 0


def stop_summary(api):
    """What a stop leaves: public VMs keep running (the next start recovers
    them); nothing staged; every vmjobs domain is a public VM."""
    counts = api.registry.counts()
    running = sum(1 for d in api.hv.list_domains(domxml.METADATA_NS)
                  if d.metadata is not None and d.state != "shutoff")
    summary = (f"public={counts['public']} staged={counts['staged']} "
               f"vmjobs_domains_running={running}")
    log.info("stopped: %s", summary)
    return summary
