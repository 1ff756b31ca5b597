"""The load test over several hosts, playing the engine: VMs are started
on every host (round robin), and some of them, once Up, are migrated to
the next host through VM.migrate; no simulation: the hosts' libvirtds move
them. At the end every VM must be public on exactly one host, the one its
last job left it on, and the test says which are not.

It follows every host's events (GET /events; tools.follow), as an engine
would: a job's end starts what comes next, a VM's time-to-Up ends at its
Up event on its first host, a migration's at its Up event on the
destination, and the total at the last of them.

    vmjobs loadtest --server unix:A/vmjobs.sock --server unix:B/vmjobs.sock \\
        --dst-uri 'qemu+unix:///system?socket=A/sock/libvirt-sock' \\
        --dst-uri 'qemu+unix:///system?socket=B/sock/libvirt-sock' \\
        --migration-uri tcp://127.0.0.1 --mix create=60,migrate=40

`--dst-uri` is each server's libvirtd as the other libvirtds reach it (in
the order of `--server`); `--migration-uri` where the data goes (needed
when the hosts' names do not resolve to where their libvirtds listen, as
for two sandboxes on one machine). Servers on one machine that reach
each other over Unix sockets must be started with those sockets'
directories in `migration.socket_dirs` (`--migration-socket-dir A
--migration-socket-dir B`): VM.migrate refuses any other socket."""

import functools
import queue
import random
import sys
import time
import uuid

from workers import ENDED

from ..notifications import JOB_STATUS, RESYNC, VM_STATUS
from . import report
from .mix import split
from .retry import no_retries, retrying
from .targets import Remote

MODES = ("create", "migrate")


def run_hosts(servers, dst_uris, vms=20, mix=None, mem_mib=64,
              migration_uri=None, tls=(None,) * 3, keep=False,
              out=sys.stdout, seed=0):
    """Run the load test on `servers`, print its summary, return it."""
    mix = mix or {"create": 60, "migrate": 40}
    unknown = set(mix) - set(MODES)
    if unknown:
        raise ValueError(f"over several servers the modes are create and "
                         f"migrate, not {', '.join(sorted(unknown))}")
    if len(servers) < 2 or len(dst_uris) != len(servers):
        raise ValueError("give two servers or more, and one --dst-uri for "
                         "each (its libvirtd, as the others reach it)")
    counts = split(vms, mix)
    hosts = [Remote(server, None, *tls) for server in servers]
    try:
        print(f"vmjobs loadtest: {vms} VMs over {len(hosts)} hosts "
              f"({counts.get('create', 0)} created, "
              f"{counts.get('migrate', 0)} created then migrated)",
              file=out, flush=True)
        storm = _HostsStorm(hosts, servers, dst_uris, migration_uri, mem_mib)
        rng = random.Random(seed)
        moves = [True] * counts.get("migrate", 0) + \
            [False] * counts.get("create", 0)
        rng.shuffle(moves)
        started = time.monotonic()
        records = storm.run(moves, out)
        summary = _summarize(records, (storm.last or time.monotonic()) -
                             started, storm.retried)
        summary["misplaced"] = storm.misplaced(records)
        _print(summary, out)
        if not keep:
            storm.destroy(records)
        return summary
    finally:
        for host in hosts:
            host.close()


class _HostsStorm:
    def __init__(self, hosts, servers, dst_uris, migration_uri, mem_mib):
        self.hosts = hosts
        self.servers = servers
        self.dst_uris = dst_uris
        self.migration_uri = migration_uri
        self.mem_mib = mem_mib
        self.retried = no_retries()
        self.last = None   # time.monotonic() of the last Up, or job end
        # Every host's events, in one queue: (host index, notification).
        self.events = queue.Queue()
        self.followers = [host.follower(
            sink=lambda n, i=i: self.events.put((i, n)))
            for i, host in enumerate(hosts)]

    def run(self, moves, out):
        """Create a VM per entry of `moves` (round robin over the hosts);
        migrate those whose entry is True to the next host once Up."""
        try:
            return self._run(moves, out)
        finally:
            for follower in self.followers:
                follower.close()

    def _run(self, moves, out):
        records = []
        watched = [{} for _ in self.hosts]   # per host: job id -> record
        self.by_vm = {}
        for i, move in enumerate(moves):
            vm_id, home = str(uuid.uuid4()), i % len(self.hosts)
            params = {"vmId": vm_id, "vmName": f"loadtest-{vm_id}",
                      "memSize": self.mem_mib}
            job_id, _ = retrying(functools.partial(
                _job_id, self.hosts[home], "VM.create", [vm_id, params]),
                self.retried)
            record = {"vm_id": vm_id, "home": home, "move": move,
                      "host": None, "create": None, "migrate": None,
                      "up": {}}   # host index -> wall time of its Up
            watched[home][job_id] = (record, "create")
            self.by_vm[vm_id] = record
            records.append(record)
        progress = report.Progress(out, len(moves) + sum(moves))
        while any(watched):
            index, notification = self.events.get()
            if notification is None:
                raise RuntimeError(f"{self.servers[index]} ended its event "
                                   "stream (it stops?)")
            self._take(index, notification, watched)
            infos = [info for r in records
                     for info in (r["create"], r["migrate"]) if info]
            failed = sum(1 for info in infos if info["status"] != "done")
            up = sum(1 for r in records if r["host"] is not None)
            progress.show("running", len(infos), up, failed, 0,
                          sum(len(jobs) for jobs in watched))
        progress.done()
        return records

    def _take(self, index, notification, watched):
        method, params = notification.method, notification.params
        when = self.followers[index].when(notification)
        if method.startswith(VM_STATUS):
            vm_id = method[len(VM_STATUS):]
            record = self.by_vm.get(vm_id)
            if record is not None and params[vm_id]["status"] == "Up":
                record["up"].setdefault(index, when + time.time() -
                                        time.monotonic())
                self.last = max(self.last or 0, when)
        elif method.startswith(JOB_STATUS):
            job_id = method[len(JOB_STATUS):]
            if job_id in watched[index] and \
                    params[job_id]["status"] in ENDED:
                self._ended(index, watched, job_id, params[job_id], when)
        elif method == RESYNC:   # missed events: the jobs say how they are
            infos = self.hosts[index].call(
                "Host.getJobs", {"job_ids": list(watched[index])})
            for job_id, info in infos.items():
                if info["status"] in ENDED:
                    self._ended(index, watched, job_id, info, None)

    def _ended(self, index, watched, job_id, info, when):
        """Job `job_id` on host `index` ended: what comes next."""
        record, kind = watched[index].pop(job_id)
        record[kind] = info
        if info["status"] != "done":
            self.last = max(self.last or 0, when or time.monotonic())
        elif kind == "create":
            record["host"] = index
            if record["move"]:
                self._migrate(record, index, watched)
        else:
            record["host"] = (index + 1) % len(self.hosts)

    def _migrate(self, record, index, watched):
        to = (index + 1) % len(self.hosts)
        params = {"dst": self.servers[to], "dstUri": self.dst_uris[to]}
        if self.migration_uri:
            params["migrationUri"] = self.migration_uri
        job_id, _ = retrying(lambda: self.hosts[index].call(
            "VM.migrate", [record["vm_id"], params])["jobId"], self.retried)
        watched[index][job_id] = (record, "migrate")

    def misplaced(self, records):
        """VMs not public on exactly the host their jobs left them on (and
        failed creations listed anywhere)."""
        public = [set(host.call("Host.getVMList")) for host in self.hosts]
        wrong = []
        for record in records:
            on = [i for i, vms in enumerate(public) if record["vm_id"] in vms]
            expected = [] if record["host"] is None else [record["host"]]
            if on != expected:
                wrong.append(f"VM {record['vm_id']} public on hosts {on}, "
                             f"expected on {expected}")
        return wrong

    def destroy(self, records):
        for record in records:
            if record["host"] is not None:
                self.hosts[record["host"]].call("VM.destroy",
                                                [record["vm_id"]])


def _seconds(info, up=None):
    """From the job's creation to the VM's Up event (`up`, wall time) or,
    without one, to the job's end."""
    return (up or info["ended"]) - info["created"]


def _summarize(records, total_s, retried):
    creates = [r["create"] for r in records]
    migrations = [r["migrate"] for r in records if r["migrate"]]
    failed = [info for info in creates + migrations
              if info["status"] != "done"]
    return {
        "vms": len(records),
        "total_s": total_s,
        "up": sum(1 for info in creates if info["status"] == "done"),
        "migrated": sum(1 for info in migrations
                        if info["status"] == "done"),
        "migrations": len(migrations),
        "failed": len(failed),
        "retried": dict(retried),
        "time_to_up": [_seconds(r["create"], r["up"].get(r["home"]))
                       for r in records if r["create"]["status"] == "done"],
        "migration_time": [_seconds(r["migrate"], r["up"].get(r["host"]))
                           for r in records if r["migrate"] and
                           r["migrate"]["status"] == "done"],
        "errors": [i.get("error", {}).get("message") or i["status"]
                   for i in failed],
    }


def _print(f, out):
    retried = ", ".join(f"{name} {n}" for name, n in f["retried"].items())
    print(f"total        {f['total_s']:.2f} s", file=out)
    print(f"Up           {f['up']}/{f['vms']}, retried: {retried}", file=out)
    print(f"migrated     {f['migrated']}/{f['migrations']}", file=out)
    print(f"time-to-Up   {report.pcts(f['time_to_up'], 50, 95, 99)}",
          file=out)
    print(f"migration    {report.pcts(f['migration_time'], 50, 95, 99)}",
          file=out)
    print(f"failures     {f['failed']}", file=out)
    for message in sorted(set(f["errors"]))[:5]:
        print(f"  failure: {message}", file=out)
    if f["misplaced"]:
        print(f"MISPLACED    {len(f['misplaced'])} VMs:", file=out)
        for line in f["misplaced"][:10]:
            print(f"  {line}", file=out)
    else:
        print("placement    every VM public on exactly one host", file=out)


def _job_id(host, verb, params):
    return host.call(verb, params)["jobId"]
