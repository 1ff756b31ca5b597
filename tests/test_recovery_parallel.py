"""Recovery at start-up runs its recover jobs in parallel on the pool:
every worker holds one at once (VDSM recovers one domain at a time)."""

import threading

from conftest import WAIT, new_id, vm_params

WORKERS = 4
DOMAINS = 3 * WORKERS


def test_recover_jobs_run_on_every_worker_at_once(make_api):
    first = make_api(queue_size=DOMAINS)
    for _ in range(DOMAINS):
        vm_id = new_id()
        first.VM.create(vm_id, vm_params(vm_id))
    assert first.pool.wait_idle(WAIT)
    first.close()   # leaves its VMs running, for the next one to recover

    # Each recover job, at its first step, waits for WORKERS of them to be
    # there at once: only jobs that run in parallel get past it.
    # (The first WORKERS to arrive wait; the others pass.)
    together = threading.Barrier(WORKERS)
    lock = threading.Lock()   # guards arrived
    arrived = []
    met = []

    def hold(job, step):
        if job.job_type != "recover" or step != "read-domain":
            return
        with lock:
            arrived.append(job.id)
            first = len(arrived) <= WORKERS
        if first:
            together.wait(WAIT)
            met.append(job.id)

    api = make_api(step_hook=hold, workers=WORKERS, queue_size=DOMAINS)
    assert api.wait_recovered(WAIT)
    assert not together.broken
    assert len(met) == WORKERS and len(arrived) == DOMAINS
    assert api.Host.getStats()["public"] == DOMAINS
    assert {info["status"] for info in
            api.Host.getJobs(job_type="recover").values()} == {"done"}
