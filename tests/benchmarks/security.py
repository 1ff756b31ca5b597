"""Benchmark, security: what the checks of issues 10 and 19 cost a verb.

    python tests/benchmarks/security.py [--rounds 2000]

- the domain XML policy (vmjobs/policy.py: the allowlist, its paths
  confined and its images' headers read) on engine-style domain XMLs
  (tests/engine_xml.py, their images made in a temporary image dir), next
  to the defusedxml parse alone, the denylist it replaced
  (denylist_policy.py, kept here only), and what letting libvirt itself
  parse the XML would add (define, dumpxml and undefine on a private
  in-process test driver: the differential guard, not in the verb);
- VM.create's answer with an engine XML (policy checked) next to one with
  vmName (no XML to check), and a restore's answer (the state file
  confined, opened with O_NOFOLLOW and its domain XML read from libvirt
  and checked) next to both, in one process on libvirt's test driver.
Rounds alternate, so both sides see the same machine."""

import argparse
import os
import sys
import tempfile
import time
import uuid

import libvirt

import denylist_policy
from common import ROOT, ms, percentile, table, write_json
from vmjobs import domxml, policy
from vmjobs.api import API
from vmjobs.config import Config

sys.path.insert(0, os.path.join(ROOT, "tests"))
from engine_xml import ENGINE_XMLS, make_images, vm_images  # noqa: E402

DISKS = (("os.qcow2", "qcow2"), ("data.raw", "raw"), ("block-lv", "raw"),
         ("virtio-win.iso", "raw"))


def engine_xml(vm_id, images):
    """Issue 10's engine-sized XML: four disks (files made by
    make_images), four NICs, channels, a kernel."""
    disks = "".join(
        f"<disk type='file' device='disk'><driver name='qemu' type='{fmt}'/>"
        f"<source file='{images}/{name}'/><target dev='vd{c}' "
        "bus='virtio'/></disk>" for (name, fmt), c in zip(DISKS, "abcd", strict=True))
    nics = "".join(
        f"<interface type='bridge'><source bridge='br{i}'/><model "
        "type='virtio'/></interface>" for i in range(4))
    return (f"<domain type='test'><name>b-{vm_id[:8]}</name><uuid>{vm_id}"
            "</uuid><memory unit='MiB'>64</memory><vcpu>2</vcpu><os><type>"
            f"hvm</type><kernel>{images}/vmlinuz</kernel></os><devices>"
            f"{disks}{nics}<serial type='pty'/><console type='pty'/>"
            "<channel type='unix'><target type='virtio' name='org.qemu.guest_"
            "agent.0'/></channel><rng model='virtio'><backend model='random'"
            ">/dev/urandom</backend></rng><memballoon model='none'/>"
            "</devices></domain>")


def timed(function, *args):
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def libvirt_reading(conn, xml):
    """What the differential guard would add: libvirt's own parse."""
    dom = conn.defineXML(xml)
    try:
        dom.XMLDesc(0)
    finally:
        dom.undefine()


def policy_costs(rounds):
    images = tempfile.mkdtemp(prefix="vmjobs-bench-images-")
    make_images(images)
    node = os.path.join(images, "node.xml")
    with open(node, "w") as f:
        f.write("<node/>")
    conn = libvirt.open(f"test://{node}")
    xmls = {"bench": engine_xml(str(uuid.uuid4()), images)}
    xmls.update({name: make(str(uuid.uuid4()), images, "test")
                 for name, make in ENGINE_XMLS.items()})
    rows, samples = [], {}
    for name, xml in xmls.items():
        times = {"parse": [], "denylist": [], "allowlist": [],
                 "libvirt parse": []}
        for _ in range(rounds):     # interleaved: the same machine for all
            times["parse"].append(timed(domxml.domain_uuid, xml))
            times["denylist"].append(timed(
                denylist_policy.check_domain_xml, xml, [images]))
            times["allowlist"].append(timed(policy.check_domain_xml, xml,
                                            [images]))
            times["libvirt parse"].append(timed(libvirt_reading, conn,
                                                xml))
        p50 = {k: percentile(v, 50) for k, v in times.items()}
        rows.append((name, len(xml), ms(p50["parse"]), ms(p50["denylist"]),
                     ms(p50["allowlist"]),
                     p50["allowlist"] / p50["denylist"],
                     ms(p50["libvirt parse"]),
                     ms(p50["allowlist"] + p50["libvirt parse"])))
        samples[name] = times
    conn.close()
    samples["images"] = images
    table(f"policy per domain XML, p50 of {rounds} interleaved rounds",
          ("XML", "bytes", "parse ms", "denylist ms", "allowlist ms",
           "x denylist", "libvirt parse ms", "allowlist+libvirt ms"), rows)
    return samples


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    samples = policy_costs(args.rounds)
    images = samples.pop("images")

    n = max(50, args.rounds // 10)
    states = tempfile.mkdtemp(prefix="vmjobs-bench-")
    verbs = {"create (vmName)": [], "create (xml)": [], "restore": []}
    with API(Config(uri=None, workers=4, queue_size=10 * n,
                    state_dirs=[states], image_dirs=[images])) as api:
        paths = []
        for _ in range(n):   # hibernated VMs to restore (not timed)
            vm_id = str(uuid.uuid4())
            api.VM.create(vm_id, {"vmId": vm_id, "vmName": vm_id,
                                  "memSize": 64})
            assert api.pool.wait_idle(60)
            path = f"{states}/{vm_id}"
            api.VM.hibernate(vm_id, path)
            paths.append((vm_id, path))
        assert api.pool.wait_idle(60)
        for vm_id, path in paths:
            a, b = str(uuid.uuid4()), str(uuid.uuid4())
            verbs["create (vmName)"].append(timed(api.VM.create, a, {
                "vmId": a, "vmName": a, "memSize": 64}))
            verbs["create (xml)"].append(timed(api.VM.create, b, {
                "vmId": b, "xml": engine_xml(b, vm_images(images, b))}))
            verbs["restore"].append(timed(api.VM.create, vm_id, {
                "vmId": vm_id, "restoreState": path}))
        assert api.pool.wait_idle(60)
    base = percentile(verbs["create (vmName)"], 50)
    table(f"verb answer, {n} each, interleaved", ("verb", "p50 ms",
                                                  "p99 ms", "x vmName"),
          [(name, ms(percentile(v, 50)), ms(percentile(v, 99)),
            percentile(v, 50) / base) for name, v in verbs.items()])
    write_json("security", {"policy_s": samples, "verbs_s": verbs})


if __name__ == "__main__":
    main()
