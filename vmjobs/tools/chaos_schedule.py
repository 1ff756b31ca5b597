"""The chaos run's schedule: drawn from the seed alone, never from an
outcome, so that the same seed gives the same steps (docs/chaos.md).

Three mixes: `classic`, the verbs one at a time and the service's faults
(the schedule of every seed before the wide mix, kept so that an old seed
replays); `wide`, which adds what operators and engines also do: guests
created and restored paused, two verbs fired at once on one VM, an abort
at a random moment of a job, a hibernation into a full directory; and
faults below the service: kill -9 of a guest's QEMU, of libvirtd (then its
restart), libvirtd frozen, a migration to a host whose service is down,
and both services killed while a migration runs (kept so that its seeds
replay); and `deep` (the default), which adds an operator's pause or
resume of a guest outside vmjobs (libvirt's suspend, resume), a guest's
QEMU frozen (SIGSTOP) for a few seconds, and a service killed again in the
middle of the recovery that followed its first kill (kept so that its
seeds replay); and `partition`, the deep mix with the hosts on loopback TCP
and a network partition between them (chaos_partition) while migrations
run, drawn as often as the deep mix's other faults together; and
`log-full`, the deep mix with a service's log disk filled up for a few
steps (chaos_logdisk), drawn as often as any other fault; and
`fd-limit`, the deep mix with a service out of file descriptors for a
few seconds while migrations and a hibernation run (chaos_fdlimit),
drawn as often as any other fault; and `operator`, the deep mix with
what an operator does with virsh on vmjobs' own domains behind the
service's back, at random moments, mid-job too (chaos_operator): an
undefine, a destroy, a reset or a reboot, a managedsave (and a later start
that restores it), a live setmem or setvcpus, a define of a changed XML,
a domain of their own named as a vmjobs VM that has just left, and one of
these in the middle of a recovery; and `hang`, the deep mix with long
freezes (chaos_hang), past every bound vmjobs has: a libvirtd, a guest's
QEMU under a job, a service under a migration, drawn as often as the
deep mix's other faults together."""

import random

# Operations by weight; a step is a fault with probability fault_rate.
OPS = {"create": 4, "destroy": 2, "migrate": 4, "hibernate": 2,
       "restore": 2, "abort": 1}
FAULTS = ("kill9", "sigterm", "libvirtd", "sigstop")

WIDE_OPS = {**OPS, "create_paused": 1, "restore_paused": 1, "race": 3,
            "abort_later": 2, "hibernate_full": 1}
WIDE_FAULTS = FAULTS + ("qemu_kill", "libvirtd_kill9", "libvirtd_stop",
                        "migrate_to_down", "kill_both_mid_migration")

DEEP_OPS = {**WIDE_OPS, "outside_pause": 2}
DEEP_FAULTS = WIDE_FAULTS + ("qemu_stop", "kill9_mid_recovery")

# A fault is drawn uniformly among a mix's faults: the partition is
# listed as many times as the deep faults, to be half of them.
PARTITION_FAULTS = DEEP_FAULTS + ("partition",) * len(DEEP_FAULTS)

LOG_FULL_FAULTS = DEEP_FAULTS + ("log_full",)

# Long hangs (chaos_hang): drawn as often as the deep faults together.
HANG_FAULTS = DEEP_FAULTS + ("hang",) * len(DEEP_FAULTS)

FD_LIMIT_FAULTS = DEEP_FAULTS + ("fd_limit",)

# The operator's virsh: `virsh` (one of chaos_operator.ACTIONS, drawn) as
# often as a create, a start of a managed-saved vmjobs domain and a
# domain of their own (or its removal) now and then; and the fault of an
# operator's virsh during a recovery after a kill -9.
OPERATOR_OPS = {**DEEP_OPS, "virsh": 6, "virsh_start": 1,
                "external_domain": 1}
OPERATOR_FAULTS = DEEP_FAULTS + ("virsh_mid_recovery",)

MIXES = {"classic": (OPS, FAULTS), "wide": (WIDE_OPS, WIDE_FAULTS),
         "deep": (DEEP_OPS, DEEP_FAULTS),
         "partition": (DEEP_OPS, PARTITION_FAULTS),
         "log-full": (DEEP_OPS, LOG_FULL_FAULTS),
         "fd-limit": (DEEP_OPS, FD_LIMIT_FAULTS),
         "operator": (OPERATOR_OPS, OPERATOR_FAULTS),
         "hang": (DEEP_OPS, HANG_FAULTS)}
# Mixes whose hosts talk over loopback TCP (the others: Unix sockets).
TCP_MIXES = ("partition",)
DEFAULT_MIX = "deep"


def schedule(seed, fault_rate, mix=DEFAULT_MIX):
    """The endless schedule of a seed: (what, kind, host, draw)."""
    ops, faults = MIXES[mix]
    rng = random.Random(seed)
    kinds = [kind for kind, weight in ops.items() for _ in range(weight)]
    fault_draw = random.Random(seed * 7919 + 1)
    while True:
        if fault_draw.random() < fault_rate:
            yield ("fault", rng.choice(faults), rng.randrange(2),
                   rng.random())
        else:
            yield ("op", rng.choice(kinds), rng.randrange(2), rng.random())


def pick(items, draw):
    """The item `draw` (0 <= draw < 1) falls on, among `items` sorted."""
    items = sorted(items)
    return items[int(draw * len(items))] if items else None


def sub_draws(draw):
    """More draws for a step that needs several (which VM, which pair,
    how long to wait), from its own draw: the seed's alone still."""
    return random.Random(draw)
