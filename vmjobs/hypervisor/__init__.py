"""The libvirt adapter: the one package of the core that imports libvirt.

    adapter       Hypervisor: every call on a domain, by UUID (define,
                  start, state, remove, save, restore, list, metadata,
                  its XML, migrate, abort, job stats, resume, pause
                  anew), a network's bridge; NewDomain, a new domain's
                  define, start and state on one connection
    states        what libvirt's answers mean: domain states, pause
                  reasons (and which were asked for), Activity
                  (arriving, leaving, saving, settled) and the one rule
                  that tells them apart (has_arrived)
    connections   the connections, and how a call gets one (pooled on a
                  daemon, shared on the test driver, reopened when lost:
                  the only reconnect policy, reconnect_wait)
    events        libvirt's event loop, lifecycle events to subscribers
                  (of one domain) and watchers (of every domain)
    drivers       what differs between a daemon and the test driver
    errors        libvirtError translated into HypervisorError
"""

from .adapter import DomainInfo, GuestKind, Hypervisor
from .errors import ConnectionLost, DomainNotFound, HypervisorError
from .states import (
    Activity,
    DomainState,
    has_arrived,
    incoming_resumed,
    incoming_started,
    may_change_state,
)

__all__ = ["Activity", "ConnectionLost", "DomainInfo", "DomainNotFound",
           "DomainState", "GuestKind", "Hypervisor", "HypervisorError",
           "has_arrived", "incoming_resumed", "incoming_started",
           "may_change_state"]
