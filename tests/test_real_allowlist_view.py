"""The allowlist's view against the real QEMU driver's (the hostile-caller
audit, round 15): every seed of test_allowlist_libvirt_view.py the
allowlist accepts, as a guest of type qemu, defined on the private
libvirtd as vmjobs writes it, read back INACTIVE; and a few of them
started, their live XML read: what libvirt read names nothing the
allowlist did not judge (tests/xmlview.py), beyond what the QEMU driver
adds of its own (its emulator, a balloon, an audio backend, a running
guest's labels, ptys, console ports, the backing chain it read and a
transient disk's overlay, each judged by the allowlist). With
VIEW_EXHAUSTIVE=1 in the environment, every mutation of every seed is
defined too (test_allowlist_libvirt_view.py's: 11,557 defined, 70 s)."""

import os
import re

import libvirt

import engine_xml
import test_hostile_xml
import xmlview
from test_allowlist_libvirt_view import (
    all_mutations,
    judge,
    mutate,
    seeds,
    vmjobs_writes,
)
from vmjobs import allowlist, domxml

# The seeds started for their live XML: a unix channel it binds, a VNC
# console on a port libvirt chooses, a serial file and the console libvirt
# adds for it, a transient disk's overlay, a qcow2 image's backing chain,
# a SPICE socket.
STARTED = ("channel-bind-over-live-socket", "vnc-fixed-port",
           "serial-file-over-held-image", "transient-overlay-over-a-file",
           "qcow2-backing-outside", "spice-listen-socket-over-file")


def as_qemu(text):
    return re.sub(r"<domain type=['\"]test['\"]", "<domain type='qemu'",
                  text, count=1)


def test_the_qemu_driver_reads_only_what_the_allowlist_judged(
        daemon, tmp_path, capsys):
    images, victim = tmp_path / "images", tmp_path / "victim"
    for d in (images, victim, images / "share"):
        d.mkdir()
    test_hostile_xml._dirs(images, victim)
    engine_xml.make_images(str(images))
    libvirt.registerErrorHandler(lambda *_: None, None)
    conn = libvirt.open(daemon.uri)
    counts = {"accepted": 0, "defined": 0, "started": 0}
    cases = seeds(images, victim)
    texts = [(name, text, name.removeprefix("control ") in STARTED)
             for name, text in cases.items()]
    if os.environ.get("VIEW_EXHAUSTIVE"):
        texts += [(f"{name}: {how} {index} {form}",
                   mutate(text, how, index, form), False)
                  for name, text in cases.items()
                  for how, index, form in all_mutations(text)]
    try:
        for name, text, start in texts:
            if text is None:
                continue
            text = as_qemu(text)
            ctx = judge(text, images)
            if ctx is None:
                continue
            counts["accepted"] += 1
            root = domxml.parse_untrusted(text)
            try:
                dom = conn.defineXML(vmjobs_writes(text, ctx))
            except libvirt.libvirtError:
                continue    # the QEMU driver refuses it (a test-only guest)
            try:
                counts["defined"] += 1
                readings = [dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)]
                if start:
                    dom.create()
                    readings.append(dom.XMLDesc(0))
                    dom.destroy()
                    counts["started"] += 1
                for reading in readings:
                    assert xmlview.unjudged(root, ctx, reading) == set(), \
                        (name, text, reading)
            finally:
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
    finally:
        conn.close()
    with capsys.disabled():
        print(f"\nallowlist against the QEMU driver: {counts}")
    assert counts["defined"] >= 100 and counts["started"] == len(STARTED)


def test_the_checker_sees_the_nvram_file_libvirt_picks(daemon, tmp_path):
    """The checker can fail on the QEMU driver: a pflash guest without
    <nvram>, which the allowlist refuses (round 9: libvirt picks a file
    outside the image dirs), read back with the file libvirt picked,
    unjudged; beside it the same guest naming its own, nothing
    unjudged."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "code.fd").write_bytes(b"\0" * 65536)
    conn = libvirt.open(daemon.uri)
    try:
        for nvram, judged_all in (("", False),
                                  (f"<nvram>{images}/vars.fd</nvram>", True)):
            text = (f"<domain type='qemu'><name>nv-{tmp_path.name[-8:]}"
                    "</name><memory unit='MiB'>48</memory><os><type "
                    f"arch='x86_64' machine='q35'>hvm</type><loader "
                    f"type='pflash' readonly='yes'>{images}/code.fd</loader>"
                    f"{nvram}</os><features><acpi/></features></domain>")
            assert (judge(text, images) is not None) is judged_all
            dom = conn.defineXML(text)
            try:
                reading = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            finally:
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
            unjudged = xmlview.unjudged(domxml.parse_untrusted(text),
                                        allowlist.Confinement((str(images),)),
                                        reading)
            if judged_all:
                assert unjudged == set(), reading
            else:
                assert any(fact[:2] == ("path", "domain/os/nvram") and
                           fact[3].startswith("/var/lib/libvirt/qemu/nvram/")
                           for fact in unjudged), (unjudged, reading)
    finally:
        conn.close()
