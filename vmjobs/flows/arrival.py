"""An incoming migration's rules, as small pieces of the adapter: when the
domain has arrived, what ends a job that did not commit, and how an arrived
domain is kept for recovery when it cannot be committed. (Plain functions,
so that a job waiting without a thread can use them as well as one that
waits in run().)

"Arrived" is "the migration finished", hypervisor.has_arrived's rule (a VM
paused on the source arrives paused, with a SUSPENDED event). Before
arrival the source still holds the guest, and removing what is here only
makes the source's migration fail; from arrival on, the domain here may be
the guest's only copy, and nothing destroys it."""

import logging

from .. import domxml
from ..hypervisor import DomainState, has_arrived
from ..registry import VmStatus

log = logging.getLogger("vmjobs.flows.arrival")


def arrived_status(hv, vm_id):
    """The public status (Up, Paused) of the incoming domain once its
    migration has finished; None while it has not (no domain, a transfer
    still running, or a domain that does not run)."""
    state, reason = hv.state_reason(vm_id)
    if not has_arrived(state, reason):
        return None
    return VmStatus.UP if state is DomainState.RUNNING else VmStatus.PAUSED


def make_ours(hv, vm_id, params, over_definition=False):
    """Make the arrived domain persistent and ours (vmjobs metadata, live
    and in its definition), so that it is known as ours once it stops, and
    recovered after a restart. `over_definition`: it arrived over the VM's
    stopped definition, which its own replaces (a source that does not ask
    libvirt to persist it would leave the old one)."""
    hv.persist(vm_id, replace=over_definition)
    hv.set_metadata(vm_id, domxml.METADATA_NS, domxml.METADATA_PREFIX,
                    domxml.metadata_element(vm_id, params))


def keep_for_recovery(hv, vm_id, params, why, over_definition=False):
    """An arrived domain that will not be committed (`why`): leave it
    running, made ours if that can be done, and return what became of it
    (for the job's error)."""
    try:
        make_ours(hv, vm_id, params, over_definition)
    except Exception as exc:
        where = ("left running here without vmjobs metadata "
                 f"({exc}): Host.getStats counts it in unowned_domains")
    else:
        where = ("left running here with vmjobs metadata: the next "
                 "recovery adopts it")
    message = (f"VM {vm_id} arrived but was not committed ({why}); it is "
               f"{where}; VM.destroy removes it")
    log.error("%s", message)
    return message


def publish_arrived(job, status):
    """An abort reached the job of an arrived domain (JobAborted at its
    commit): list the VM all the same, outside the job's commit, so that
    once the source's job ended the guest is public on one host; returns
    what became of it (the job's error). If that fails too, it is kept for
    recovery (keep_for_recovery)."""
    vm_id, params = job.vm_id, job.spec.params
    over = job.over_stopped_definition
    try:
        make_ours(job.hv, vm_id, params, over)
        job.registry.publish(vm_id, status, job)
    except Exception as exc:
        return keep_for_recovery(job.hv, vm_id, params,
                                 f"aborted after arrival, then {exc}", over)
    message = (f"too late to abort: VM {vm_id} had arrived; it is listed "
               f"here, {status}")
    log.warning("%s", message)
    return message


def remove_unarrived(hv, vm_id, params, why, over_definition=False):
    """The end of a migration job that did not commit, whenever it comes
    (even while the job is queued): remove whatever has the UUID unless it
    has arrived, which is kept for recovery; `over_definition` (the VM's
    stopped definition was here before): only stop it, leaving that
    definition as it was. Returns None if nothing was kept, else what
    keep_for_recovery said."""
    if arrived_status(hv, vm_id) is None:
        if hv.remove(vm_id, keep_definition=over_definition):
            log.info("incoming domain %s %s: %s", vm_id,
                     "stopped" if over_definition else "removed", why)
        return None
    return keep_for_recovery(hv, vm_id, params, why, over_definition)
