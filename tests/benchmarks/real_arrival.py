"""Benchmark 9, real part: arrival to commit of incoming migrations on a
private libvirtd with QEMU while a storm of creations is queued there.

    python tests/benchmarks/real_arrival.py [--creations 100] [--rounds 1]

Two private daemons (vmjobs.tools.sandbox), A and B. vmjobs on A starts
`--migrations` tiny TCG guests; vmjobs on B queues `--creations`
VM.create, then takes each guest in (VM.migrationCreate, then a real
live migrateToURI3 peer to peer from A, one after the other). Arrival is
B's RESUMED event for the guest (the transfer is over and it runs on B);
commit is the migration job's `ended`. Side by side, in alternate rounds:
the migration jobs in the HIGH lane (as shipped) and in the NORMAL lane
(the queue order they had before)."""

import argparse
import tempfile
import threading
import time
import uuid

import libvirt

from arrival import LANES, migrations_in
from common import ms, percentile, table, write_json
from vmjobs.api import API
from vmjobs.config import Config
from vmjobs.tools.sandbox import Sandbox

MEM_MIB = 32
FLAGS = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER |
         libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)


def params(vm_id, name):
    return {"vmId": vm_id, "vmName": f"{name}-{vm_id[:8]}",
            "memSize": MEM_MIB}


def api_on(sandbox, queued, workers):
    return API(Config(uri=sandbox.uri, workers=workers, queue_size=queued,
                      max_incoming=queued, domain_type="qemu"))


def source_guests(api_a, conn_a, n):
    """n guests Up on A; {vm_id: migratable XML}."""
    vm_ids = [str(uuid.uuid4()) for _ in range(n)]
    for vm_id in vm_ids:
        api_a.VM.create(vm_id, params(vm_id, "src"))
    assert api_a.pool.wait_idle(600)
    return {vm_id: conn_a.lookupByUUIDString(vm_id).XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE) for vm_id in vm_ids}


class Arrivals:
    """When B's libvirt says each guest resumed (time.time())."""

    def __init__(self, hv, vm_ids):
        self._hv = hv
        self._lock = threading.Lock()   # guards at
        self.at = {}
        self._tokens = {vm_id: hv.subscribe(
            vm_id, lambda event, detail, v=vm_id: self._on(v, event))
            for vm_id in vm_ids}

    def _on(self, vm_id, event):
        if event == libvirt.VIR_DOMAIN_EVENT_RESUMED:
            with self._lock:
                self.at.setdefault(vm_id, time.time())

    def close(self):
        for vm_id, token in self._tokens.items():
            self._hv.unsubscribe(vm_id, token)


def migrate(conn_a, b, vm_id):
    conn_a.lookupByUUIDString(vm_id).migrateToURI3(
        f"qemu+unix:///system?socket={b.socket}",
        {libvirt.VIR_MIGRATE_PARAM_URI: "tcp://127.0.0.1"}, FLAGS)


def one_round(a, b, args, priority):
    with migrations_in(priority):
        return _round(a, b, args)


def _round(a, b, args):
    api_a = api_on(a, args.migrations, args.workers)
    api_b = api_on(b, args.creations + args.migrations, args.workers)
    conn_a = libvirt.open(a.uri)
    try:
        guests = source_guests(api_a, conn_a, args.migrations)
        arrivals = Arrivals(api_b.hv, guests)
        started = time.time()
        for _ in range(args.creations):
            vm_id = str(uuid.uuid4())
            api_b.VM.create(vm_id, params(vm_id, "storm"))
        job_ids = {}
        for vm_id, xml in guests.items():
            job_ids[vm_id] = api_b.VM.migrationCreate(
                vm_id, {"vmId": vm_id, "xml": xml})["params"]["jobId"]
            migrate(conn_a, b, vm_id)
        assert api_b.pool.wait_idle(3600)
        arrivals.close()
        infos = api_b.Host.getJobs()
        bad = [i for i in infos.values() if i["status"] != "done"]
        assert not bad, bad[:1]
        waits = [infos[job_ids[v]]["ended"] - arrivals.at[v] for v in guests]
        storm = max(i["ended"] for i in infos.values()) - started
        creates = [i["ended"] - i["started"] for i in infos.values()
                   if i["job_type"] == "create"]
        return waits, storm, creates
    finally:
        conn_a.close()
        api_a.close()
        api_b.close()
        a.remove_all_domains()
        b.remove_all_domains()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--creations", type=int, default=100)
    parser.add_argument("--migrations", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    a = Sandbox(tempfile.mkdtemp(prefix="vmjobs-bench-a-")).start()
    b = Sandbox(tempfile.mkdtemp(prefix="vmjobs-bench-b-")).start()
    waits = {name: [] for name in LANES}
    storms = {name: [] for name in LANES}
    creates = {name: [] for name in LANES}
    try:
        for r in range(args.rounds):
            order = list(LANES.items())
            for name, priority in (order if r % 2 == 0 else order[::-1]):
                w, s, c = one_round(a, b, args, priority)
                waits[name] += w
                creates[name] += c
                storms[name].append(s)
                print(f"{name}: storm {s:.1f} s, arrival to commit "
                      f"max {ms(max(w)):.0f} ms", flush=True)
    finally:
        a.stop()
        b.stop()
    data = {"args": vars(args), "lanes": {}}
    rows = []
    for name in LANES:
        w = waits[name]
        result = {"p50_ms": ms(percentile(w, 50)),
                  "p95_ms": ms(percentile(w, 95)),
                  "p99_ms": ms(percentile(w, 99)), "n": len(w),
                  "storm_s": storms[name],
                  "create_run_p50_ms": ms(percentile(creates[name], 50)),
                  "create_run_p99_ms": ms(percentile(creates[name], 99))}
        data["lanes"][name] = result
        rows.append((name, len(w), result["p50_ms"], result["p95_ms"],
                     result["p99_ms"], result["create_run_p50_ms"],
                     result["create_run_p99_ms"],
                     " ".join(f"{s:.1f}" for s in storms[name])))
    table(f"real arrival to commit: {args.migrations} live migrations A->B "
          f"while {args.creations} creations are queued on B (TCG, "
          f"{MEM_MIB} MiB), {args.workers} workers",
          ["migration lane", "n", "p50 ms", "p95 ms", "p99 ms",
           "create run p50 ms", "p99 ms", "storm s"],
          rows)
    write_json("real_arrival", data)


if __name__ == "__main__":
    main()
