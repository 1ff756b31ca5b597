"""What libvirt's answers about a domain mean to vmjobs: its state, why
it is paused, what is under way on it (Activity), and the one rule that
tells an arriving migration from a restore, a save or a user pause. Pure
interpretation of the codes and job stats the adapter reads: no call here.

The rule (measured on two sandboxes). A domain's pause reason alone does
not say it: an incoming domain is paused STARTING_UP, then MIGRATION
([3, 11], then [3, 2]) until the transfer is over; but libvirt also leaves
a domain restored paused (VIR_DOMAIN_SAVE_PAUSED) with reason MIGRATION
([3, 2] after restoreFlags(SAVE_PAUSED), with no job), and so is a source
whose migration failed after its vCPUs were stopped (QEMU's
`postmigrate`). The domain's job says which: on the destination libvirt
refuses the job stats of an incoming migration with OPERATION_UNSUPPORTED
("migration statistics are available only on the source host",
qemuDomainGetJobStatsInternal), and a domain with no job reports type
NONE. A save in flight is a job of operation SAVE, and once its vCPUs are
stopped the domain is paused with reason SAVE (its state changes once the
save has ended: shut off when saved, running again when it failed).
Reading the state and the job stats never waits for QEMU while the job is
in these phases (libvirt answers from its own bookkeeping).

Job stats are read here too (Activity and a migration's progress both
come from them): type NONE is no job, whatever else they carry."""

import libvirt

from ..strenum import StrEnum
from .errors import NO_DOMAIN, OPERATION_INVALID


class DomainState(StrEnum):
    """A domain's state as vmjobs sees it (libvirt has eight)."""
    RUNNING = "running"
    PAUSED = "paused"
    SHUTOFF = "shutoff"
    OTHER = "other"


_STATES = {
    libvirt.VIR_DOMAIN_RUNNING: DomainState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: DomainState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: DomainState.PAUSED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: DomainState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTOFF: DomainState.SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: DomainState.SHUTOFF,
}


def domain_state(code):
    """The DomainState of libvirt's state `code`."""
    return _STATES.get(code, DomainState.OTHER)


# Why a paused domain is paused, as Hypervisor.state_reason() says it: for
# a migration (arriving, or a source stopped by one), or for any other
# reason (a user's pause, a restore asked paused...).
PAUSED_MIGRATION = "migration"
PAUSED_OTHER = "other"
_PAUSED_FOR_MIGRATION = (libvirt.VIR_DOMAIN_PAUSED_MIGRATION,
                         libvirt.VIR_DOMAIN_PAUSED_STARTING_UP)


# Lifecycle events that change a domain's definition, not its guest's
# state: every other one (started, paused, resumed, stopped, crashed...)
# may leave the guest in another state, which is read, not inferred from
# the event (an event may come late: from a domain since destroyed and
# made again with the same UUID).
_DEFINITION_EVENTS = (libvirt.VIR_DOMAIN_EVENT_DEFINED,
                      libvirt.VIR_DOMAIN_EVENT_UNDEFINED)


def may_change_state(event):
    """True if lifecycle event `event` may have changed the guest's
    state."""
    return event not in _DEFINITION_EVENTS


# The lifecycle events of an incoming migration on the destination: its
# start (libvirt's Prepare: STARTED/MIGRATED), and its end for a guest
# that runs (its Finish: RESUMED/MIGRATED). A guest paused on the source
# arrives with a SUSPENDED event, which only a migration followed since
# its start tells from a user's pause (measured on two daemons).
_INCOMING_STARTED = (libvirt.VIR_DOMAIN_EVENT_STARTED,
                     libvirt.VIR_DOMAIN_EVENT_STARTED_MIGRATED)
_INCOMING_RESUMED = (libvirt.VIR_DOMAIN_EVENT_RESUMED,
                     libvirt.VIR_DOMAIN_EVENT_RESUMED_MIGRATED)


def incoming_started(event, detail):
    """True for the event of an incoming migration's start here."""
    return (event, detail) == _INCOMING_STARTED


def incoming_resumed(event, detail):
    """True for the event of an incoming migration's end here, its guest
    running."""
    return (event, detail) == _INCOMING_RESUMED


def pause_reason(code, reason):
    """PAUSED_MIGRATION or PAUSED_OTHER for a paused domain (libvirt's
    state `code` and `reason`), else None."""
    if domain_state(code) is not DomainState.PAUSED:
        return None
    return PAUSED_MIGRATION if reason in _PAUSED_FOR_MIGRATION \
        else PAUSED_OTHER


# Pauses someone asked for: a user's or an engine's (virsh suspend, a
# start asked paused: USER) and a restore asked paused (MIGRATION, with no
# job: see above). A guest paused so may run for a moment when QEMU
# leaves no other way, and is paused again at once. Not a pause libvirt
# or QEMU made on their own (an I/O error, a watchdog, a guest's panic, a
# post-copy, a save's or a dump's): running the guest, even a moment,
# would retry or hide what paused it.
_PAUSED_BY_REQUEST = (libvirt.VIR_DOMAIN_PAUSED_USER,
                      libvirt.VIR_DOMAIN_PAUSED_MIGRATION)


def paused_by_request(code, reason):
    """True for a domain paused at someone's request (libvirt's state
    `code` and `reason`)."""
    return code == libvirt.VIR_DOMAIN_PAUSED and reason in _PAUSED_BY_REQUEST


def has_arrived(state, reason):
    """True once an incoming migration's domain (its DomainState and
    pause_reason) has finished arriving: it runs, or is paused for any
    reason but the migration (a VM paused on the source arrives paused,
    reason USER)."""
    return state is DomainState.RUNNING or (
        state is DomainState.PAUSED and reason != PAUSED_MIGRATION)


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


def activity_by_state(code, reason):
    """The Activity its state alone says (SAVING, or SETTLED for a domain
    that does not run); None when only its job can tell."""
    if code == libvirt.VIR_DOMAIN_PAUSED and \
            reason == libvirt.VIR_DOMAIN_PAUSED_SAVE:
        return Activity.SAVING
    if code not in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED,
                    libvirt.VIR_DOMAIN_BLOCKED):
        return Activity.SETTLED
    return None


def activity_by_job_error(code):
    """The Activity a refusal of the job stats (libvirt's error `code`)
    says; None if the refusal says nothing (the caller's to raise)."""
    if code == libvirt.VIR_ERR_OPERATION_UNSUPPORTED:
        return Activity.ARRIVING   # the destination's answer (above)
    if code in (NO_DOMAIN, OPERATION_INVALID):
        return Activity.SETTLED    # gone or stopped meanwhile
    return None


def activity_by_job(stats):
    """The Activity of a domain whose job stats are `stats`."""
    if not has_job(stats):
        return Activity.SETTLED
    return _BY_OPERATION.get(stats.get("operation"), Activity.SETTLED)


def has_job(stats):
    return stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) != \
        libvirt.VIR_DOMAIN_JOB_NONE


def outgoing_progress(stats):
    """Percent (0-99) of an outgoing migration from its job stats (None:
    no job); None if they are not of one. (100 is the caller's to say,
    once the migration call returned: no data remains a moment before it
    ends.)"""
    if stats is None or stats.get("operation") != \
            libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT:
        return None
    total = stats.get(libvirt.VIR_DOMAIN_JOB_DATA_TOTAL, 0)
    remaining = stats.get(libvirt.VIR_DOMAIN_JOB_DATA_REMAINING, 0)
    if not total:
        return 0
    return min(99, 100 - 100 * remaining // total)
