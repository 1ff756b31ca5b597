"""Live migration as the adapter sees it: the flags a source migrates
with, and what libvirt's job stats and a domain's pause reason say about a
migration under way (measured on two sandboxes)."""

import libvirt

from .errors import NO_DOMAIN, OPERATION_INVALID

# Live, peer to peer (the source libvirtd drives it, as VDSM does), the
# domain persistent on the destination (so that a destination whose service
# is down meanwhile recovers it as it is) and undefined here once it left
# (a vmjobs domain is persistent: without it a shut-off copy would stay).
MIGRATE_FLAGS = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER |
                 libvirt.VIR_MIGRATE_PERSIST_DEST |
                 libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)

_MIGRATIONS = (libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN,
               libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT)

# No job stats: the domain is gone or stopped, or the driver has none.
_NO_STATS = (NO_DOMAIN, OPERATION_INVALID, libvirt.VIR_ERR_NO_SUPPORT,
             libvirt.VIR_ERR_OPERATION_UNSUPPORTED)


def migrate_params(migration_uri=None, max_bandwidth=None):
    params = {}
    if migration_uri:
        params[libvirt.VIR_MIGRATE_PARAM_URI] = migration_uri
    if max_bandwidth:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = max_bandwidth
    return params


def abort_migration(dom):
    """Abort the domain's running job; False if it has none (not yet, or
    no more): libvirt answers OPERATION_INVALID then."""
    try:
        dom.abortJob()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == OPERATION_INVALID:
            return False
        raise
    return True


def job_stats(conn, uuid):
    """The domain's job stats, or None if it has no job (or no stats)."""
    try:
        stats = conn.lookupByUUIDString(uuid).jobStats()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in _NO_STATS:
            return None
        raise
    if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == \
            libvirt.VIR_DOMAIN_JOB_NONE:
        return None
    return stats


def outgoing_progress(stats):
    """Percent (0-99) of an outgoing migration from its job stats; None if
    the stats are not of one. (100 is the caller's to say, once the
    migration call returned: no data remains a moment before it ends.)"""
    if stats is None or stats.get("operation") != \
            libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT:
        return None
    total = stats.get(libvirt.VIR_DOMAIN_JOB_DATA_TOTAL, 0)
    remaining = stats.get(libvirt.VIR_DOMAIN_JOB_DATA_REMAINING, 0)
    if not total:
        return 0
    return min(99, 100 - 100 * remaining // total)
