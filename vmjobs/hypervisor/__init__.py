"""The libvirt adapter: the one package of the core that imports libvirt.

    adapter       Hypervisor: the verbs, by domain UUID
    connections   the connections, and how a call gets one (pooled on a
                  daemon, shared on the test driver, reopened when lost)
    events        libvirt's event loop, lifecycle events to subscribers
    drivers       what differs between a daemon and the test driver
    domains       domain states, listings, guest kinds
    migration     live migration: flags, job stats, progress
    activity      what libvirt is doing to a domain (arriving, leaving,
                  saving, settled): the one rule that tells them apart
    errors        libvirtError translated into HypervisorError
"""

from .activity import Activity
from .adapter import Hypervisor
from .domains import PAUSED_MIGRATION, PAUSED_OTHER, DomainInfo, DomainState, GuestKind
from .errors import ConnectionLost, DomainNotFound, HypervisorError

__all__ = ["Activity", "ConnectionLost", "DomainInfo", "DomainNotFound", "DomainState",
           "GuestKind", "Hypervisor", "HypervisorError", "PAUSED_MIGRATION",
           "PAUSED_OTHER"]
