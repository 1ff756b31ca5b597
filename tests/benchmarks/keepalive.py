"""Benchmark, transport: a Host.ping round trip on a kept (keep-alive)
connection against a new connection per call, over plain TCP (insecure,
loopback) and over mutual TLS, against a real `vmjobs serve` process.

    python tests/benchmarks/keepalive.py [--calls 2000] [--root DIR]

`--root DIR` serves the vmjobs found in DIR instead (a checkout of an
older commit, say: `git archive COMMIT | tar -x -C DIR`), to compare the
same client against it. The client is vmjobs.client.Client (what a
migration's source uses to call its destination). Calls alternate between
the kept and the new connections, so both see the same machine."""

import argparse
import os
import subprocess
import sys
import tempfile
import time

from common import ROOT, ms, percentile, table, write_json
from vmjobs.client import Client


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   capture_output=True)


def make_pki(d):
    """A CA, a server certificate for 127.0.0.1 and a client one."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=ca", "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\n"),
                      ("engine", "extendedKeyUsage=clientAuth\n")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj",
                f"/CN={name}", "-keyout", f"{name}.key", "-out",
                f"{name}.csr", cwd=d)
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem",
                "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
                "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)


def serve(root, d, tls):
    """`vmjobs serve` from `root` on a loopback port: (process, address)."""
    name = "tls" if tls else "tcp"
    config = os.path.join(d, f"{name}.conf")
    with open(config, "w") as f:
        f.write("[rpc]\n" + (f"tls_cert = {d}/server.pem\n"
                             f"tls_key = {d}/server.key\n"
                             f"tls_ca = {d}/ca.pem\n" if tls else
                             "insecure = true\n"))
    process = subprocess.Popen(
        [sys.executable, "-m", "vmjobs", "serve", "--config", config,
         "--uri", "test:///default",   # (the default: the host's QEMU)
         "--listen", "127.0.0.1:0", "--state-dir", d,
         "--lock-file", os.path.join(d, f"{name}.lock"),
         "--log-file", os.path.join(d, f"{name}.log")],
        stdout=subprocess.PIPE, text=True, cwd=root,
        env=dict(os.environ, PYTHONPATH=root))
    line = process.stdout.readline()
    while line.startswith("vmjobs: warning: "):   # the test driver's
        line = process.stdout.readline()
    if "serving on " not in line:
        process.kill()
        raise RuntimeError(f"serve did not start: {line!r}")
    return process, line.split("serving on ", 1)[1].strip()


def measure(address, credentials, calls):
    """(kept, new): the seconds of each round trip."""
    kept_client = Client(address, **credentials)
    kept_client.call("Host.ping")      # connected (and TLS set up) once
    kept, new = [], []
    for _ in range(calls):
        started = time.perf_counter()
        kept_client.call("Host.ping")
        kept.append(time.perf_counter() - started)
        started = time.perf_counter()
        with Client(address, **credentials) as client:
            client.call("Host.ping")
        new.append(time.perf_counter() - started)
    kept_client.close()
    return kept, new


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--root", default=ROOT,
                        help="the vmjobs to serve (default: this one)")
    args = parser.parse_args()
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as d:
        make_pki(d)
        for tls in (False, True):
            process, address = serve(args.root, d, tls)
            credentials = {"cert": f"{d}/engine.pem", "key": f"{d}/engine.key",
                           "ca": f"{d}/ca.pem"} if tls else {}
            try:
                kept, new = measure(address, credentials, args.calls)
            finally:
                process.terminate()
                process.wait()
            name = "mutual TLS" if tls else "plain TCP"
            for how, times in (("keep-alive", kept), ("new connection", new)):
                p50, p99 = ms(percentile(times, 50)), ms(percentile(times, 99))
                rows.append((name, how, p50, p99))
                results[f"{name} {how}"] = {"p50_ms": p50, "p99_ms": p99}
            rows.append((name, "new / keep-alive (p50)",
                         percentile(new, 50) / percentile(kept, 50), ""))
    table(f"Host.ping round trip, {args.calls} calls each, served from "
          f"{args.root}", ("transport", "connection", "p50 ms", "p99 ms"),
          rows)
    write_json("keepalive", {"calls": args.calls, "root": args.root,
                             "results": results})


if __name__ == "__main__":
    main()
