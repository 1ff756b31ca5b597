"""The chaos run's `hang` mix: long hangs, the way hosts get wedged. Every
freeze of the other mixes (libvirtd or a guest's QEMU 1 to 5 s, a service
1 to 4 s) is shorter than every bound vmjobs has; a real host's libvirtd
stuck on a hung NFS stat, a QEMU monitor that never answers, a service
stopped by a debugger last minutes. Fault `hang` freezes (SIGSTOP), then
lets go on (SIGCONT), one of:

- `libvirtd`: one host's libvirtd for 10 to 90 s, past its keepalive
  (5 s x 5; the service's connections have none of their own: a call
  waits for the daemon to go on, docs/chaos.md, round 15) and past the
  migration bounds, while a creation on that host and migrations to and
  from it run into it;
- `qemu`: one guest's QEMU for 10 to 60 s while a job works on it (its
  hibernation or its migration, once in step save or migrate; or a
  VM.destroy of it);
- `service`: one host's service for 10 to 40 s while a migration to or
  from it, run by the other host or by itself, is under way.

The invariant they check is the one a wedged host breaks (wedged()):
once every freeze has ended, within HANG_BOUND each host answers
Host.getStats, every job that was in flight has ended, no worker of its
pool is still held by one (a worker in a libvirt call of a frozen daemon
comes back once the daemon goes on), and a fresh VM.create on it reaches
Up (then is destroyed)."""

import http.client
import os
import signal
import time

from ..client import Client, RemoteError
from .chaos_host import CONFIG

# How long each kind of hang lasts (seconds, drawn uniformly).
LIBVIRTD_SECONDS = (10.0, 90.0)
QEMU_SECONDS = (10.0, 60.0)
SERVICE_SECONDS = (10.0, 40.0)
KINDS = ("libvirtd", "qemu", "service")
ENDED = ("done", "failed", "aborted")


def _setting(name):
    """A bound of the run's services (chaos_host.CONFIG), in seconds."""
    for line in CONFIG.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == name:
            return float(value)
    raise KeyError(name)


# The bound on a host's coming back once every freeze ended. Every job in
# flight then started before it ended, and no job may run past
# jobs.timeout from its start (the quiet check holds every job to it: no
# job reported stuck), so each has ended within jobs.timeout of the thaw;
# its worker is free with it. The fresh VM.create is then one job on an
# idle pool, a second's work, given recovery.settle_timeout (the time the
# service gives any domain to settle) to reach Up. With the chaos run's
# settings: 120 + 30 = 150 s.
HANG_BOUND = _setting("timeout") + _setting("settle_timeout")


def seconds(span, draw):
    """A length within `span` (low, high), from `draw` (0 to 1)."""
    low, high = span
    return low + (high - low) * draw


def stop(pid):
    """SIGSTOP of `pid`; False if it has ended."""
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        return False
    return True


def go_on(pid):
    """SIGCONT of `pid` (nothing if it ended meanwhile: SIGKILL ends a
    stopped process too)."""
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


class Wedged(Exception):
    """A host did not come back within HANG_BOUND after a freeze."""


def wedged(host, probe_id, thawed, bound=HANG_BOUND, mem_mib=32):
    """Check that host (a ChaosHost) came back from a freeze that ended at
    `thawed` (time.monotonic()), within `bound`: raises Wedged naming what
    did not. What it saw is returned: {"stats_after", "jobs_after",
    "idle_after", "up_after"} in seconds after the thaw, and what its
    first look found: "in_flight" (jobs not ended), "held" (the pool's
    running).

    `probe_id`: the vmId of the fresh VM.create (destroyed once Up)."""
    deadline = thawed + bound
    seen = {}

    def late(what):
        return Wedged(f"{host.name}: {what} within {bound:g} s after the "
                      "freeze ended")

    def call(what, method, **params):
        """The answer to `method`, asked again until it comes, each time
        on a new connection given what is left of the bound (the run's own
        client waits 60 s a read: a frozen service would hold it past the
        bound); Wedged past the deadline."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise late(f"no answer to {what}")
            client = Client(host.listen, timeout=left, whole_call=True)
            try:
                return client.call(method, params)
            except RemoteError:
                raise
            except (OSError, ValueError, http.client.HTTPException):
                pass
            finally:
                client.close()
            # (A look, not a stream: the service may still not answer.)
            time.sleep(0.2)

    stats = call("Host.getStats", "Host.getStats")
    seen["stats_after"] = round(time.monotonic() - thawed, 2)
    # Every job in flight has ended, and the pool runs none: a worker a
    # job's libvirt call still holds counts running until it returns.
    while True:
        jobs = call("Host.getJobs", "Host.getJobs")
        running = [job_id for job_id, info in jobs.items()
                   if info["status"] not in ENDED]
        stats = call("Host.getStats", "Host.getStats")
        # What the first look found: jobs not ended, workers held.
        seen.setdefault("in_flight", len(running))
        seen.setdefault("held", stats["running"])
        if not running and stats["running"] == 0:
            break
        if time.monotonic() > deadline:
            if running:
                raise late(f"jobs {', '.join(sorted(running))} still "
                           f"running ({stats['running']} of "
                           f"{stats['workers']} workers held)")
            raise late(f"{stats['running']} of {stats['workers']} workers "
                       "still held with every job ended")
        time.sleep(0.2)
    seen["jobs_after"] = seen["idle_after"] = round(
        time.monotonic() - thawed, 2)
    # A fresh VM.create reaches Up: a worker, a libvirt connection and the
    # daemon all serve again.
    try:
        answer = call("VM.create", "VM.create", vmID=probe_id,
                      vmParams={"vmId": probe_id,
                                "vmName": f"probe-{probe_id[:8]}",
                                "memSize": mem_mib})
    except RemoteError as exc:
        raise late(f"a fresh VM.create refused {exc.code} "
                   f"({exc.message})") from None
    job_id = answer["jobId"]
    while True:
        info = call("Host.getJobs", "Host.getJobs",
                    job_ids=[job_id]).get(job_id)
        if info is not None and info["status"] in ENDED:
            break
        if time.monotonic() > deadline:
            raise late(f"a fresh VM.create's job {job_id} not ended "
                       f"(step {info and info.get('step')})")
        time.sleep(0.2)
    status = {vm["vmId"]: vm["status"] for vm in call(
        "Host.getVMList", "Host.getVMList", fullStatus=True)}.get(probe_id)
    try:
        call("VM.destroy", "VM.destroy", vmID=probe_id)
    except (RemoteError, Wedged):
        pass   # not there to destroy: said below
    if info["status"] != "done" or status != "Up":
        raise late(f"a fresh VM.create ended {info['status']} "
                   f"({info.get('error')}), its VM {status}")
    seen["up_after"] = round(time.monotonic() - thawed, 2)
    return seen
