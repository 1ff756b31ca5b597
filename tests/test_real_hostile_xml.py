"""On the real daemon, where the harm would show (issue 19): a hostile
domain XML is refused at the verb and QEMU never starts, so it never opens
the outside file; its legitimate form runs, and QEMU's command line and
open files (/proc/PID/cmdline, /proc/PID/fd) show the file inside the
image directory and nothing of the victim's."""

import hashlib
import os
import re
import signal
import socket
import stat
import subprocess
import time

import libvirt
import pytest

from conftest import new_id, our_domains
from engine_xml import qcow2, vmdk_descriptor
from realdaemon import WAIT, command_line, start_daemon, stop_daemon
from vmjobs import domxml, policy
from vmjobs.errors import InvalidParams
from vmjobs.tools.procfs import alive


def domain(vm_id, devices):
    return (f"<domain type='qemu'><name>rh-{vm_id[:8]}</name><uuid>{vm_id}"
            "</uuid><memory unit='MiB'>48</memory><vcpu>1</vcpu><os><type "
            "arch='x86_64'>hvm</type></os><devices>"
            f"{devices}<serial type='pty'/><memballoon model='none'/>"
            "</devices></domain>")


def disk(path, fmt):
    return (f"<disk type='file' device='disk'><driver name='qemu' "
            f"type='{fmt}'/><source file='{path}'/><target dev='vda' "
            "bus='virtio'/></disk>")


def block(path):
    return (f"<disk type='block' device='disk'><driver name='qemu' "
            f"type='raw'/><source dev='{path}'/><target dev='vda' "
            "bus='virtio'/></disk>")


def rng(text):
    return (f"<rng model='virtio'><backend model='random'>{text}</backend>"
            "</rng>")


# name -> (refused devices, control devices, the file the control's QEMU
# must have open)
CASES = {
    "rng-split-text": (
        rng("{images}/<b/>../victim/secret"), rng("{images}/entropy"),
        "entropy"),
    "rng-split-text-tail": (
        rng("{images}/entropy<b/>/../../victim/secret"),
        rng("{images}/entropy"), "entropy"),
    # Relative: QEMU, started from /, would open the victim itself.
    "block-relative": (
        block("{victim_relative}/secret"), block("{images}/blk"), "blk"),
    "qcow2-backing-outside": (
        disk("{images}/top-outside.qcow2", "qcow2"),
        disk("{images}/top-inside.qcow2", "qcow2"), "base.raw"),
    # Below it a vmdk descriptor whose extent is the victim: QEMU opened
    # the victim as the disk's data (a hostile-caller audit, round 8).
    "qcow2-backing-vmdk": (
        disk("{images}/top-vmdk.qcow2", "qcow2"),
        disk("{images}/top-inside.qcow2", "qcow2"), "base.raw"),
    "qcow2-declared-raw-with-backing": (
        disk("{images}/top-outside.qcow2", "raw"),
        disk("{images}/top-inside.qcow2", "qcow2"), "base.raw"),
}


@pytest.fixture
def dirs(tmp_path):
    images, victim = tmp_path / "images", tmp_path / "victim"
    images.mkdir()
    victim.mkdir()
    (victim / "secret").write_bytes(b"not for the guest\n" * 512)
    (images / "entropy").write_bytes(os.urandom(1 << 20))
    (images / "base.raw").write_bytes(b"\0" * (1 << 20))
    qcow2(f"{images}/top-inside.qcow2", f"{images}/base.raw")
    qcow2(f"{images}/top-outside.qcow2", f"{victim}/secret", unsafe=True)
    (images / "extent.vmdk").write_text(vmdk_descriptor(victim / "secret"))
    qcow2(f"{images}/top-vmdk.qcow2", "extent.vmdk", backing_fmt="vmdk",
          unsafe=True)
    # A block device in the image dir, as an engine's block disk: a loop
    # device over a file there, its node made in the image dir.
    (tmp_path / "lv").write_bytes(b"\0" * (1 << 20))
    loop = subprocess.run(["losetup", "--find", "--show", tmp_path / "lv"],
                          check=True, capture_output=True,
                          text=True).stdout.strip()
    try:
        os.mknod(images / "blk", stat.S_IFBLK | 0o600,
                 os.stat(loop).st_rdev)
        yield images, victim
    finally:
        subprocess.run(["losetup", "--detach", loop], check=True)


def fill(text, images, victim):
    return text.replace("{images}", str(images)).replace(
        "{victim_relative}", str(victim).lstrip("/")).replace(
        "{victim}", str(victim))


def started(api, daemon, vm_id, devices):
    """VM.create of a guest with `devices`, done: its QEMU's pid."""
    job = api.VM.create(vm_id, {"vmId": vm_id, "xml": domain(
        vm_id, devices)})["jobId"]
    assert api.jobs.get(job).wait(WAIT)
    info = api.Host.getJobs(job_ids=[job])[job]
    assert info["status"] == "done", info
    [pid] = daemon.qemu_pids()
    return pid


def open_files(pid):
    fds = f"/proc/{pid}/fd"
    targets = set()
    for fd in os.listdir(fds):
        try:
            targets.add(os.readlink(f"{fds}/{fd}"))
        except OSError:
            pass        # closed meanwhile
    return targets


def wait_open(pid, path):
    """QEMU opens a backing file when the guest's disk is first set up:
    look until `path` shows in its open files (bounded), not for a fixed
    time; then its open files."""
    deadline = time.monotonic() + WAIT
    while path not in (files := open_files(pid)):
        assert time.monotonic() < deadline, files
        # (Another process's descriptors: an inotify of the file misses
        # one libvirt opened and passed to QEMU.)
        time.sleep(0.05)
    return files


@pytest.mark.parametrize("case", CASES)
def test_refused_qemu_never_starts(make_real_api, daemon, dirs, case):
    images, victim = dirs
    api = make_real_api(image_dirs=[str(images)])
    vm_id = new_id()
    atime = os.stat(victim / "secret").st_atime_ns
    with pytest.raises(InvalidParams) as err:
        api.VM.create(vm_id, {"vmId": vm_id, "xml": domain(
            vm_id, fill(CASES[case][0], images, victim))})
    assert err.value.data == {"param": "xml"}
    assert api.jobs.jobs() == [] and api.registry.snapshot()[0] == []
    assert our_domains(api.hv) == [] and daemon.qemu_pids() == []
    assert os.stat(victim / "secret").st_atime_ns == atime


@pytest.mark.parametrize("case", CASES)
def test_control_runs_with_the_file_inside(make_real_api, daemon, dirs,
                                           case):
    images, victim = dirs
    _, control, expected = CASES[case]
    api = make_real_api(image_dirs=[str(images)])
    vm_id = new_id()
    pid = started(api, daemon, vm_id, fill(control, images, victim))
    files = wait_open(pid, str(images / expected))
    assert not any(f.startswith(str(victim)) for f in files), files
    assert str(victim) not in command_line(pid)
    assert api.VM.destroy(vm_id) is True


def spice(address):
    return (f"<graphics type='spice' autoport='yes'><listen type='address' "
            f"address='{address}'/></graphics>")


def test_a_listen_address_is_an_address_never_options(make_real_api, daemon,
                                                      dirs):
    """libvirt 9.0 writes a SPICE listen address into QEMU's -spice option
    string unescaped: `x,unix=on` made QEMU (root, its working directory
    /) replace the file /x with a socket (found by a hostile-caller
    audit). Refused at the verb; the control, an address, reaches QEMU as
    one option."""
    images, _ = dirs
    api = make_real_api(image_dirs=[str(images)])
    target = f"vmjobs-test-{new_id()[:8]}"
    with open(f"/{target}", "w") as f:
        f.write("root's own file\n")
    try:
        vm_id = new_id()
        with pytest.raises(InvalidParams) as err:
            api.VM.create(vm_id, {"vmId": vm_id, "xml": domain(
                vm_id, spice(f"{target},unix=on"))})
        assert err.value.data == {"param": "xml"}
        assert daemon.qemu_pids() == [] and our_domains(api.hv) == []
        assert stat.S_ISREG(os.stat(f"/{target}").st_mode)
        pid = started(api, daemon, vm_id, spice("127.0.0.1"))
        spice_option = command_line(pid).split("-spice ")[1].split(" ")[0]
        options = spice_option.split(",")
        assert "addr=127.0.0.1" in options, spice_option
        assert not any(o.startswith("unix") for o in options), spice_option
        assert api.VM.destroy(vm_id) is True
    finally:
        os.unlink(f"/{target}")


def test_a_header_rewritten_after_the_check_names_nothing(make_real_api,
                                                          daemon, dirs):
    """A qcow2 header rewritten between the verb's check and QEMU's open
    (a guest owning the file as another VM's raw disk, found by a
    hostile-caller audit) to name a backing file outside: QEMU opens the
    chain that was checked, stated in the XML, and never the victim.
    Without the stated chain QEMU followed the new header."""
    images, victim = dirs
    image = qcow2(f"{images}/flip.qcow2", f"{images}/base.raw")

    def rewrite(job, step):
        if step == "define":
            subprocess.run(["qemu-img", "rebase", "-u", "-f", "qcow2", "-b",
                            f"{victim}/secret", "-F", "raw", image],
                           check=True, capture_output=True)

    api = make_real_api(image_dirs=[str(images)], step_hook=rewrite)
    vm_id = new_id()
    pid = started(api, daemon, vm_id, disk(image, "qcow2"))
    files = wait_open(pid, str(images / "base.raw"))   # the checked chain
    assert not any(f.startswith(str(victim)) for f in files), files
    assert str(victim) not in command_line(pid)
    assert str(victim) not in api.hv.migratable_xml(vm_id)
    assert api.VM.destroy(vm_id) is True


def test_a_running_guests_migratable_xml_passes(make_real_api, daemon,
                                                dirs):
    """What a source host sends an incoming migration (libvirt's
    migratable XML of the running guest: ptys, aliases, addresses,
    controllers libvirt added) is accepted by the destination's policy."""
    images, victim = dirs
    api = make_real_api(image_dirs=[str(images)])
    vm_id = new_id()
    devices = (disk(f"{images}/top-inside.qcow2", "qcow2") +
               rng(f"{images}/entropy") +
               "<console type='pty'/><channel type='unix'><source "
               f"mode='bind' path='{images}/agent.sock'/><target "
               "type='virtio' name='org.qemu.guest_agent.0'/></channel>")
    job = api.VM.create(vm_id, {"vmId": vm_id, "xml": domain(vm_id,
                                                             devices)})
    assert api.jobs.get(job["jobId"]).wait(WAIT)
    assert api.Host.getJobs(job_ids=[job["jobId"]])[job["jobId"]][
        "status"] == "done"
    xml = api.hv.migratable_xml(vm_id)
    assert "<address" in xml      # libvirt's reading, not ours
    # Judged as a destination host would: there, no guest listens on the
    # agent's socket yet (here the source's own QEMU does, until it ends).
    assert api.VM.destroy(vm_id) is True
    policy.check_domain_xml(xml, policy.confinement(
        api.config, written_by_libvirt=True))


def test_a_restore_gives_qemu_the_chain_that_was_checked(make_real_api,
                                                         daemon, dirs,
                                                         tmp_path):
    """The same at a restore: a state file whose XML says nothing below
    a qcow2 disk (edited as `virsh save-image-define` does), the image's
    header rewritten between the verb's check and libvirt's restore to
    name a backing file outside. libvirt restores with the judged XML,
    the checked chain stated in it: QEMU opens the checked base, never
    the victim. Before, libvirt read the file's XML again and QEMU the
    header."""
    images, victim = dirs
    image = qcow2(f"{images}/flip.qcow2", f"{images}/base.raw")
    states = tmp_path / "states"
    states.mkdir()

    def rewrite(job, step):
        if job.job_type == "restore" and step == "restore":
            subprocess.run(["qemu-img", "rebase", "-u", "-f", "qcow2", "-b",
                            f"{victim}/secret", "-F", "raw", image],
                           check=True, capture_output=True)

    api = make_real_api(image_dirs=[str(images)], state_dirs=[str(states)],
                        step_hook=rewrite)
    vm_id, path = new_id(), str(states / "vm.state")
    job = api.VM.create(vm_id, {"vmId": vm_id, "xml": domain(
        vm_id, disk(image, "qcow2"))})["jobId"]
    assert api.jobs.get(job).wait(WAIT)
    job = api.VM.hibernate(vm_id, path)["jobId"]
    assert api.jobs.get(job).wait(WAIT)
    assert api.Host.getJobs(job_ids=[job])[job]["status"] == "done"
    # What libvirt wrote states the chain; an edit takes it out (accepted:
    # the verb reads the chain from the headers).
    saved = api.hv.saved_domain_xml(path)
    edited = re.sub(r"<backingStore type='file'>.*?</backingStore>", "",
                    saved, flags=re.S)
    assert edited != saved and "base.raw" not in edited
    conn = libvirt.open(daemon.uri)
    try:
        conn.saveImageDefineXML(path, edited, 0)
    finally:
        conn.close()

    job = api.VM.create(vm_id, {"vmId": vm_id, "restoreState": path})[
        "jobId"]
    assert api.jobs.get(job).wait(WAIT)
    assert f"{victim}/secret" in subprocess.run(
        ["qemu-img", "info", "-U", image], check=True, capture_output=True,
        text=True).stdout                         # rewritten, as planned
    info = api.Host.getJobs(job_ids=[job])[job]
    assert info["status"] == "done", info
    [pid] = daemon.qemu_pids()
    # A restored guest's disks are open before its memory comes in.
    files = open_files(pid)
    assert not any(f.startswith(str(victim)) for f in files), files
    assert str(images / "base.raw") in files         # the checked chain
    assert str(victim) not in command_line(pid)
    assert str(victim) not in api.hv.migratable_xml(vm_id)
    assert api.VM.destroy(vm_id) is True


def test_libvirt_takes_no_domain_xml_longer_than_the_bound(daemon):
    """domxml.LIBVIRT_MAX_XML_BYTES is libvirt's own bound (its RPC's
    longest string): a domain XML of that many bytes is defined, one byte
    more is refused before it is sent. The backing chains vmjobs states
    stop there (test_backing_chain_bound.py): past it the XML could never
    run."""
    head = ("<domain type='qemu'><name>rh-bound</name><memory unit='MiB'>48"
            "</memory><os><type>hvm</type></os><description>")
    tail = "</description></domain>"
    conn = libvirt.open(daemon.uri)
    try:
        for extra, defined in ((0, True), (1, False)):
            xml = head + "a" * (domxml.LIBVIRT_MAX_XML_BYTES + extra -
                                len(head) - len(tail)) + tail
            try:
                conn.defineXML(xml).undefine()
            except libvirt.libvirtError as exc:
                assert not defined, exc
                assert "Unable to encode message payload" in str(exc)
            else:
                assert defined
    finally:
        conn.close()


def nbd_disk(port, fmt):
    return (f"<disk type='network' device='disk'><driver name='qemu' "
            f"type='{fmt}'/><source protocol='nbd' name='vol'><host "
            f"name='127.0.0.1' port='{port}'/></source><target dev='vda' "
            "bus='virtio'/><readonly/></disk>")


@pytest.fixture
def nbd_export(tmp_path, dirs):
    """A network host allowed to the guests (storage.network_hosts): an
    NBD export on loopback, read-only, whose bytes are a qcow2 header
    naming the victim as its backing file (what a guest can write into
    its own raw volume there). Returns its port."""
    _, victim = dirs
    image = qcow2(f"{tmp_path}/remote.qcow2", f"{victim}/secret",
                  unsafe=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pid_file = tmp_path / "nbd.pid"
    # --fork: qemu-nbd returns once it serves.
    subprocess.run(["qemu-nbd", "--fork", "--pid-file", pid_file, "-f",
                    "raw", "-r", "-t", "-b", "127.0.0.1", "-p", str(port),
                    "-x", "vol", image], check=True, capture_output=True)
    try:
        yield port
    finally:
        os.kill(int(pid_file.read_text()), signal.SIGTERM)


def test_a_network_disk_is_raw(make_real_api, daemon, dirs, nbd_export):
    """A network disk's header is on the network host, where vmjobs cannot
    read it: declared qcow2, QEMU read the export's header and opened the
    backing file it named, on this host (a hostile-caller audit, round
    8). Refused; the control, the same export as raw, runs."""
    images, victim = dirs
    api = make_real_api(image_dirs=[str(images)],
                        network_hosts=["127.0.0.1"])
    vm_id = new_id()
    atime = os.stat(victim / "secret").st_atime_ns
    with pytest.raises(InvalidParams) as err:
        api.VM.create(vm_id, {"vmId": vm_id, "xml": domain(
            vm_id, nbd_disk(nbd_export, "qcow2"))})
    assert err.value.data == {"param": "xml"}
    assert api.jobs.jobs() == [] and our_domains(api.hv) == []
    assert daemon.qemu_pids() == []
    assert os.stat(victim / "secret").st_atime_ns == atime
    pid = started(api, daemon, vm_id, nbd_disk(nbd_export, "raw"))
    assert f'"host":"127.0.0.1","port":"{nbd_export}"' in command_line(pid)
    assert not any(f.startswith(str(victim)) for f in open_files(pid))
    assert api.VM.destroy(vm_id) is True


def in_daemon(daemon, *command):
    """`command`'s output, run in the private daemon's mount namespace
    (where its /var/lib/libvirt is)."""
    return subprocess.run(["nsenter", "-t", str(daemon.daemon_pid()), "-m",
                           "--", *command], check=True, capture_output=True,
                          text=True).stdout


def test_a_name_is_never_one_of_libvirts_directories(make_real_api, daemon):
    """libvirt 9.0 makes a directory of a domain's bare name (its
    snapshots', /var/lib/libvirt/qemu/snapshot/NAME) and deletes its tree
    at a define: a VM named `..` made libvirtd delete
    /var/lib/libvirt/qemu's tree, another guest's firmware variables
    with it (a hostile-caller audit, round 8). Refused, as vmName and in
    a domain XML; the control, `..x`, runs, and the file stays."""
    marker = "/var/lib/libvirt/qemu/nvram/other_VARS.fd"
    in_daemon(daemon, "sh", "-c", f"mkdir -p {os.path.dirname(marker)} && "
              f"echo vars > {marker}")
    api = make_real_api()
    vm_id = new_id()
    for params in ({"vmName": "..", "memSize": 48},
                   {"xml": domain(vm_id, "").replace(
                       f"rh-{vm_id[:8]}", "..")}):
        with pytest.raises(InvalidParams) as err:
            api.VM.create(vm_id, {"vmId": vm_id, **params})
        assert err.value.data == {"param": next(iter(params))}
        assert api.jobs.jobs() == [] and our_domains(api.hv) == []
        assert in_daemon(daemon, "cat", marker) == "vars\n"
    job = api.VM.create(vm_id, {"vmId": vm_id, "vmName": "..x",
                                "memSize": 48})["jobId"]
    assert api.jobs.get(job).wait(WAIT)
    info = api.Host.getJobs(job_ids=[job])[job]
    assert info["status"] == "done", info
    assert in_daemon(daemon, "cat", marker) == "vars\n"
    assert api.VM.destroy(vm_id) is True


def sized(vm_id, top="<vcpu>1</vcpu>", devices=""):
    return domain(vm_id, devices).replace("<vcpu>1</vcpu>", top)


def channels(count):
    return "".join(f"<channel type='pty'><target type='virtio' name='c{i}'/>"
                   "</channel>" for i in range(count))


# name -> (refused, control): keyword arguments of sized(); {bridge} is
# the host bridge's name. Each refused number made the root libvirtd
# abort (vcpu, iothreads, a controller's index), or grow by 380 MB/s at
# the start (a NIC's queues); the pty chardevs (domain()'s serial port
# counts) take the host's pseudo-terminals (round 11); a serial port past
# an int made it segfault at the start (round 12).
SIZES = {
    "vcpu": (dict(top="<vcpu>4294967295</vcpu>"), dict(top="<vcpu>2</vcpu>")),
    "iothreads": (dict(top="<vcpu>1</vcpu><iothreads>4294967295</iothreads>"),
                  dict(top="<vcpu>1</vcpu><iothreads>4</iothreads>")),
    "controller-index": (
        dict(devices="<controller type='scsi' index='2147483647' "
             "model='virtio-scsi'/>"),
        dict(devices="<controller type='scsi' index='3' "
             "model='virtio-scsi'/>")),
    "nic-queues": (
        dict(devices="<interface type='bridge'><source bridge='{bridge}'/>"
             "<model type='virtio'/><driver name='vhost' "
             "queues='4294967295'/></interface>"),
        dict(devices="<interface type='bridge'><source bridge='{bridge}'/>"
             "<model type='virtio'/><driver name='vhost' queues='4'/>"
             "</interface>")),
    "pty-chardevs": (dict(devices=channels(16)), dict(devices=channels(15))),
    # Read unsigned into an int, INT_MIN indexed a bool array of 4 on
    # libvirtd's stack at the start: it segfaulted (round 12).
    "serial-port": (
        dict(devices="<serial type='null'><target port='2147483648'/>"
             "</serial>"),
        dict(devices="<serial type='null'><target port='1'/></serial>")),
}


@pytest.mark.parametrize("case", SIZES)
def test_a_number_in_the_xml_never_takes_the_daemon_down(
        make_real_api, daemon, bridge, case):
    """A count or an index libvirt sizes its memory by, or one that takes
    a host resource, past its bound: refused at the verb, and libvirtd is
    the same process after it (before round 11 one VM.create of
    <vcpu>4294967295</vcpu> made it abort). The control, in the bound,
    runs."""
    libvirtd = daemon.daemon_pid()
    api = make_real_api()
    refused, control = ({key: value.replace("{bridge}", bridge)
                         for key, value in parts.items()}
                        for parts in SIZES[case])
    vm_id = new_id()
    with pytest.raises(InvalidParams) as err:
        api.VM.create(vm_id, {"vmId": vm_id, "xml": sized(vm_id, **refused)})
    assert err.value.data == {"param": "xml"}
    assert api.jobs.jobs() == [] and our_domains(api.hv) == []
    job = api.VM.create(vm_id, {"vmId": vm_id,
                                "xml": sized(vm_id, **control)})["jobId"]
    assert api.jobs.get(job).wait(WAIT)
    info = api.Host.getJobs(job_ids=[job])[job]
    assert info["status"] == "done", info
    # The same libvirtd, alive (a crashed one leaves its pidfile).
    assert daemon.daemon_pid() == libvirtd and alive(libvirtd)
    assert api.VM.destroy(vm_id) is True


@pytest.fixture
def bridge():
    """A Linux bridge of the host's own (the daemon shares the host's
    network), as an engine's VMs join `ovirtmgmt`; removed after."""
    name = f"vjb{new_id()[:8]}"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "link", "set", name, "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], check=True)


def nic(bridge, extra=""):
    return (f"<interface type='bridge'><source bridge='{bridge}'/>"
            f"{extra}<model type='virtio'/></interface>")


@pytest.fixture
def nwfilter(daemon):
    """A network filter on the private daemon (no rule: the host has no
    ebtables to apply one, and the binding is what counts); its name."""
    conn = libvirt.open(daemon.uri)
    try:
        conn.nwfilterDefineXML("<filter name='vmjobs-test' chain='root'/>")
        yield "vmjobs-test"
    finally:
        conn.close()


def filtered_ports(daemon):
    """The devices libvirt holds a network filter binding for."""
    conn = libvirt.open(daemon.uri)
    try:
        return {b.portDev() for b in conn.listAllNWFilterBindings()}
    finally:
        conn.close()


def test_a_tap_is_named_by_libvirt_never_after_another_guests(
        make_real_api, daemon, bridge, nwfilter, tmp_path):
    """libvirt names host objects after a guest's tap (its network filter
    binding, an OVS port) and, when a start fails, tears down those of
    the name its XML gave: a VM whose <target dev> was another guest's
    tap failed to start ('interface already exists') and deleted that
    guest's filter binding, the guest running on unfiltered (a
    hostile-caller audit, round 9). Refused; the control names the
    other guest's generated `vnetN`, which libvirt discards on input: it
    runs on a tap of its own and every binding stays."""
    api = make_real_api(image_dirs=[str(tmp_path / "images")])
    filterref = f"<filterref filter='{nwfilter}'/>"
    # Another guest of the host (an operator's, defined outside vmjobs):
    # one tap named by its XML, one libvirt named.
    named = f"vjt{new_id()[:8]}"
    conn = libvirt.open(daemon.uri)
    try:
        other = conn.defineXML(domain(new_id(), nic(
            bridge, f"<target dev='{named}'/>{filterref}") + nic(
            bridge, filterref)).replace("<name>rh-", "<name>other-"))
        other.create()
        generated = (filtered_ports(daemon) - {named}).pop()
    finally:
        conn.close()
    assert generated.startswith("vnet")
    vm_id = new_id()
    try:
        job = api.VM.create(vm_id, {"vmId": vm_id, "xml": domain(vm_id, nic(
            bridge, f"<target dev='{named}'/>{filterref}"))})
    except InvalidParams as exc:
        refusal = exc
    else:   # before: its start failed and took the other guest's filter
        assert api.jobs.get(job["jobId"]).wait(WAIT)
        refusal = None
    assert filtered_ports(daemon) == {named, generated}
    assert refusal is not None and refusal.data == {"param": "xml"}
    assert api.jobs.jobs() == [] and our_domains(api.hv) == []

    job = api.VM.create(vm_id, {"vmId": vm_id, "xml": domain(vm_id, nic(
        bridge, f"<target dev='{generated}'/>{filterref}"))})["jobId"]
    assert api.jobs.get(job).wait(WAIT)
    assert api.Host.getJobs(job_ids=[job])[job]["status"] == "done"
    ports = filtered_ports(daemon)
    assert {named, generated} < ports and len(ports) == 3
    assert api.VM.destroy(vm_id) is True


def firmware_domain(vm_id, os_elements):
    """A pflash (UEFI) guest: libvirt wants ACPI beside it."""
    return (f"<domain type='qemu'><name>rh-{vm_id[:8]}</name><uuid>{vm_id}"
            f"</uuid><memory unit='MiB'>48</memory><vcpu>1</vcpu>"
            f"{os_elements}<features><acpi/></features><devices><serial "
            "type='pty'/><memballoon model='none'/></devices></domain>")


def test_one_os_where_libvirt_reads_its_firmware(make_real_api, daemon,
                                                 tmp_path):
    """libvirt reads an <os>'s children across every <os> of the domain
    (XPath's ./os/nvram: the first of any): an empty <nvram> in a first
    <os>, a pflash loader and an <nvram> inside in a second, and libvirt
    wrote the guest's firmware variables to its own
    /var/lib/libvirt/qemu/nvram/NAME_VARS.fd, copied from the caller's
    template, where QEMU then wrote (a hostile-caller audit, round 9).
    Refused; the control, one <os>, keeps them in the image dir."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "code.fd").write_bytes(b"\0" * (2 << 20))
    (images / "vars.fd").write_bytes(b"the caller's".ljust(128 << 10, b"\0"))
    api = make_real_api(image_dirs=[str(images)])
    vm_id = new_id()
    loader = (f"<loader readonly='yes' type='pflash'>{images}/code.fd"
              "</loader>")
    outside = f"/var/lib/libvirt/qemu/nvram/rh-{vm_id[:8]}_VARS.fd"
    try:
        job = api.VM.create(vm_id, {"vmId": vm_id, "xml": firmware_domain(
            vm_id, f"<os><type>hvm</type><nvram template='{images}/vars.fd'"
            f"/></os><os>{loader}<nvram>{images}/nvram.fd</nvram></os>")})
    except InvalidParams as exc:
        refusal = exc
    else:   # before: it ran, its variables outside the image dir
        assert api.jobs.get(job["jobId"]).wait(WAIT)
        refusal = None
    assert in_daemon(daemon, "sh", "-c", f"test -e {outside} || echo no"
                     ) == "no\n"
    assert refusal is not None and refusal.data == {"param": "xml"}
    assert daemon.qemu_pids() == [] and our_domains(api.hv) == []

    job = api.VM.create(vm_id, {"vmId": vm_id, "xml": firmware_domain(
        vm_id, f"<os><type>hvm</type>{loader}<nvram template='{images}/"
        f"vars.fd'>{images}/nvram.fd</nvram></os>")})["jobId"]
    assert api.jobs.get(job).wait(WAIT)
    assert api.Host.getJobs(job_ids=[job])[job]["status"] == "done"
    [pid] = daemon.qemu_pids()
    wait_open(pid, str(images / "nvram.fd"))
    assert (images / "nvram.fd").read_bytes().startswith(b"the caller's")
    assert in_daemon(daemon, "sh", "-c", f"test -e {outside} || echo no"
                     ) == "no\n"
    assert api.VM.destroy(vm_id) is True


def test_a_destroy_never_deletes_the_file_named_as_nvram(make_real_api,
                                                      daemon, tmp_path):
    """A guest's <nvram> is a file the caller names in the image dir (an
    engine keeps a guest's firmware variables there across its runs).
    vmjobs undefined a domain with VIR_DOMAIN_UNDEFINE_NVRAM, and libvirt
    then unlinked that file: VM.destroy of a guest naming any image as
    its <nvram> deleted it (round 10: an operator's image, here). Kept
    now; the guest's own variables file, made from the template, is kept
    too (the engine's, for the guest's next run)."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "code.fd").write_bytes(b"\0" * (2 << 20))
    (images / "vars.fd").write_bytes(b"template".ljust(128 << 10, b"\0"))
    image = images / "golden.img"
    image.write_bytes(b"the operator's image".ljust(128 << 10, b"\0"))
    api = make_real_api(image_dirs=[str(images)])
    loader = (f"<loader readonly='yes' type='pflash'>{images}/code.fd"
              "</loader>")
    for nvram in (image, images / "own.fd"):
        vm_id = new_id()
        job = api.VM.create(vm_id, {"vmId": vm_id, "xml": firmware_domain(
            vm_id, f"<os><type>hvm</type>{loader}<nvram template='"
            f"{images}/vars.fd'>{nvram}</nvram></os>")})["jobId"]
        assert api.jobs.get(job).wait(WAIT)
        assert api.Host.getJobs(job_ids=[job])[job]["status"] == "done"
        [pid] = daemon.qemu_pids()
        wait_open(pid, str(nvram))
        assert api.VM.destroy(vm_id) is True
        assert daemon.qemu_pids() == []
        assert nvram.exists()       # before: libvirt unlinked it
    assert image.read_bytes().startswith(b"the operator's image")
    assert (images / "own.fd").read_bytes().startswith(b"template")


def test_a_new_nvram_never_takes_another_file(make_real_api, daemon,
                                              tmp_path):
    """libvirt makes a guest's absent <nvram> from its template by writing
    NVRAM.new (opened O_TRUNC, as root) and renaming it to NVRAM: a file
    vmjobs never judged. Round 10: guest A ran on its disk a.fd.new, B
    named a.fd as its <nvram>, and libvirt emptied A's disk while it ran,
    wrote the template into it and moved it to a.fd. Refused now; the
    control, B's own b.fd, runs, and A's disk is as it was."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "code.fd").write_bytes(b"\0" * (2 << 20))
    (images / "vars.fd").write_bytes(b"template".ljust(128 << 10, b"\0"))
    (images / "a.fd.new").write_bytes(os.urandom(1 << 20))
    api = make_real_api(image_dirs=[str(images)])
    a, b = new_id(), new_id()
    started(api, daemon, a, disk(images / "a.fd.new", "raw"))
    disk_digest = digest(images / "a.fd.new")

    def guest(nvram):
        return firmware_domain(b, (
            f"<os><type>hvm</type><loader readonly='yes' type='pflash'>"
            f"{images}/code.fd</loader><nvram template='{images}/vars.fd'>"
            f"{nvram}</nvram></os>"))

    try:
        job = api.VM.create(b, {"vmId": b, "xml": guest(images / "a.fd")})
    except InvalidParams as exc:
        refusal = exc
    else:   # before: libvirt truncated A's disk and renamed it
        assert api.jobs.get(job["jobId"]).wait(WAIT)
        refusal = None
    assert (images / "a.fd.new").exists()
    assert digest(images / "a.fd.new") == disk_digest
    assert refusal is not None and refusal.data == {"param": "xml"}
    assert len(daemon.qemu_pids()) == 1

    job = api.VM.create(b, {"vmId": b, "xml": guest(images / "b.fd")})
    assert api.jobs.get(job["jobId"]).wait(WAIT)
    assert api.Host.getJobs(job_ids=[job["jobId"]])[job["jobId"]][
        "status"] == "done"
    assert (images / "b.fd").read_bytes().startswith(b"template")
    assert digest(images / "a.fd.new") == disk_digest
    for vm_id in (a, b):
        assert api.VM.destroy(vm_id) is True


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_a_guest_never_takes_another_guests_socket_or_disk(make_real_api,
                                                           daemon, tmp_path):
    """libvirt (or QEMU) unlinks whatever is at a unix chardev's path to
    bind its socket there, and opens a file chardev's path truncating it;
    QEMU's image lock keeps a second guest's disk off a running guest's
    image, not a chardev. A hostile-caller audit (round 9): B's serial
    socket at A's agent channel took it over (A's QEMU listened on a
    socket no longer reachable), and B's serial file at A's disk emptied
    it while A ran. Refused; the control, paths of B's own, runs, and
    A's socket and disk are as they were."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.raw").write_bytes(os.urandom(1 << 20))
    api = make_real_api(image_dirs=[str(images)])
    a, b = new_id(), new_id()
    started(api, daemon, a, disk(images / "a.raw", "raw") + (
        "<channel type='unix'><source mode='bind' path='"
        f"{images}/a.sock'/><target type='virtio' name='"
        "org.qemu.guest_agent.0'/></channel>"))
    socket_inode = os.stat(images / "a.sock").st_ino
    disk_digest = digest(images / "a.raw")

    def serials(socket_path, file_path):
        return (f"<serial type='unix'><source mode='bind' path="
                f"'{socket_path}'/><target port='1'/></serial><serial "
                f"type='file'><source path='{file_path}'/><target "
                "port='2'/></serial>")

    try:
        job = api.VM.create(b, {"vmId": b, "xml": domain(b, serials(
            images / "a.sock", images / "a.raw"))})
    except InvalidParams as exc:
        refusal = exc
    else:   # before: it ran, over A's socket and disk
        assert api.jobs.get(job["jobId"]).wait(WAIT)
        refusal = None
    assert os.stat(images / "a.sock").st_ino == socket_inode
    assert digest(images / "a.raw") == disk_digest
    assert refusal is not None and refusal.data == {"param": "xml"}
    assert len(daemon.qemu_pids()) == 1

    job = api.VM.create(b, {"vmId": b, "xml": domain(b, serials(
        images / "b.sock", images / "b.out"))})["jobId"]
    assert api.jobs.get(job).wait(WAIT)
    assert api.Host.getJobs(job_ids=[job])[job]["status"] == "done"
    assert stat.S_ISSOCK(os.stat(images / "b.sock").st_mode)
    assert os.stat(images / "a.sock").st_ino == socket_inode
    assert digest(images / "a.raw") == disk_digest
    for vm_id in (a, b):
        assert api.VM.destroy(vm_id) is True


def test_a_guest_never_takes_another_guests_output_file(make_real_api,
                                                       daemon, tmp_path):
    """A running guest's serial output file is open in its QEMU without a
    lock, so nothing on the host shows it in use: a second guest naming
    it as its own serial file was accepted, and its start truncated it
    while the first guest ran (the docs' open list, round 9). It is the
    first VM's from its VM.create on (vmjobs' registry of held paths):
    refused; the control, a file of B's own, runs, and A's output is as
    it was; after a restart, recovery holds it again, read from A's
    running XML."""
    images = tmp_path / "images"
    images.mkdir()
    api = make_real_api(image_dirs=[str(images)])
    a, b = new_id(), new_id()
    output = images / "a.out"

    def serial_file(path):
        return (f"<serial type='file'><source path='{path}'/><target "
                "port='1'/></serial>")

    pid = started(api, daemon, a, serial_file(output))
    wait_open(pid, str(output))
    # What A's guest wrote on its serial port, as far as the host knows.
    with open(output, "ab") as f:
        f.write(b"A's console: login: \n")
    try:
        job = api.VM.create(b, {"vmId": b, "xml": domain(b, serial_file(
            output))})
    except InvalidParams as exc:
        refusal = exc
    else:   # before: B ran, and its start emptied A's output
        assert api.jobs.get(job["jobId"]).wait(WAIT)
        refusal = None
    assert output.read_bytes().endswith(b"A's console: login: \n")
    assert refusal is not None and refusal.data == {"param": "xml"}
    assert a in str(refusal)
    assert daemon.qemu_pids() == [pid]

    job = api.VM.create(b, {"vmId": b, "xml": domain(b, serial_file(
        images / "b.out"))})["jobId"]
    assert api.jobs.get(job).wait(WAIT)
    assert api.Host.getJobs(job_ids=[job])[job]["status"] == "done"
    assert output.read_bytes().endswith(b"A's console: login: \n")
    # A restart: recovery reads A's paths back from its running XML.
    api.close()
    api = make_real_api(image_dirs=[str(images)])
    assert api.wait_recovered(WAIT)
    assert sorted(api.Host.getVMList()) == sorted([a, b])
    c = new_id()
    with pytest.raises(InvalidParams) as err:
        api.VM.create(c, {"vmId": c, "xml": domain(c, serial_file(output))})
    assert err.value.data == {"param": "xml"} and a in str(err.value)
    assert output.read_bytes().endswith(b"A's console: login: \n")
    for vm_id in (a, b):
        assert api.VM.destroy(vm_id) is True


def test_a_guest_never_lowers_its_bridges_mtu(make_real_api, daemon, bridge,
                                              tmp_path):
    """The kernel gives a bridge the least MTU of its ports: a guest whose
    <mtu> is below its bridge's lowers the host's own network on it, and
    below 1280 the kernel removes the bridge's IPv6 addresses, which do
    not come back when the guest stops (a hostile-caller audit, round 9:
    <mtu size='68'/> took the host's static address away). Refused, below
    1280 and below the bridge's MTU; the control, the bridge's own MTU
    (what an engine sends), runs and leaves both as they were."""
    subprocess.run(["ip", "addr", "add", "fd00:7a3::1/64", "dev", bridge],
                   check=True)
    mtu_file = f"/sys/class/net/{bridge}/mtu"

    def host_side():
        with open(mtu_file) as f:
            mtu = f.read().strip()
        return mtu, "fd00:7a3::1/64" in subprocess.run(
            ["ip", "-6", "addr", "show", "dev", bridge], check=True,
            capture_output=True, text=True).stdout

    assert host_side() == ("1500", True)
    api = make_real_api(image_dirs=[str(tmp_path / "images")])
    vm_id = new_id()
    for size in ("68", "1400"):
        try:
            job = api.VM.create(vm_id, {"vmId": vm_id, "xml": domain(
                vm_id, nic(bridge, f"<mtu size='{size}'/>"))})
        except InvalidParams as exc:
            refusal = exc
        else:   # before: it ran, the bridge at its MTU
            assert api.jobs.get(job["jobId"]).wait(WAIT)
            seen = host_side()
            api.VM.destroy(vm_id)
            refusal = None
            assert seen == ("1500", True), (size, seen)
        assert refusal is not None and refusal.data == {"param": "xml"}
        assert daemon.qemu_pids() == [] and our_domains(api.hv) == []
        assert host_side() == ("1500", True)
    started(api, daemon, vm_id, nic(bridge, "<mtu size='1500'/>"))
    assert host_side() == ("1500", True)
    assert api.VM.destroy(vm_id) is True
    assert host_side() == ("1500", True)


def test_a_guest_never_lowers_its_networks_bridge(make_real_api, daemon,
                                                  bridge, tmp_path):
    """A NIC of type='network' joins its libvirt network's bridge, here a
    bridge of the host's (forward mode `bridge`, as an engine's networks
    on a host bridge are): the kernel gave that bridge the NIC's smaller
    MTU while the guest ran (1400 on a 1500 bridge was accepted: the
    docs' open list, round 9, only 1280 its floor). Refused, the
    network's bridge read from libvirt; the control, the bridge's own
    MTU, runs and leaves it as it was."""
    conn = libvirt.open(daemon.uri)
    try:
        network = conn.networkDefineXML(
            f"<network><name>host-{bridge}</name><forward mode='bridge'/>"
            f"<bridge name='{bridge}'/></network>")
        network.create()
    finally:
        conn.close()
    mtu_file = f"/sys/class/net/{bridge}/mtu"

    def bridge_mtu():
        with open(mtu_file) as f:
            return f.read().strip()

    def on_network(size):
        return (f"<interface type='network'><source network='host-{bridge}'"
                f"/><mtu size='{size}'/><model type='virtio'/></interface>")

    api = make_real_api(image_dirs=[str(tmp_path / "images")])
    vm_id = new_id()
    try:
        try:
            job = api.VM.create(vm_id, {"vmId": vm_id, "xml": domain(
                vm_id, on_network(1400))})
        except InvalidParams as exc:
            refusal = exc
        else:   # before: it ran, the bridge at the guest's MTU
            assert api.jobs.get(job["jobId"]).wait(WAIT)
            seen = bridge_mtu()
            api.VM.destroy(vm_id)
            refusal = None
            assert seen == "1500", seen
        assert refusal is not None and refusal.data == {"param": "xml"}
        assert daemon.qemu_pids() == [] and our_domains(api.hv) == []
        assert bridge_mtu() == "1500"
        started(api, daemon, vm_id, on_network(1500))
        assert bridge_mtu() == "1500"
        assert api.VM.destroy(vm_id) is True
    finally:
        conn = libvirt.open(daemon.uri)
        try:
            network = conn.networkLookupByName(f"host-{bridge}")
            network.destroy()
            network.undefine()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def logd_daemon(tmp_path_factory):
    """A private daemon whose chardevs go through virtlogd, libvirt's
    default stdio_handler (the session's daemon writes them itself)."""
    sandbox = start_daemon(tmp_path_factory.mktemp("daemon-logd"), logd=True)
    yield sandbox
    stop_daemon(sandbox)


# A boot sector that writes 'A' to COM1 (0x3f8) for ever: a guest that
# fills its serial port as fast as it can.
CHATTY_BOOT_SECTOR = bytes([0xBA, 0xF8, 0x03,     # mov dx, 0x3f8
                            0xB0, 0x41,           # mov al, 'A'
                            0xEE,                 # out dx, al
                            0xEB, 0xFB])          # jmp back to mov al


def chatty(path):
    """A guest booting CHATTY_BOOT_SECTOR, its COM1 written to `path`."""
    return ("<disk type='file' device='disk'><driver name='qemu' "
            "type='raw'/><source file='{images}/chatty.raw'/><target "
            "dev='hda' bus='ide'/></disk><serial type='file'><source "
            f"path='{path}'/><target port='0'/></serial>")


def test_a_guests_console_never_rotates_over_a_file(make_real_api,
                                                    logd_daemon, tmp_path):
    """virtlogd writes a file chardev and, at 2 MiB, renames it to PATH.0,
    PATH.0 to PATH.1, ..., deleting the last: a guest writing its serial
    port replaced the images named PATH.0 and PATH.1 with its output in
    ten seconds (round 12). Refused while something is at PATH.N; the
    control, a free name, runs, and its output rotates there."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "chatty.raw").write_bytes(CHATTY_BOOT_SECTOR.ljust(
        510, b"\0") + b"\x55\xaa" + b"\0" * ((1 << 20) - 512))
    (images / "disk.1").write_bytes(b"another guest's image\n")
    api = make_real_api(sandbox=logd_daemon, image_dirs=[str(images)])
    vm_id = new_id()
    with pytest.raises(InvalidParams) as err:
        api.VM.create(vm_id, {"vmId": vm_id, "xml": domain(
            vm_id, chatty(images / "disk")).replace("{images}",
                                                    str(images))})
    assert err.value.data == {"param": "xml"}
    assert logd_daemon.qemu_pids() == [] and our_domains(api.hv) == []
    job = api.VM.create(vm_id, {"vmId": vm_id, "xml": domain(
        vm_id, chatty(images / "console")).replace("{images}",
                                                   str(images))})["jobId"]
    assert api.jobs.get(job).wait(WAIT)
    assert api.Host.getJobs(job_ids=[job])[job]["status"] == "done"
    deadline = time.monotonic() + WAIT
    while not (images / "console.0").exists():
        assert time.monotonic() < deadline, "virtlogd never rotated"
        time.sleep(0.1)
    assert api.VM.destroy(vm_id) is True
    assert (images / "disk.1").read_bytes() == b"another guest's image\n"
