"""The chaos run's schedule: drawn from the seed alone, never from an
outcome, so that the same seed gives the same steps (docs/chaos.md)."""

import random

# Operations by weight; a step is a fault with probability fault_rate.
OPS = {"create": 4, "destroy": 2, "migrate": 4, "hibernate": 2,
       "restore": 2, "abort": 1}
FAULTS = ("kill9", "sigterm", "libvirtd", "sigstop")


def schedule(seed, fault_rate):
    """The endless schedule of a seed: (what, kind, host, draw)."""
    rng = random.Random(seed)
    kinds = [kind for kind, weight in OPS.items() for _ in range(weight)]
    fault_draw = random.Random(seed * 7919 + 1)
    while True:
        if fault_draw.random() < fault_rate:
            yield ("fault", rng.choice(FAULTS), rng.randrange(2),
                   rng.random())
        else:
            yield ("op", rng.choice(kinds), rng.randrange(2), rng.random())


def pick(items, draw):
    """The item `draw` (0 <= draw < 1) falls on, among `items` sorted."""
    items = sorted(items)
    return items[int(draw * len(items))] if items else None
