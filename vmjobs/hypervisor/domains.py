"""Domains as vmjobs sees them: their states, what a listing says of
each, what a new guest is made of on a connection, and how one is
removed."""

import dataclasses
import logging
import xml.etree.ElementTree as ET

import libvirt

from ..strenum import StrEnum
from .errors import NO_DOMAIN, OPERATION_INVALID, HypervisorError, ignoring

log = logging.getLogger("vmjobs.hypervisor")


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


# Why a paused domain is paused, where it matters: an incoming migration's
# domain is paused for MIGRATION until the transfer is over.
PAUSED_MIGRATION = "migration"
PAUSED_OTHER = "other"
_ARRIVING = (libvirt.VIR_DOMAIN_PAUSED_MIGRATION,
             libvirt.VIR_DOMAIN_PAUSED_STARTING_UP)


def state_of(dom):
    return _STATES.get(dom.state()[0], DomainState.OTHER)


def state_and_reason_of(dom):
    """(state, reason): for a paused domain why (PAUSED_MIGRATION or
    PAUSED_OTHER), else None."""
    code, reason = dom.state()
    state = _STATES.get(code, DomainState.OTHER)
    if state is not DomainState.PAUSED:
        return state, None
    # An incoming domain is paused STARTING_UP before it is paused for the
    # MIGRATION (measured on two sandboxes: B shows [3, 11], then [3, 2]):
    # both mean "still arriving".
    return state, (PAUSED_MIGRATION if reason in _ARRIVING else PAUSED_OTHER)


def lookup(conn, uuid):
    """The domain with this UUID, or None if there is none."""
    try:
        return conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == NO_DOMAIN:
            return None
        raise


def remove_domain(dom, graceful_attempts, undefine_flags):
    """Stop `dom` (first `graceful_attempts` graceful destroys, then the
    forced one) and, unless `undefine_flags` is None, undefine it with
    them. A part already gone is fine: removal is idempotent, so that a
    caller may repeat it after a lost connection."""
    for attempt in range(graceful_attempts):
        try:
            dom.destroyFlags(libvirt.VIR_DOMAIN_DESTROY_GRACEFUL)
            break
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in (NO_DOMAIN, OPERATION_INVALID):
                break   # stopped already
            log.info("graceful destroy %d of %d of %s: %s",
                     attempt + 1, graceful_attempts, dom.UUIDString(), exc)
    ignoring(dom.destroy, NO_DOMAIN, OPERATION_INVALID)
    if undefine_flags is not None:
        ignoring(lambda: dom.undefineFlags(undefine_flags), NO_DOMAIN,
                 OPERATION_INVALID)


@dataclasses.dataclass(frozen=True)
class GuestKind:
    """What a new minimal guest is made of on this connection."""
    domain_type: str   # test, kvm or qemu
    arch: str
    machine: str | None


@dataclasses.dataclass(frozen=True)
class DomainInfo:
    uuid: str
    state: DomainState
    metadata: str | None   # our metadata element, if the domain has it


# Domains per state request: libvirt takes at most 16,384 in one.
_STATES_PER_REQUEST = 1024


def states_of(conn, domains):
    """{uuid: DomainState} of `domains`, in one request per
    _STATES_PER_REQUEST of them rather than one each; a domain gone since
    it was listed is missing from it."""
    states = {}
    for i in range(0, len(domains), _STATES_PER_REQUEST):
        for dom, stats in conn.domainListGetStats(
                domains[i:i + _STATES_PER_REQUEST],
                libvirt.VIR_DOMAIN_STATS_STATE):
            states[dom.UUIDString()] = _STATES.get(
                stats.get("state.state"), DomainState.OTHER)
    return states


def domain_info(dom, state, metadata_ns):
    """What a listing says of `dom`, whose `state` was read with the
    others' (None: it was gone by then)."""
    try:
        if state is not None:
            return DomainInfo(uuid=dom.UUIDString(), state=state,
                              metadata=metadata_of(dom, metadata_ns))
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != NO_DOMAIN:
            raise
    # Gone between the listing and this look: report it as stopped,
    # which is what is left of it.
    return DomainInfo(dom.UUIDString(), DomainState.SHUTOFF, None)


def metadata_of(dom, metadata_ns):
    try:
        return dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, metadata_ns)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
            return None
        raise


def set_metadata_of(dom, metadata_ns, prefix, element_xml):
    """Set our metadata element, live and (if persistent) in the config."""
    flags = libvirt.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0
    if dom.isPersistent():
        flags |= libvirt.VIR_DOMAIN_AFFECT_CONFIG
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, element_xml,
                    prefix, metadata_ns, flags)


def guest_kind(capabilities_xml, uri, wanted=None):
    """The guest to make on a connection with these capabilities: of type
    `wanted` (kvm, qemu, test), or the fastest offered; the host's own
    architecture first."""
    caps = ET.fromstring(capabilities_xml)
    host_arch = caps.findtext("host/cpu/arch")
    candidates = []
    for guest in caps.findall("guest"):
        if guest.findtext("os_type") != "hvm":
            continue
        arch = guest.find("arch")
        types = {d.get("type") for d in arch.findall("domain")}
        machines = [m.text for m in arch.findall("machine")]
        for rank, kind in enumerate(("kvm", "qemu", "test")):
            if kind in types and wanted in (None, kind):
                machine = "pc" if "pc" in machines else (
                    machines[0] if machines else None)
                candidates.append(
                    (arch.get("name") != host_arch, rank,
                     GuestKind(kind, arch.get("name"), machine)))
    if not candidates:
        raise HypervisorError("capabilities", libvirt.VIR_ERR_NO_SUPPORT,
                              f"{uri} offers no hvm guest of type "
                              f"{wanted or 'kvm, qemu or test'}")
    return min(candidates, key=lambda c: c[:2])[2]
