"""The promise of transactional startup, as one check: from outside, a VM
is fully up and public, or absent. Every reliability test ends with it."""

import hashlib

from vmjobs import domxml
from workers import ENDED, TRANSITIONS, JobStatus

WAIT = 120

# What a public VM's status says its domain must be doing.
DOMAIN_STATE = {"Up": "running", "Paused": "paused"}


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def check_invariants(api, state_files=None):
    """Once the system is quiet:
    - the staging registry is empty, and no VM is in both registries;
    - every public VM has a domain in the matching state;
    - every libvirt domain with vmjobs metadata is public, or defined but
      stopped (which recovery reports and leaves alone);
    - every job ended, in a legal state, by legal moves;
    - the state files given to restores (path -> sha256) are unchanged.
    Returns the public VMs' ids."""
    assert api.pool.wait_idle(WAIT), "the pool never went quiet"
    assert api.registry.staged() == [], "a VM is still staged"
    public = {vm.vm_id: vm for vm in api.registry.public()}
    domains = {d.uuid: d for d in api.hv.list_domains(domxml.METADATA_NS)}
    for vm_id, vm in public.items():
        domain = domains.get(vm_id)
        assert domain is not None, f"public VM {vm_id} has no domain"
        assert domain.state == DOMAIN_STATE[vm.status], \
            f"VM {vm_id} is {vm.status} but its domain is {domain.state}"
        assert vm.job is None, f"public VM {vm_id} still has job {vm.job}"
    for uuid, domain in domains.items():
        if domain.metadata is None:
            continue
        assert uuid in public or domain.state == "shutoff", \
            f"vmjobs domain {uuid} is {domain.state} but not public"
    for job in api.jobs.jobs():
        assert job.wait(WAIT), f"job {job.id} never ended"
        history = job.history()
        assert history[0] is JobStatus.PENDING, history
        assert history[-1] in ENDED, history
        for old, new in zip(history, history[1:], strict=False):
            assert new in TRANSITIONS[old], f"job {job.id}: {history}"
    for path, sha in (state_files or {}).items():
        assert digest(path) == sha, f"state file {path} was changed"
    return set(public)
