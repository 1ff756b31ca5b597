"""A simulated incoming migration, for libvirt's test driver, which cannot
migrate. The tests and the load test use it to play the source host; the
service never does.

It leaves on the destination what a real incoming migration leaves, in the
same order of events: the domain appears transient and paused while its
memory is transferred (STARTED, SUSPENDED), then resumes (RESUMED).

One difference remains: the test driver cannot start a domain paused, so
the domain runs for a moment before it is paused, and a job that looks in
that moment sees it running. A whole simulated migration ends running
anyway; a test of a half-arrived domain must hold the job's lookups while
begin_incoming_migration runs."""

from .. import domxml
from ..hypervisor.errors import translated


def create_transient(hv, domain_xml, paused=False):
    """Create and start a transient domain (what an incoming migration
    leaves on a destination)."""
    with hv.connection() as conn, translated("create"):
        dom = conn.createXML(domain_xml, 0)
        if paused:
            dom.suspend()


def resume(hv, uuid):
    with hv.connection() as conn, translated("resume"):
        conn.lookupByUUIDString(uuid).resume()


def begin_incoming_migration(hv, domain_xml):
    """The domain appears here, transient and paused (transfer running)."""
    create_transient(hv, domain_xml, paused=True)


def finish_incoming_migration(hv, vm_id):
    """The transfer is over: the domain resumes here."""
    resume(hv, vm_id)


def simulate_incoming_migration(hv, domain_xml):
    """A whole incoming migration of `domain_xml`'s domain."""
    begin_incoming_migration(hv, domain_xml)
    finish_incoming_migration(hv, domxml.domain_uuid(domain_xml))
