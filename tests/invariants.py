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
    - the list verbs show exactly the public VMs (in either publish mode:
      nothing is staged to be listed);
    - every public VM has a domain in the matching (running, paused) state;
    - every libvirt domain that is ours (vmjobs metadata, or the UUID of a
      migration we were asked to receive whose end may have left it here
      unmarked) is public, or reported by
      Host.getStats: stopped_domains (defined, not running: recovery
      leaves it alone) or unowned_domains (running in no registry: a
      failed recovery, an arrived migration its job could not commit);
    - the host paths held (hostpaths.py) are public VMs' only: a VM that
      left (its domain gone) or a job that ended without a commit gave
      its paths back;
    - every job ended, in a legal state, by legal moves;
    - the caller's files (path -> sha256: state files given to restores,
      files that were there before a hibernation) are unchanged.
    Returns the public VMs' ids."""
    assert api.pool.wait_idle(WAIT), "the pool never went quiet"
    assert api.registry.snapshot()[0] == [], "a VM is still staged"
    public = {vm.vm_id: vm for vm in api.registry.snapshot()[1]}
    listed = sorted(api.Host.getVMList())
    assert listed == sorted(public), \
        f"the list verbs show {listed}, the public VMs are {sorted(public)}"
    domains = {d.uuid: d for d in api.hv.list_domains(domxml.METADATA_NS)}
    for vm_id, vm in public.items():
        domain = domains.get(vm_id)
        assert domain is not None, f"public VM {vm_id} has no domain"
        assert domain.state == DOMAIN_STATE[vm.status], \
            f"VM {vm_id} is {vm.status} but its domain is {domain.state}"
        assert vm.job is None, f"public VM {vm_id} still has job {vm.job}"
    holders = set(api.registry.held_paths())
    assert holders <= set(public), \
        f"VMs gone still hold host paths: {holders - set(public)}"
    # A migration we were asked to receive whose end may have left its
    # domain unmarked (not one whose end found nothing here).
    received = {job.vm_id for job in api.jobs.jobs()
                if job.job_type == "migration-destination" and
                job.may_have_left_unmarked}
    stopped, unowned = set(), set()
    for uuid, domain in domains.items():
        if uuid in public or (domain.metadata is None and
                              uuid not in received):
            continue
        (stopped if domain.state == "shutoff" else unowned).add(uuid)
    stats = api.Host.getStats()
    assert (stats["stopped_domains"], stats["unowned_domains"]) == (
        len(stopped), len(unowned)), \
        f"domains of ours in no registry not all reported: {stats}"
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
