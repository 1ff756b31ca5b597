"""A simulated host for the adaptive limit's tests: jobs share the host's
capacity (processor sharing), so how fast each runs depends on how many
run at once, as starts do on a real host.

`speed(c, t)` is how fast each of `c` jobs in flight progresses at time t
(1.0: uncontended). `storm()` runs `n` jobs of `work` seconds each
(times a log-normal noise) through a gate whose limit an AdaptiveLimit
moves, feeding it what the real gate feeds it, and returns the total time
and the limit over time. Deterministic for a given seed."""

import math
import random


def knee(k, contention=0.0):
    """Throughput grows with parallelism up to `k` jobs, then stays flat
    (or, with `contention` > 0, falls: each job past k costs that share
    of everybody's speed)."""
    def speed(c, t):
        return min(1.0, k / c) / (1.0 + contention * max(0, c - k))
    return speed


def measured_2_cores():
    """The real storm on this project's 2-core machines: starts per second
    at 1, 2, 4 and 8 at once (docs/benchmarks.md), interpolated."""
    rates = {1: 1.0 / 0.573, 2: 2 / 0.684, 4: 4 / 1.268, 8: 8 / 3.04}
    points = sorted(rates)

    def rate(c):
        if c >= points[-1]:
            return rates[points[-1]] * points[-1] / c * 1.0
        for a, b in zip(points, points[1:], strict=False):
            if a <= c <= b:
                return rates[a] + (rates[b] - rates[a]) * (c - a) / (b - a)
        return rates[points[0]]

    def speed(c, t):
        return rate(c) * 0.573 / c
    return speed


def slowed(speed, start, end, factor):
    """`speed`, `factor` times slower between `start` and `end` (a
    neighbour taking the cores)."""
    def slowed_speed(c, t):
        return speed(c, t) / (factor if start <= t < end else 1.0)
    slowed_speed.changes = (start, end)
    return slowed_speed


def storm(speed, n, controller=None, limit=None, work=1.0, sigma=0.0,
          seed=0):
    """Run `n` jobs; the gate's limit is `limit` (fixed) or the
    controller's. Returns (total seconds, [(time, limit)])."""
    rng = random.Random(seed)
    now, waiting, done = 0.0, n, 0
    running = []   # [remaining work, admitted at]
    trace = [(0.0, controller.limit if controller else limit)]
    changes = sorted(getattr(speed, "changes", ()))

    def current_limit():
        return controller.limit if controller else limit

    def admit():
        nonlocal waiting
        while waiting and len(running) < current_limit():
            waiting -= 1
            noise = math.exp(rng.gauss(0, sigma)) if sigma else 1.0
            running.append([work * noise, now])

    admit()
    while running:
        v = speed(len(running), now)
        step = min(r[0] for r in running) / v
        later = [c for c in changes if c > now]
        if later and now + step > later[0]:
            step = later[0] - now   # the speed changes before anyone ends
            for r in running:
                r[0] -= v * step
            now += step
            continue
        now += step
        for r in running:
            r[0] -= v * step
        finished = [r for r in running if r[0] <= 1e-12]
        for r in finished:
            inflight = len(running)
            running.remove(r)
            done += 1
            if controller:
                controller.sample(now, now - r[1], inflight, waiting)
                if controller.limit != trace[-1][1]:
                    trace.append((now, controller.limit))
        admit()
    return now, trace


def limits_between(trace, start, end):
    """Every limit in force at some time in [start, end)."""
    seen = set()
    for i, (t, value) in enumerate(trace):
        t_next = trace[i + 1][0] if i + 1 < len(trace) else math.inf
        if t < end and t_next > start:
            seen.add(value)
    return seen
