"""What the host holds, listed and counted: Host.getVMList's and
Host.getStats' answers, and what a stop leaves behind."""

from . import ownership
from .errors import InvalidParams
from .hypervisor import DomainState
from .params import parse_vm_id


def vm_list(registry, full_status, vm_ids, only_uuid):
    """Host.getVMList, as VDSM's: only the VMs of `vm_ids` (vmList) when it
    is not empty (each a UUID, in either case; unknown ids skipped);
    only_uuid asks for ids, which is what comes without full_status
    anyway (and, as in VDSM, full_status wins). null for either is the
    flag not given (false), as for every verb's optional parameter."""
    full_status = bool(_flag("fullStatus", full_status))
    _flag("onlyUUID", only_uuid)
    vms = registry.listed()   # the publish mode decides (registry.py)
    if vm_ids is not None:
        if not isinstance(vm_ids, list) or \
                not all(isinstance(v, str) for v in vm_ids):
            raise InvalidParams("vmList", "must be a list of vmIds")
        wanted = {parse_vm_id(v, "vmList") for v in vm_ids}
        vms = [vm for vm in vms if not wanted or vm.vm_id in wanted]
    if full_status:
        return [{"vmId": vm.vm_id, "status": str(vm.status)} for vm in vms]
    return [vm.vm_id for vm in vms]


def _flag(name, value):
    """Optional boolean param `name`'s `value` (None: not given)."""
    if value is not None and not isinstance(value, bool):
        raise InvalidParams(name, "must be true or false")
    return value


def host_stats(pool, registry, recovery, hv, owner):
    """Host.getStats: the pool's counts, the registries', and libvirt's
    domains that are not (or no longer) VMs of ours: external (not ours:
    `owner`, an ownership.Ownership, says), stopped (ours, defined, not
    running: recovery leaves them alone) and unowned (ours, running in no
    registry: a failed recovery, an arrived migration its job could not
    commit)."""
    # Read first: once recovery is over, the counts read after it show
    # what recovery left (reading it last, after the libvirt listing,
    # could report recovery over with the counts of a moment before).
    recovering = not recovery.done
    pool_stats = pool.stats()
    # The counts and the VMs left out of the listing, at one moment: read
    # apart, a VM whose guest stopped in between was counted public and
    # its domain stopped.
    counts, known = registry.census()
    # The registries' VMs are left out of the listing before any call of
    # their own: what a call costs grows with the domains that are not
    # VMs of ours, not with the host's VMs or jobs.
    ours, external = owner.look(skip=known)
    # A VM staged while libvirt listed is left out too: its domain, made
    # after the counts were read, is neither counted with them nor
    # unowned (it was counted so, a creation under way).
    came = registry.known_ids() - known
    ours = [domain for domain in ours if domain.uuid not in came]
    stopped = sum(1 for domain in ours if domain.state == DomainState.SHUTOFF)
    unowned = len(ours) - stopped
    return {
        # The libvirt URI served: a test:// one means no VM is real.
        "uri": hv.uri,
        "workers": pool_stats["workers"],
        "queue_size": pool_stats["queue_size"],
        "queued": pool_stats["queued"],
        # On a worker, or parked (waiting on no thread, an incoming
        # migration's wait-arrival, say): JobInfo running, or aborting.
        "running": pool_stats["running"] + pool_stats["parked"],
        "parked": pool_stats["parked"],
        "admission_limit": pool_stats["admission_limit"],
        "staged": counts["staged"],
        "public": counts["public"],
        "external_domains": external,
        "stopped_domains": stopped,
        "unowned_domains": unowned,
        "jobs_done": pool_stats["done"],
        "jobs_failed": pool_stats["failed"],
        "jobs_aborted": pool_stats["aborted"],
        "recovering": recovering,
    }


def our_domains_running(hv):
    """How many domains carrying vmjobs' metadata are not shut off."""
    return sum(1 for d in ownership.marked_domains(hv)
               if d.state != DomainState.SHUTOFF)
