"""Benchmark 9, incoming migrations under a storm (issue 12), on libvirt's
test driver, the source host played by vmjobs.tools.simulation:

    python tests/benchmarks/arrival.py [--creations 1000] [--rounds 5]

1. Arrival to commit: a storm of `--creations` VM.create queued, then
   `--migrations` VM.migrationCreate whose guests arrive at once (the
   domain is created here, running). Arrival is the moment createXML has
   returned; commit is the job's `ended`. Side by side, in interleaved
   rounds on fresh private hosts: the migration jobs in the HIGH lane (as
   shipped) and in the NORMAL lane (the queue order they had before),
   where they wait for every creation queued before them.
2. Parked waits hold no worker: the same storm (4 workers) alone, and with
   `--incoming` migrations (max_incoming the same) parked waiting for
   their guests from before the storm starts; their guests arrive once
   the storm is queued. The creations' total time (first VM.create to the
   last creation's end) must not grow by more than the CPU the
   migrations themselves take, measured by a run of the migrations alone
   (process CPU: the test driver runs in this process, so the simulated
   source's createXML counts too, which makes it an upper bound).

Arrival to commit on real daemons (two private libvirtds, a real
migrateToURI3): real_arrival.py."""

import argparse
import contextlib
import statistics
import time
import uuid

from common import ms, percentile, table, write_json
from vmjobs.api import API
from vmjobs.config import Config
from vmjobs.flows import MigrationDestinationJob
from vmjobs.tools import simulation
from workers import Priority

LANES = {"HIGH (shipped)": Priority.HIGH,
         "NORMAL (queue order)": Priority.NORMAL}


@contextlib.contextmanager
def migrations_in(priority):
    """Migration-destination jobs submitted meanwhile wait in this lane
    (the baseline: NORMAL, the queue order they had before issue 12)."""
    MigrationDestinationJob.priority = priority
    try:
        yield
    finally:
        MigrationDestinationJob.priority = Priority.HIGH


def domain_xml(vm_id):
    return (f"<domain type='test'><name>in-{vm_id[:8]}</name>"
            f"<uuid>{vm_id}</uuid><memory unit='MiB'>64</memory>"
            "<os><type>hvm</type></os></domain>")


def new_api(args, queued):
    return API(Config(uri=None, workers=args.workers, queue_size=queued,
                      max_incoming=max(args.migrations, args.incoming)))


def queue_creations(api, n):
    for _ in range(n):
        vm_id = str(uuid.uuid4())
        api.VM.create(vm_id, {"vmId": vm_id, "memSize": 64,
                              "vmName": f"storm-{vm_id}"})


def incoming(api, n):
    """n VM.migrationCreate; (vm_id, job_id) of each."""
    out = []
    for _ in range(n):
        vm_id = str(uuid.uuid4())
        created = api.VM.migrationCreate(
            vm_id, {"vmId": vm_id, "xml": domain_xml(vm_id)})
        out.append((vm_id, created["params"]["jobId"]))
    return out


def arrive(api, migrations):
    """Each guest arrives (created here, running); when, in time.time()."""
    arrived = {}
    for vm_id, job_id in migrations:
        simulation.simulate_incoming_migration(api.hv, domain_xml(vm_id))
        arrived[job_id] = time.time()
    return arrived


def ended_jobs(api, job_ids):
    infos = api.Host.getJobs(job_ids=list(job_ids))
    bad = [i for i in infos.values() if i["status"] != "done"]
    assert not bad, bad[:1]
    return infos


def arrival_round(args, priority):
    """One storm with migrations arriving while it is queued: the
    migrations' arrival-to-commit times (s) and the storm's length."""
    with migrations_in(priority), \
            new_api(args, args.creations + args.migrations) as api:
        started = time.time()
        queue_creations(api, args.creations)
        migrations = incoming(api, args.migrations)
        arrived = arrive(api, migrations)
        assert api.pool.wait_idle(3600)
        infos = ended_jobs(api, arrived)
        waits = [infos[j]["ended"] - t for j, t in arrived.items()]
        storm = max(i["ended"] for i in api.Host.getJobs().values())
        return waits, storm - started


def storm_round(args, case):
    """The storm's creations' total time (s) in `case`: "alone", "events"
    (alone, with the lifecycle events a migration's subscription turns on:
    a subscriber to a domain that never comes) or "with" (`incoming`
    migrations parked from before it); and the process CPU of the run."""
    with new_api(args, args.creations + args.incoming) as api:
        migrations = []
        if case == "events":
            api.hv.subscribe(str(uuid.uuid4()), lambda *event: None)
        if case == "with":
            migrations = incoming(api, args.incoming)
            wait_parked(api, [j for _, j in migrations])
        cpu = time.process_time()
        started = time.time()
        queue_creations(api, args.creations)
        arrive(api, migrations)
        assert api.pool.wait_idle(3600)
        cpu = time.process_time() - cpu
        infos = api.Host.getJobs()
        ended_jobs(api, infos)
        last = max(i["ended"] for i in infos.values()
                   if i["job_type"] == "create")
        return last - started, cpu


def migrations_alone(args):
    """Process CPU (s) of `incoming` migrations alone: migrationCreate,
    the wait, the arrival, the commit."""
    with new_api(args, args.incoming) as api:
        cpu = time.process_time()
        migrations = incoming(api, args.incoming)
        wait_parked(api, [j for _, j in migrations])
        arrive(api, migrations)
        assert api.pool.wait_idle(3600)
        cpu = time.process_time() - cpu
        ended_jobs(api, [j for _, j in migrations])
        return cpu


def wait_parked(api, job_ids):
    """Until every job waits for its arrival (parked, no worker held)."""
    api.pool.wait_stats(lambda stats: stats["parked"] == len(job_ids) and
                        not stats["running"])


def span(values):
    return f"{min(values):.3g}-{max(values):.3g}" if len(values) > 1 \
        else f"{values[0]:.3g}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--creations", type=int, default=1000)
    parser.add_argument("--migrations", type=int, default=5,
                        help="migrations per round (part 1)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--incoming", type=int, default=20,
                        help="parked migrations (part 2)")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    data = {"args": vars(args), "arrival": {}, "storm": {}}

    waits = {name: [] for name in LANES}
    storms = {name: [] for name in LANES}
    for r in range(args.rounds):
        order = list(LANES.items())
        for name, priority in (order if r % 2 == 0 else order[::-1]):
            w, s = arrival_round(args, priority)
            waits[name] += w
            storms[name].append(s)
    rows = []
    for name in LANES:
        w = waits[name]
        result = {"p50_ms": ms(percentile(w, 50)),
                  "p95_ms": ms(percentile(w, 95)),
                  "p99_ms": ms(percentile(w, 99)),
                  "max_ms": ms(max(w)), "n": len(w),
                  "storm_s": storms[name]}
        data["arrival"][name] = result
        rows.append((name, len(w), result["p50_ms"], result["p95_ms"],
                     result["p99_ms"], result["max_ms"], span(storms[name])))
    table(f"arrival to commit: {args.migrations} migrations arriving with "
          f"{args.creations} creations queued, {args.workers} workers, "
          f"{args.rounds} rounds, test driver",
          ["migration lane", "n", "p50 ms", "p95 ms", "p99 ms", "max ms",
           "storm s"], rows)
    high = data["arrival"]["HIGH (shipped)"]["p99_ms"]
    normal = data["arrival"]["NORMAL (queue order)"]["p99_ms"]
    print(f"p99 HIGH: {high:.1f} ms (goal < 200 ms); NORMAL / HIGH: "
          f"{normal / high:.0f}x")

    totals = {"alone": [], "events": [], "with": []}
    cpus = {"alone": [], "events": [], "with": [], "migrations": []}
    for r in range(args.rounds):
        cases = list(totals)
        for case in (cases if r % 2 == 0 else cases[::-1]):
            total, cpu = storm_round(args, case)
            totals[case].append(total)
            cpus[case].append(cpu)
        cpus["migrations"].append(migrations_alone(args))
    alone, with_ = min(totals["alone"]), min(totals["with"])
    mig_cpu = min(cpus["migrations"])
    data["storm"] = {"totals_s": totals, "cpu_s": cpus,
                     "ratio_best": with_ / alone,
                     "growth_best_s": with_ - alone,
                     "migrations_cpu_best_s": mig_cpu}
    median = {case: statistics.median(v) for case, v in totals.items()}
    data["storm"]["median_s"] = median
    table(f"storm: {args.creations} creations, {args.workers} workers, "
          f"alone and with {args.incoming} incoming migrations parked "
          f"(max_incoming {args.incoming}), {args.rounds} rounds",
          ["case", "creations total s: best", "median", "range",
           "process CPU s"],
          [("storm alone", alone, median["alone"], span(totals["alone"]),
            span(cpus["alone"])),
           ("storm alone, events on", min(totals["events"]),
            median["events"], span(totals["events"]), span(cpus["events"])),
           (f"storm + {args.incoming} migrations", with_, median["with"],
            span(totals["with"]), span(cpus["with"])),
           (f"{args.incoming} migrations alone", "-", "-", "-",
            span(cpus["migrations"]))])
    print(f"with / alone: {with_ / alone:.2f} best, "
          f"{median['with'] / median['alone']:.2f} median; growth (best) "
          f"{ms(with_ - alone):.0f} ms against the migrations' own CPU "
          f"{ms(mig_cpu):.0f} ms")
    events = min(totals["events"])
    print(f"against the storm with events on: {with_ / events:.2f} best, "
          f"{median['with'] / median['events']:.2f} median; growth (best) "
          f"{ms(with_ - events):.0f} ms")
    write_json("arrival", data)


if __name__ == "__main__":
    main()
