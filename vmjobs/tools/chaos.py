"""The chaos run: two private libvirtds, each with its own `vmjobs serve`,
a seeded random mix of every verb (create, destroy, migrate both ways,
hibernate, restore, Job.abort) under random faults (kill -9 or SIGTERM of a
service then a restart, a restart of libvirtd, a service frozen with
SIGSTOP for a few seconds), and the invariants (chaos_checks) checked
whenever both hosts are quiet.

Replayable: the schedule (which operation or fault, on which host, with
which draw to pick its target) is drawn from the seed alone, never from an
outcome; the same seed gives the same schedule (targets are picked by the
draw among what exists at that moment). On a violation the run stops and
writes the seed, the schedule so far and what each step did to a JSON
file. docs/chaos.md says how to run and replay it."""

import collections
import json
import os
import random
import time
import uuid

from ..client import RemoteError
from .chaos_checks import check_quiet
from .chaos_host import ChaosHost, ServiceDown
from .chaos_ledger import Ledger
from .chaos_schedule import pick, schedule

ENDED = ("done", "failed", "aborted")
QUIET_BOUND = 300.0     # seconds both hosts may take to end every job
RECOVERY_BOUND = 120.0  # seconds a restarted service may take to recover
STOP_BOUND = 120.0      # seconds a SIGTERM may take (the run's TimeoutStopSec)


class Violation(Exception):
    pass


class ChaosRun:
    def __init__(self, workdir, seed, steps=None, duration=None, max_vms=6,
                 mem_mib=32, quiet_every=8, fault_rate=0.03):
        self.workdir = os.path.abspath(workdir)
        self.seed = seed
        self.steps, self.duration = steps, duration
        self.max_vms, self.mem_mib = max_vms, mem_mib
        self.quiet_every = quiet_every
        self.fault_rate = fault_rate
        state_dir = os.path.join(self.workdir, "states")
        os.makedirs(state_dir, exist_ok=True)
        self.state_dir = state_dir
        self.hosts = [ChaosHost(name, os.path.join(self.workdir, name),
                                state_dir) for name in ("a", "b")]
        self._ids = random.Random(seed + 1)   # VM ids, from the seed too
        self.ledger = Ledger()
        # job id -> (host index, kind, vm, path, step)
        self.inflight = {}
        self.log = []
        self.ops = collections.Counter()     # (kind, outcome)
        self.faults = collections.Counter()
        self.checks = 0
        self.violations = []
        self.violation_file = None
        self._files_made = 0

    # -- the run ----------------------------------------------------------------

    def run(self):
        started = time.monotonic()
        try:
            for host in self.hosts:
                host.start_daemon()
                host.start_service()
            for i, step in enumerate(schedule(self.seed, self.fault_rate)):
                if self.steps is not None and i >= self.steps:
                    break
                if self.duration is not None and \
                        time.monotonic() - started > self.duration:
                    break
                self._step(i, step)
                if step[0] == "fault" or (i + 1) % self.quiet_every == 0:
                    self._quiet_and_check(i)
            self._quiet_and_check("end")
            self._check_files()
        except Violation as exc:
            self.violations.append(str(exc))
            self._write_violation(str(exc))
        finally:
            for host in self.hosts:
                host.close()
        self.seconds = time.monotonic() - started
        return not self.violations

    def _step(self, i, step):
        what, kind, h, draw = step
        entry = {"step": i, "what": what, "kind": kind,
                 "host": self.hosts[h].name}
        self.log.append(entry)
        if what == "fault":
            self.faults[kind] += 1
            entry["outcome"] = getattr(self, f"_fault_{kind}")(h, draw)
        else:
            try:
                outcome = getattr(self, f"_op_{kind}")(h, draw, entry)
            except RemoteError as exc:
                outcome = f"refused {exc.code}"
            except ServiceDown:
                outcome = "unreachable"
            entry["outcome"] = outcome
            self.ops[(kind, outcome)] += 1

    # -- operations ---------------------------------------------------------------

    def _public(self, h):
        return self.hosts[h].call("Host.getVMList")

    def _queue(self, h, kind, vm_id, entry, answer, path=None):
        job_id = answer["jobId"] if "jobId" in answer else \
            answer["params"]["jobId"]
        self.inflight[job_id] = (h, kind, vm_id, path, entry["step"])
        entry.update(vm=vm_id, job=job_id)
        return "queued"

    def _op_create(self, h, draw, entry):
        ledger = self.ledger
        if len(ledger.expected | ledger.uncertain) + len(ledger.files) >= \
                self.max_vms:
            return "skipped"
        vm_id = str(uuid.UUID(int=self._ids.getrandbits(128), version=4))
        answer = self.hosts[h].call("VM.create", vmID=vm_id, vmParams={
            "vmId": vm_id, "vmName": f"chaos-{vm_id[:8]}",
            "memSize": self.mem_mib})
        return self._queue(h, "create", vm_id, entry, answer)

    def _op_destroy(self, h, draw, entry):
        vm_id = pick(self._public(h), draw)
        if vm_id is None:
            return "skipped"
        entry["vm"] = vm_id
        try:
            self.hosts[h].call("VM.destroy", vmID=vm_id)
        except ServiceDown:
            self.ledger.destroy_lost(vm_id)
            raise
        self.ledger.destroy_answered(vm_id, entry["step"])
        return "done"

    def _op_migrate(self, h, draw, entry):
        vm_id = pick(self._public(h), draw)
        if vm_id is None:
            return "skipped"
        other = self.hosts[1 - h]
        answer = self.hosts[h].call("VM.migrate", vmID=vm_id, params={
            "dst": other.listen, "dstUri": other.migration_uri,
            "migrationUri": "tcp://127.0.0.1"})
        return self._queue(h, "migrate", vm_id, entry, answer)

    def _op_hibernate(self, h, draw, entry):
        vm_id = pick(self._public(h), draw)
        if vm_id is None:
            return "skipped"
        self._files_made += 1
        path = os.path.join(self.state_dir, f"{self._files_made}.state")
        answer = self.hosts[h].call("VM.hibernate", vmID=vm_id,
                                    hibernationVolHandle=path)
        return self._queue(h, "hibernate", vm_id, entry, answer, path)

    def _op_restore(self, h, draw, entry):
        path = pick(self.ledger.restorable(), draw)
        if path is None:
            return "skipped"
        vm_id = self.ledger.files[path]
        # Taken even if the answer is lost (it may have been queued); free
        # again once both hosts are quiet.
        self.ledger.restoring.add(path)
        try:
            answer = self.hosts[h].call("VM.create", vmID=vm_id, vmParams={
                "vmId": vm_id, "restoreState": path})
        except RemoteError:
            self.ledger.restoring.discard(path)
            raise
        return self._queue(h, "restore", vm_id, entry, answer, path)

    def _op_abort(self, h, draw, entry):
        job_id = pick([j for j, v in self.inflight.items() if v[0] == h],
                      draw)
        if job_id is None:
            return "skipped"
        entry["job"] = job_id
        self.hosts[h].call("Job.abort", jobId=job_id)
        return "done"

    # -- faults -------------------------------------------------------------------

    def _restarted(self, h, how):
        host = self.hosts[h]
        host.start_service()
        if not host.wait_recovered(RECOVERY_BOUND):
            raise Violation(f"{host.name}: recovery did not end within "
                            f"{RECOVERY_BOUND:g} s after {how}")
        return "recovered"

    def _fault_kill9(self, h, draw):
        self.hosts[h].kill()
        return self._restarted(h, "kill -9")

    def _fault_sigterm(self, h, draw):
        if not self.hosts[h].terminate(STOP_BOUND):
            raise Violation(f"{self.hosts[h].name}: SIGTERM did not stop "
                            f"the service within {STOP_BOUND:g} s")
        return self._restarted(h, "SIGTERM")

    def _fault_libvirtd(self, h, draw):
        self.hosts[h].sandbox.restart_daemon()
        return "restarted"

    def _fault_sigstop(self, h, draw):
        self.hosts[h].freeze(1.0 + 3.0 * draw)
        return "resumed"

    # -- outcomes and checks --------------------------------------------------------

    def _quiet_and_check(self, i):
        # Quiet is one pass over both hosts that finds every job ended and
        # no job new since the pass before: a job on one host (a migration's
        # source) may start one on the other while the first is looked at.
        deadline = time.monotonic() + QUIET_BOUND
        seen = None
        while True:
            ids, busy = set(), None
            for host in self.hosts:
                try:
                    jobs = host.call("Host.getJobs")
                except ServiceDown as exc:
                    raise Violation(f"step {i}: {exc}") from None
                ids.update(jobs)
                if busy is None and not all(
                        job["status"] in ENDED for job in jobs.values()):
                    busy = host.name
            if busy is None and ids == seen:
                break
            if time.monotonic() > deadline:
                raise Violation(f"step {i}: {busy or 'a host'} not quiet "
                                f"within {QUIET_BOUND:g} s")
            seen = ids
            time.sleep(0.2)
        self._collect_outcomes()
        self._resolve_uncertain()
        self.checks += 1
        found = check_quiet(self.hosts, self.ledger.expected)
        if found:
            raise Violation(f"step {i}: " + "; ".join(found))

    def _collect_outcomes(self):
        for job_id, (h, kind, vm_id, path, step) in \
                list(self.inflight.items()):
            try:
                info = self.hosts[h].call("Host.getJobs",
                                          job_ids=[job_id]).get(job_id)
            except RemoteError:
                info = None   # unknown: its service restarted since
            del self.inflight[job_id]
            status = info["status"] if info else "lost"
            self.ops[(f"{kind} job", status)] += 1
            self.ledger.job_ended(kind, vm_id, path, step, status)

    def _resolve_uncertain(self):
        public = set()
        for h in range(len(self.hosts)):
            public.update(self._public(h))
        self.ledger.resolve(public)

    def _check_files(self):
        """Every unconsumed state file still restores (on host a), then
        its VM is destroyed."""
        host = self.hosts[0]
        for path, vm_id in sorted(self.ledger.files.items()):
            answer = host.call("VM.create", vmID=vm_id, vmParams={
                "vmId": vm_id, "restoreState": path})
            job_id = answer["jobId"]
            deadline = time.monotonic() + QUIET_BOUND
            while (info := host.call("Host.getJobs", job_ids=[job_id])[
                    job_id])["status"] not in ENDED:
                if time.monotonic() > deadline:
                    raise Violation(f"restore of {path} did not end")
                time.sleep(0.2)
            self.checks += 1
            if info["status"] != "done":
                raise Violation(f"state file {path} of VM {vm_id} does not "
                                f"restore: {info.get('error')}")
            host.call("VM.destroy", vmID=vm_id)

    def _write_violation(self, what):
        self.violation_file = os.path.join(self.workdir,
                                           f"violation-{self.seed}.json")
        with open(self.violation_file, "w") as f:
            json.dump({"seed": self.seed, "violation": what,
                       "steps": self.log}, f, indent=1)

    def figures(self):
        return {"seed": self.seed, "seconds": round(self.seconds, 1),
                "steps": len(self.log),
                "operations": {f"{k} {o}": n for (k, o), n in
                               sorted(self.ops.items())},
                "faults": dict(sorted(self.faults.items())),
                "invariant_checks": self.checks,
                "violations": self.violations,
                "violation_file": self.violation_file}
