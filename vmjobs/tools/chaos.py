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
import signal
import subprocess
import threading
import time
import uuid

import libvirt

from ..client import RemoteError
from . import (
    chaos_fdlimit,
    chaos_hang,
    chaos_operator,
    chaos_partition,
    procfs,
)
from .chaos_checks import (
    Outside,
    arrivals_without_source,
    check_quiet,
    has_metadata,
    qemu_processes,
    wedged_by_a_migration,
)
from .chaos_host import ChaosHost, ServiceDidNotStart, ServiceDown
from .chaos_ledger import Ledger
from .chaos_logdisk import LogDisk, stderr_findings
from .chaos_schedule import DEFAULT_MIX, TCP_MIXES, pick, schedule, sub_draws

ENDED = ("done", "failed", "aborted")
# Violations that may be noted rather than stop a run (--known).
KNOWN = ("arrival-without-source", "unreadable-domain",
         "glib-abort-at-fd-limit")
QUIET_BOUND = 300.0     # seconds both hosts may take to end every job
RECOVERY_BOUND = 120.0  # seconds a restarted service may take to recover
STOP_BOUND = 120.0      # seconds a SIGTERM may take (the run's TimeoutStopSec)
# A state-file directory too small for a guest's state (a tmpfs): a
# hibernation into it fails in the middle of libvirt's save.
FULL_DIR_SIZE = "256k"
# Two verbs at once on one VM: (first, second); the second is sent at
# once or up to RACE_DELAY seconds later (into the first's job).
RACE_PAIRS = (("destroy", "migrate"), ("migrate", "destroy"),
              ("hibernate", "destroy"), ("migrate", "hibernate"),
              ("migrate", "migrate"), ("destroy", "destroy"),
              ("hibernate", "migrate"))
RACE_DELAY = 2.0
# A partition lasts 1 to 20 s; the kernel ends it by itself this long after
# it began, should the run die before it heals (chaos_partition).
PARTITION_SECONDS = (1.0, 20.0)
PARTITION_BACKSTOP = 30.0
# A service's log disk stays full for 4 to 16 steps (the log-full mix).
LOG_FULL_STEPS = (4, 16)
# A service out of descriptors (the fd-limit mix) for 1 to 8 s, with 0 to
# 3 descriptors to spare.
FD_LIMIT_SECONDS = (1.0, 8.0)
FD_LIMIT_SLACK = 4
# The operator mix: a virsh aimed at a job in flight lands 0 to 1.5 s
# into it (a 32 MiB guest's creation, save or transfer lasts about a
# second: at 0 to 3 s, seed 3401, most found the job over); at most this many domains of their own, and of vmjobs domains they
# started again, on a host at once (each a 32 MiB guest).
OPERATOR_MID_JOB = 1.5
OPERATOR_MAX_OWN = 2


class Violation(Exception):
    pass


class ChaosRun:
    def __init__(self, workdir, seed, steps=None, duration=None, max_vms=6,
                 mem_mib=32, quiet_every=8, fault_rate=0.03, mix=DEFAULT_MIX,
                 known=()):
        self.workdir = os.path.abspath(workdir)
        self.seed = seed
        self.steps, self.duration = steps, duration
        self.max_vms, self.mem_mib = max_vms, mem_mib
        self.quiet_every = quiet_every
        self.fault_rate = fault_rate
        self.mix = mix
        # Kinds of violation already diagnosed (KNOWN), noted rather than
        # stopping the run, so that it goes on to find others.
        self.known = set(known)
        self._noted = set()
        state_dir = os.path.join(self.workdir, "states")
        os.makedirs(state_dir, exist_ok=True)
        self.state_dir = state_dir
        # A second state directory, a small tmpfs (mounted in run(), before
        # the daemons' namespaces copy the mounts): hibernate_full.
        self.full_dir = os.path.join(self.workdir, "states-full")
        os.makedirs(self.full_dir, exist_ok=True)
        self._full_mounted = False
        self.hosts = [ChaosHost(name, os.path.join(self.workdir, name),
                                state_dir, extra_state_dirs=[self.full_dir],
                                tcp=mix in TCP_MIXES)
                      for name in ("a", "b")]
        # The log-full mix: each service's log on a disk of its own, and
        # the step at which a disk filled up has room again.
        self.log_disks = [LogDisk(host.log_dir) for host in self.hosts] \
            if mix == "log-full" else []
        self._full_until = {}   # host index -> step
        self._log_freed = set()   # hosts whose disk had room again since
        # The blocks of ports whose nftables table the run made.
        self._guarded = []
        # Migrations asked for around a partition or a hang: {job: fault}.
        self._fault_jobs = {}
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
        # VMs a VM.destroy answered true for in a race, since the last
        # check: {vm: step}; notes: what was seen of them (not violations).
        self._race_destroyed = {}
        self.notes = collections.Counter()
        self.rechecks = 0
        self._wedged = set()   # VMs seen in QEMU's postmigrate
        self._fd_limited = set()   # hosts fd_limit touched since a check
        # The operator mix: per host, what the operator did behind the
        # service's back (chaos_checks.Outside), the order their own
        # domains were made in, and the names of vmjobs domains seen
        # there ({name: the step last seen}: a name freed since is one an
        # operator may take).
        self._outside = [Outside() for _ in self.hosts]
        self._own_order = [[] for _ in self.hosts]
        self._names_seen = [{} for _ in self.hosts]
        self._own_ids = random.Random(seed + 2)
        # The hang mix: the vmIds of the fresh VM.create that checks a host
        # came back (chaos_hang.wedged), from the seed too.
        self._probe_ids = random.Random(seed + 3)

    # -- the run ----------------------------------------------------------------

    def _guard(self, ports):
        self._guarded.append(ports)
        chaos_partition.guard(ports)

    def run(self):
        started = time.monotonic()
        try:
            self._mount_full_dir()
            for disk in self.log_disks:
                if not disk.mount():
                    raise RuntimeError(f"cannot mount a tmpfs on {disk.dir}")
            if self.mix in TCP_MIXES:
                chaos_partition.clear_leftovers()
            for host in self.hosts:
                # A TCP libvirtd takes any local user: its port refuses all
                # but root before the daemon listens on it.
                host.start_daemon(before_start=self._guard
                                  if host.tcp else None)
                host.start_service()
            for i, step in enumerate(schedule(self.seed, self.fault_rate,
                                              self.mix)):
                if self.steps is not None and i >= self.steps:
                    break
                if self.duration is not None and \
                        time.monotonic() - started > self.duration:
                    break
                self._step(i, step)
                self._free_log_disks(i)
                if step[0] == "fault" or (i + 1) % self.quiet_every == 0:
                    self._quiet_and_check(i)
            self._free_log_disks(None)
            self._quiet_and_check("end")
            self._remove_own_domains()
            self._check_files()
        except (Violation, ServiceDidNotStart) as exc:
            # A service that cannot start again (its recovery died: seed
            # 3403's replay, round 13) is a violation too, with its file.
            self.violations.append(str(exc))
            self._write_violation(str(exc))
        finally:
            for ports in self._guarded:
                chaos_partition.remove(ports)
            for host in self.hosts:
                host.close()
            for disk in self.log_disks:
                disk.unmount()
            self._unmount_full_dir()
            # Every run's steps and notes, violation or not: a note (a VM
            # wedged, a known violation) is looked up there.
            with open(os.path.join(self.workdir, f"steps-{self.seed}.json"),
                      "w") as f:
                json.dump({"seed": self.seed, "notes": dict(self.notes),
                           "steps": self.log}, f, indent=1)
        self.seconds = time.monotonic() - started
        return not self.violations

    def _step(self, i, step):
        what, kind, h, draw = step
        entry = {"step": i, "what": what, "kind": kind,
                 "host": self.hosts[h].name}
        self.log.append(entry)
        if what == "fault":
            self.faults[kind] += 1
            entry["outcome"] = getattr(self, f"_fault_{kind}")(h, draw,
                                                               entry)
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

    def _op_create(self, h, draw, entry, paused=False):
        ledger = self.ledger
        if len(ledger.expected | ledger.uncertain) + len(ledger.files) >= \
                self.max_vms:
            return "skipped"
        vm_id = str(uuid.UUID(int=self._ids.getrandbits(128), version=4))
        params = {"vmId": vm_id, "vmName": f"chaos-{vm_id[:8]}",
                  "memSize": self.mem_mib}
        if paused:
            params["launchPaused"] = True
        answer = self.hosts[h].call("VM.create", vmID=vm_id,
                                    vmParams=params)
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
        return self._hibernate_into(self.state_dir, h, draw, entry)

    def _hibernate_into(self, directory, h, draw, entry):
        vm_id = pick(self._public(h), draw)
        if vm_id is None:
            return "skipped"
        self._files_made += 1
        path = os.path.join(directory, f"{self._files_made}.state")
        answer = self.hosts[h].call("VM.hibernate", vmID=vm_id,
                                    hibernationVolHandle=path)
        return self._queue(h, "hibernate", vm_id, entry, answer, path)

    def _op_restore(self, h, draw, entry, paused=False):
        path = pick(self.ledger.restorable(), draw)
        if path is None:
            return "skipped"
        vm_id = self.ledger.files[path]
        self._race_destroyed.pop(vm_id, None)
        # Taken even if the answer is lost (it may have been queued); free
        # again once both hosts are quiet.
        self.ledger.restoring.add(path)
        params = {"vmId": vm_id, "restoreState": path}
        if paused:
            params["launchPaused"] = True
        try:
            answer = self.hosts[h].call("VM.create", vmID=vm_id,
                                        vmParams=params)
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

    def _fault_kill9(self, h, draw, entry):
        self.hosts[h].kill()
        return self._restarted(h, "kill -9")

    def _fault_sigterm(self, h, draw, entry):
        if not self.hosts[h].terminate(STOP_BOUND):
            raise Violation(f"{self.hosts[h].name}: SIGTERM did not stop "
                            f"the service within {STOP_BOUND:g} s")
        return self._restarted(h, "SIGTERM")

    def _fault_libvirtd(self, h, draw, entry):
        self.hosts[h].sandbox.restart_daemon()
        return "restarted"

    def _fault_sigstop(self, h, draw, entry):
        self.hosts[h].freeze(1.0 + 3.0 * draw)
        return "resumed"

    # -- the wide mix: operations ---------------------------------------------------

    def _op_create_paused(self, h, draw, entry):
        return self._op_create(h, draw, entry, paused=True)

    def _op_restore_paused(self, h, draw, entry):
        return self._op_restore(h, draw, entry, paused=True)

    def _op_hibernate_full(self, h, draw, entry):
        if not self._full_mounted:
            return "skipped"
        return self._hibernate_into(self.full_dir, h, draw, entry)

    def _op_abort_later(self, h, draw, entry):
        """Job.abort of a job on host h (a migration if one runs there) at
        a random moment of it, up to 5 s after the step began."""
        more = sub_draws(draw)
        jobs = [j for j, v in self.inflight.items() if v[0] == h]
        migrations = [j for j in jobs if self.inflight[j][1] == "migrate"]
        job_id = pick(migrations or jobs, more.random())
        if job_id is None:
            return "skipped"
        entry["job"] = job_id
        entry["vm"] = self.inflight[job_id][2]
        entry["after"] = round(5.0 * more.random(), 2)
        time.sleep(entry["after"])
        self.hosts[h].call("Job.abort", jobId=job_id)
        return "done"

    def _op_race(self, h, draw, entry):
        """Two verbs at once on one public VM of host h (an engine and an
        operator, or an engine's retry): destroy, migrate, hibernate."""
        more = sub_draws(draw)
        vm_id = pick(self._public(h), more.random())
        if vm_id is None:
            return "skipped"
        pair = RACE_PAIRS[int(more.random() * len(RACE_PAIRS))]
        delay = 0.0 if more.random() < 0.4 else RACE_DELAY * more.random()
        entry.update(vm=vm_id, pair="+".join(pair), delay=round(delay, 2))
        paths = {}
        for n, kind in enumerate(pair):
            if kind == "hibernate":
                self._files_made += 1
                paths[n] = os.path.join(self.state_dir,
                                        f"{self._files_made}.state")
        other = self.hosts[1 - h]
        results = [None, None]
        start = threading.Barrier(2)

        def call(n, kind):
            start.wait()
            if n == 1 and delay:
                time.sleep(delay)
            try:
                if kind == "destroy":
                    answer = self.hosts[h].call_once("VM.destroy",
                                                     vmID=vm_id)
                elif kind == "migrate":
                    answer = self.hosts[h].call_once(
                        "VM.migrate", vmID=vm_id, params={
                        "dst": other.listen, "dstUri": other.migration_uri,
                        "migrationUri": "tcp://127.0.0.1"})
                else:
                    answer = self.hosts[h].call_once(
                        "VM.hibernate", vmID=vm_id,
                        hibernationVolHandle=paths[n])
                results[n] = ("answer", answer)
            except RemoteError as exc:
                results[n] = ("refused", exc.code)
            except ServiceDown:
                results[n] = ("down", None)
            except Exception as exc:   # noqa: BLE001 - recorded, not lost
                results[n] = ("error", repr(exc))

        threads = [threading.Thread(target=call, args=(n, kind))
                   for n, kind in enumerate(pair)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        outcomes, jobs = [], []
        for n, kind in enumerate(pair):
            how, value = results[n]
            if how == "answer" and kind == "destroy":
                self.ledger.destroy_answered(vm_id, entry["step"])
                self._race_destroyed[vm_id] = entry["step"]
                outcome = "done"
            elif how == "answer":
                job_id = value["jobId"]
                self.inflight[job_id] = (h, kind, vm_id, paths.get(n),
                                         entry["step"])
                jobs.append(job_id)
                outcome = "queued"
            elif how == "down":
                # Its answer lost: it may have been taken. Looked for.
                if kind == "destroy":
                    self.ledger.destroy_lost(vm_id)
                else:
                    self.ledger.job_ended(kind, vm_id, paths.get(n),
                                          entry["step"], "lost")
                outcome = "unreachable"
            elif how == "refused":
                outcome = f"refused {value}"
            else:
                raise Violation(f"step {entry['step']}: {kind} of VM "
                                f"{vm_id} in a race raised {value}")
            self.ops[(f"race {kind}", outcome)] += 1
            outcomes.append(f"{kind} {outcome}")
        entry.update(jobs=jobs, outcomes=outcomes)
        return "raced"

    # -- the wide mix: faults -------------------------------------------------------

    def _fault_qemu_kill(self, h, draw, entry):
        """kill -9 of one guest's QEMU on host h: its VM goes Down (or, if
        it was migrating, stays where the migration leaves it)."""
        found = self._guests(h)
        target = pick(found, draw)
        if target is None:
            return "no guest"
        vm_id, pid = target
        entry["vm"] = vm_id
        self.ledger.guest_killed(vm_id, entry["step"])
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return "gone already"
        # A moment for its lifecycle event and the watch's reading (the
        # run follows no stream of its hosts: the next check tells).
        time.sleep(1.0)
        return "killed"

    def _guests(self, h):
        """[(uuid, pid)] of host h's QEMU processes, but those of an
        operator's own domains (the operator mix): vmjobs', whatever
        registry knows them."""
        return [(u, p) for u, p in qemu_processes([self.hosts[h]])
                if u not in self._outside[h].external]

    def _fault_libvirtd_kill9(self, h, draw, entry):
        self.hosts[h].sandbox.restart_daemon(crash=True)
        return "restarted"

    def _fault_libvirtd_stop(self, h, draw, entry):
        """libvirtd frozen (SIGSTOP) 1 to 5 s: every call of the service
        and of the other libvirtd to it waits."""
        pid = self.hosts[h].sandbox.daemon_pid()
        if pid is None:
            return "no daemon"
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(1.0 + 4.0 * draw)
        finally:
            os.kill(pid, signal.SIGCONT)
        return "resumed"

    def _migrate_now(self, h, vm_id, entry):
        other = self.hosts[1 - h]
        answer = self.hosts[h].call("VM.migrate", vmID=vm_id, params={
            "dst": other.listen, "dstUri": other.migration_uri,
            "migrationUri": "tcp://127.0.0.1"})
        self._queue(h, "migrate", vm_id, entry, answer)
        self.ops[("migrate (in a fault)", "queued")] += 1

    def _fault_migrate_to_down(self, h, draw, entry):
        """VM.migrate to a host whose service is down (killed -9), which
        comes back up to 5 s later."""
        more = sub_draws(draw)
        vm_id = pick(self._public(h), more.random())
        other = 1 - h
        self.hosts[other].kill()
        outcome = "no VM"
        if vm_id is not None:
            try:
                self._migrate_now(h, vm_id, entry)
                outcome = "queued"
            except RemoteError as exc:
                outcome = f"refused {exc.code}"
        time.sleep(5.0 * more.random())
        self._restarted(other, "kill -9 (migrate_to_down)")
        return outcome

    def _fault_kill_both_mid_migration(self, h, draw, entry):
        """A migration from host h, then, 0 to 4 s into it, kill -9 of both
        services (in a drawn order), then both restart."""
        more = sub_draws(draw)
        vm_id = pick(self._public(h), more.random())
        if vm_id is not None:
            try:
                self._migrate_now(h, vm_id, entry)
            except RemoteError as exc:
                entry["migrate"] = f"refused {exc.code}"
        after = 4.0 * more.random()
        order = [h, 1 - h] if more.random() < 0.5 else [1 - h, h]
        entry.update(after=round(after, 2),
                     order=[self.hosts[i].name for i in order])
        time.sleep(after)
        for i in order:
            self.hosts[i].kill()
        for i in order:
            self.hosts[i].start_service()
        for i in order:
            if not self.hosts[i].wait_recovered(RECOVERY_BOUND):
                raise Violation(f"{self.hosts[i].name}: recovery did not "
                                f"end within {RECOVERY_BOUND:g} s after "
                                "kill -9 of both services")
        return "recovered"

    # -- the deep mix -----------------------------------------------------------

    def _op_outside_pause(self, h, draw, entry):
        """An operator's `virsh suspend` or `virsh resume` of one public
        VM's guest on host h, outside vmjobs, whatever job may work on it
        (libvirt refuses what its own jobs forbid): vmjobs follows the
        guest (Paused, Up) once no job holds the VM."""
        vm_id = pick(self._public(h), draw)
        if vm_id is None:
            return "skipped"
        entry["vm"] = vm_id
        conn = self.hosts[h].connect()
        try:
            dom = conn.lookupByUUIDString(vm_id)
            if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                entry["did"] = "resume"
                dom.resume()
            else:
                entry["did"] = "suspend"
                dom.suspend()
        except libvirt.libvirtError as exc:
            entry["libvirt"] = exc.get_error_message()
            return f"refused by libvirt {exc.get_error_code()}"
        finally:
            conn.close()
        return entry["did"]

    def _fault_qemu_stop(self, h, draw, entry):
        """One guest's QEMU on host h frozen (SIGSTOP) 1 to 5 s, then
        SIGCONT: a host under memory pressure, a debugger. Its monitor does
        not answer meanwhile; the guest is not lost."""
        target = pick(self._guests(h), draw)
        if target is None:
            return "no guest"
        vm_id, pid = target
        entry["vm"] = vm_id
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            return "gone already"
        try:
            time.sleep(1.0 + 4.0 * draw)
        finally:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass   # destroyed while frozen (SIGKILL ends it so)
        return "resumed"

    def _fault_kill9_mid_recovery(self, h, draw, entry):
        """A migration or a hibernation from host h; once libvirt moves or
        saves the guest (its job in step migrate or save, up to 3 s), its
        QEMU is frozen (SIGSTOP) or not, so that libvirt's job lasts; kill
        -9 of h's service, which restarts and finds the guest leaving or
        saving (its recovery waits for it to settle), and is killed -9
        again 0 to 0.5 s into that recovery; then the QEMU goes on
        (SIGCONT) and the service restarts."""
        more = sub_draws(draw)
        vm_draw, verb_draw, freeze, second = (more.random()
                                              for _ in range(4))
        vm_id = pick(self._public(h), vm_draw)
        host = self.hosts[h]
        step = "migrate" if verb_draw < 0.5 else "save"
        if vm_id is not None:
            self._into_step(h, vm_id, step, entry)
        frozen = None
        if vm_id is not None and freeze < 0.5:
            frozen = dict(qemu_processes([host])).get(vm_id)
            if frozen is not None:
                os.kill(frozen, signal.SIGSTOP)
        entry.update(frozen=frozen is not None, second=round(0.5 * second, 2))
        try:
            host.kill()
            host.start_service()
            time.sleep(0.5 * second)
            try:
                entry["recovering"] = host.call("Host.getStats")[
                    "recovering"]
            except (RemoteError, ServiceDown):
                entry["recovering"] = None
            host.kill()
        finally:
            if frozen is not None:
                try:
                    os.kill(frozen, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        return self._restarted(h, "kill -9 in its recovery")

    def _job_step(self, h, job_id):
        """The step job_id is in on host h ('ended', 'unknown')."""
        try:
            info = self.hosts[h].call("Host.getJobs",
                                      job_ids=[job_id]).get(job_id)
        except (RemoteError, ServiceDown):
            return "unknown"
        if info is None or info["status"] in ENDED:
            return "ended"
        return info.get("step") or "none"

    def _into_step(self, h, vm_id, step, entry):
        """Ask h to migrate vm_id away (`step` "migrate") or to hibernate
        it ("save"), and wait up to 3 s for its job to reach that step,
        where libvirt does the work (entry["reached"])."""
        try:
            if step == "migrate":
                self._migrate_now(h, vm_id, entry)
            else:
                self._hibernate_now(h, vm_id, entry)
        except RemoteError as exc:
            entry["verb"] = f"refused {exc.code}"
        if "job" in entry:
            entry["reached"] = self._wait_for_step(h, entry["job"], step,
                                                   3.0)

    def _wait_for_step(self, h, job_id, step, bound):
        """The step job_id reached on host h: `step`, or the one it was in
        `bound` seconds later (or 'ended', 'unknown')."""
        deadline = time.monotonic() + bound
        seen = "unknown"
        while time.monotonic() < deadline:
            seen = self._job_step(h, job_id)
            if seen in (step, "ended", "unknown"):
                break
            # (A look, not a stream: the run kills and freezes the very
            # service it would follow, mid-step.)
            time.sleep(0.02)
        return seen

    def _hibernate_now(self, h, vm_id, entry):
        self._files_made += 1
        path = os.path.join(self.state_dir, f"{self._files_made}.state")
        answer = self.hosts[h].call("VM.hibernate", vmID=vm_id,
                                    hibernationVolHandle=path)
        self._queue(h, "hibernate", vm_id, entry, answer, path)
        self.ops[("hibernate (in a fault)", "queued")] += 1

    # -- the partition mix ----------------------------------------------------------

    def _fault_partition(self, h, draw, entry):
        """A network partition while migrations run: a migration from host
        h (and, one time in two, one back to h from the other host), each
        at full speed or capped at 4 to 15 MiB/s; at a drawn moment of the
        first (_wait_for_the_moment) every packet to host h's ports (one
        time in two: to both hosts') is
        dropped for 1 to 20 s, then the link heals. While only h is cut,
        one time in two the other host is asked for a migration to h,
        whose destination it cannot reach."""
        more = sub_draws(draw)
        (scope, back, during, vm_a, vm_b, vm_c, cap_a, cap_b, moment,
         length) = (more.random() for _ in range(10))
        other = 1 - h
        cut = [h] if scope < 0.5 else [h, other]
        seconds = PARTITION_SECONDS[0] + \
            (PARTITION_SECONDS[1] - PARTITION_SECONDS[0]) * length
        entry.update(cut=[self.hosts[i].name for i in cut],
                     seconds=round(seconds, 2), migrations=[])
        self._migrate_around_cut(h, vm_a, cap_a, entry, "before")
        if back < 0.5:
            self._migrate_around_cut(other, vm_b, cap_b, entry, "before")
        self._wait_for_the_moment(moment, entry)
        for asked in entry["migrations"]:
            if "job" in asked:
                source = 0 if asked["from"] == self.hosts[0].name else 1
                asked["at_cut"] = self._job_step(source, asked["job"])
                self.ops[("migrate at the cut", asked["at_cut"])] += 1
        for i in cut:
            chaos_partition.cut(self.hosts[i].sandbox.ports,
                                PARTITION_BACKSTOP)
        try:
            if len(cut) == 1 and during < 0.5:
                self._migrate_around_cut(other, vm_c, None, entry, "during")
            time.sleep(seconds)
        finally:
            for i in cut:
                chaos_partition.heal(self.hosts[i].sandbox.ports)
        return "healed"

    def _wait_for_the_moment(self, moment, entry):
        """Until the moment of the cut, drawn from `moment`: at once (one
        time in four), once the first migration asked for is in step
        prepare-destination (one in four), or 0 to 1 s into its step
        migrate (a 32 MiB guest's transfer lasts about a second: a
        fixed delay mostly missed it)."""
        jobs = [(0 if a["from"] == self.hosts[0].name else 1, a["job"])
                for a in entry["migrations"] if "job" in a]
        if moment < 0.25 or not jobs:
            entry["moment"] = "at once"
            return
        source, job_id = jobs[0]
        step = "prepare-destination" if moment < 0.5 else "migrate"
        entry["moment"] = self._wait_for_step(source, job_id, step, 5.0)
        if step == "migrate":
            entry["after"] = round(2.0 * (moment - 0.5), 2)
            time.sleep(entry["after"])

    def _migrate_around_cut(self, h, draw, cap, entry, when,
                            fault="partition"):
        """VM.migrate of a public VM of host h, drawn, to the other host, at
        most `cap` (0-1: 4 to 16 MiB/s; above 0.5 or None: full speed);
        its outcome counted apart, as a migration under `fault`."""
        vm_id = pick(self._public(h), draw)
        if vm_id is None:
            return
        other = self.hosts[1 - h]
        params = {"dst": other.listen, "dstUri": other.migration_uri,
                  "migrationUri": "tcp://127.0.0.1"}
        if cap is not None and cap < 0.5:
            params["maxBandwidth"] = 4 + int(24 * cap)
        asked = {"step": entry["step"], "from": self.hosts[h].name,
                 "when": when, "vm": vm_id,
                 "maxBandwidth": params.get("maxBandwidth")}
        entry["migrations"].append(asked)
        try:
            answer = self.hosts[h].call("VM.migrate", vmID=vm_id,
                                        params=params)
        except RemoteError as exc:
            asked["outcome"] = f"refused {exc.code}"
            return
        except ServiceDown:
            asked["outcome"] = "unreachable"
            self.ledger.job_ended("migrate", vm_id, None, entry["step"],
                                  "lost")
            return
        self._queue(h, "migrate", vm_id, asked, answer)
        asked["outcome"] = "queued"
        self._fault_jobs[asked["job"]] = fault
        self.ops[(f"migrate (in a {fault})", "queued")] += 1

    # -- the log-full mix ------------------------------------------------------------

    def _fault_log_full(self, h, draw, entry):
        """Host h's log disk full (ENOSPC) for this step and the next 4
        to 16, operations and faults (a restart among them) alike."""
        disk = self.log_disks[h]
        low, high = LOG_FULL_STEPS
        self._full_until[h] = entry["step"] + low + int((high - low) * draw)
        entry["until"] = self._full_until[h]
        if disk.full:
            return "still full"
        disk.fill()
        return "full"

    def _free_log_disks(self, i):
        """After step i (None: at the run's end), give room back to the
        log disks whose time has come; said in step i's entry."""
        for h, until in list(self._full_until.items()):
            if i is None or i >= until:
                del self._full_until[h]
                self.log_disks[h].free()
                self._log_freed.add(h)
                if i is not None:
                    self.log[-1].setdefault("log disk has room after",
                                            []).append(self.hosts[h].name)

    def _check_logs(self, i):
        """Once a log disk had room again: a verb (its audit line is
        written before its answer), then what the service said of its
        log (chaos_logdisk.stderr_findings)."""
        for h in sorted(self._log_freed):
            if self.log_disks[h].full:
                continue   # full again: checked once it has room
            self._log_freed.discard(h)
            host = self.hosts[h]
            host.call("Host.ping")
            found, (lost, back) = stderr_findings(
                host.name, [host.stderr_path(n)
                            for n in range(1, host.starts + 1)],
                host.stderr_path(host.starts))
            self.checks += 1
            self.notes[f"{host.name}: log disk full, runs of lost lines "
                       "said"] = lost
            self.notes[f"{host.name}: log disk full, written again "
                       "said"] = back
            if found:
                raise Violation(f"step {i}: " + "; ".join(found))

    # -- the fd-limit mix -------------------------------------------------------------

    def _fault_fd_limit(self, h, draw, entry):
        """Host h's service out of file descriptors for 1 to 8 s
        (chaos_fdlimit): its soft limit lowered so that 0 to 3 more
        descriptors fit; meanwhile a migration from h, a hibernation on h and a
        migration to h from the other host (each one time in two, on the
        connections the run holds), then the limit is back. Checked
        after: every invariant (the check follows every fault) and no
        traceback on the service's stderr; the CPU time it took while
        limited is noted (an accept loop that spins on EMFILE)."""
        more = sub_draws(draw)
        (out, hib, back, vm_a, vm_b, vm_c, length, spare) = (
            more.random() for _ in range(8))
        host = self.hosts[h]
        pid = host.process.pid
        low, high = FD_LIMIT_SECONDS
        seconds = low + (high - low) * length
        slack = int(FD_LIMIT_SLACK * spare)
        cpu = procfs.cpu_seconds([pid])
        before = chaos_fdlimit.lower(pid, slack)
        entry.update(seconds=round(seconds, 2), slack=slack,
                     fds=chaos_fdlimit.open_fds(pid), asked=[])
        started = time.monotonic()
        try:
            for wanted, kind, source, pick_draw in (
                    (out, "migrate", h, vm_a), (hib, "hibernate", h, vm_b),
                    (back, "migrate", 1 - h, vm_c)):
                if wanted >= 0.5:
                    continue
                asked = {"step": entry["step"], "kind": kind,
                         "from": self.hosts[source].name}
                try:
                    # (its list too may be answered 503 at the limit)
                    vm_id = pick(self._public(source), pick_draw)
                except (RemoteError, ServiceDown) as exc:
                    asked["outcome"] = f"no list: {exc}"[:200]
                    entry["asked"].append(asked)
                    continue
                if vm_id is None:
                    continue
                asked["vm"] = vm_id
                entry["asked"].append(asked)
                try:
                    if kind == "migrate":
                        self._migrate_now(source, vm_id, asked)
                    else:
                        self._hibernate_now(source, vm_id, asked)
                    asked["outcome"] = "queued"
                except RemoteError as exc:
                    asked["outcome"] = f"refused {exc.code}"
                except ServiceDown:
                    asked["outcome"] = "unreachable"
                    self.ledger.job_ended(kind, vm_id, None, entry["step"],
                                          "lost")
            time.sleep(max(0.0, seconds - (time.monotonic() - started)))
        finally:
            chaos_fdlimit.give_back(pid, before)
        if self._died_at_fd_limit(h, entry["step"]):
            entry["died"] = True
            return self._restarted(h, "its death at the fd limit")
        spent = procfs.cpu_seconds([pid]) - cpu
        entry["cpu"] = round(spent, 2)
        self.notes["fd_limit: service CPU seconds while limited"] = round(
            self.notes["fd_limit: service CPU seconds while limited"]
            + spent, 2)
        self.notes["fd_limit: seconds limited"] = round(
            self.notes["fd_limit: seconds limited"]
            + time.monotonic() - started, 2)
        self._fd_limited.add(h)
        return "limit back"

    def _died_at_fd_limit(self, h, i):
        """True if host h's service died at its descriptor limit in a
        GLib abort (libvirt's, known: chaos_fdlimit.glib_abort), then
        noted with --known glib-abort-at-fd-limit; else a violation. False
        if it runs, or died otherwise."""
        host = self.hosts[h]
        if host.process is None or host.process.poll() is None:
            return False
        line = chaos_fdlimit.glib_abort(host.stderr_path(host.starts))
        if line is None:
            return False
        what = (f"{host.name}: the service died at its descriptor limit "
                f"(exit {host.process.returncode}): {line}")
        if "glib-abort-at-fd-limit" not in self.known:
            raise Violation(f"step {i}: {what}")
        self._note_known(i, "glib-abort-at-fd-limit", what, what)
        host.kill()   # (reaped; its client closed)
        return True

    def _check_fd_limited(self, i):
        """After a check that followed fd_limit: no stderr file of that
        host holds a traceback (a thread dead of EMFILE)."""
        for h in sorted(self._fd_limited):
            host = self.hosts[h]
            found = chaos_fdlimit.tracebacks(
                [host.stderr_path(n) for n in range(1, host.starts + 1)])
            self.checks += 1
            if found:
                raise Violation(f"step {i}: {host.name}: a traceback after "
                                f"fd_limit in {', '.join(found)}")
        self._fd_limited.clear()

    # -- the operator mix -------------------------------------------------------------

    def _outside_by_name(self):
        return {host.name: self._outside[h]
                for h, host in enumerate(self.hosts)}

    def _look_outside(self, i, public):
        """Once quiet: the names of the vmjobs domains on each host (an
        operator may take one once it is freed); a domain the operator
        started that is public since (a recovery adopted it) or gone is
        theirs no more."""
        for h, host in enumerate(self.hosts):
            conn = host.connect()
            try:
                self._see_names(h, conn, i)
                live = {dom.UUIDString() for dom in conn.listAllDomains(
                    libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)}
            finally:
                conn.close()
            self._outside[h].started &= live - public

    def _marked(self, h, conn, live=False):
        """{uuid: domain} of the vmjobs domains on host h (any state; with
        `live`, running or paused ones: an operator's virsh aims at a
        guest, and the stopped definitions the mix leaves would otherwise
        draw most of its refusals)."""
        found = {}
        flags = libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE if live else 0
        for dom in conn.listAllDomains(flags):
            if has_metadata(dom):
                found[dom.UUIDString()] = dom
        return found

    def _see_names(self, h, conn, step):
        for dom in self._marked(h, conn).values():
            try:
                self._names_seen[h][dom.name()] = step
            except libvirt.libvirtError:
                pass

    def _op_virsh(self, h, draw, entry):
        """An operator's virsh (chaos_operator.ACTIONS, drawn) on one
        vmjobs domain of host h: one time in two that of a job in flight
        there (a creation, a restore, a hibernation, a migration either
        way), 0 to 1.5 s into it; else any running or paused one (any at
        all for a define)."""
        more = sub_draws(draw)
        action, aim, which, when, how = (more.random() for _ in range(5))
        action = chaos_operator.ACTIONS[
            int(action * len(chaos_operator.ACTIONS))]
        entry["action"] = action
        # Jobs the run started that are still under way (the run forgets
        # its ended ones only at its next check: at first most "mid-job"
        # virsh found a hibernated or migrated VM's domain gone).
        moving = sorted({vm for job_id, (src, kind, vm, _p, _s) in
                         self.inflight.items()
                         if (src == h or kind == "migrate") and
                         self._job_step(src, job_id) not in ("ended",
                                                             "unknown")})
        if aim < 0.5 and moving:
            vm_id = pick(moving, which)
            entry["after"] = round(OPERATOR_MID_JOB * when, 2)
            entry["mid_job"] = True
            time.sleep(entry["after"])
        else:
            conn = self.hosts[h].connect()
            try:
                vm_id = pick(self._marked(h, conn, live=action != "define"),
                             which)
            finally:
                conn.close()
        if vm_id is None:
            return f"{action} skipped"
        return f"{action} {self._virsh(h, vm_id, action, how, entry)}"

    def _virsh(self, h, vm_id, action, draw, entry):
        """`action` on host h's domain vm_id (chaos_operator.act): 'done',
        'no domain', or libvirt's refusal."""
        entry["vm"] = vm_id
        conn = self.hosts[h].connect()
        try:
            try:
                dom = conn.lookupByUUIDString(vm_id)
            except libvirt.libvirtError:
                return "no domain"
            self._see_names(h, conn, entry["step"])
            try:
                entry["did"] = chaos_operator.act(dom, action, draw)
            except libvirt.libvirtError as exc:
                entry["libvirt"] = exc.get_error_message()[:300]
                return f"refused by libvirt {exc.get_error_code()}"
        finally:
            conn.close()
        if action in chaos_operator.STOPS_THE_GUEST:
            # Its VM goes Down (or its job fails): looked for.
            self.ledger.guest_killed(vm_id, entry["step"])
        return "done"

    def _op_virsh_start(self, h, draw, entry):
        """virsh start of a vmjobs domain the operator saved
        (managedsave) on host h: libvirt restores it, in no registry
        (counted unowned). At OPERATOR_MAX_OWN such, the engine removes
        the oldest with VM.destroy instead."""
        started = self._outside[h].started
        if len(started) >= OPERATOR_MAX_OWN:
            vm_id = sorted(started)[0]
            entry["vm"] = vm_id
            started.discard(vm_id)
            self.hosts[h].call("VM.destroy", vmID=vm_id)
            self.ledger.destroy_answered(vm_id, entry["step"])
            return "VM.destroy of one started"
        conn = self.hosts[h].connect()
        try:
            saved = {uuid: dom for uuid, dom in self._marked(h, conn).items()
                     if dom.hasManagedSaveImage(0)}
            vm_id = pick(saved, draw)
            if vm_id is None:
                return "skipped"
            entry["vm"] = vm_id
            try:
                saved[vm_id].create()
            except libvirt.libvirtError as exc:
                entry["libvirt"] = exc.get_error_message()[:300]
                return f"refused by libvirt {exc.get_error_code()}"
        finally:
            conn.close()
        started.add(vm_id)
        return "started"

    def _op_external_domain(self, h, draw, entry):
        """The operator's own domain (no vmjobs metadata) on host h, named
        as a vmjobs VM that has just left it (one of the three last
        seen); at OPERATOR_MAX_OWN of them, the oldest is destroyed
        instead (virsh destroy of their own)."""
        outside = self._outside[h]
        conn = self.hosts[h].connect()
        try:
            if len(self._own_order[h]) >= OPERATOR_MAX_OWN:
                vm_id = self._own_order[h].pop(0)
                outside.external.discard(vm_id)
                entry["vm"] = vm_id
                conn.lookupByUUIDString(vm_id).destroy()
                return "removed their own"
            marked = self._marked(h, conn)
            self._see_names(h, conn, entry["step"])
            here = {dom.name() for dom in conn.listAllDomains(0)}
            freed = sorted((step, name) for name, step in
                           self._names_seen[h].items() if name not in here)
            name = pick([n for _s, n in freed[-3:]], draw)
            model = next(iter(marked.values()), None)
            if model is None:
                other = self.hosts[1 - h].connect()
                try:
                    model_xml = next((d.XMLDesc(
                        libvirt.VIR_DOMAIN_XML_MIGRATABLE) for d in
                        self._marked(1 - h, other).values()), None)
                finally:
                    other.close()
            else:
                model_xml = model.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE)
            if name is None or model_xml is None:
                return "skipped"
            uuid_ = str(uuid.UUID(int=self._own_ids.getrandbits(128),
                                  version=4))
            entry.update(name=name, vm=uuid_)
            try:
                conn.createXML(chaos_operator.external_xml(
                    model_xml, name, uuid_), 0)
            except libvirt.libvirtError as exc:
                entry["libvirt"] = exc.get_error_message()[:300]
                return f"refused by libvirt {exc.get_error_code()}"
        finally:
            conn.close()
        outside.external.add(uuid_)
        self._own_order[h].append(uuid_)
        return "created"

    def _fault_virsh_mid_recovery(self, h, draw, entry):
        """kill -9 of host h's service, one time in two once a migration
        or a hibernation from h is under way in libvirt; a restart, and 0
        to 0.5 s into its recovery an operator's virsh (drawn) on one
        vmjobs domain of h; then recovery must end."""
        more = sub_draws(draw)
        verb, which, when, action, how, target = (more.random()
                                                  for _ in range(6))
        action = chaos_operator.ACTIONS[
            int(action * len(chaos_operator.ACTIONS))]
        host = self.hosts[h]
        if verb < 0.5:
            vm_id = pick(self._public(h), which)
            step = "migrate" if verb < 0.25 else "save"
            if vm_id is not None:
                self._into_step(h, vm_id, step, entry)
        host.kill()
        host.start_service()
        entry["after"] = round(0.5 * when, 2)
        time.sleep(entry["after"])
        try:
            entry["recovering"] = host.call("Host.getStats")["recovering"]
        except (RemoteError, ServiceDown):
            entry["recovering"] = None
        conn = host.connect()
        try:
            vm_id = pick(self._marked(h, conn, live=action != "define"),
                         target)
        finally:
            conn.close()
        if vm_id is not None:
            virsh = {"step": entry["step"]}
            outcome = self._virsh(h, vm_id, action, how, virsh)
            entry["virsh"] = f"{action} {outcome}"
            entry["virsh_vm"] = vm_id
            self.ops[(f"virsh mid-recovery {action}", outcome)] += 1
        if not host.wait_recovered(RECOVERY_BOUND):
            raise Violation(f"{host.name}: recovery did not end within "
                            f"{RECOVERY_BOUND:g} s after kill -9 and a "
                            "virsh in it")
        return "recovered"

    def _remove_own_domains(self):
        """At the run's end, the operator's own domains go (their names
        are vmjobs VMs' whose files the end restores on host a)."""
        for h, host in enumerate(self.hosts):
            if not self._own_order[h]:
                continue
            conn = host.connect()
            try:
                for vm_id in self._own_order[h]:
                    try:
                        conn.lookupByUUIDString(vm_id).destroy()
                    except libvirt.libvirtError:
                        pass
            finally:
                conn.close()
            self._own_order[h].clear()
            self._outside[h].external.clear()

    # -- the hang mix ----------------------------------------------------------------

    def _fault_hang(self, h, draw, entry):
        """A long freeze on host h (chaos_hang): its libvirtd, one of its
        guests' QEMU under a job, or its service under a migration; then
        SIGCONT, and both hosts must come back within
        chaos_hang.HANG_BOUND (chaos_hang.wedged)."""
        more = sub_draws(draw)
        kind = chaos_hang.KINDS[int(more.random() * len(chaos_hang.KINDS))]
        entry["hang"] = kind
        outcome = getattr(self, f"_hang_{kind}")(h, more, entry)
        thawed = time.monotonic()
        entry["came_back"] = {}
        for host in self.hosts:
            probe = str(uuid.UUID(int=self._probe_ids.getrandbits(128),
                                  version=4))
            try:
                seen = chaos_hang.wedged(host, probe, thawed,
                                         mem_mib=self.mem_mib)
            except (chaos_hang.Wedged, RemoteError) as exc:
                raise Violation(f"step {entry['step']}: {kind} hang: "
                                f"{exc}") from None
            entry["came_back"][host.name] = seen
            self.notes["hang: jobs in flight at the thaw"] += \
                seen["in_flight"]
            self.notes["hang: slowest end of them, s after the thaw"] = max(
                self.notes["hang: slowest end of them, s after the thaw"],
                seen["jobs_after"])
            self.notes["hang: slowest fresh VM.create Up, s after the "
                       "thaw"] = max(self.notes["hang: slowest fresh "
                                                "VM.create Up, s after the "
                                                "thaw"], seen["up_after"])
        self.checks += 1
        return outcome

    def _hang_libvirtd(self, h, more, entry):
        """Host h's libvirtd frozen 10 to 90 s (past its keepalive and the
        migration bounds): one time in two a migration from h and one to
        h are asked first (the freeze at once, or once the first is in
        step migrate), and one time in two a VM.create on h just before
        the freeze, whose job runs into it."""
        out, back, moment, create, vm_a, vm_b, length = (
            more.random() for _ in range(7))
        seconds = chaos_hang.seconds(chaos_hang.LIBVIRTD_SECONDS, length)
        entry.update(seconds=round(seconds, 1), migrations=[])
        if out < 0.5:
            self._migrate_around_cut(h, vm_a, None, entry, "before", "hang")
        if back < 0.5:
            self._migrate_around_cut(1 - h, vm_b, None, entry, "before",
                                     "hang")
        jobs = [(0 if a["from"] == self.hosts[0].name else 1, a["job"])
                for a in entry["migrations"] if "job" in a]
        if jobs and moment < 0.5:
            entry["moment"] = self._wait_for_step(*jobs[0], "migrate", 5.0)
        if create < 0.5:
            try:
                entry["create"] = self._op_create(h, create, entry)
            except (RemoteError, ServiceDown) as exc:
                entry["create"] = f"{exc}"[:200]
        pid = self.hosts[h].sandbox.daemon_pid()
        if pid is None or not chaos_hang.stop(pid):
            return "no daemon"
        try:
            time.sleep(seconds)   # the fault's length, not a wait
        finally:
            chaos_hang.go_on(pid)
        return "resumed"

    def _hang_qemu(self, h, more, entry):
        """One guest's QEMU on host h frozen 10 to 60 s while a job works
        on it: its hibernation or its migration (frozen once the job is in
        step save or migrate), or a VM.destroy of it (asked once it is
        frozen)."""
        which, verb, length = (more.random() for _ in range(3))
        seconds = chaos_hang.seconds(chaos_hang.QEMU_SECONDS, length)
        vm_id = pick(self._public(h), which)
        if vm_id is None:
            return "no VM"
        job = ("hibernate", "migrate", "destroy")[int(verb * 3)]
        entry.update(vm=vm_id, seconds=round(seconds, 1), job_kind=job)
        if job != "destroy":
            self._into_step(h, vm_id, "save" if job == "hibernate"
                            else "migrate", entry)
        pid = dict(qemu_processes([self.hosts[h]])).get(vm_id)
        if pid is None or not chaos_hang.stop(pid):
            return "no guest"
        destroyed = {}

        def destroy():
            try:
                self.hosts[h].call_once("VM.destroy", vmID=vm_id)
                destroyed["outcome"] = "done"
            except RemoteError as exc:
                destroyed["outcome"] = f"refused {exc.code}"
            except ServiceDown:
                destroyed["outcome"] = "unreachable"

        thread = None
        try:
            if job == "destroy":
                thread = threading.Thread(target=destroy)
                thread.start()
            time.sleep(seconds)   # the fault's length, not a wait
        finally:
            chaos_hang.go_on(pid)
            if thread is not None:
                thread.join()
        if job == "destroy":
            entry["destroy"] = destroyed["outcome"]
            if destroyed["outcome"] == "done":
                self.ledger.destroy_answered(vm_id, entry["step"])
            elif destroyed["outcome"] == "unreachable":
                self.ledger.destroy_lost(vm_id)
        return "resumed"

    def _hang_service(self, h, more, entry):
        """Host h's service frozen 10 to 40 s while a migration to it or
        from it runs (asked of the other host, or of h itself), frozen
        once that migration's source job is in step
        prepare-destination or migrate (or at once)."""
        direction, which, moment, length = (more.random() for _ in range(4))
        seconds = chaos_hang.seconds(chaos_hang.SERVICE_SECONDS, length)
        source = 1 - h if direction < 0.5 else h
        entry.update(seconds=round(seconds, 1), migrations=[])
        self._migrate_around_cut(source, which, None, entry, "before",
                                 "hang")
        job_id = next((a["job"] for a in entry["migrations"]
                       if "job" in a), None)
        if job_id is not None and moment >= 0.25:
            step = "prepare-destination" if moment < 0.5 else "migrate"
            entry["moment"] = self._wait_for_step(source, job_id, step, 5.0)
        process = self.hosts[h].process
        if process is None or not chaos_hang.stop(process.pid):
            return "no service"
        try:
            time.sleep(seconds)   # the fault's length, not a wait
        finally:
            chaos_hang.go_on(process.pid)
        return "resumed"

    # -- the full state directory -------------------------------------------------

    def _mount_full_dir(self):
        if self.mix == "classic" or os.geteuid() != 0:
            return
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={FULL_DIR_SIZE},mode=0755",
             "chaos-full", self.full_dir], capture_output=True)
        self._full_mounted = done.returncode == 0

    def _unmount_full_dir(self):
        if self._full_mounted:
            subprocess.run(["umount", "-l", self.full_dir],
                           capture_output=True)
            self._full_mounted = False

    # -- outcomes and checks --------------------------------------------------------

    def _quiet_and_check(self, i):
        # Quiet is one pass over both hosts that finds every job ended and
        # no job new since the pass before: a job on one host (a migration's
        # source) may start one on the other while the first is looked at.
        deadline = time.monotonic() + QUIET_BOUND
        seen = None
        while True:
            ids, busy = set(), None
            by_host = {}
            for host in self.hosts:
                try:
                    jobs = host.call("Host.getJobs")
                except ServiceDown as exc:
                    h = self.hosts.index(host)
                    if self._died_at_fd_limit(h, i):
                        self._restarted(h, "its death at the fd limit")
                        jobs = host.call("Host.getJobs")
                    else:
                        raise Violation(f"step {i}: {exc}") from None
                ids.update(jobs)
                by_host[host.name] = jobs
            waiting = arrivals_without_source(by_host, time.time())
            if waiting and "arrival-without-source" in self.known:
                for what in waiting:
                    self._note_known(i, "arrival-without-source",
                                     what.split(" still waits")[0], what)
            elif waiting:
                raise Violation(f"step {i}: " + "; ".join(waiting))
            for name, jobs in by_host.items():
                if busy is None and not all(
                        job["status"] in ENDED for job in jobs.values()):
                    busy = name
            if busy is None and ids == seen:
                break
            if time.monotonic() > deadline:
                raise Violation(f"step {i}: {busy or 'a host'} not quiet "
                                f"within {QUIET_BOUND:g} s")
            seen = ids
            time.sleep(0.2)   # two hosts quiet at once: no event says it
        self._collect_outcomes()
        public = self._resolve_uncertain()
        for vm_id, step in sorted(self._race_destroyed.items()):
            if vm_id in public:
                # Not a violation (the VM is on one host, and expected on
                # none): VM.destroy answered true while its migration
                # ended done, the guest running on at the destination.
                self.notes["race: VM.destroy answered true, the VM public "
                           "after"] += 1
                self.log[step].setdefault("notes", []).append(
                    f"VM {vm_id} destroyed (true) but public at the check "
                    f"after step {i}")
        self._race_destroyed.clear()
        self.checks += 1
        found = self._unknown(i, check_quiet(self.hosts,
                                             self.ledger.expected,
                                             self._outside_by_name()))
        # What vmjobs follows asynchronously (a guest's lifecycle events,
        # read by its watch thread) may lag a fault by a moment: a finding
        # counts once it holds for a few seconds.
        for _ in range(3):
            if not found:
                break
            first = found
            time.sleep(2.0)
            found = self._unknown(i, check_quiet(self.hosts,
                                                 self.ledger.expected,
                                                 self._outside_by_name()))
            if not found:
                self.rechecks += 1
                self.log.append({"step": i, "what": "transient",
                                 "found": first})
        if found:
            raise Violation(f"step {i}: " + "; ".join(found))
        self._check_logs(i)
        self._check_fd_limited(i)
        if self.mix == "operator":
            self._look_outside(i, public)
        for name, vm_id in wedged_by_a_migration(self.hosts):
            if vm_id not in self._wedged:
                self._wedged.add(vm_id)
                self.notes["VM left in QEMU postmigrate (no later "
                           "migration or save can succeed)"] += 1
                self.log.append({"step": i, "what": "note", "host": name,
                                 "vm": vm_id, "note": "QEMU postmigrate"})

    def _unknown(self, i, found):
        """`found` less the known kinds, which are noted."""
        if "unreadable-domain" not in self.known:
            return found
        rest = []
        for what in found:
            if "unreadable (" in what or "ownerless libvirt job" in what:
                self._note_known(i, "unreadable-domain", what, what)
            else:
                rest.append(what)
        return rest

    def _note_known(self, i, kind, key, what):
        if key in self._noted:
            return
        self._noted.add(key)
        self.notes[f"known: {kind}"] += 1
        self.log.append({"step": i, "what": "known", "kind": kind,
                         "found": what})

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
            fault = self._fault_jobs.pop(job_id, None)
            if fault is not None:
                self.ops[(f"migrate job under a {fault}", status)] += 1
            self.ledger.job_ended(kind, vm_id, path, step, status)

    def _resolve_uncertain(self):
        public = set()
        for h in range(len(self.hosts)):
            public.update(self._public(h))
        self.ledger.resolve(public)
        return public

    def _check_files(self):
        """Every unconsumed state file still restores (on host a), then
        its VM is destroyed."""
        host = self.hosts[0]
        for path, vm_id in sorted(self.ledger.files.items()):
            try:
                answer = host.call("VM.create", vmID=vm_id, vmParams={
                    "vmId": vm_id, "restoreState": path})
            except RemoteError as exc:
                self._file_does_not_restore(path, vm_id, {
                    "code": exc.code, "message": exc.message})
                continue
            job_id = answer["jobId"]
            deadline = time.monotonic() + QUIET_BOUND
            while (info := host.call("Host.getJobs", job_ids=[job_id])[
                    job_id])["status"] not in ENDED:
                if time.monotonic() > deadline:
                    raise Violation(f"restore of {path} did not end")
                time.sleep(0.2)   # (the run follows no stream of its hosts)
            self.checks += 1
            if info["status"] != "done":
                self._file_does_not_restore(path, vm_id, info.get("error"))
                continue
            host.call("VM.destroy", vmID=vm_id)

    def _file_does_not_restore(self, path, vm_id, error):
        if path in self.ledger.killed_files:
            # Not a violation: its guest was killed during the save; vmjobs
            # kept the file and said the VM stays hibernated there.
            self.notes["hibernate cut by a QEMU kill: file kept, does not "
                       "restore"] += 1
            self.log.append({"step": "end", "what": "note", "file": path,
                             "vm": vm_id, "error": error})
            return
        raise Violation(f"state file {path} of VM {vm_id} does not "
                        f"restore: {error}")

    def _write_violation(self, what):
        self.violation_file = os.path.join(self.workdir,
                                           f"violation-{self.seed}.json")
        with open(self.violation_file, "w") as f:
            json.dump({"seed": self.seed, "violation": what,
                       "steps": self.log}, f, indent=1)

    def figures(self):
        return {"seed": self.seed, "mix": self.mix,
                "fault_rate": self.fault_rate,
                "seconds": round(self.seconds, 1),
                "steps": len(self.log),
                "operations": {f"{k} {o}": n for (k, o), n in
                               sorted(self.ops.items())},
                "faults": dict(sorted(self.faults.items())),
                "invariant_checks": self.checks,
                "transient_findings": self.rechecks,
                "notes": dict(self.notes),
                "violations": self.violations,
                "violation_file": self.violation_file}
