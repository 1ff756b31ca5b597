"""What libvirt is doing to a domain right now, in the one rule that tells
an arriving migration from a restore, a save or a user pause.

A domain's pause reason alone does not say it: libvirt leaves a domain
restored paused (VIR_DOMAIN_SAVE_PAUSED) with reason MIGRATION, the reason
an incoming migration's domain has while it arrives (measured on the real
daemon: [3, 2] after restoreFlags(SAVE_PAUSED), with no job). The domain's
job says it: on the destination libvirt refuses the job stats of an
incoming migration with OPERATION_UNSUPPORTED ("migration statistics are
available only on the source host", qemuDomainGetJobStatsInternal), and a
domain with no job reports type NONE. A save in flight is a job of
operation SAVE, and once its vCPUs are stopped the domain is paused with
reason SAVE (its state changes once the save has ended: shut off when
saved, running again when it failed).

Reading the state and the job stats never waits for QEMU while the job is
in these phases (libvirt answers from its own bookkeeping)."""

import libvirt

from ..strenum import StrEnum
from .errors import NO_DOMAIN, OPERATION_INVALID


class Activity(StrEnum):
    """What is under way on a domain, as far as its state is concerned."""
    SETTLED = "settled"      # no job that changes its state: it is as it is
    ARRIVING = "arriving"    # an incoming migration has not finished
    LEAVING = "leaving"      # an outgoing migration is under way
    SAVING = "saving"        # a save (a hibernation) is under way


_BY_OPERATION = {
    libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN: Activity.ARRIVING,
    libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT: Activity.LEAVING,
    libvirt.VIR_DOMAIN_JOB_OPERATION_SAVE: Activity.SAVING,
}


def activity_of(dom):
    """The domain's Activity (see the module's docstring for the rule). A
    domain gone meanwhile is SETTLED: there is nothing left to wait for."""
    try:
        code, reason = dom.state()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == NO_DOMAIN:
            return Activity.SETTLED
        raise
    if code == libvirt.VIR_DOMAIN_PAUSED and \
            reason == libvirt.VIR_DOMAIN_PAUSED_SAVE:
        return Activity.SAVING
    if code not in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED,
                    libvirt.VIR_DOMAIN_BLOCKED):
        return Activity.SETTLED
    try:
        stats = dom.jobStats()
    except libvirt.libvirtError as exc:
        code = exc.get_error_code()
        if code == libvirt.VIR_ERR_OPERATION_UNSUPPORTED:
            return Activity.ARRIVING   # the destination's answer (above)
        if code in (NO_DOMAIN, OPERATION_INVALID):
            return Activity.SETTLED    # gone or stopped meanwhile
        raise
    if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == \
            libvirt.VIR_DOMAIN_JOB_NONE:
        return Activity.SETTLED
    return _BY_OPERATION.get(stats.get("operation"), Activity.SETTLED)


def resume_if_stopped_by_migration(dom):
    """A source domain whose migration failed or was aborted after its
    vCPUs were stopped (the switch-over had begun: QEMU's `postmigrate`)
    stays paused, reason MIGRATION, with no job: the guest then runs
    nowhere. Resume it; True if it was resumed. Left alone: a domain with a
    job (the migration still under way), or paused for another reason (a
    user's pause is the engine's)."""
    code, reason = dom.state()
    if code != libvirt.VIR_DOMAIN_PAUSED or \
            reason != libvirt.VIR_DOMAIN_PAUSED_MIGRATION:
        return False
    if activity_of(dom) is not Activity.SETTLED:
        return False
    dom.resume()
    return True
