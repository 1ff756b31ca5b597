"""A short fixed-seed chaos run on two private libvirtds (vmjobs chaos,
docs/chaos.md): every verb under kill -9, SIGTERM, libvirtd restarts and a
frozen service, with the invariants checked whenever both hosts are quiet.
The schedule is the seed's alone: a failure here replays with
`vmjobs chaos DIR --seed SEED --steps STEPS`."""

import itertools

from realdaemon import require_daemon
from vmjobs.tools.chaos import KNOWN, ChaosRun
from vmjobs.tools.chaos_schedule import schedule

SEED = 24
STEPS = 80


def test_the_schedule_is_the_seeds_alone():
    first = list(itertools.islice(schedule(SEED, 0.1), 200))
    again = list(itertools.islice(schedule(SEED, 0.1), 200))
    other = list(itertools.islice(schedule(SEED + 1, 0.1), 200))
    assert first == again
    assert first != other   # the positive control: a seed changes it
    assert {step[0] for step in first} == {"op", "fault"}


def test_the_classic_mix_replays_the_seeds_before_the_wide_one():
    classic = list(itertools.islice(schedule(SEED, 0.1, "classic"), 200))
    wide = list(itertools.islice(schedule(SEED, 0.1, "wide"), 200))
    assert classic == list(itertools.islice(schedule(SEED, 0.1, "classic"),
                                            200))
    assert {s[1] for s in classic} <= {"create", "destroy", "migrate",
                                       "hibernate", "restore", "abort",
                                       "kill9", "sigterm", "libvirtd",
                                       "sigstop"}
    assert classic != wide
    # The wide mix draws what the classic one never does.
    many = list(itertools.islice(schedule(SEED, 0.3, "wide"), 2000))
    assert {"race", "create_paused", "restore_paused", "abort_later",
            "hibernate_full", "qemu_kill", "libvirtd_kill9",
            "libvirtd_stop", "migrate_to_down",
            "kill_both_mid_migration"} <= {s[1] for s in many}


def test_the_wide_mix_replays_its_seeds_and_the_deep_one_adds_to_it():
    wide = list(itertools.islice(schedule(SEED, 0.3, "wide"), 2000))
    deep = list(itertools.islice(schedule(SEED, 0.3, "deep"), 2000))
    assert wide == list(itertools.islice(schedule(SEED, 0.3, "wide"), 2000))
    assert deep == list(itertools.islice(schedule(SEED, 0.3), 2000))
    assert wide != deep
    added = {"outside_pause", "qemu_stop", "kill9_mid_recovery"}
    assert not added & {s[1] for s in wide}
    assert added <= {s[1] for s in deep}


def test_short_chaos_run_keeps_every_invariant(tmp_path):
    require_daemon()
    # A fault every ten steps or so: every kind of fault shows up.
    run = ChaosRun(tmp_path, SEED, steps=STEPS, max_vms=4, mem_mib=32,
                   fault_rate=0.1, mix="classic")
    ok = run.run()
    figures = run.figures()
    print(figures)
    assert ok, (figures["violations"], figures["violation_file"])
    assert figures["invariant_checks"] >= 5
    assert sum(figures["faults"].values()) >= 3
    assert any(key.endswith("job done") for key in figures["operations"])
    # A verb refused as malformed exercises nothing (the run's own
    # requests must pass the service's checks, migrations' sockets too).
    assert not [key for key in figures["operations"] if "-32602" in key]
    # Migrations were asked for and queued. Whether one of them ends done
    # depends on the faults that meet it (its destination killed, a
    # destroy), which timing decides though the schedule is seeded: one
    # run in a few had both of its two migrations end so. Migrations
    # without faults: tests/test_real_migration*.py; under faults for 30
    # minutes, thousands done: docs/chaos.md.
    assert figures["operations"].get("migrate queued", 0) >= 1


WIDE_SEED = 12   # its first 50 steps draw every operation and fault added
WIDE_STEPS = 50


def test_short_wide_chaos_run_keeps_every_invariant(tmp_path):
    require_daemon()
    # The kinds already diagnosed (docs/chaos.md, "What the wide mix
    # found") are noted, not failed: this checks the run itself.
    run = ChaosRun(tmp_path, WIDE_SEED, steps=WIDE_STEPS, max_vms=4,
                   mem_mib=32, fault_rate=0.25, mix="wide", known=KNOWN)
    ok = run.run()
    figures = run.figures()
    print(figures)
    assert ok, (figures["violations"], figures["violation_file"])
    assert {"qemu_kill", "libvirtd_kill9", "libvirtd_stop",
            "migrate_to_down", "kill_both_mid_migration"} <= \
        set(figures["faults"])
    assert any(key.startswith("race ") and "skipped" not in key
               for key in figures["operations"])
    assert not [key for key in figures["operations"] if "-32602" in key]


DEEP_SEED = 322   # its first 50 steps draw every operation and fault
DEEP_STEPS = 50


def test_short_deep_chaos_run_keeps_every_invariant(tmp_path):
    require_daemon()
    run = ChaosRun(tmp_path, DEEP_SEED, steps=DEEP_STEPS, max_vms=4,
                   mem_mib=32, fault_rate=0.25, known=KNOWN)
    ok = run.run()
    figures = run.figures()
    print(figures)
    assert ok, (figures["violations"], figures["violation_file"])
    assert figures["mix"] == "deep"
    assert {"qemu_stop", "kill9_mid_recovery"} <= set(figures["faults"])
    assert any(key.startswith("outside_pause ") and "skipped" not in key
               for key in figures["operations"])
    assert not [key for key in figures["operations"] if "-32602" in key]


def test_a_job_libvirtd_left_without_owner_is_named():
    # libvirtd 9.0's own words (seed 2903: killed -9 as an incoming
    # migration began), and a job with an owner, which is not named.
    from vmjobs.tools.chaos_checks import ownerless_jobs
    log = (
        "2026-12-07 02:24:43.334+0000: 16483: warning : "
        "virDomainObjBeginJobInternal:433 : Cannot start job (destroy, "
        "none, none) in API remoteDispatchDomainDestroy for domain "
        "chaos-07abe430; current job is (none, none, migration in) owned "
        "by (0 <null>, 0 <null>, 0 <null> (flags=0x1b)) for (0s, 0s, 30s)\n"
        "2026-12-07 02:24:44.000+0000: 16483: warning : "
        "virDomainObjBeginJobInternal:433 : Cannot start job (destroy, "
        "none, none) in API remoteDispatchDomainDestroy for domain "
        "chaos-11111111; current job is (none, none, migration out) owned "
        "by (0 <null>, 0 <null>, 16480 remoteDispatchDomainMigratePerform3"
        "Params (flags=0x1b)) for (0s, 0s, 30s)\n")
    assert ownerless_jobs(log) == {
        "chaos-07abe430": "none, none, migration in"}
