"""Benchmark 20, the libvirt calls of one VM's startup: the sequence
vmjobs makes today against three others, as raw libvirt calls side by
side in one process, on libvirt's test driver and on a private libvirtd
with QEMU (tiny TCG guests, as real_storm.py starts them).

    python tests/benchmarks/transient.py [--vms 2000] [--real-vms 16]
        [--rounds 3] [--threads 4] [--no-real] [--dir DIR]

The sequences, each starting one new guest and checking it runs:

  (i)   vmjobs' flow before section 20: look the UUID up (there must be
        no domain), define, look up and create, look up and read the
        state: 6 calls;
  (ii)  vmjobs' flow now, define's handle reused: look the UUID up,
        define, create and read the state on the handle define returned:
        4 calls;
  (iii) transient: createXML, the state on its handle: 2 calls (VDSM's
        way; nothing is left defined once the guest stops);
  (iv)  createXML then defineXML (persistent from then on), the state:
        3 calls.

Each round runs every sequence on the same number of new guests, in an
order rotated from round to round, each storm from an empty host (the
domains are removed, untimed, after each). Figures per VM: wall time of
the storm, this process's CPU (on the test driver, the driver runs in it:
that is the "daemon" side), and on the real daemon libvirtd's own CPU and
its QEMU processes' (from /proc/<pid>/stat). Each is also printed as a
ratio to (i). The calls per VM are counted, not assumed: each sequence is
run once first on a counting connection (tests/libvirt_counting.py).

Before the timings, a probe prints what createXML and defineXML do when a
domain with the UUID already exists (running, stopped under the same
name, stopped under another name): the existence check that sequences
(iii) and (iv) would need to drop vmjobs' lookup."""

import argparse
import os
import re
import sys
import tempfile
import threading
import time
import uuid

import libvirt

from common import ROOT, daemon_pid, table, write_json

sys.path.insert(0, os.path.join(ROOT, "tests"))

from libvirt_counting import Counted, InFlight  # noqa: E402
from vmjobs import domxml  # noqa: E402
from vmjobs.hypervisor import Hypervisor  # noqa: E402
from vmjobs.params import parse_create  # noqa: E402
from vmjobs.tools.procfs import cpu_seconds  # noqa: E402
from vmjobs.tools.sandbox import Sandbox  # noqa: E402

MEM_MIB = 32
RUNNING = libvirt.VIR_DOMAIN_RUNNING


def _must_be_none(conn, vm_id):
    """vmjobs' existence check: the lookup must fail with NO_DOMAIN."""
    try:
        conn.lookupByUUIDString(vm_id)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise
        return
    raise AssertionError(f"a domain {vm_id} exists")


def seq_vmjobs(conn, vm_id, xml):
    _must_be_none(conn, vm_id)
    conn.defineXML(xml)
    conn.lookupByUUIDString(vm_id).create()
    assert conn.lookupByUUIDString(vm_id).state()[0] == RUNNING


def seq_define_reused(conn, vm_id, xml):
    _must_be_none(conn, vm_id)
    dom = conn.defineXML(xml)
    dom.create()
    assert dom.state()[0] == RUNNING


def seq_transient(conn, vm_id, xml):
    assert conn.createXML(xml, 0).state()[0] == RUNNING


def seq_create_define(conn, vm_id, xml):
    dom = conn.createXML(xml, 0)
    conn.defineXML(xml)
    assert dom.state()[0] == RUNNING


SEQUENCES = [
    ("(i) vmjobs before: lookup, define, lookup+create, lookup+state",
     seq_vmjobs),
    ("(ii) vmjobs now: lookup, define, create+state on its handle",
     seq_define_reused),
    ("(iii) transient: createXML, state", seq_transient),
    ("(iv) createXML, defineXML, state", seq_create_define),
]


class TestHost:
    """A private test-driver host: one connection shared by every thread
    (each connection to it would be a host of its own)."""
    name = "test driver"

    def __init__(self):
        self.hv = Hypervisor()
        self.guest = self.hv.guest
        self.conn = self.hv.shared_connection

    def connections(self, threads):
        return [self.conn] * threads

    def counting_connection(self):
        return Counted(self.conn, InFlight())

    def daemon_cpu(self):
        return None

    def qemu_cpu(self):
        return None

    def close_connections(self, conns):
        pass

    def remove_all(self):
        remove_domains(self.conn)

    def close(self):
        self.hv.close()


class RealHost:
    """A private libvirtd with QEMU: a connection per thread, as vmjobs
    has one per worker."""
    name = "real daemon"

    def __init__(self, directory):
        self.sandbox = Sandbox(directory).start()
        with Hypervisor(self.sandbox.uri, domain_type="qemu") as hv:
            self.guest = hv.guest
        self.conn = libvirt.open(self.sandbox.uri)
        self.pid = daemon_pid(self.sandbox)

    def connections(self, threads):
        return [libvirt.open(self.sandbox.uri) for _ in range(threads)]

    def counting_connection(self):
        return Counted(libvirt.open(self.sandbox.uri), InFlight())

    def daemon_cpu(self):
        return cpu_seconds([self.pid])

    def qemu_cpu(self):
        return cpu_seconds(self.sandbox.qemu_pids())

    def close_connections(self, conns):
        for conn in conns:
            conn.close()

    def remove_all(self):
        remove_domains(self.conn)

    def close(self):
        self.conn.close()
        self.sandbox.stop()


def remove_domains(conn):
    for dom in conn.listAllDomains(0):
        for call in (dom.destroy, dom.undefine):
            try:
                call()
            except libvirt.libvirtError:
                pass   # not running, or transient (gone with its destroy)


def new_guests(host, n):
    work = []
    for _ in range(n):
        vm_id = str(uuid.uuid4())
        spec = parse_create(vm_id, {"vmId": vm_id, "vmName": f"tr-{vm_id}",
                                    "memSize": MEM_MIB})
        work.append((vm_id, domxml.compose(spec, host.guest)))
    return work


def calls_per_vm(host, sequence):
    """The libvirt calls `sequence` makes for one guest, counted."""
    counted = host.counting_connection()
    (vm_id, xml), = new_guests(host, 1)
    sequence(counted, vm_id, xml)
    calls = counted._counter.calls
    if counted._real is not host.conn:
        counted._real.close()
    host.remove_all()
    return calls


def storm(host, sequence, n, threads):
    """Start `n` new guests with `sequence` on `threads` threads; returns
    (wall s, this process's CPU s, libvirtd CPU s, QEMU CPU s), the last
    two None on the test driver."""
    work = new_guests(host, n)
    conns = host.connections(threads)
    runners = [threading.Thread(target=lambda c=c, items=work[i::threads]: [
        sequence(c, vm_id, xml) for vm_id, xml in items])
        for i, c in enumerate(conns)]
    daemon0, qemu0 = host.daemon_cpu(), host.qemu_cpu()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    daemon1, qemu1 = host.daemon_cpu(), host.qemu_cpu()
    host.close_connections(conns)
    running = sum(1 for d in host.conn.listAllDomains(
        libvirt.VIR_CONNECT_LIST_DOMAINS_RUNNING))
    host.remove_all()
    if running != n:
        raise AssertionError(f"{running} of {n} guests run")
    return (wall, cpu, None if daemon0 is None else daemon1 - daemon0,
            None if qemu0 is None else qemu1 - qemu0)


def probe(host):
    """What createXML and defineXML do when a domain with the UUID is
    there already: {case: {call: "ok (state, persistent)" or the error}}."""
    conn = host.conn

    def attempt(call, success):
        try:
            dom = call()
        except libvirt.libvirtError as exc:
            # Without the domain's name and UUID, the same in each case.
            return "refused: " + re.sub(r" with uuid \S+", " with that uuid",
                                        re.sub(r"'[^']*'", "'...'",
                                               exc.get_error_message()))
        return success(dom)

    def started(dom):
        return (f"ok: starts it (persistent={bool(dom.isPersistent())}, "
                f"running={dom.state()[0] == RUNNING})")

    results = {}
    for case in ("running", "stopped, same name", "stopped, another name"):
        results[case] = {}
        for call in ("createXML", "defineXML"):
            (vm_id, xml), = new_guests(host, 1)
            dom = conn.defineXML(xml)
            if case == "running":
                dom.create()
            if case == "stopped, another name":
                xml = xml.replace(f"<name>tr-{vm_id}</name>",
                                  f"<name>other-{vm_id}</name>")
            results[case][call] = attempt(
                lambda x=xml: conn.createXML(x, 0), started) \
                if call == "createXML" else attempt(
                lambda x=xml: conn.defineXML(x), lambda d: "ok: redefines it")
            host.remove_all()
    return results


def call_costs(host, n=2000):
    """On the real daemon, libvirtd's CPU and the wall time per request of
    the calls the sequences differ by, made `n` times in a row on one
    connection: {call: (libvirtd CPU us, wall us)}."""
    (vm_id, xml), = new_guests(host, 1)
    dom = host.conn.createXML(xml, 0)
    missing = str(uuid.uuid4())
    calls = {
        "lookup, no such UUID": lambda: _must_be_none(host.conn, missing),
        "lookup, a running domain": lambda: host.conn.lookupByUUIDString(
            vm_id),
        "state, on a handle": dom.state,
    }
    costs = {}
    for name, call in calls.items():
        cpu0, wall0 = host.daemon_cpu(), time.perf_counter()
        for _ in range(n):
            call()
        costs[name] = ((host.daemon_cpu() - cpu0) / n * 1e6,
                       (time.perf_counter() - wall0) / n * 1e6)
    host.remove_all()
    return costs


def run(host, n, rounds, threads):
    results = {"vms": n, "threads": threads, "rounds": rounds,
               "probe": probe(host), "sequences": {}}
    calls = {name: calls_per_vm(host, seq) for name, seq in SEQUENCES}
    # Untimed: the first guests on a fresh daemon load QEMU from disk.
    storm(host, seq_vmjobs, min(n, 8), threads)
    totals = {name: [0.0, 0.0, 0.0, 0.0] for name, _ in SEQUENCES}
    for r in range(rounds):
        order = SEQUENCES[r % len(SEQUENCES):] + \
            SEQUENCES[:r % len(SEQUENCES)]
        for name, sequence in order:
            figures = storm(host, sequence, n, threads)
            for i, value in enumerate(figures):
                totals[name][i] += value or 0.0
        print(f"{host.name}: round {r + 1} of {rounds} done", flush=True)
    vms = n * rounds
    base = totals[SEQUENCES[0][0]]
    real = host.daemon_cpu() is not None
    if real:
        results["call_costs_us"] = call_costs(host)
    rows = []
    for name, _ in SEQUENCES:
        wall, cpu, daemon, qemu = (t / vms for t in totals[name])
        entry = {"calls_per_vm": calls[name], "wall_per_vm_s": wall,
                 "process_cpu_per_vm_s": cpu,
                 "wall_ratio": totals[name][0] / base[0],
                 "process_cpu_ratio": totals[name][1] / base[1]}
        if real:
            entry.update(libvirtd_cpu_per_vm_s=daemon, qemu_cpu_per_vm_s=qemu,
                         libvirtd_cpu_ratio=totals[name][2] / base[2])
        results["sequences"][name] = entry
        if real:
            rows.append((name, calls[name], wall * 1000, entry["wall_ratio"],
                         daemon * 1000, entry["libvirtd_cpu_ratio"],
                         qemu * 1000, cpu * 1000))
        else:
            rows.append((name, calls[name], wall * 1e6, entry["wall_ratio"],
                         cpu * 1e6, entry["process_cpu_ratio"]))
    print()
    table(f"{host.name}: what createXML / defineXML do when the UUID "
          "exists", ["domain already there", "createXML", "defineXML"],
          [(case, r["createXML"], r["defineXML"])
           for case, r in results["probe"].items()])
    if real:
        table(f"{host.name}: one request, made 2,000 times in a row",
              ["call", "libvirtd CPU us", "wall us"],
              [(name, cpu, wall) for name, (cpu, wall)
               in results["call_costs_us"].items()])
        table(f"{host.name}: {n} tiny TCG guests x {rounds} rounds, "
              f"{threads} threads (a connection each)",
              ["sequence", "calls/VM", "wall ms/VM", "/ (i)",
               "libvirtd CPU ms/VM", "/ (i)", "QEMU CPU ms/VM",
               "client CPU ms/VM"], rows)
    else:
        table(f"{host.name}: {n} guests x {rounds} rounds, {threads} "
              "thread(s), one shared connection",
              ["sequence", "calls/VM", "wall us/VM", "/ (i)",
               "CPU us/VM (driver in process)", "/ (i)"], rows)
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=2000,
                        help="guests per storm on the test driver")
    parser.add_argument("--real-vms", type=int, default=16,
                        help="guests per storm on the real daemon")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4,
                        help="threads on the real daemon (the test driver "
                        "takes one: its calls hold its one lock)")
    parser.add_argument("--no-real", action="store_true",
                        help="the test driver only")
    parser.add_argument("--dir", default=None,
                        help="sandbox directory (default: a temp dir)")
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    data = {"args": vars(args)}
    host = TestHost()
    try:
        data["test_driver"] = run(host, args.vms, args.rounds, 1)
    finally:
        host.close()
    if not args.no_real:
        host = RealHost(args.dir or tempfile.mkdtemp(prefix="vmjobs-bench-"))
        try:
            data["real_daemon"] = run(host, args.real_vms, args.rounds,
                                      args.threads)
        finally:
            host.close()
    write_json("transient", data)


if __name__ == "__main__":
    main()
