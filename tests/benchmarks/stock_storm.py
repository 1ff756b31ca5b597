"""Benchmark 21: a storm of VM.create against a libvirtd that keeps
libvirt's stock client limits (5 requests in flight per client connection,
keepalive every 5 s, 5 missed answers and the client is closed), side by
side with what a naive engine does: a thread per VM, every thread calling
on one shared connection.

    python tests/benchmarks/stock_storm.py [--vms 300] [--timeout 1800]
        [--dir DIR]

One private daemon (vmjobs.tools.sandbox; only its paths, sockets and
logging differ from a stock libvirtd.conf), tiny guests as in the real
storm (TCG, 32 MiB, no disk), after an untimed warm-up:

- vmjobs: the API in this process with the default configuration (TCG
  guests being the one setting), all the VM.create calls at once, then a
  wait for every job's end;
- plain threads: as many threads, each defining, starting and looking at
  its own guest on ONE libvirt connection, all released at once.

Each storm starts from an empty host and is destroyed after (guests
destroyed and undefined, untimed). For each: failures by reason, the time
until the last VM is Up, the calls in flight at once on each connection
(every connection libvirt.open makes meanwhile is wrapped in a counter,
tests/libvirt_counting.py), the connections the client saw closed and
why (libvirt's close callback), what vmjobs logged of lost connections
and reconnects, and from the daemon's own log: keepalive timeouts
("No response from client ... after 5 keepalive messages"), the clients
it closed, the keepalive pings it sent; and libvirtd's CPU. At the end no
QEMU process of this run may be left (/proc is read)."""

import argparse
import logging
import os
import re
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter

import libvirt

from common import ROOT, daemon_pid, ms, percentile, table, write_json

sys.path.insert(0, os.path.join(ROOT, "tests"))

from libvirt_counting import counting_open  # noqa: E402
from vmjobs import domxml  # noqa: E402
from vmjobs.api import API  # noqa: E402
from vmjobs.config import Config  # noqa: E402
from vmjobs.hypervisor import Hypervisor  # noqa: E402
from vmjobs.params import parse_create  # noqa: E402
from vmjobs.tools.procfs import cpu_seconds  # noqa: E402
from vmjobs.tools.sandbox import Sandbox  # noqa: E402

MEM_MIB = 32
WARM_UP = 8
# What one such guest takes from the host at its peak (section 5 measured
# 17.4 MiB), with room: how many fit is MemAvailable over this, less a
# reserve for everything else on the machine.
HOST_MIB_PER_GUEST = 24
RESERVE_MIB = 2048
# What one such guest costs idle, in cores (measured here: 0.45% of a
# core, SeaBIOS finding no boot device under emulation). Beyond about
# cores / this, the guests already Up take every core and the storm's
# starts crawl: 500 such guests want 2.25 cores, more than this machine's
# two, so the default is fewer (docs/benchmarks.md, section 21).
IDLE_CORES_PER_GUEST = 0.0045
DEFAULT_VMS = 300

# libvirtd.conf as libvirt ships it (libvirt 9.0's libvirtd.conf, where
# each is commented out at its built-in default): written out so that a
# distribution's other defaults cannot change what is measured.
STOCK_LIMITS = {
    "max_clients": 5000,
    "max_queued_clients": 1000,
    "max_anonymous_clients": 20,
    "min_workers": 5,
    "max_workers": 20,
    "prio_workers": 5,
    "max_client_requests": 5,
    "keepalive_interval": 5,
    "keepalive_count": 5,
}
# Not a limit: what the daemon logs. Its RPC layer at debug level (the
# keepalive timer, clients opened and closed); warnings from the rest.
LOGGING = {
    "log_filters": "1:rpc.keepalive 1:rpc.netserverclient",
    "log_outputs": "1:file:{log}",
}

# libvirt's VIR_CONNECT_CLOSE_REASON_*: why the client saw a connection
# closed under it.
CLOSE_REASONS = {libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: "error",
                 libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "eof",
                 libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "keepalive",
                 libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT: "client"}

# The daemon's log lines counted, by what they say (all on one line),
# between a storm's start and its end, before the client closes its own
# connections, and only for the clients opened meanwhile (the daemon
# names each by its address): a client closed then is one the client did
# not close.
DAEMON_LINES = {
    "keepalive timeouts": ("No response from client",),
    "clients closed": ("virNetServerClientCloseLocked",),
    "keepalive pings sent": ("RPC_KEEPALIVE_SEND", "proc=1"),
    "keepalive pongs received": ("RPC_KEEPALIVE_RECEIVED", "proc=2"),
}
CLIENT = re.compile(r"client[= ](0x[0-9a-f]+)")
# The daemon's warning when a client has max_client_requests in flight
# (libvirt 9.0 says: "This may result in keep-alive timeouts").
MAX_REQUESTS = "Client hit max requests limit"
# A client's own close: the remote program's (536903814) CONNECT_CLOSE
# (procedure 2) request, as the daemon logs what it reads.
CLOSE_REQUEST = "prog=536903814 vers=1 proc=2 "


def daemon_figures(lines):
    """{what: count} of DAEMON_LINES among `lines`, for the clients the
    daemon opened among them (a client's address is reused after it
    closed: a line counts between its client's opening and closing), and
    of those clients the ones the daemon closed without their asking;
    and the keepalive timeouts' lines."""
    figures = dict.fromkeys(DAEMON_LINES, 0)
    figures.update({"clients opened": 0, "closed by the daemon": 0,
                    "max requests warnings": 0})
    timeouts = []
    open_clients = {}   # address -> True once it asked to close
    for line in lines:
        if DAEMON_LINES["keepalive timeouts"][0] in line:
            timeouts.append(line)   # any client's, ours or not
            continue
        if MAX_REQUESTS in line:   # it names no client
            figures["max requests warnings"] += 1
            continue
        m = CLIENT.search(line)
        if m is None:
            continue
        client = m.group(1)
        if "RPC_SERVER_CLIENT_NEW" in line:
            open_clients[client] = False
            figures["clients opened"] += 1
            continue
        if client not in open_clients:
            continue
        if CLOSE_REQUEST in line:
            open_clients[client] = True
        for name, patterns in DAEMON_LINES.items():
            if all(p in line for p in patterns):
                figures[name] += 1
        if DAEMON_LINES["clients closed"][0] in line:
            if not open_clients.pop(client):
                figures["closed by the daemon"] += 1
    figures["keepalive timeouts"] = len(timeouts)
    return figures, timeouts[:5]


def meminfo_mib(key):
    with open("/proc/meminfo") as f:
        for line in f:
            name, value = line.split(":", 1)
            if name == key:
                return int(value.split()[0]) / 1024
    raise KeyError(key)


def guests_that_fit():
    return int((meminfo_mib("MemAvailable") - RESERVE_MIB)
               // HOST_MIB_PER_GUEST)


def processes_named(tag):
    """PIDs whose command line holds `tag` (this run's guest names)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if tag.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            pass
    return found


def params(vm_id, name):
    return {"vmId": vm_id, "vmName": name, "memSize": MEM_MIB}


class Watch:
    """What one storm's clients and daemon went through: every connection
    libvirt.open makes meanwhile counted (calls in flight, why it
    closed), vmjobs' warnings, the daemon log's new lines."""

    def __init__(self, sandbox):
        self.sandbox = sandbox
        self.counters = []
        self.closed = Counter()
        self._conns = []   # the real connections opened meanwhile
        self._lock = threading.Lock()   # guards closed and _conns
        self.warnings = []
        self._handler = _ListHandler(self.warnings)

    def __enter__(self):
        self._real_open = libvirt.open
        counted = counting_open(self.counters)

        def open_watched(uri):
            conn = counted(uri)
            conn._real.registerCloseCallback(self._on_close, None)
            with self._lock:
                self._conns.append(conn._real)
            return conn
        libvirt.open = open_watched
        logging.getLogger("vmjobs").addHandler(self._handler)
        self._log_at = os.path.getsize(self.sandbox.log)
        self._cpu_at = cpu_seconds([daemon_pid(self.sandbox)])
        return self

    def storm_ended(self):
        """The storm is over; its client has not closed its connections
        yet: what the daemon did so far is the storm's."""
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            # A close callback holds a reference on its connection, which
            # would keep it open after the client closed it.
            try:
                conn.unregisterCloseCallback()
            except libvirt.libvirtError:
                pass   # closed already
        self.daemon_cpu_s = (cpu_seconds([daemon_pid(self.sandbox)]) -
                             self._cpu_at)
        with open(self.sandbox.log, errors="replace") as f:
            f.seek(self._log_at)
            lines = f.read().splitlines()
        self.daemon, self.keepalive_lines = daemon_figures(lines)

    def __exit__(self, *exc_info):
        libvirt.open = self._real_open
        logging.getLogger("vmjobs").removeHandler(self._handler)
        return False

    def _on_close(self, conn, reason, opaque):
        with self._lock:
            self.closed[CLOSE_REASONS.get(reason, str(reason))] += 1

    def figures(self):
        return {
            "connections": len(self.counters),
            "calls": sum(c.calls for c in self.counters),
            "most_in_flight_per_connection":
                max((c.most for c in self.counters), default=0),
            "closed_under_client": dict(self.closed),
            "client_warnings": Counter(
                _warning_kind(w) for w in self.warnings),
            "daemon_log": self.daemon,
            "daemon_keepalive_lines": self.keepalive_lines,
            "daemon_cpu_s": self.daemon_cpu_s,
        }


class _ListHandler(logging.Handler):
    def __init__(self, records):
        super().__init__(logging.WARNING)
        self.records = records

    def emit(self, record):
        self.records.append(record.getMessage())


def _warning_kind(message):
    for kind in ("events connection lost", "connection to", "reconnected"):
        if message.startswith(kind):
            return kind
    return message[:60]


def failure_reason(error):
    """A libvirt error or a job's error as one short line to count by."""
    if isinstance(error, libvirt.libvirtError):
        return (f"libvirt {error.get_error_code()}: "
                f"{(error.get_error_message() or str(error))[:70]}")
    return str(error)[:90]


def storm_vmjobs(sandbox, n, tag, timeout, guest, watch):
    """All the VM.create calls at once, then wait for every job's end.
    Returns (seconds to the last end, times-to-Up, verb latencies, failures
    by reason, jobs not ended)."""
    config = Config(uri=sandbox.uri, domain_type="qemu")
    if n > config.queue_size:
        config.queue_size = n
    with API(config) as api:
        ids = [str(uuid.uuid4()) for _ in range(n)]
        latencies = []
        started = time.time()
        for i, vm_id in enumerate(ids):
            t0 = time.perf_counter()
            api.VM.create(vm_id, params(vm_id, f"{tag}-v{i}"))
            latencies.append(time.perf_counter() - t0)
        ended = api.pool.wait_idle(timeout)
        total = time.time() - started
        watch.storm_ended()
        infos = list(api.Host.getJobs().values())
    # A job not ended by the timeout (pending or running: aborted when the
    # API closes) is unfinished, not failed.
    failures = Counter(job_error(i) for i in infos
                       if i["status"] != "done" and "ended" in i)
    ups = [i["ended"] - started for i in infos if i["status"] == "done"]
    return total, ups, latencies, failures, 0 if ended else \
        sum(1 for i in infos if "ended" not in i)


def job_error(info):
    error = info.get("error")
    if isinstance(error, dict):
        return f"{error.get('code')}: {str(error.get('message'))[:80]}"
    return f"{info['status']}: {str(error)[:80]}"


def guest_kind(sandbox):
    with Hypervisor(sandbox.uri, domain_type="qemu") as hv:
        return hv.guest


def storm_plain(sandbox, n, tag, timeout, guest, watch=None):
    """A thread per VM, each defining, starting and looking at its guest,
    all on one connection, released at once. Returns as storm_vmjobs."""
    work = []
    for i in range(n):
        vm_id = str(uuid.uuid4())
        work.append(domxml.compose(
            parse_create(vm_id, params(vm_id, f"{tag}-p{i}")), guest))
    conn = libvirt.open(sandbox.uri)
    go = threading.Event()
    lock = threading.Lock()   # guards ups and failures
    ups, failures = [], Counter()
    started = 0.0

    def start_one(xml):
        go.wait()
        try:
            dom = conn.defineXML(xml)
            dom.createWithFlags(0)
            if dom.state()[0] != libvirt.VIR_DOMAIN_RUNNING:
                raise RuntimeError("not running after its start")
        except (libvirt.libvirtError, RuntimeError) as exc:
            with lock:
                failures[failure_reason(exc)] += 1
            return
        with lock:
            ups.append(time.monotonic() - started)

    threads = [threading.Thread(target=start_one, args=(xml,), daemon=True)
               for xml in work]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    go.set()
    deadline = started + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    total = time.monotonic() - started
    with lock:
        # What ended by now: the threads still in a call end later, some
        # of them failing as the teardown destroys their guests.
        ended_ups, ended_failures = list(ups), Counter(failures)
    unfinished = n - len(ended_ups) - sum(ended_failures.values())
    if watch is not None:
        watch.storm_ended()
    if not unfinished:   # else left open under the threads still in it
        try:
            conn.close()
        except libvirt.libvirtError:
            pass
    return total, ended_ups, None, ended_failures, unfinished


def destroy_all(sandbox, connections=4):
    """Destroy and undefine every domain, `connections` threads each on a
    connection of its own (one call in flight on each)."""
    lister = libvirt.open(sandbox.uri)
    try:
        names = [d.name() for d in lister.listAllDomains(0)]
    finally:
        lister.close()

    def destroy(share):
        conn = libvirt.open(sandbox.uri)
        try:
            for name in share:
                try:
                    dom = conn.lookupByName(name)
                    if dom.isActive():
                        dom.destroy()
                    dom.undefine()
                except libvirt.libvirtError:
                    pass   # gone meanwhile; checked below
        finally:
            conn.close()

    threads = [threading.Thread(target=destroy, args=(names[i::connections],))
               for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sandbox.remove_all_domains()   # any a failed call left
    return len(names)


def check_stock(sandbox):
    """The limits the running daemon reports through its admin socket
    (virt-admin), or None where virt-admin is missing."""
    admin = (f"libvirtd:///system?socket="
             f"{os.path.join(sandbox.dir, 'sock', 'libvirt-admin-sock')}")
    import shutil
    import subprocess
    if shutil.which("virt-admin") is None:
        return None
    reported = {}
    for command in ("srv-threadpool-info", "srv-clients-info"):
        result = subprocess.run(["virt-admin", "-c", admin, command,
                                 "libvirtd"], capture_output=True,
                                text=True, timeout=30)
        for line in result.stdout.splitlines():
            if ":" in line:
                key, value = line.split(":", 1)
                reported[key.strip()] = value.strip()
    return reported


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=DEFAULT_VMS)
    parser.add_argument("--timeout", type=float, default=1800,
                        help="seconds each storm may take at most")
    parser.add_argument("--dir", default=None,
                        help="sandbox directory (default: a temp dir)")
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    fit = guests_that_fit()
    n = min(args.vms, fit)
    print(f"memory: {meminfo_mib('MemAvailable'):.0f} MiB available, "
          f"room for {fit} guests at {HOST_MIB_PER_GUEST} MiB each: "
          f"{n} VMs a storm" + ("" if n == args.vms else
                                f" (not {args.vms}: they do not fit)"),
          flush=True)
    idle = n * IDLE_CORES_PER_GUEST
    print(f"CPU: {n} idle guests want about {idle:.2f} of the "
          f"{os.cpu_count()} cores" + (
              "" if idle < os.cpu_count() else
              ": more than there are, the last starts will crawl"),
          flush=True)
    tag = f"stock-{uuid.uuid4().hex[:8]}"
    directory = args.dir or tempfile.mkdtemp(prefix="vmjobs-bench-")
    sandbox = Sandbox(directory, settings={**STOCK_LIMITS, **LOGGING})
    sandbox.start()
    data = {"args": vars(args), "vms": n, "fit": fit,
            "libvirtd_conf": {**STOCK_LIMITS, **LOGGING}, "storms": {}}
    rows = []
    try:
        data["daemon_reports"] = check_stock(sandbox)
        print(f"daemon reports: {data['daemon_reports']}", flush=True)
        # Untimed: the first guests on a fresh daemon load QEMU and its
        # firmware from disk.
        guest = guest_kind(sandbox)
        storm_plain(sandbox, WARM_UP, f"{tag}-w", args.timeout, guest)
        destroy_all(sandbox)
        for name, storm in (
                ("vmjobs, default configuration", storm_vmjobs),
                ("plain threads, one shared connection", storm_plain)):
            mem_before = meminfo_mib("MemAvailable")
            with Watch(sandbox) as watch:
                total, ups, latencies, failures, unfinished = storm(
                    sandbox, n, tag, args.timeout, guest, watch)
            mem_after = meminfo_mib("MemAvailable")
            qemu = len(sandbox.qemu_pids())
            t0 = time.monotonic()
            destroyed = destroy_all(sandbox)
            result = {
                "total_s": total, "up": len(ups),
                "failures": dict(failures), "unfinished": unfinished,
                "up_p50_s": percentile(ups, 50),
                "up_p99_s": percentile(ups, 99),
                "create_p99_ms": ms(percentile(latencies, 99))
                if latencies else None,
                "qemu_running_at_end": qemu,
                "host_mib_per_guest": (mem_before - mem_after) / max(qemu, 1),
                "destroyed": destroyed,
                "destroy_s": time.monotonic() - t0,
                **watch.figures()}
            data["storms"][name] = result
            print(f"{name}: {total:.1f} s, {len(ups)} Up, failures "
                  f"{dict(failures)}, {result}", flush=True)
            daemon_log = result["daemon_log"]
            rows.append((
                name, f"{len(ups)}/{n}", sum(failures.values()) + unfinished,
                total, result["connections"],
                result["most_in_flight_per_connection"],
                daemon_log["keepalive timeouts"],
                result["closed_under_client"].get("keepalive", 0),
                sum(result["closed_under_client"].values()),
                daemon_log["max requests warnings"],
                daemon_log["closed by the daemon"],
                result["daemon_cpu_s"]))
    finally:
        sandbox.stop()
    left = processes_named(tag)
    data["qemu_left"] = left
    data["vs_plain"] = {
        key: data["storms"]["vmjobs, default configuration"][key] /
        data["storms"]["plain threads, one shared connection"][key]
        for key in ("total_s", "daemon_cpu_s")
        if data["storms"]["plain threads, one shared connection"][key]}
    table(f"a storm of {n} VMs (TCG, {MEM_MIB} MiB, no disk) on a private "
          f"libvirtd with the stock client limits "
          f"(max_client_requests {STOCK_LIMITS['max_client_requests']}, "
          f"keepalive {STOCK_LIMITS['keepalive_interval']} s x "
          f"{STOCK_LIMITS['keepalive_count']}), {os.cpu_count()} cores",
          ["configuration", "Up", "failed", "total s", "connections",
           "most in flight/conn", "daemon keepalive timeouts",
           "client keepalive closes", "client saw closed",
           "daemon max-requests warnings", "daemon closed clients",
           "libvirtd CPU s"], rows)
    for name, result in data["storms"].items():
        print(f"{name}: failures {result['failures'] or 'none'}; vmjobs "
              f"warnings {dict(result['client_warnings']) or 'none'}; "
              f"daemon: keepalive pings sent "
              f"{result['daemon_log']['keepalive pings sent']}, answers "
              f"read {result['daemon_log']['keepalive pongs received']}, "
              f"clients opened {result['daemon_log']['clients opened']}")
    print("vmjobs / plain threads: " + ", ".join(
        f"{k} {v:.2f}" for k, v in data["vs_plain"].items()))
    print(f"QEMU processes of this run left: {len(left)}")
    write_json("stock_storm", data)


if __name__ == "__main__":
    main()
