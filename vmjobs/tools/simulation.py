"""A simulated incoming migration, for libvirt's test driver, which cannot
migrate. The tests and the load test use it to play the source host; the
service never does.

A real incoming migration leaves its domain here PAUSED, reason MIGRATION,
while the memory is transferred, then RUNNING (RESUMED event), or PAUSED
for another reason (SUSPENDED event) if the VM was paused on the source.
The test driver can show neither that reason nor a domain started paused,
so the simulation stands in:

- during the transfer the domain is defined here and does not run (like
  the real one, it has not arrived, and an end of the job before arrival
  must remove it);
- a whole migration creates the domain transient and running; a paused
  one is then suspended (so it runs for a moment first: a test of a paused
  arrival holds the job's lookups meanwhile)."""

from ..hypervisor.errors import translated


def create_transient(hv, domain_xml, paused=False):
    """Create and start a transient domain (what an incoming migration
    leaves on a destination)."""
    with hv.connection() as conn, translated("create"):
        dom = conn.createXML(domain_xml, 0)
        if paused:
            dom.suspend()


def begin_incoming_migration(hv, domain_xml):
    """The domain appears here, not arrived yet (transfer running)."""
    hv.define(domain_xml)


def finish_incoming_migration(hv, vm_id, paused=False):
    """The transfer is over: the domain runs here (or is paused)."""
    hv.start(vm_id, paused=paused)


def simulate_incoming_migration(hv, domain_xml, paused=False):
    """A whole incoming migration of `domain_xml`'s domain."""
    create_transient(hv, domain_xml, paused=paused)
