"""The adaptive admission limit in the pool and in the service: every
admitted job that ends done is a sample for the controller, whose limit the
pool applies at once (within 1..workers); failed jobs are no sample; with
`[pool] adaptive` a storm comes up as before, without it nothing changes.

The pool is driven by a scripted controller here (the adaptive one reads
real run times, which a test cannot fix); test_adaptive_limit.py tests the
adaptive one on simulated hosts."""

import threading
import time

from conftest import WAIT, GateJob, new_id, vm_params
from workers import Job, Pool


class Heavy(GateJob):
    admission = True
    job_type = "heavy"


class Failing(Job):
    admission = True

    def run(self):
        raise RuntimeError("no sample from a failure")


class Scripted:
    """A controller that records its samples and answers the limits it is
    given, one per sample."""

    def __init__(self, first, answers):
        self.limit = first
        self.answers = list(answers)
        self.samples = []
        self.sampled = threading.Event()

    def sample(self, now, seconds, inflight, waiting=0, kind=None):
        self.samples.append((seconds, inflight, waiting, kind))
        if self.answers:
            self.limit = self.answers.pop(0)
        self.sampled.set()
        return self.limit


def test_each_done_job_is_a_sample_and_its_answer_the_new_limit():
    controller = Scripted(1, [3, 99])
    with Pool(4, 10, admission_controller=controller) as pool:
        assert pool.admission_limit == 1
        jobs = [Heavy() for _ in range(4)]
        for job in jobs:
            pool.submit(job)
        assert jobs[0].started.wait(WAIT)
        assert not jobs[1].started.is_set()       # the limit is 1
        released = time.monotonic()
        jobs[0].release.set()
        for job in jobs[1:4]:                     # now 3 at once
            assert job.started.wait(WAIT)
        assert pool.admission_limit == 3
        assert pool.stats()["running"] == 3
        jobs[1].release.set()
        assert jobs[1].wait(WAIT)
        # The controller asked for 99: the pool holds it to its workers.
        assert pool.admission_limit == 4
        for job in jobs[2:]:
            job.release.set()
        assert pool.wait_idle(WAIT)
    seconds, inflight, waiting, kind = controller.samples[0]
    # It ran from its start until at least its release.
    assert seconds >= released - jobs[0].started_monotonic
    assert kind == "heavy"
    assert inflight == 1 and waiting == 1         # jobs[0], with 3 queued
    assert len(controller.samples) == 4


def test_a_failed_job_is_no_sample():
    controller = Scripted(2, [])
    with Pool(2, 10, admission_controller=controller) as pool:
        job = Failing()
        pool.submit(job)
        assert job.wait(WAIT)
        assert pool.wait_idle(WAIT)
    assert job.status == "failed"
    assert controller.samples == []


def test_a_storm_comes_up_with_the_adaptive_limit(make_api):
    api = make_api(workers=4, adaptive=True)
    ids = [new_id() for _ in range(60)]
    for vm_id in ids:
        api.VM.create(vm_id, vm_params(vm_id))
    assert api.pool.wait_idle(WAIT)
    assert sorted(api.Host.getVMList()) == sorted(ids)
    assert 1 <= api.Host.getStats()["admission_limit"] <= 4


def test_without_adaptive_nothing_asks_for_admission(make_api):
    api = make_api(workers=3)
    vm_id = new_id()
    job_id = api.VM.create(vm_id, vm_params(vm_id))["jobId"]
    assert api.pool.wait_idle(WAIT)
    assert api.jobs.get(job_id).admission is False
    assert api.Host.getStats()["admission_limit"] == 3


def test_a_lower_limit_takes_effect_for_the_next_jobs():
    controller = Scripted(2, [1])
    with Pool(3, 10, admission_controller=controller) as pool:
        running = [Heavy(), Heavy()]
        for job in running:
            pool.submit(job)
        for job in running:
            assert job.started.wait(WAIT)
        running[0].release.set()      # its sample lowers the limit to 1
        assert running[0].wait(WAIT)
        assert pool.admission_limit == 1
        waiting, light = Heavy(), GateJob()
        pool.submit(waiting)
        pool.submit(light)
        assert light.started.wait(WAIT)      # a worker was free
        assert not waiting.started.is_set()  # still 1 admitted: running[1]
        running[1].release.set()
        assert waiting.started.wait(WAIT)
        for job in (light, waiting):
            job.release.set()
