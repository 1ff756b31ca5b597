"""Benchmark 14, the event stream (issue 21), on libvirt's test driver:

    python tests/benchmarks/events.py [--vms 1000] [--subscribers 16]
                                      [--rounds 3] [--small 50]
    python tests/benchmarks/events.py --real 100 [--rounds 3]

1. The storm with events: `--vms` VM.create on an API served on a Unix
   socket (4 workers), timed from the first VM.create to the last job's
   end, in interleaved rounds on fresh hosts, sent by one of two
   engines:
   - "in process": a loop in the service's process calls the API (it
     holds the service's GIL while it submits);
   - "over the socket": another process (this file with --engine) sends
     them as an engine does, JSON-RPC on `--connections` keep-alive
     connections, a thread each;
   and in one of three cases:
   - "16 subscribers": `--subscribers` GET /events streams open, read by
     another process (this file with --subscriber) that notes when each
     VM's Up reached it (time.monotonic(), one clock for the machine);
   - "no subscriber": the same service, no stream open;
   - "events off": no notification published at all (the registry given
     no feed, workers.Job.observe a no-op): what publishing costs.
   From a VM's commit (its Up notification's publish time, from the
   service's buffer) to that Up reaching each subscriber: p50, p99.
   Where the CPU that 16 subscribers add goes: the service's dispatcher
   thread (the flushes no worker makes between its jobs) and the
   subscribers' process, from /proc, over the storm.
2. A flush alone (`--flushes`): 16 streams on socket pairs
   whose other ends a thread drains, 40 notifications posted before each
   flush; the thread CPU of a stream's flush, and of it the send(2).
3. `--real N` instead: the storm's time with `--subscribers` streams
   against none where a VM costs what it costs on a host: N tiny guests
   (TCG, 32 MiB, no disk) on a private libvirtd with QEMU
   (vmjobs.tools.sandbox), sent over the socket, in interleaved rounds
   after an untimed warm-up storm, each storm's guests destroyed before
   the next; and from each commit to its Up at each subscriber.
4. The load test's total against the storm's real end: `vmjobs loadtest`
   in process, `--small` and `--vms` VMs; its total (first request to the
   last Up event) against the real end (first request to the last job's
   `ended`, from JobInfo), and the end a 0.1 s poll of Host.getJobs (the
   load test before events) would have seen at best: the next poll after
   the real end.
"""

import argparse
import json
import math
import os
import re
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from common import ms, percentile, table, write_json
from real_storm import destroy_all
from vmjobs import eventstream, sse
from vmjobs.api import API
from vmjobs.config import Config
from vmjobs.notifications import Notifications
from vmjobs.server import Server
from vmjobs.tools import loadtest
from vmjobs.tools.procfs import cpu_seconds
from vmjobs.tools.sandbox import Sandbox
from workers import Job

CASES = ("no subscriber", "16 subscribers", "events off")
# --real: each guest's memory, and the untimed warm-up storm's guests.
REAL_MEM_MIB = 32
REAL_WARM_UP = 8
ENGINES = ("in process", "over the socket")


UP_FRAME = re.compile(rb"id: (\d+)\nevent: \|virt\|VM_status\|[^\n]*\n"
                      rb'data: [^\n]*"status":"Up"')


def subscriber(address, n, out_path):
    """--subscriber: open n streams; print "ready"; note when each VM's Up
    reached each, until the service ends the streams; write the notes out.
    A reader as light as can be, so that what is measured is the
    service's delivery, not this process' parsing: one thread and one
    poll for all the streams (n threads would wait for this process'
    own GIL in turn); what a wake-up finds ready is taken first, all
    stamped with the wake-up's time.monotonic(), then searched with a
    regular expression."""
    socks = []
    for _ in range(n):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(address[len("unix:"):])
        sock.sendall(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)   # the headers only: answered = subscribed
        assert head.startswith(b"HTTP/1.1 200"), head
        socks.append(sock)
    print("ready", flush=True)
    got = [[] for _ in range(n)]
    rest = [b""] * n
    poll = select.poll()
    for sock in socks:
        poll.register(sock, select.POLLIN)
    index = {sock.fileno(): i for i, sock in enumerate(socks)}
    while index:
        ready = poll.poll()
        at = time.monotonic()
        received = [(fd, socks[index[fd]].recv(1 << 20)) for fd, _ in ready]
        for fd, data in received:
            i = index[fd]
            if not data:
                poll.unregister(fd)
                del index[fd]
                continue
            rest[i] += data
            cut = rest[i].rfind(b"\n\n")
            if cut >= 0:
                got[i] += [(int(m.group(1)), at)
                           for m in UP_FRAME.finditer(rest[i], 0, cut)]
                rest[i] = rest[i][cut + 2:]
    with open(out_path, "w") as f:
        json.dump(got, f)


def vm_params(vm_id, mem=64):
    return {"vmId": vm_id, "vmName": vm_id[:8], "memSize": mem}


def engine(address, vms, connections, mem):
    """--engine: send `vms` VM.create to the service at `address` on
    `connections` keep-alive connections, a thread each. Prints "ready"
    once connected, sends at a line on stdin, then prints the job ids."""
    from vmjobs.client import Client
    clients = [Client(address) for _ in range(connections)]
    for client in clients:
        client.call("Host.getStats")   # connected before the storm
    vm_ids = [str(uuid.uuid4()) for _ in range(vms)]
    jobs = [None] * vms

    def send(k):
        for i in range(k, vms, connections):
            jobs[i] = clients[k].call(
                "VM.create", [vm_ids[i], vm_params(vm_ids[i], mem)])[
                    "jobId"]

    threads = [threading.Thread(target=send, args=(k,))
               for k in range(connections)]
    print("ready", flush=True)
    sys.stdin.readline()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(jobs), flush=True)


def submit(api, server, vms, engine_name, connections, mem=64):
    """The storm's VM.create, sent by `engine_name`; (the time.time()
    before the first, the job ids)."""
    if engine_name == "in process":
        vm_ids = [str(uuid.uuid4()) for _ in range(vms)]
        started = time.time()
        return started, [
            api.VM.create(vm_id, vm_params(vm_id))["jobId"]
            for vm_id in vm_ids]
    sender = subprocess.Popen(
        [sys.executable, __file__, "--engine", server.address, str(vms),
         str(connections), str(mem)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True)
    assert sender.stdout.readline() == "ready\n"
    started = time.time()
    sender.stdin.write("go\n")
    sender.stdin.flush()
    jobs = json.loads(sender.stdout.readline())
    assert sender.wait(600) == 0
    return started, jobs


def dispatcher_seconds():
    """The CPU seconds of this process' event dispatcher thread, if one
    runs (0 if not), from /proc/self/task: that thread's alone."""
    return sum(cpu_seconds([f"self/task/{thread.native_id}"])
               for thread in threading.enumerate()
               if thread.name == "vmjobs-events")


def storm(vms, case, subscribers, engine_name="in process", connections=4,
          sandbox=None):
    """One storm on a fresh host (the test driver's; with `sandbox`, an
    empty private libvirtd's); (seconds, CPU seconds of this process,
    [latency of each Up to each subscriber, seconds], CPU seconds of the
    dispatcher thread and of the subscribers' process, None without)."""
    directory = tempfile.mkdtemp(prefix="vmjobs-bench-events-")
    real = {"uri": None} if sandbox is None else {"uri": sandbox.uri,
                                                  "domain_type": "qemu"}
    config = Config(workers=4, queue_size=vms, events_buffer=20 * vms,
                    listen=f"unix:{directory}/vmjobs.sock",
                    max_subscribers=max(subscribers, 1), **real)
    observe = Job.observe
    if case == "events off":
        Job.observe = lambda self, observer: None
    api = API(config)
    if case == "events off":
        api.registry._notifications = None
    server = Server(api, config)
    server.start()
    reader = None
    out_path = os.path.join(directory, "got.json")
    try:
        if case == "16 subscribers":
            reader = subprocess.Popen(
                [sys.executable, __file__, "--subscriber", server.address,
                 str(subscribers), out_path], stdout=subprocess.PIPE,
                text=True)
            assert reader.stdout.readline() == "ready\n"
        cpu = time.process_time()
        reader_cpu = cpu_seconds([reader.pid]) if reader else None
        dispatcher_cpu = dispatcher_seconds()
        started, jobs = submit(api, server, vms, engine_name, connections,
                               64 if sandbox is None else REAL_MEM_MIB)
        for job_id in jobs:
            assert api.jobs.get(job_id).wait(600)
        # From the first request to the last job's end, on the wall
        # clock JobInfo stamps.
        seconds = max(api.jobs.get(job_id).info()["ended"]
                      for job_id in jobs) - started
        cpu = time.process_time() - cpu
        if reader is not None:
            reader_cpu = cpu_seconds([reader.pid]) - reader_cpu
            dispatcher_cpu = dispatcher_seconds() - dispatcher_cpu
        published = {n.id: n.time for n in api.notifications._kept}
    finally:
        server.stop()   # ends the streams: the reader writes its notes
        api.close()
        Job.observe = observe
    latencies = []
    if reader is not None:
        reader.wait(120)
        with open(out_path) as f:
            for notes in json.load(f):
                assert len(notes) == vms, len(notes)
                latencies += [at - published[i] for i, at in notes]
    return seconds, cpu, latencies, (dispatcher_cpu, reader_cpu)


def storms(args):
    runs = [(e, c) for e in ENGINES for c in CASES]
    times = {run: [] for run in runs}
    cpus = {run: [] for run in runs}
    latencies = {e: [] for e in ENGINES}
    delivery = {e: [] for e in ENGINES}
    for i in range(args.rounds):
        for engine_name, case in runs if i % 2 == 0 else runs[::-1]:
            seconds, cpu, lat, where = storm(
                args.vms, case, args.subscribers, engine_name,
                args.connections)
            times[engine_name, case].append(seconds)
            cpus[engine_name, case].append(cpu)
            latencies[engine_name] += lat
            if case == "16 subscribers":
                delivery[engine_name].append(where)
    rows = []
    for engine_name, case in runs:
        base = statistics.median(times[engine_name, "no subscriber"])
        cpu_base = statistics.median(cpus[engine_name, "no subscriber"])
        t, c = times[engine_name, case], cpus[engine_name, case]
        rows.append((engine_name, case, f"{statistics.median(t):.3f} s",
                     " ".join(f"{x:.3f}" for x in t),
                     f"{statistics.median(t) / base:.3f}",
                     f"{statistics.median(c):.3f} s",
                     f"{statistics.median(c) / cpu_base:.3f}"))
    table(f"storm of {args.vms} VM.create (test driver, 4 workers), "
          f"{args.rounds} interleaved rounds; ratio against no subscriber "
          f"with the same engine; CPU: the service's process",
          ["engine", "case", "median", "rounds", "ratio", "CPU",
           "CPU ratio"], rows)
    table(f"commit to Up at each of {args.subscribers} subscribers "
          f"(another process, GET /events)",
          ["engine", "Ups", "p50", "p99", "max"],
          [(e, len(lat), f"{ms(percentile(lat, 50)):.2f} ms",
            f"{ms(percentile(lat, 99)):.2f} ms", f"{ms(max(lat)):.2f} ms")
           for e, lat in latencies.items()])
    def added(engine_name):
        return statistics.median(cpus[engine_name, "16 subscribers"]) - \
            statistics.median(cpus[engine_name, "no subscriber"])
    table(f"where the CPU of {args.subscribers} subscribers goes (median "
          f"of the rounds): the service's CPU over no subscriber, its "
          f"dispatcher thread's, the subscribers' process'",
          ["engine", "service, added", "dispatcher", "subscribers"],
          [(e, f"{added(e):.3f} s",
            f"{statistics.median(d for d, _ in delivery[e]):.3f} s",
            f"{statistics.median(r for _, r in delivery[e]):.3f} s")
           for e in ENGINES])
    return {
        "delivery_cpu": {e: [{"dispatcher": d, "subscribers": r}
                             for d, r in where]
                         for e, where in delivery.items()},
        "times": {f"{e}, {c}": t for (e, c), t in times.items()},
        "cpu": {f"{e}, {c}": t for (e, c), t in cpus.items()},
        "latency_ms": {e: {"p50": ms(percentile(lat, 50)),
                           "p99": ms(percentile(lat, 99))}
                       for e, lat in latencies.items()}}


def real_storms(args):
    """--real: 16 subscribers against none on a private libvirtd with
    QEMU, over the socket (what a real engine does)."""
    cases = CASES[:2]
    times = {case: [] for case in cases}
    cpus = {case: [] for case in cases}
    latencies = []
    sandbox = Sandbox(tempfile.mkdtemp(prefix="vmjobs-bench-")).start()
    try:
        # Untimed: the first guests on a fresh daemon load QEMU and its
        # firmware from disk; whichever case came first paid it.
        storm(REAL_WARM_UP, "no subscriber", 0, "over the socket",
              args.connections, sandbox)
        destroy_all(sandbox)
        for i in range(args.rounds):
            for case in cases if i % 2 == 0 else cases[::-1]:
                seconds, cpu, lat, _ = storm(
                    args.real, case, args.subscribers, "over the socket",
                    args.connections, sandbox)
                destroy_all(sandbox)
                times[case].append(seconds)
                cpus[case].append(cpu)
                latencies += lat
                print(f"round {i + 1}, {case}: {seconds:.2f} s", flush=True)
    finally:
        sandbox.stop()
    base = statistics.median(times["no subscriber"])
    table(f"a real storm: {args.real} VMs (TCG, {REAL_MEM_MIB} MiB, no "
          f"disk) over the socket, private libvirtd with QEMU, 4 workers, "
          f"{args.rounds} interleaved rounds; ratio against no subscriber",
          ["case", "median", "rounds", "ratio", "service CPU"],
          [(case, f"{statistics.median(t):.2f} s",
            " ".join(f"{x:.2f}" for x in t),
            f"{statistics.median(t) / base:.3f}",
            f"{statistics.median(cpus[case]):.2f} s")
           for case, t in times.items()])
    table(f"commit to Up at each of {args.subscribers} subscribers, the "
          f"real storms", ["Ups", "p50", "p99", "max"],
          [(len(latencies), f"{ms(percentile(latencies, 50)):.2f} ms",
            f"{ms(percentile(latencies, 99)):.2f} ms",
            f"{ms(max(latencies)):.2f} ms")])
    return {"times": times, "cpu": cpus,
            "ratio": statistics.median(times["16 subscribers"]) / base,
            "latency_ms": {"p50": ms(percentile(latencies, 50)),
                           "p99": ms(percentile(latencies, 99))}}


def flushes(args, streams=16, per_flush=40):
    """A flush alone: `streams` streams that keep up, on socket pairs
    drained by a thread each, `per_flush` notifications of a running job
    posted before each flush; the thread CPU per stream-flush,
    and of it in send(2) (each stream's sender timed)."""
    feed = Notifications(buffer=per_flush * args.flushes + 1)
    sent = [0.0]

    def timed(send):
        def send_timed(data, offset):
            started = time.thread_time()
            try:
                return send(data, offset)
            finally:
                sent[0] += time.thread_time() - started
        return send_timed

    def drain(sock):
        while sock.recv(1 << 20):
            pass
    pairs = [socket.socketpair() for _ in range(streams)]
    stream_list = []
    for ours, theirs in pairs:
        ours.setblocking(False)
        stream = eventstream._Stream(ours, feed.subscribe(None))
        stream._send = timed(stream._send)
        stream_list.append(stream)
        threading.Thread(target=drain, args=(theirs,), daemon=True).start()

    class RunningJob:
        id = str(uuid.uuid4())
    vm_id = str(uuid.uuid4())
    info = {"id": RunningJob.id, "job_type": "create", "status": "running",
            "description": f"create VM {vm_id}", "step": "define",
            "created": time.time(), "started": time.time(), "vm_id": vm_id}
    framing = used = 0.0
    for _ in range(args.flushes):
        for _ in range(per_flush):
            feed.job_changed(RunningJob, info)
        started = time.thread_time()
        for event in feed._kept:
            sse.frame(event)   # once per notification, whatever the streams
        framed = time.thread_time()
        chunks, now = {}, time.monotonic()
        for stream in stream_list:
            stream.flush(now, False, chunks)
        framing += framed - started
        used += time.thread_time() - framed
        feed._kept.clear()
        time.sleep(0.002)   # the drains' turn
    for ours, theirs in pairs:
        ours.close()
        theirs.close()
    per = 1e6 / (args.flushes * streams)
    table(f"a flush: {streams} streams, {per_flush} notifications a "
          f"flush, {args.flushes} flushes (thread CPU)",
          ["framing, per flush", "per stream-flush", "of it send(2)"],
          [(f"{framing * 1e6 / args.flushes:.1f} us", f"{used * per:.1f} us",
            f"{sent[0] * per:.1f} us")])
    return {"framing_us_per_flush": framing * 1e6 / args.flushes,
            "us_per_stream_flush": used * per, "send_us": sent[0] * per}


def totals(args):
    rows, data = [], []
    for vms in (args.small, args.vms):
        for _ in range(args.rounds):
            path = os.path.join(tempfile.mkdtemp(), "run.json")
            with open(os.devnull, "w") as out:
                summary = loadtest.run(vms=vms, workers=4, out=out,
                                       json_path=path)
            with open(path) as f:
                records = json.load(f)["vms"]
            real = max(r["ended"] for r in records) - summary["started"]
            poll = math.ceil(real / 0.1) * 0.1
            rows.append((vms, f"{summary['total_s'] * 1000:.2f} ms",
                         f"{real * 1000:.2f} ms",
                         f"{(summary['total_s'] - real) * 1000:+.3f} ms",
                         f"{poll * 1000:.0f} ms"))
            data.append({"vms": vms, "total_s": summary["total_s"],
                         "real_s": real})
    table("the load test's total (to the last Up event) against the real "
          "end (the last job's end, JobInfo)", ["VMs", "total", "real end",
                                                "difference",
                                                "a 0.1 s poll, at best"],
          rows)
    return data


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--subscriber":
        return subscriber(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    if len(sys.argv) > 1 and sys.argv[1] == "--engine":
        return engine(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
                      int(sys.argv[5]))
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--subscribers", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", type=int, default=50)
    parser.add_argument("--connections", type=int, default=4,
                        help="the socket engine's connections")
    parser.add_argument("--flushes", type=int, default=300,
                        help="flushes timed alone")
    parser.add_argument("--real", type=int, default=0, metavar="N",
                        help="instead: N tiny guests on a private libvirtd")
    args = parser.parse_args()
    if args.real:
        return write_json("events_real", {"args": vars(args),
                                          "storms": real_storms(args)})
    write_json("events", {"args": vars(args), "storms": storms(args),
                          "flushes": flushes(args), "totals": totals(args)})


if __name__ == "__main__":
    main()
