"""The admission gate (workers.admission): at most `limit` jobs in their
heavy steps at once whatever the workers, a limit that moves at run time,
an abort that reaches a job waiting for admission; and the service with
`[pool] adaptive` on, whose storms come up as before."""

import threading

from conftest import WAIT, new_id, vm_params
from workers import Admission, AdaptiveLimit, Job, Pool


class Heavy(Job):
    """Holds admission until released; records how many held it at once."""

    def __init__(self, probe):
        super().__init__()
        self.probe = probe
        self.release = threading.Event()

    def run(self):
        self.step("before")
        with self.admitted():
            self.probe.entered(self)
            assert self.release.wait(WAIT)
            self.probe.left()
        self.step("after")


class Probe:
    """Counts the jobs inside their heavy steps; tests wait on it."""

    def __init__(self):
        self._lock = threading.Lock()   # guards inside, most, jobs
        self._changed = threading.Condition(self._lock)
        self.inside, self.most, self.jobs = 0, 0, []

    def entered(self, job):
        with self._lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
            self.jobs.append(job)
            self._changed.notify_all()

    def left(self):
        with self._lock:
            self.inside -= 1

    def wait_inside(self, n):
        with self._lock:
            assert self._changed.wait_for(lambda: len(self.jobs) >= n, WAIT)
            return list(self.jobs)


def test_at_most_limit_jobs_run_their_heavy_steps():
    gate = Admission(2)
    probe = Probe()
    with Pool(4, 10, admission=gate) as pool:
        jobs = [Heavy(probe) for _ in range(6)]
        for job in jobs:
            pool.submit(job)
        for done in range(0, 6, 2):
            inside = probe.wait_inside(done + 2)
            assert gate.stats()["admitted"] == 2
            for job in inside[done:done + 2]:
                job.release.set()
        assert pool.wait_idle(WAIT)
    assert probe.most == 2
    assert all(job.status == "done" for job in jobs)
    assert pool.stats()["admission_limit"] == 2


def test_a_raised_limit_admits_waiting_jobs_at_once():
    gate = Admission(1)
    probe = Probe()
    with Pool(3, 10, admission=gate) as pool:
        jobs = [Heavy(probe) for _ in range(3)]
        for job in jobs:
            pool.submit(job)
        probe.wait_inside(1)
        gate.set_limit(3)
        probe.wait_inside(3)
        for job in jobs:
            job.release.set()
        assert pool.wait_idle(WAIT)
    assert probe.most == 3


def test_a_job_aborted_while_waiting_for_admission_ends_aborted():
    gate = Admission(1)
    probe = Probe()
    with Pool(2, 10, admission=gate) as pool:
        first, second = Heavy(probe), Heavy(probe)
        pool.submit(first)
        probe.wait_inside(1)
        pool.submit(second)
        second.abort()
        assert second.wait(WAIT)
        assert second.status == "aborted"
        first.release.set()
        assert pool.wait_idle(WAIT)
    assert first.status == "done"
    assert gate.stats() == {"admission_limit": 1, "admitted": 0,
                            "admission_waiting": 0}


def test_the_controller_moves_the_limit_from_what_leaves_the_gate():
    """Jobs that take the same time at any parallelism: every round says
    "no slowdown", and the limit grows from 1 to the ceiling."""
    now = [0.0]
    gate = Admission(4, AdaptiveLimit(4), clock=lambda: now[0])
    assert gate.limit == 1
    for _ in range(12):
        holds = [gate.hold(kind="k") for _ in range(gate.limit)]
        for held in holds:
            held.__enter__()
        now[0] += 1.0
        for held in holds:
            held.__exit__(None, None, None)
    assert gate.limit == 4


def test_a_storm_comes_up_with_the_adaptive_limit(make_api):
    api = make_api(workers=4, adaptive=True)
    ids = [new_id() for _ in range(60)]
    for vm_id in ids:
        api.VM.create(vm_id, vm_params(vm_id))
    assert api.pool.wait_idle(WAIT)
    assert sorted(api.Host.getVMList()) == sorted(ids)
    stats = api.Host.getStats()
    assert 1 <= stats["admission_limit"] <= 4


def test_without_adaptive_the_limit_is_the_workers(make_api):
    api = make_api(workers=3)
    assert api.pool.admission is None
    assert api.Host.getStats()["admission_limit"] == 3
