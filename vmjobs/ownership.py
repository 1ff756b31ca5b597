"""Is this domain ours? The one answer, for every module that must never
touch a domain vmjobs did not make or receive.

vmjobs' mark is its metadata element (domxml.METADATA_NS, which carries
the vmId and the engine's params, what recovery needs). A domain vmjobs
defines carries it from its definition (domxml.compose); a restored or
received one is given it before its commit (`mark`); a guest a vmjobs
source migrates here brings its source's (libvirt sends the domain's XML
whole: measured on two daemons, even for a guest that arrives after its
job here ended). Recovery adopts marked domains only (API.md, Recovery).

A domain is ours when it carries the mark, or when its UUID is that of a
migration we were asked to receive whose job, still listed, may have left
it here unmarked (MigrationDestinationJob.may_have_left_unmarked: an
arrived guest it could not mark, a removal that failed at its end). Any
other domain is someone else's (an operator's, another tool's, a guest
sent late by a source that is not vmjobs): external, never touched.

The functions read or write the mark alone; `Ownership` adds the received
migrations, which only the job table knows. This module imports no flow:
the flows call it (flows/base.py, incoming.py), and the job table's type
of the received migrations is given by whoever has both (api.py)."""

from workers import JobStatus

from . import domxml


def list_domains(hv, skip=frozenset()):
    """Every domain (Hypervisor.list_domains) but those in `skip`, each
    with our mark where it carries one (DomainInfo.metadata)."""
    return hv.list_domains(domxml.METADATA_NS, skip=skip)


def marked_domains(hv):
    """Every domain that carries our mark (DomainInfo, from one listing)."""
    return [domain for domain in list_domains(hv)
            if domain.metadata is not None]


def read_mark(hv, vm_id):
    """Our mark on domain `vm_id` as libvirt returns it (for
    domxml.read_metadata), or None if it carries none; DomainNotFound if
    there is no such domain."""
    return hv.metadata(vm_id, domxml.METADATA_NS)


def carries_mark(hv, vm_id):
    """True if domain `vm_id` carries our mark; DomainNotFound if there is
    no such domain."""
    return read_mark(hv, vm_id) is not None


def mark(hv, vm_id, params):
    """Mark domain `vm_id` as ours, with its vmId and `params`, live and in
    its definition (it is still known as ours once it stops, and recovered
    after a restart); a mark it carries is replaced."""
    hv.set_metadata(vm_id, domxml.METADATA_NS, domxml.METADATA_PREFIX,
                    domxml.metadata_element(vm_id, params))


class Ownership:
    """The whole rule: the mark, or a received migration that may have
    left its domain unmarked. `jobs`: the job table; `received_type`: the
    job_type of the migrations we are asked to receive."""

    def __init__(self, hv, jobs, received_type):
        self._hv = hv
        self._jobs = jobs
        self._received_type = received_type

    def received_unmarked_ids(self):
        """The vmIds of the received migrations still listed that did not
        commit and whose end may have left a domain here unmarked. Only
        those jobs are read (the table is indexed by type), not the whole
        table."""
        return {job.vm_id for job in self._jobs.of_type(self._received_type)
                if job.status is not JobStatus.DONE and
                job.may_have_left_unmarked}

    def look(self, skip=frozenset()):
        """(ours, external): the domains that are ours (DomainInfo, from one
        listing) and how many are not, of every domain but those in `skip`.
        The received migrations are read only if a domain without the mark
        asks, and once: what a look costs grows with the domains that are
        not VMs of ours, not with the host's jobs."""
        ours, external = [], 0
        received = None
        for domain in list_domains(self._hv, skip=skip):
            if domain.metadata is None:
                if received is None:
                    received = self.received_unmarked_ids()
                if domain.uuid not in received:
                    external += 1
                    continue
            ours.append(domain)
        return ours, external

    def owns(self, vm_id):
        """True if domain `vm_id` is ours; DomainNotFound if there is no
        such domain."""
        return carries_mark(self._hv, vm_id) or \
            vm_id in self.received_unmarked_ids()
