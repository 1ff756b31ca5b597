"""The file descriptors the service may hold at once, by its configured
caps, and the process's limit (RLIMIT_NOFILE) they must fit below.

libvirt with GLib aborts the whole process when it opens a connection with
no descriptor free (docs/chaos.md, "fd-limit", seed 3305), and an outgoing
migration opens one as it begins. A new libvirt connection is refused
with too few free (hypervisor/connections.py, OPEN_HEADROOM): the verb
fails instead of the service dying, but it fails; so no caller may drive
the service there. Whatever a caller does, it makes the service hold
descriptors only within a configured cap:

- a connection each: at most `rpc.max_connections` in the connection
  table, as many again freed while their verbs finish (their clients
  closed them), as many again answered 503 (the overflow)
  (connection_table.py, server.py); a connection running a verb may have
  one file open meanwhile (an image's header, a state file); the same for
  the metrics listener, which runs no verb;
- an event stream each, at most `events.max_subscribers`;
- libvirt connections: one per worker and one for the verbs (`pool.workers`
  + 1), the events' own, one per outgoing migration
  (`migration.max_outgoing`), each its socket and GLib's wakeup eventfd;
- a file a job has open (a state file it creates), one per worker, and an
  outgoing migration's client of the destination service.

So the sum (`budget`) must fit the limit. At start the soft limit is raised
to it if need be, as far as the hard limit lets; a service whose caps do
not fit refuses to start, saying so (a hostile-caller audit, round 13:
with `rpc.max_connections` 250 under a limit of 200, one caller's 200 idle
connections took every descriptor, and the next caller was turned away
"out of file descriptors").
"""

import logging
import resource

from .config import ConfigError

log = logging.getLogger("vmjobs.descriptors")

# A libvirt connection to a daemon: its socket and GLib's wakeup eventfd
# (measured on libvirt 9.0: two more descriptors for each connection).
LIBVIRT_CONNECTION = 2
# What the service holds of its own, whatever its callers do: stdin,
# stdout, stderr, its listeners, the log file and its lock, the instance
# lock, the descriptor held in reserve for an accept at the limit
# (server.py), sd_notify's socket, libvirt's event loop, a reconnect's new
# connection before the lost one is closed. Measured: 9 at rest on the test
# driver.
OWN = 32


def budget(config):
    """The most descriptors `config`'s caps let the service hold at once."""
    slots = config.max_connections
    # In the table, freed while a verb finishes, answered 503; the first
    # two may run a verb, which may have a file open.
    connections = 3 * slots + 2 * slots
    metrics = 3 * slots if config.metrics_listen is not None else 0
    libvirt = LIBVIRT_CONNECTION * (config.workers + 1 + 1 +
                                    config.max_outgoing)
    jobs = config.workers + config.max_outgoing
    return OWN + connections + metrics + config.max_subscribers + \
        libvirt + jobs


def make_room(config):
    """Raise the process's soft RLIMIT_NOFILE to budget(config) if it is
    lower; ConfigError if the hard limit is lower too. Returns the soft
    limit the service runs with."""
    need = budget(config)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or need <= soft:
        return soft
    if hard != resource.RLIM_INFINITY and need > hard:
        raise ConfigError(
            f"the configured caps let callers make the service hold up to "
            f"{need} file descriptors, above its limit of {hard} "
            "(RLIMIT_NOFILE; systemd's LimitNOFILE): near the limit no "
            "libvirt connection can be opened (a migration fails). Lower "
            f"rpc.max_connections ({config.max_connections}), "
            f"events.max_subscribers ({config.max_subscribers}), "
            f"pool.workers ({config.workers}) or migration.max_outgoing "
            f"({config.max_outgoing}), or raise the limit")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    log.info("file descriptor limit raised from %d to %d, what the "
             "configured caps may hold", soft, need)
    return need
