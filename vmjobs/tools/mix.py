"""What a storm is made of: the startup modes an engine's requests mix,
and how many VMs each mode gets."""

# `migrate` (VM.migrate between hosts) needs two servers: loadtest_hosts.
MODES = ("create", "restore", "migration", "migrate")


def parse_mix(text):
    """'create=70,restore=20,migration=10' -> {mode: weight}."""
    mix = {}
    for part in text.split(","):
        mode, _, weight = part.partition("=")
        mode = mode.strip()
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} (modes: "
                             f"{', '.join(MODES)})")
        try:
            mix[mode] = int(weight)
        except ValueError:
            raise ValueError(f"weight of {mode} must be an integer") from None
        if mix[mode] < 0:
            raise ValueError(f"weight of {mode} must be >= 0")
    if not sum(mix.values()):
        raise ValueError("the mix has no weight")
    return mix


def split(vms, mix):
    """How many of `vms` each mode gets; rounding goes to the first mode."""
    total = sum(mix.values())
    counts = {mode: vms * weight // total for mode, weight in mix.items()}
    first = next(iter(mix))
    counts[first] += vms - sum(counts.values())
    return counts
