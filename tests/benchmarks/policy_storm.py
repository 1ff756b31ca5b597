"""Benchmark, issue 19: a storm of VM.create with engine-style domain XMLs
(tests/engine_xml.py, type test) on libvirt's test driver, to commit,
with the allowlist policy against the denylist it replaced
(denylist_policy.py, kept only here) and against no policy at all.

    python tests/benchmarks/policy_storm.py [--vms 2000] [--rounds 3]

Each round gives each side a fresh private test-driver host and the same
VMs; rounds alternate which side goes first. The storm's time includes
every verb's answer (the policy runs in the caller's thread, before the
job is queued) and the workers' define and start."""

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid

import denylist_policy
from common import ROOT, table, write_json
from vmjobs import policy
from vmjobs.api import API
from vmjobs.config import Config

sys.path.insert(0, os.path.join(ROOT, "tests"))
from engine_xml import ENGINE_XMLS, make_images, vm_images  # noqa: E402

ALLOWLIST = policy.check_domain_xml


def denylist(text, ctx):
    denylist_policy.check_domain_xml(text, list(ctx.image_dirs))


def no_policy(text, ctx):
    pass


SIDES = {"allowlist": ALLOWLIST, "denylist": denylist, "none": no_policy}


@contextlib.contextmanager
def side(check):
    policy.check_domain_xml = check
    try:
        yield
    finally:
        policy.check_domain_xml = ALLOWLIST


def storm(check, workers, images, own_images, shape):
    """`own_images`: a set of images for each VM (vm_images), used again
    by each storm, since a storm's VMs leave with its API."""
    n = len(own_images)
    xmls = []
    for own in own_images:
        vm_id = str(uuid.uuid4())
        xmls.append((vm_id, ENGINE_XMLS[shape](vm_id, own, "test")))
    with side(check), API(Config(uri=None, workers=workers, queue_size=n,
                                 image_dirs=[images])) as api:
        started = time.perf_counter()
        for vm_id, xml in xmls:
            api.VM.create(vm_id, {"vmId": vm_id, "xml": xml})
        assert api.pool.wait_idle(600)
        elapsed = time.perf_counter() - started
        assert len(api.Host.getVMList()) == n
    return elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shape", choices=ENGINE_XMLS, default="q35-server")
    args = parser.parse_args()
    images = tempfile.mkdtemp(prefix="vmjobs-bench-images-")
    make_images(images)
    own_images = [vm_images(images, str(i)) for i in range(args.vms)]
    times = {name: [] for name in SIDES}
    for r in range(args.rounds):
        order = list(SIDES) if r % 2 == 0 else list(reversed(SIDES))
        for name in order:
            times[name].append(storm(SIDES[name], args.workers, images,
                                     own_images, args.shape))
    base = statistics.median(times["denylist"])
    table(f"storm of {args.vms} VM.create ({args.shape} XML) to commit, "
          f"{args.workers} workers, median of {args.rounds} rounds",
          ("policy", "s", "VMs/s", "x denylist"),
          [(name, statistics.median(t), args.vms / statistics.median(t),
            statistics.median(t) / base) for name, t in times.items()])
    write_json("policy_storm", times)


if __name__ == "__main__":
    main()
