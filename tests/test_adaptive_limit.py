"""The adaptive admission limit (workers.adaptive) on simulated hosts
(tests/servicecurve.py): bounded, stable, near the best fixed limit on the
curve measured on real hosts, off the ceiling when the host saturates,
down when a neighbour comes and up again when it goes. Deterministic:
every run is a discrete-event simulation with a seed."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from servicecurve import knee, limits_between, measured_2_cores, slowed, storm
from workers.adaptive import AdaptiveLimit

START_S = 0.573   # one start alone, on the measured host


def steady(high):
    """A controller without its periodic probe at the floor (tested on its
    own below), so the limits seen are the ones it settles on."""
    return AdaptiveLimit(high, probe_interval=math.inf)


def best_fixed(speed, n, high, **kwargs):
    return min(storm(speed, n, limit=limit, **kwargs)[0]
               for limit in range(1, high + 1))


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 16), contention=st.floats(0, 0.3),
       high=st.integers(1, 32), sigma=st.floats(0, 0.5),
       seed=st.integers(0, 2**32))
def test_the_limit_stays_between_one_and_workers(k, contention, high, sigma,
                                                  seed):
    controller = AdaptiveLimit(high)
    _, trace = storm(knee(k, contention), 150, controller, sigma=sigma,
                     seed=seed)
    assert all(1 <= limit <= high for _, limit in trace)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_near_the_best_fixed_limit_on_the_measured_host(seed):
    speed = measured_2_cores()
    kwargs = dict(work=START_S, sigma=0.1, seed=seed)
    total, trace = storm(speed, 300, steady(32), **kwargs)
    assert total <= 1.08 * best_fixed(speed, 300, 8, **kwargs)
    # Past the first rounds the limit stays about two per core.
    assert limits_between(trace, 10, total) <= {3, 4, 5, 6}


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_no_swing_between_extremes_on_a_noisy_host(seed):
    """20% noise on every start: the dead band holds the limit within a
    couple of steps, never back to 1 nor up to the ceiling."""
    total, trace = storm(measured_2_cores(), 400, steady(32),
                         work=START_S, sigma=0.2, seed=seed)
    seen = limits_between(trace, 10, total)
    assert max(seen) - min(seen) <= 3
    assert min(seen) >= 3 and max(seen) <= 8


def test_a_host_that_only_waits_gets_every_worker():
    """Time independent of parallelism (slow storage with latency and no
    contention): the limit doubles to the ceiling and stays there."""
    total, trace = storm(knee(10_000), 2000, steady(32), sigma=0.2)
    assert limits_between(trace, total / 4, total) == {32}


def test_a_host_that_saturates_is_held_off_the_ceiling():
    """Throughput flat past 4 at once, each extra job slowing the others:
    fixed 32 loses, the limit settles well below it."""
    speed = knee(4, contention=0.05)
    total, trace = storm(speed, 1000, steady(32), sigma=0.1)
    assert max(limits_between(trace, total / 4, total)) <= 14
    assert total < 0.7 * storm(speed, 1000, limit=32, sigma=0.1)[0]


def test_a_neighbour_brings_the_limit_down_and_its_leaving_up_again():
    speed = slowed(measured_2_cores(), 60, 120, factor=2.0)
    total, trace = storm(speed, 600, AdaptiveLimit(32), work=START_S,
                         sigma=0.1)
    assert total > 130
    before = min(limits_between(trace, 30, 60))
    assert max(limits_between(trace, 70, 80)) < before
    assert min(limits_between(trace, 135, total)) >= before


def test_the_limit_grows_only_when_it_was_reached():
    """RFC 7661: jobs trickling in, one at a time, never fill the gate: the
    limit must not climb to the ceiling while nobody needs it."""
    controller = AdaptiveLimit(32, initial=2)
    for i in range(100):
        controller.sample(now=i + 1.0, seconds=1.0, inflight=1, waiting=0)
    assert controller.limit == 2


def test_the_base_is_probed_again_after_the_probe_interval():
    """Starts that become slower for good (bigger guests, say) must not
    pin the limit at 1: the probe measures the new uncontended time."""
    controller = AdaptiveLimit(8, initial=4, probe_interval=30)
    now = 0.0

    def round_of(seconds, inflight):
        nonlocal now
        limit = controller.limit
        for _ in range(max(3, limit)):
            now += seconds / limit
            controller.sample(now, seconds, inflight=min(inflight, limit),
                              waiting=5)
        return limit

    for _ in range(10):
        round_of(1.0, 4)            # the base: 1 s
    assert controller.limit >= 4
    limits = [round_of(3.0, 4) for _ in range(40)]   # 3 s from now on
    assert 1 in limits              # the probe ran at the floor...
    assert controller.limit >= 4    # ...and the limit came back up


def test_kinds_have_their_own_base():
    """Two kinds of job, one four times longer than the other, on a host
    with no contention: mixing them is no slowdown."""
    controller = AdaptiveLimit(16)
    now = 0.0
    for i in range(400):
        now += 0.1
        kind, seconds = ("restore", 2.0) if i % 2 else ("create", 0.5)
        controller.sample(now, seconds, inflight=controller.limit,
                          waiting=10, kind=kind)
    assert controller.limit == 16


def test_bad_bounds_are_refused():
    for args in [(0,), (4, 5), (4, 1, None, 3.0, 2.0)]:
        try:
            AdaptiveLimit(*args)
        except ValueError:
            continue
        raise AssertionError(f"AdaptiveLimit{args} accepted")


def test_a_host_slower_even_for_one_job_does_not_pin_the_limit_at_one():
    """A neighbour slows every start four times, a lone one too: the limit
    drops, but at the floor the slowdown is all the host's; the base is
    taken again there and the limit climbs back to what the slower host
    takes, long before the next probe."""
    speed = slowed(measured_2_cores(), 30, 1e9, factor=4.0)
    total, trace = storm(speed, 300, steady(32), work=START_S, sigma=0.1)
    assert 1 in limits_between(trace, 30, 60)
    assert min(limits_between(trace, 90, total)) >= 3
