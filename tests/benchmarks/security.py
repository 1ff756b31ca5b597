"""Benchmark, security: what the checks of issue 10 cost a verb.

    python tests/benchmarks/security.py [--rounds 2000]

- the domain XML policy (vmjobs/policy.py) on an engine-sized domain XML
  (disks, NICs, channels, a kernel) next to the defusedxml parse the verb
  did before it;
- VM.create's answer with an engine XML (policy checked) next to one with
  vmName (no XML to check), and a restore's answer (the state file
  confined, opened with O_NOFOLLOW and its domain XML read from libvirt
  and checked) next to both, in one process on libvirt's test driver.
Rounds alternate, so both sides see the same machine."""

import argparse
import tempfile
import time
import uuid

from common import ms, percentile, table, write_json
from vmjobs import domxml, policy
from vmjobs.api import API
from vmjobs.config import Config

IMAGES = "/var/lib/vmjobs/images"


def engine_xml(vm_id):
    disks = "".join(
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{IMAGES}/{vm_id}-{i}.qcow2'/><target dev='vd{c}' "
        "bus='virtio'/></disk>" for i, c in enumerate("abcd"))
    nics = "".join(
        f"<interface type='bridge'><source bridge='br{i}'/><model "
        "type='virtio'/></interface>" for i in range(4))
    return (f"<domain type='test'><name>b-{vm_id[:8]}</name><uuid>{vm_id}"
            "</uuid><memory unit='MiB'>64</memory><vcpu>2</vcpu><os><type>"
            f"hvm</type><kernel>{IMAGES}/vmlinuz</kernel></os><devices>"
            f"{disks}{nics}<serial type='pty'/><console type='pty'/>"
            "<channel type='unix'><target type='virtio' name='org.qemu.guest_"
            "agent.0'/></channel><rng model='virtio'><backend model='random'"
            ">/dev/urandom</backend></rng><memballoon model='none'/>"
            "</devices></domain>")


def timed(function, *args):
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    xml = engine_xml(str(uuid.uuid4()))
    parse, check = [], []
    for _ in range(args.rounds):
        parse.append(timed(domxml.domain_uuid, xml))
        check.append(timed(policy.check_domain_xml, xml, [IMAGES]))
    rows = [("parse (defusedxml)", ms(percentile(parse, 50)), 1.0),
            ("policy check", ms(percentile(check, 50)),
             percentile(check, 50) / percentile(parse, 50))]
    table(f"domain XML of {len(xml)} bytes, {args.rounds} rounds",
          ("", "p50 ms", "x parse"), rows)

    n = max(50, args.rounds // 10)
    states = tempfile.mkdtemp(prefix="vmjobs-bench-")
    verbs = {"create (vmName)": [], "create (xml)": [], "restore": []}
    with API(Config(uri=None, workers=4, queue_size=10 * n, state_dirs=[states],
                    image_dirs=[IMAGES])) as api:
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
                "vmId": b, "xml": engine_xml(b)}))
            verbs["restore"].append(timed(api.VM.create, vm_id, {
                "vmId": vm_id, "restoreState": path}))
        assert api.pool.wait_idle(60)
    base = percentile(verbs["create (vmName)"], 50)
    table(f"verb answer, {n} each, interleaved", ("verb", "p50 ms",
                                                  "p99 ms", "x vmName"),
          [(name, ms(percentile(v, 50)), ms(percentile(v, 99)),
            percentile(v, 50) / base) for name, v in verbs.items()])
    write_json("security", {"xml_parse_s": parse, "xml_check_s": check,
                            "verbs_s": verbs})


if __name__ == "__main__":
    main()
