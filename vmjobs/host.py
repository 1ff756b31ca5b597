"""What the host holds, counted: Host.getStats' answer, and what a stop
leaves behind."""

from . import domxml
from .hypervisor import DomainState


def host_stats(pool, registry, recovery, hv):
    """Host.getStats: the pool's counts, the registries', and libvirt's
    domains that are not (or no longer) VMs of ours."""
    # Read first: once recovery is over, the counts read after it show
    # what recovery left (reading it last, after the libvirt listing,
    # could report recovery over with the counts of a moment before).
    recovering = not recovery.done
    pool_stats = pool.stats()
    counts = registry.counts()
    known = registry.known_ids()
    external = stopped = 0
    for domain in hv.list_domains(domxml.METADATA_NS):
        if domain.metadata is None:
            external += 1
        elif domain.state == DomainState.SHUTOFF and domain.uuid not in known:
            stopped += 1
    return {
        "workers": pool_stats["workers"],
        "queue_size": pool_stats["queue_size"],
        "queued": pool_stats["queued"],
        "running": pool_stats["running"],
        "staged": counts["staged"],
        "public": counts["public"],
        "external_domains": external,
        "stopped_domains": stopped,
        "jobs_done": pool_stats["done"],
        "jobs_failed": pool_stats["failed"],
        "jobs_aborted": pool_stats["aborted"],
        "recovering": recovering,
    }


def our_domains_running(hv):
    """How many domains carrying vmjobs' metadata are not shut off."""
    return sum(1 for d in hv.list_domains(domxml.METADATA_NS)
               if d.metadata is not None and d.state != DomainState.SHUTOFF)
