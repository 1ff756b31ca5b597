"""The service's figures agree with each other and with the events, in
the races that end a job before its verb answered: Host.getStats' jobs
counts (the pool's), vmjobs_jobs_total (the job table's), Host.getJobs and
the job's own events."""

import threading

from conftest import WAIT, new_id, vm_params
from faults import FaultyHypervisor
from vmjobs.errors import MigrateError
from vmjobs.notifications import JOB_STATUS
from vmjobs.registry import VmStatus


def domain_xml(vm_id):
    return (f"<domain type='test'><name>in-{vm_id[:8]}</name>"
            f"<uuid>{vm_id}</uuid><memory unit='MiB'>64</memory>"
            "<os><type>hvm</type></os></domain>")


def aborted_total(api):
    for line in api.metrics.render().decode().splitlines():
        if line.startswith("vmjobs_jobs_total{") and \
                'status="aborted"' in line:
            return float(line.split()[-1])
    return 0.0


def migration_create(api, vm_id, answers):
    try:
        answers.append(api.VM.migrationCreate(
            vm_id, {"vmId": vm_id, "xml": domain_xml(vm_id)}))
    except MigrateError as exc:
        answers.append(exc)


def test_a_job_destroyed_before_its_verb_answered_is_counted_once_everywhere(
        hypervisor, make_api):
    # VM.migrationCreate's reservation stages the vmId, then looks for a
    # domain with its UUID (a libvirt call): held there, the staged VM
    # names its job, and a VM.destroy aborts it before it is queued.
    faulty = FaultyHypervisor(hypervisor, fail_calls=("state",))
    api = make_api(hv=faulty)
    assert api.wait_recovered(WAIT)
    with api.subscribe() as events:
        vm_id = new_id()
        faulty.arm(1, kind="hang")
        answers = []
        verb = threading.Thread(target=migration_create,
                                args=(api, vm_id, answers))
        verb.start()
        assert faulty.hanging.wait(WAIT)
        job = api.registry.get(vm_id).job
        assert api.VM.destroy(vm_id) is True
        assert job.status == "aborted"
        faulty.release.set()
        verb.join(WAIT)
        (answer,) = answers
        assert isinstance(answer, MigrateError)   # never success
        # Listed, counted by the pool and the metrics alike, and its end
        # notified: before, the pool never heard of it (0 aborted against
        # the metrics' 1) and no event said it ended.
        assert api.Host.getJobs()[job.id]["status"] == "aborted"
        assert api.Host.getStats()["jobs_aborted"] == 1
        assert aborted_total(api) == 1
        ended = [e for e in events.get(0)
                 if e.method == JOB_STATUS + job.id]
        assert [e.params[job.id]["status"] for e in ended] == ["aborted"]
    # The positive control: the same verb, not destroyed, is queued and
    # counted as it runs (no second count of the first).
    faulty.arm(None)
    other = new_id()
    answer = api.VM.migrationCreate(
        other, {"vmId": other, "xml": domain_xml(other)})
    assert api.Job.abort(answer["params"]["jobId"]) is True
    assert api.jobs.get(answer["params"]["jobId"]).wait(WAIT)
    assert api.Host.getStats()["jobs_aborted"] == 2
    assert aborted_total(api) == 2


def test_a_vm_started_while_host_stats_lists_the_domains_is_not_unowned(
        hypervisor, make_api):
    # Host.getStats reads the registries, then lists libvirt's domains
    # (held here, a hanging call); a VM created meanwhile has its domain
    # in that listing. Before, it was counted unowned (a VM of ours
    # running in no registry): public 0, unowned_domains 1.
    faulty = FaultyHypervisor(hypervisor, fail_calls=("list_domains",))
    api = make_api(hv=faulty)
    assert api.wait_recovered(WAIT)
    faulty.arm(1, kind="hang")
    stats = []
    reader = threading.Thread(
        target=lambda: stats.append(api.Host.getStats()))
    reader.start()
    assert faulty.hanging.wait(WAIT)
    vm_id = new_id()
    job_id = api.VM.create(vm_id, vm_params(vm_id))["jobId"]
    assert api.jobs.get(job_id).wait(WAIT)
    faulty.release.set()
    reader.join(WAIT)
    (during,) = stats
    # As the registries were when it began: no VM of ours, none unowned.
    assert (during["public"], during["unowned_domains"]) == (0, 0), during
    # The positive control: read again, the VM is public, still not
    # unowned; and a domain of ours truly in no registry is.
    after = api.Host.getStats()
    assert (after["public"], after["unowned_domains"]) == (1, 0), after
    # (Its guest said stopped, as the guest watch would: it leaves the
    # registry, and its domain, running on the test driver, is left.)
    api.registry.guest_changed(vm_id, api.registry.idle(vm_id),
                               VmStatus.DOWN)
    gone = api.Host.getStats()
    assert (gone["public"], gone["unowned_domains"]) == (0, 1), gone
