"""The chaos run's invariants, checked once both hosts are quiet (every job
ended), through the verbs, libvirt and /proc. Each returns the violations
it found, as sentences."""

import json
import os
import re

import libvirt
import libvirt_qemu

from .. import domxml
from ..hypervisor import Activity
from ..hypervisor.adapter import activity_of
from .chaos_host import ServiceDown


def qemu_processes(hosts):
    """[(uuid, pid)] of the QEMU processes of the hosts' daemons, from
    /proc (other QEMUs on the machine are not the run's)."""
    found = []
    for pid in [p for host in hosts for p in host.sandbox.qemu_pids()]:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if not args or b"qemu-system" not in os.path.basename(args[0]):
            continue
        for flag, value in zip(args, args[1:], strict=False):
            if flag == b"-uuid":
                found.append((value.decode(), pid))
    return found


def qemu_uuids(hosts):
    """{uuid: number of QEMU processes running it}: see qemu_processes."""
    counts = {}
    for uuid, _pid in qemu_processes(hosts):
        counts[uuid] = counts.get(uuid, 0) + 1
    return counts


# libvirtd (9.0) logs who holds a domain's job when a call cannot take it;
# an owner "0 <null>" is a job that survived a crash of libvirtd (killed -9
# in its first milliseconds: a start, an incoming migration) with nobody
# left to end it, which no call can end (docs/chaos.md, "libvirtd killed
# -9 in the first milliseconds").
_OWNERLESS = re.compile(
    r"for domain (\S+); current job is \(([^)]*)\) owned by "
    r"\(0 <null>, 0 <null>, 0 <null>")


def ownerless_jobs(log_text):
    """{domain name: its job (sync, agent, async)} of the domains whose job
    libvirtd's log says has no owner."""
    return {name: job for name, job in _OWNERLESS.findall(log_text)}


def _daemon_log(host):
    try:
        with open(host.sandbox.log, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def host_view(host):
    """(public {vmId: status}, jobs [JobInfo], domains {uuid: (state code,
    reason, ours, activity)}, stats: Host.getStats) of one host."""
    public = {vm["vmId"]: vm["status"] for vm in
              host.call("Host.getVMList", fullStatus=True)}
    jobs = list(host.call("Host.getJobs").values())
    stats = host.call("Host.getStats")
    domains = {}
    names = {}
    conn = host.connect()
    try:
        for dom in conn.listAllDomains(0):
            names[dom.UUIDString()] = dom.name()
            try:
                code, reason = dom.state()
                ours = has_metadata(dom)
                activity = activity_of(dom)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    continue   # gone meanwhile
                # A domain libvirt cannot tell about (its state change
                # lock held for good): reported, never skipped; a domain
                # nobody can read or remove is left on the host.
                domains[dom.UUIDString()] = (
                    None, None, None,
                    f"unreadable ({exc.get_error_message()})")
                continue
            domains[dom.UUIDString()] = (code, reason, ours, activity)
    finally:
        conn.close()
    if any(activity is not Activity.SETTLED
           for _c, _r, _o, activity in domains.values()):
        ownerless = ownerless_jobs(_daemon_log(host))
        for uuid, (code, reason, ours, activity) in domains.items():
            if activity is not Activity.SETTLED and \
                    names.get(uuid) in ownerless:
                domains[uuid] = (code, reason, ours, (
                    f"held by an ownerless libvirt job "
                    f"({ownerless[names[uuid]]}), after {activity}"))
    return public, jobs, domains, stats


def has_metadata(dom):
    """Whether libvirt domain `dom` carries vmjobs' metadata."""
    try:
        dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, domxml.METADATA_NS)
        return True
    except libvirt.libvirtError:
        return False


_LIVE = (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED,
         libvirt.VIR_DOMAIN_BLOCKED)


def check_quiet(hosts, expected, outside=None):
    """Every invariant of a quiet pair of hosts. `expected`: the VMs that
    must be public somewhere (their last operation's outcome is known).
    `outside` (the operator mix): {host name: Outside}, what an operator
    did there behind the service's back that the checks must know of."""
    outside = outside or {}
    violations = []
    views = {}
    for host in hosts:
        try:
            views[host.name] = host_view(host)
        except ServiceDown as exc:
            violations.append(f"{host.name} does not answer: {exc}")
    if violations:
        return violations
    where = {}
    for name, (public, jobs, domains, stats) in views.items():
        mine = outside.get(name, Outside())
        violations.extend(miscounted(name, public, domains, stats))
        violations.extend(externals_touched(name, domains, mine,
                                            [p for p, _j, _d, _s in
                                             views.values()]))
        for job in jobs:
            if job.get("stuck"):
                violations.append(f"{name}: job {job['id']} "
                                  f"({job['job_type']}) outlived its timeout")
            if job["status"] in ("pending", "running", "aborting"):
                violations.append(f"{name}: job {job['id']} "
                                  f"({job['job_type']}) still "
                                  f"{job['status']} when quiet")
        for vm_id, status in public.items():
            where.setdefault(vm_id, []).append(name)
            domain = domains.get(vm_id)
            if domain is not None and domain[0] is None:
                continue   # unreadable: reported below
            if domain is None or domain[0] not in _LIVE:
                violations.append(f"{name}: VM {vm_id} listed {status} "
                                  "without a running domain")
                continue
            running = domain[0] != libvirt.VIR_DOMAIN_PAUSED
            if status == "Up" and not running:
                violations.append(f"{name}: VM {vm_id} listed Up but its "
                                  f"domain is paused (reason {domain[1]})")
            if status == "Paused" and running:
                # The guest is followed (guests.py): a paused VM whose
                # guest runs again is listed Up.
                violations.append(f"{name}: VM {vm_id} listed Paused but "
                                  f"its domain runs (state {domain[0]})")
            if status not in ("Up", "Paused"):
                violations.append(f"{name}: VM {vm_id} listed {status} "
                                  "with no job when quiet")
        for uuid, (code, _reason, ours, activity) in domains.items():
            if "ownerless libvirt job" in str(activity) and \
                    uuid not in public:
                violations.append(f"{name}: domain {uuid}, in no registry, "
                                  f"is {activity}")
                continue
            if code is None and uuid not in public:
                violations.append(f"{name}: domain {uuid}, in no registry, "
                                  f"is {activity}")
                continue
            if code in _LIVE and uuid not in public and \
                    uuid not in mine.external and \
                    not (ours and uuid in mine.started):
                violations.append(f"{name}: domain {uuid} runs in no "
                                  f"registry (ours: {ours})")
            if activity is not Activity.SETTLED:
                violations.append(f"{name}: domain {uuid} stuck {activity}")
    for vm_id, names in where.items():
        if len(names) > 1:
            violations.append(f"VM {vm_id} public on {' and '.join(names)}")
    for vm_id in sorted(expected):
        if vm_id not in where:
            violations.append(f"VM {vm_id} lost: public on no host")
    theirs = set().union(*[o.external | o.started
                           for o in outside.values()])
    for uuid, count in qemu_uuids(hosts).items():
        if count > 1:
            violations.append(f"VM {uuid} runs {count} times (QEMU)")
        elif uuid not in where and uuid not in theirs:
            violations.append(f"QEMU of {uuid} runs, known to no registry")
    return violations


class Outside:
    """What an operator did on one host behind its service's back (the
    operator mix): `external`, the UUIDs of the domains of their own they
    made there (no vmjobs metadata: never to be touched, listed or
    counted as vmjobs'); `started`, the UUIDs of vmjobs domains they
    started there again themselves (virsh start after a managedsave): in
    no registry, counted unowned until VM.destroy or the next recovery
    (docs/recovery.md, "late arrivals": a guest a user restarts is not
    one)."""

    def __init__(self, external=(), started=()):
        self.external = set(external)
        self.started = set(started)


def miscounted(name, public, domains, stats):
    """Host.getStats' counts of the domains in no registry against what
    libvirt lists (API.md, "VM statuses": counted live at each call):
    vmjobs domains defined and not running (stopped_domains), vmjobs
    domains running in no registry (unowned_domains), domains without
    vmjobs metadata (external_domains)."""
    stopped = unowned = external = unreadable = 0
    for uuid, (code, _reason, ours, _activity) in domains.items():
        if uuid in public:
            continue
        if code is None:
            unreadable += 1   # reported apart; counted somewhere by vmjobs
            continue
        if not ours:
            external += 1
        elif code in (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED):
            stopped += 1
        else:
            unowned += 1
    seen = {"stopped_domains": stopped, "unowned_domains": unowned,
            "external_domains": external}
    said = {key: stats.get(key) for key in seen}
    # A domain libvirt cannot tell this run about (its state change lock
    # held for good) is still listed to vmjobs, which counts it by the
    # state the listing gives (seed 3405: unowned); it may stand in any
    # one count.
    more = {key: (said[key] or 0) - seen[key] for key in seen}
    if said != seen and not (all(n >= 0 for n in more.values()) and
                             sum(more.values()) <= unreadable):
        return [f"{name}: Host.getStats counts {said}, libvirt lists "
                f"{seen}"]
    return []


def externals_touched(name, domains, mine, publics):
    """The operator's own domains on host `name` are untouched: each is
    there, running, without vmjobs metadata, and listed by no host."""
    found = []
    for uuid in sorted(mine.external):
        domain = domains.get(uuid)
        if domain is None:
            found.append(f"{name}: external domain {uuid} is gone")
            continue
        code, reason, ours, _activity = domain
        if code != libvirt.VIR_DOMAIN_RUNNING:
            found.append(f"{name}: external domain {uuid} is in state "
                         f"{code} (reason {reason}), not running")
        if ours:
            found.append(f"{name}: external domain {uuid} carries vmjobs "
                         "metadata")
        if any(uuid in public for public in publics):
            found.append(f"{name}: external domain {uuid} is listed as a "
                         "VM")
    return found


# Seconds a destination's job may wait for an arrival after its source's
# job ended with the source domain shut off.
ARRIVAL_AFTER_SOURCE = 10.0


def arrivals_without_source(jobs_by_host, now):
    """Migration-destination jobs still waiting for a VM whose source job
    ended failed with its domain shut off on the source: a migrated domain
    is undefined there (VIR_MIGRATE_UNDEFINE_SOURCE), so a shut-off one
    did not leave and nothing can arrive; its staged copy then holds the
    vmId on the destination until `migration.destination_timeout` (6 h by
    default). `jobs_by_host`: {host name: {job id: JobInfo}}."""
    found = []
    for dst, jobs in jobs_by_host.items():
        for job in jobs.values():
            if job["job_type"] != "migration-destination" or \
                    job["status"] not in ("pending", "running"):
                continue
            for src, others in jobs_by_host.items():
                if src == dst:
                    continue
                for source in others.values():
                    error = (source.get("error") or {}).get("message", "")
                    if source["job_type"] == "migration-source" and \
                            source["vm_id"] == job["vm_id"] and \
                            source["status"] == "failed" and \
                            source["created"] <= job["created"] <= \
                            source.get("ended", now) and \
                            "is shutoff here" in error and \
                            now - source["ended"] > ARRIVAL_AFTER_SOURCE:
                        found.append(
                            f"{dst}: job {job['id']} still waits for VM "
                            f"{job['vm_id']} {now - source['ended']:.0f} s "
                            f"after its source job {source['id']} on {src} "
                            f"failed with the domain shut off there: "
                            f"{error[:300]}")
    return found


def wedged_by_a_migration(hosts):
    """[(host name, vmId)] of the public VMs whose QEMU is in runstate
    `postmigrate` while no job runs: a migration or a save of it reached
    QEMU's end and then failed, and the guest was left stopped so. QEMU
    refuses every later migration and save of such a guest ("Can't
    migrate the vm that was paused due to previous migration") until it
    is resumed: a failed hibernation's or migration's rollback pauses a
    paused guest anew (Hypervisor.pause_anew), so that only a guest
    paused by libvirt or QEMU themselves (an I/O error...) or left so
    outside vmjobs is still noted."""
    found = []
    for host in hosts:
        try:
            public = host.call("Host.getVMList")
        except ServiceDown:
            continue
        conn = host.connect()
        try:
            for vm_id in public:
                try:
                    dom = conn.lookupByUUIDString(vm_id)
                    answer = libvirt_qemu.qemuMonitorCommand(
                        dom, '{"execute": "query-status"}', 0)
                except libvirt.libvirtError:
                    continue
                status = json.loads(answer).get("return", {}).get("status")
                if status == "postmigrate":
                    found.append((host.name, vm_id))
        finally:
            conn.close()
    return found
