"""Priorities without starvation: HIGH jobs run ahead of queued NORMAL
ones (each class has the queue's bound to itself:
test_pool_refuses_when_full.py), and a NORMAL job still runs while HIGH
work never stops coming (lanes.py states the rule)."""


from conftest import WAIT, GateJob
from workers import Job, Pool, Priority


class Recorded(Job):
    def __init__(self, order, priority=Priority.NORMAL, then=None):
        super().__init__()
        self.priority = priority
        self.order = order
        self.then = then

    def run(self):
        self.order.append(self)
        if self.then is not None:
            self.then(self)


def hold_the_worker(pool):
    gate = GateJob()
    pool.submit(gate)
    assert gate.started.wait(WAIT)
    return gate


def test_high_runs_ahead_of_queued_normal():
    order = []
    with Pool(workers=1, queue_size=10) as pool:
        gate = hold_the_worker(pool)
        normal = [Recorded(order) for _ in range(3)]
        high = [Recorded(order, Priority.HIGH) for _ in range(2)]
        for job in normal + high:
            pool.submit(job)
        gate.release.set()
    assert order == high + normal


def test_normal_job_cannot_starve_under_endless_high_work():
    # Every HIGH job queues another one as it runs: HIGH work never stops
    # while the NORMAL jobs wait. Each NORMAL one still goes after at most
    # starvation_limit HIGH takes.
    limit = 4
    order = []
    normal = [Recorded(order) for _ in range(3)]
    with Pool(workers=1, queue_size=20, starvation_limit=limit) as pool:
        def more_high(job):
            if not all(n in order for n in normal):
                pool.submit(Recorded(order, Priority.HIGH, then=more_high))

        gate = hold_the_worker(pool)
        for job in normal:
            pool.submit(job)
        for _ in range(3):
            pool.submit(Recorded(order, Priority.HIGH, then=more_high))
        gate.release.set()
        for job in normal:
            assert job.wait(WAIT)
        assert pool.wait_idle(WAIT)
    positions = [order.index(job) for job in normal]
    assert positions == [limit, 2 * limit + 1, 3 * limit + 2]
    assert all(job.priority == Priority.HIGH
               for i, job in enumerate(order[:positions[-1]])
               if i not in positions)
