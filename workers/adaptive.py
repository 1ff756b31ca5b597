"""An admission limit that finds the host's best parallelism by itself.

A pure object, guarded by its pool's lock (it has none of its own): the
pool feeds it one sample per admitted job that ends done (when, how long it ran, how many admitted jobs ran, whether others
waited), with explicit timestamps, and reads `limit` back. It knows
nothing of VMs: a sample's `kind` (a job type) is an opaque key, each kind
with its own uncontended time.

Which results it follows:

- TCP Vegas (Brakmo and Peterson, 1995): compare the time a unit of work
  takes now with the time it takes uncontended (BaseRTT). Vegas turns the
  difference into units that are only queueing, diff = limit x (1 - base
  / now), adds one below `alpha`, takes one off above `beta` and holds
  still between them. The dead band is what keeps a noisy host from
  oscillating. Here the band is on the slowdown S = now / base (Vegas'
  thresholds as a share of the limit: diff / limit = 1 - 1 / S), because
  absolute thresholds of a few units cannot move a limit of 4 at all: at
  limit 4, diff > 3.6 needs a start ten times slower than uncontended.
  As in Vegas the limit moves at most once per round (a round ends when
  `limit` samples, at least `min_samples`, came from jobs admitted after
  the last move), so each decision sees the effect of the one before.
- Little's law (in flight = rate x time): the rate the round achieved
  would need only in_flight / S jobs at the uncontended time; the rest
  only wait on each other. When more parallelism adds time but not rate,
  S grows with the limit and it backs off, in one move, to the in-flight
  count that gives the measured rate at the middle of the band (in_flight
  x S_target / S). Netflix concurrency-limits' Gradient2 moves the same
  way (new limit = limit x gradient + headroom), which brings 32 down to 5
  in a round instead of in 27. Growing goes the same way, to in_flight x
  2 / S (at least one more): on a host with room (S = 1) that doubles the
  limit each round, as TCP's slow start does, so a host that takes 32 at
  once gets there in five rounds; near the knee it adds one.
- BBR's ProbeRTT (Cardwell et al., 2016): the uncontended time can only be
  seen at low parallelism, and a base kept as an all-time minimum goes
  stale (heavier guests, a slower disk) and would pin the limit low.
  Every `probe_interval` seconds the limit drops to `low` for one round
  and the base is measured again; a round whose jobs ran alone measures
  it too (at the floor, the slowdown is all the host's); otherwise it only
  ever decreases.
  The interval is also how long a slower host is taken for a passing
  neighbour (the limit stays down) before it is taken for the new normal
  (the base follows it): two minutes, or less if the limit reaches the
  floor.
- Congestion-window validation (RFC 7661): the limit grows only when it
  was reached (a job waited, or all slots were held), so an idle host does
  not drift to the ceiling and meet the next storm with it.

The band's default, grow below S = 2 and shrink above 3, is measured
(docs/benchmarks.md, real storm): on 2 cores a start at 4 at once takes
2.2 times as long as alone and that is the fastest storm; 8 at once takes
5.3 times as long and is 20% slower. A host that is only waiting (slow
storage with latency but no contention) keeps S near 1 and the limit
climbs to `high`; a neighbour that takes the cores raises S at every
limit, and the limit drops.

It reads time, not rate: when the host's other work grows, the limit
backs off even where more starts at once would take a bigger share of the
cores and finish sooner (docs/benchmarks.md, section 10). That is the
politeness asked of it (a neighbour arrives: make room), and TCP Vegas'
known trade-off against greedier senders.

Gradient2's long-window/short-window latency ratio is not used: on a
CPU-bound host time grows linearly past the knee, the long window follows
it up, and the limit creeps to the ceiling. Host load (/proc/pressure/cpu)
is not used either: it cannot tell our own starts from a neighbour's
work, and the time per start already shows both.
"""

from __future__ import annotations

import math
from typing import Dict, Hashable, Optional, Tuple


class AdaptiveLimit:
    def __init__(self, high: int, low: int = 1,
                 initial: Optional[int] = None, grow_below: float = 2.0,
                 shrink_above: float = 3.0, min_samples: int = 3,
                 probe_interval: float = 120.0) -> None:
        if not 1 <= low <= high:
            raise ValueError(f"need 1 <= low <= high, got {low}, {high}")
        if not 1 <= grow_below < shrink_above:
            raise ValueError("need 1 <= grow_below < shrink_above, got "
                             f"{grow_below}, {shrink_above}")
        self.low, self.high = low, high
        self.grow_below, self.shrink_above = grow_below, shrink_above
        self.min_samples = min_samples
        self.probe_interval = probe_interval
        self.limit = low if initial is None else max(low, min(high, initial))
        self.slowdown = 1.0       # the last round's S, for observers
        self.rate = 0.0           # the last round's completions per second
        self._base: Dict[Hashable, float] = {}   # kind -> uncontended s
        self._base_at: Optional[float] = None    # when last probed
        # The limit to go back to after a probe.
        self._probing_from: Optional[int] = None
        self._round_start: Optional[float] = None
        self._sums: Dict[Hashable, Tuple[float, int]] = {}
        self._binding: bool   # the limit was reached this round
        self._new_round(None)

    def sample(self, now: float, seconds: float, inflight: int,
               waiting: int = 0, kind: Hashable = None) -> int:
        """A job held admission for `seconds`, leaving at `now`, while
        `inflight` jobs (itself included) held it and `waiting` waited.
        Returns the limit."""
        if self._round_start is None:
            self._round_start = now - seconds
            self._base_at = self._round_start
        if now - seconds < self._round_start:
            return self.limit   # admitted before the last move: stale
        total, count = self._sums.get(kind, (0.0, 0))
        self._sums[kind] = (total + seconds, count + 1)
        self._count += 1
        self._inflight += inflight
        self._binding = self._binding or waiting > 0 or inflight >= self.limit
        if self._count >= max(self.min_samples, self.limit):
            self._end_round(now, self._round_start)
        return self.limit

    # -- internals --------------------------------------------------------

    def _new_round(self, now: Optional[float]) -> None:
        self._round_start = now
        self._sums = {}           # kind -> (seconds, samples) this round
        self._count = 0
        self._inflight = 0
        self._binding = False

    def _end_round(self, now: float, start: float) -> None:
        means = {kind: total / count
                 for kind, (total, count) in self._sums.items()}
        self.rate = self._count / max(now - start, 1e-9)
        alone = self._inflight <= self._count   # never two at once
        if self._probing_from is not None or alone:
            # Times taken with no other job of ours running are the
            # uncontended times now, higher or lower than the old ones:
            # whatever slowed them is the host's, not ours to back off
            # from. (Without this a neighbour that slows even a lone job
            # 3 times would pin the limit at 1 until the next probe.)
            self._base.update(means)
            self._base_at = now
        if self._probing_from is not None:
            self.limit, self._probing_from = self._probing_from, None
            self._new_round(now)
            return
        for kind, mean in means.items():
            self._base[kind] = min(self._base.get(kind, mean), mean)
        # How much slower than uncontended the round ran, over its samples.
        self.slowdown = sum(self._sums[kind][1] * mean / self._base[kind]
                            for kind, mean in means.items()) / self._count
        inflight = self._inflight / self._count
        if self.slowdown > self.shrink_above:
            target = (self.grow_below + self.shrink_above) / 2
            wanted = math.ceil(inflight * target / self.slowdown)
            self.limit = max(self.low, min(self.limit - 1, wanted))
        elif self.slowdown < self.grow_below and self._binding:
            wanted = math.ceil(inflight * self.grow_below / self.slowdown)
            self.limit = min(self.high, max(self.limit + 1, wanted))
        assert self._base_at is not None   # set with the first round
        if now - self._base_at >= self.probe_interval and \
                self.limit > self.low:
            self._probing_from = self.limit
            self.limit = self.low
        self._new_round(now)
