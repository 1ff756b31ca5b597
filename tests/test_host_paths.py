"""The host paths a VM makes or writes are its own while its domain may
use them: a socket it binds, a file it writes (a chardev's output or log,
an nvdimm's memory), a disk image it opens read-write, a directory it
shares writable. They are held by the VM from its verb's acceptance
(taken with its vmId's stage, in one step) until its domain is gone, and
a recovery takes them back from the domains' XML. Another VM naming one
of them so that the two would clash is refused with -32602 naming `xml`
(`restoreState` for a restore), nothing staged.

On libvirt's test driver, where no QEMU runs: nothing on the host shows
a path in use (no socket listens, no file is locked), so the registry of
held paths is all that refuses; the harm it avoids is shown on the real
daemon (test_real_hostile_xml.py)."""

import threading

import pytest

from conftest import WAIT, StepGate, assert_quiet_and_clean, new_id, wait_job
from engine_xml import qcow2
from invariants import check_invariants
from vmjobs import hostpaths
from vmjobs.errors import InvalidParams
from vmjobs.registry import VmRegistry, VmStatus


def domain(vm_id, devices="", top=""):
    os_ = "<os><type>hvm</type></os>"
    if devices.startswith("<os>"):      # nvram(): the <os> is the device
        os_, devices = devices, ""
    return (f"<domain type='test'><name>hp-{vm_id[:8]}</name>"
            f"<uuid>{vm_id}</uuid><memory unit='MiB'>64</memory>{top}"
            f"{os_}<devices>{devices}</devices></domain>")


def serial_file(path, port=0):
    return (f"<serial type='file'><source path='{path}'/><target "
            f"port='{port}'/></serial>")


def serial_log(path):
    return f"<serial type='pty'><log file='{path}'/><target port='3'/></serial>"


def channel(path):
    return (f"<channel type='unix'><source mode='bind' path='{path}'/>"
            "<target type='virtio' name='org.qemu.guest_agent.0'/></channel>")


def serial_socket(path):
    return (f"<serial type='unix'><source mode='bind' path='{path}'/>"
            "<target port='1'/></serial>")


def disk(path, dev="vda", extra=""):
    return (f"<disk type='file' device='disk'><driver name='qemu' "
            f"type='raw'/><source file='{path}'/><target dev='{dev}' "
            f"bus='virtio'/>{extra}</disk>")


def qcow2_disk(path, dev="vda"):
    return (f"<disk type='file' device='disk'><driver name='qemu' "
            f"type='qcow2'/><source file='{path}'/><target dev='{dev}' "
            "bus='virtio'/></disk>")


def cdrom(path, dev="sdc"):
    return (f"<disk type='file' device='cdrom'><driver name='qemu' "
            f"type='raw'/><source file='{path}'/><target dev='{dev}' "
            "bus='sata'/><readonly/></disk>")


NUMA = ("<maxMemory slots='4' unit='MiB'>1024</maxMemory><cpu><numa><cell "
        "id='0' cpus='0' memory='64' unit='MiB'/></numa></cpu>")


def nvdimm(path):
    return (f"<memory model='nvdimm'><source><path>{path}</path></source>"
            "<target><size unit='MiB'>16</size><node>0</node></target>"
            "</memory>")


def nvram(path):
    """Firmware variables, in <os>: `devices` starting with '<os>'."""
    firmware = f"{path.rpartition('/')[0]}/fw.bin"
    return (f"<os><type>hvm</type><loader readonly='yes' type='pflash'>"
            f"{firmware}</loader><nvram>{path}</nvram></os>")


def share(path, readonly=False):
    return (f"<filesystem type='mount' accessmode='mapped'><source "
            f"dir='{path}'/><target dir='share'/>"
            f"{'<readonly/>' if readonly else ''}</filesystem>")


# name -> (what the running VM A has, what B names: each a function of
# the image dir, and B's own paths for the control; `top` for NUMA).
CASES = {
    "serial-file-over-serial-file": (
        lambda d: serial_file(d / "a.out"),
        lambda d: serial_file(d / "a.out"),
        lambda d: serial_file(d / "b.out")),
    "serial-log-over-serial-file": (
        lambda d: serial_file(d / "a.out"),
        lambda d: serial_log(d / "a.out"),
        lambda d: serial_log(d / "b.log")),
    "socket-over-channel": (
        lambda d: channel(d / "a.sock"),
        lambda d: serial_socket(d / "a.sock"),
        lambda d: serial_socket(d / "b.sock")),
    "disk-over-serial-file": (
        lambda d: serial_file(d / "a.out"),
        lambda d: disk(d / "a.out"),
        lambda d: disk(d / "b.raw")),
    "serial-file-over-disk": (
        lambda d: disk(d / "a.raw"),
        lambda d: serial_file(d / "a.raw"),
        lambda d: serial_file(d / "b.out")),
    "disk-over-disk": (
        lambda d: disk(d / "a.raw"),
        lambda d: disk(d / "a.raw"),
        lambda d: disk(d / "b.raw")),
    # A file as another name reaches it: a symlink to A's disk.
    "serial-file-over-disk-by-symlink": (
        lambda d: disk(d / "a.raw"),
        lambda d: serial_file(d / "link-to-a.raw"),
        lambda d: serial_file(d / "b.out")),
    # ... and by another link: a hard link to A's output.
    "serial-file-over-a-hard-link": (
        lambda d: serial_file(d / "c.out"),
        lambda d: serial_file(d / "c.link"),
        lambda d: serial_file(d / "b.out")),
    "serial-file-over-nvdimm": (
        lambda d: nvdimm(d / "a.mem"),
        lambda d: serial_file(d / "a.mem"),
        lambda d: serial_file(d / "b.out")),
    # libvirt reads a path in an element's text as it is written, a
    # trailing space its own (round 10: A's nvdimm `a.mem ` was held as
    # `a.mem`, so B's serial file truncated A's running memory file).
    "serial-file-over-nvdimm-with-a-trailing-space": (
        lambda d: nvdimm(f"{d}/a.mem "),
        lambda d: serial_file(f"{d}/a.mem "),
        lambda d: serial_file(d / "b.out")),
    "disk-over-nvram-with-a-trailing-space": (
        lambda d: nvram(f"{d}/a.vars "),
        lambda d: disk(f"{d}/a.vars "),
        lambda d: disk(d / "b.raw")),
    # libvirt writes A's absent <nvram> at a.vars.new first (round 10).
    "disk-over-a-new-nvram": (
        lambda d: nvram(f"{d}/a.vars"),
        lambda d: disk(f"{d}/a.vars.new"),
        lambda d: disk(d / "b.raw")),
    # A's guest writes its shared directory's files: B's output or disk
    # among them would be written by two.
    "serial-file-in-a-shared-dir": (
        lambda d: share(d / "share"),
        lambda d: serial_file(d / "share" / "x"),
        lambda d: serial_file(d / "b.out")),
    "share-over-a-disk": (
        lambda d: disk(d / "share" / "a.raw"),
        lambda d: share(d / "share"),
        lambda d: share(d / "other")),
    # A read-only share: A's guest reads all of it while it runs (round
    # 12: another guest's writable share of it, or an output in it, was
    # accepted, either way round).
    "share-over-a-read-only-share": (
        lambda d: share(d / "share", readonly=True),
        lambda d: share(d / "share"),
        lambda d: share(d / "other")),
    "serial-file-in-a-read-only-share": (
        lambda d: share(d / "share", readonly=True),
        lambda d: serial_file(d / "share" / "x"),
        lambda d: serial_file(d / "b.out")),
    "read-only-share-over-a-serial-file": (
        lambda d: serial_file(d / "share" / "x"),
        lambda d: share(d / "share", readonly=True),
        lambda d: share(d / "other", readonly=True)),
    "read-only-share-over-a-share-below": (
        lambda d: share(d / "share" / "sub"),
        lambda d: share(d / "share", readonly=True),
        lambda d: share(d / "other", readonly=True)),
    # virtlogd renames A's console output to a.out.0, a.out.1, ... as it
    # grows (round 12): a disk there would be replaced.
    "disk-over-a-rotated-output": (
        lambda d: serial_file(d / "r.out"),
        lambda d: disk(d / "r.out.1"),
        lambda d: disk(d / "b.raw")),
    "serial-log-over-a-rotated-output": (
        lambda d: serial_log(d / "r.log"),
        lambda d: serial_file(d / "r.log.0"),
        lambda d: serial_file(d / "b.out")),
    # What A's QEMU only reads is still read while it runs: a backing
    # file, a read-only disk, a CD-ROM. Another guest's writable share of
    # its directory wrote into it through 9p, which takes no image lock
    # (round 12: accepted before, either way round); an output or a disk
    # over it in flight, before A's QEMU locked it, truncated it.
    "share-over-a-backing-file": (
        lambda d: qcow2_disk(d / "top.qcow2"),
        lambda d: share(d / "share"),
        lambda d: share(d / "other")),
    "share-over-a-read-only-disk": (
        lambda d: disk(d / "share" / "a.raw", extra="<readonly/>"),
        lambda d: share(d / "share"),
        lambda d: share(d / "other")),
    "share-over-a-cdrom": (
        lambda d: cdrom(d / "share" / "a.raw"),
        lambda d: share(d / "share"),
        lambda d: share(d / "other")),
    "read-only-disk-in-a-shared-dir": (
        lambda d: share(d / "share"),
        lambda d: disk(d / "share" / "a.raw", extra="<readonly/>"),
        lambda d: disk(d / "b.raw", extra="<readonly/>")),
    "backing-file-in-a-shared-dir": (
        lambda d: share(d / "share"),
        lambda d: qcow2_disk(d / "top.qcow2"),
        lambda d: qcow2_disk(d / "other.qcow2")),
    "serial-file-over-a-cdrom": (
        lambda d: cdrom(d / "iso"),
        lambda d: serial_file(d / "iso"),
        lambda d: serial_file(d / "b.out")),
    "disk-over-a-backing-file": (
        lambda d: qcow2_disk(d / "top.qcow2"),
        lambda d: disk(d / "share" / "base.raw"),
        lambda d: disk(d / "b.raw")),
}


@pytest.fixture
def images(tmp_path):
    images = tmp_path / "images"
    for d in (images, images / "share", images / "other",
              images / "share" / "sub"):
        d.mkdir()
    for name in ("a.raw", "b.raw", "share/a.raw", "iso", "shared.raw"):
        (images / name).write_bytes(b"\0" * 65536)
    (images / "share" / "base.raw").write_bytes(b"\0" * 65536)
    # A qcow2 image over a base in the shared directory, and one over a
    # base apart.
    qcow2(str(images / "top.qcow2"), backing=str(images / "share" /
                                                  "base.raw"))
    qcow2(str(images / "other.qcow2"), backing=str(images / "b.raw"))
    (images / "link-to-a.raw").symlink_to(images / "a.raw")
    (images / "c.out").write_bytes(b"")
    (images / "c.link").hardlink_to(images / "c.out")
    return images


@pytest.fixture
def api(make_api, images):
    return make_api(image_dirs=[str(images)])


def top(*parts):
    return NUMA if any("nvdimm" in part for part in parts) else ""


def create(api, vm_id, devices, verb="VM.create"):
    xml = domain(vm_id, devices, top(devices))
    if verb == "VM.create":
        return api.VM.create(vm_id, {"vmId": vm_id, "xml": xml})["jobId"]
    answer = api.VM.migrationCreate(vm_id, {"vmId": vm_id, "xml": xml})
    return answer["params"]["jobId"]


def running(api, devices):
    vm_id = new_id()
    info = wait_job(api, create(api, vm_id, devices))
    assert info["status"] == "done", info
    return vm_id


def refused(api, vm_id, devices, verb="VM.create"):
    """The request is refused -32602 'xml', nothing of it staged."""
    staged = api.registry.snapshot()[0]
    jobs = api.jobs.jobs()
    with pytest.raises(InvalidParams) as err:
        create(api, vm_id, devices, verb)
    assert err.value.data == {"param": "xml"}
    assert "domain XML refused" in str(err.value)
    assert api.registry.snapshot()[0] == staged and api.jobs.jobs() == jobs
    return err.value


@pytest.mark.parametrize("case", CASES)
def test_a_path_a_running_vm_holds_is_refused_to_another(api, images, case):
    held, taking, own = (f(images) for f in CASES[case])
    a = running(api, held)
    b = new_id()
    for verb in ("VM.create", "VM.migrationCreate"):
        error = refused(api, b, taking, verb)
        assert a in str(error)
    # The control: B's own paths, while A runs.
    assert wait_job(api, create(api, b, own))["status"] == "done"
    assert api.VM.destroy(b) is True
    # A's domain gone, its paths are free: B takes them.
    assert api.VM.destroy(a) is True
    assert wait_job(api, create(api, b, taking))["status"] == "done"
    assert api.VM.destroy(b) is True
    check_invariants(api)


def test_a_transient_disks_overlay_is_its_vms(api, images):
    """libvirt makes A's <transient/> disk's overlay, a.raw.TRANSIENT-NAME,
    at its start and unlinks it at its stop: no other VM may name it while
    A's domain may use it (round 12: accepted before, and a serial file
    there, started after A, wrote into A's disk). The control, B's own
    file, runs beside A; once A is destroyed B takes it."""
    a = running(api, disk(images / "a.raw", extra="<transient/>"))
    overlay = f"{images}/a.raw.TRANSIENT-hp-{a[:8]}"
    b = new_id()
    for verb in ("VM.create", "VM.migrationCreate"):
        assert a in str(refused(api, b, serial_file(overlay), verb))
    assert wait_job(api, create(api, b, serial_file(images / "b.out")))[
        "status"] == "done"
    assert api.VM.destroy(b) is True
    assert api.VM.destroy(a) is True
    assert wait_job(api, create(api, b, serial_file(overlay)))[
        "status"] == "done"
    assert api.VM.destroy(b) is True
    check_invariants(api)


def test_a_read_only_disk_and_a_shareable_one_are_shared(api, images):
    """What two guests may share: a read-only image (an ISO as a CD-ROM,
    a <readonly/> disk), a disk both declare <shareable/> (a cluster's);
    and a read-only share over a directory."""
    devices = (cdrom(images / "iso") +
               disk(images / "b.raw", "vdb", "<readonly/>") +
               disk(images / "shared.raw", "vdc", "<shareable/>") +
               share(images / "other", readonly=True))
    vms = [running(api, devices) for _ in range(3)]
    # Read-write once: a shareable disk another VM has as its own.
    refused(api, new_id(), disk(images / "shared.raw"))
    # A shareable disk read-only beside the others' read-write (an
    # engine attaches a shared disk read-only to some of its VMs): QEMU's
    # locks judge it, as before round 12.
    vms.append(running(api, disk(images / "shared.raw", "vdc",
                                 "<readonly/><shareable/>")))
    for vm_id in vms:
        assert api.VM.destroy(vm_id) is True
    check_invariants(api)


def test_readers_share_a_directory_and_what_is_in_it(api, images):
    """Read-only, a share and the images in it are shared: a CD-ROM inside
    another guest's read-only share, a read-only share over it, a
    read-only disk there too (round 12 holds them as read)."""
    vms = [running(api, cdrom(images / "share" / "a.raw")),
           running(api, share(images / "share", readonly=True)),
           running(api, share(images / "share", readonly=True) +
                   disk(images / "share" / "a.raw", extra="<readonly/>"))]
    for vm_id in vms:
        assert api.VM.destroy(vm_id) is True
    check_invariants(api)


def test_two_requests_in_flight_cannot_take_one_path(make_api, images):
    """The first VM's job is still at its define when the second is
    asked for: its path is not made on the host yet (judged free at the
    verb, before), but it is the first's from its acceptance."""
    gate = StepGate("define")
    api = make_api(image_dirs=[str(images)], step_hook=gate)
    a, b = new_id(), new_id()
    job = create(api, a, channel(images / "a.sock"))
    assert gate.reached.wait(WAIT)
    try:
        refused(api, b, serial_socket(images / "a.sock"))
        refused(api, b, serial_file(images / "a.sock"), "VM.migrationCreate")
        # The control: B's own socket, A still in flight.
        assert wait_job(api, create(api, b, serial_socket(
            images / "b.sock")))["status"] == "done"
    finally:
        gate.release.set()
    assert wait_job(api, job)["status"] == "done"
    for vm_id in (a, b):
        assert api.VM.destroy(vm_id) is True
    assert_quiet_and_clean(api)


REQUESTS = 8


def race(api, devices_of):
    """REQUESTS VM.creates, each from its own thread, all let go at once
    (a barrier): {vm_id: 'accepted' or the refusal's param}."""
    barrier = threading.Barrier(REQUESTS)
    outcomes = {}

    def request(i):
        vm_id = new_id()
        barrier.wait(WAIT)
        try:
            create(api, vm_id, devices_of(i))
        except InvalidParams as exc:
            outcomes[vm_id] = exc.data["param"]
        else:
            outcomes[vm_id] = "accepted"

    threads = [threading.Thread(target=request, args=(i,))
               for i in range(REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert len(outcomes) == REQUESTS
    return outcomes


def test_concurrent_requests_take_a_path_once(make_api, images):
    """Eight requests at once, each a VM of its own naming one new output
    file: one takes it, the seven others are refused (the path is taken
    with the vmId's stage, in one critical section); with a file each
    (the control), all eight run."""
    api = make_api(image_dirs=[str(images)], queue_size=2 * REQUESTS)
    outcomes = race(api, lambda i: serial_file(images / "one.out"))
    assert sorted(outcomes.values()) == ["accepted"] + ["xml"] * (
        REQUESTS - 1), outcomes
    outcomes = race(api, lambda i: serial_file(images / f"own{i}.out"))
    assert set(outcomes.values()) == {"accepted"}, outcomes
    public = check_invariants(api)
    assert len(public) == REQUESTS + 1
    for vm_id in public:
        assert api.VM.destroy(vm_id) is True


def test_a_failed_start_gives_its_paths_back(make_api, images):
    """A's start fails: its paths are A's until its rollback removed its
    domain, then free."""
    reached, fail = threading.Event(), threading.Event()

    def fail_at_start(job, step):
        if step == "start" and job.vm_id == a:
            reached.set()
            assert fail.wait(WAIT)
            raise RuntimeError("start failed")

    api = make_api(image_dirs=[str(images)], step_hook=fail_at_start)
    a, b = new_id(), new_id()
    job = create(api, a, serial_file(images / "a.out"))
    assert reached.wait(WAIT)
    try:
        refused(api, b, serial_file(images / "a.out"))
    finally:
        fail.set()
    assert wait_job(api, job)["status"] == "failed"
    assert wait_job(api, create(api, b, serial_file(images / "a.out")))[
        "status"] == "done"
    assert api.VM.destroy(b) is True
    assert_quiet_and_clean(api)


def test_a_hibernated_vm_holds_nothing_and_its_restore_takes_them_again(
        api, images, tmp_path):
    """Hibernated, its domain gone: its paths are free for another VM;
    its restore, whose state file names them, is refused while that VM
    has them (-32602 'restoreState'), and runs once it has gone."""
    a, b = running(api, serial_file(images / "a.out")), new_id()
    state = tmp_path / "a.state"
    assert wait_job(api, api.VM.hibernate(a, str(state))["jobId"])[
        "status"] == "done"
    assert wait_job(api, create(api, b, serial_file(images / "a.out")))[
        "status"] == "done"
    with pytest.raises(InvalidParams) as err:
        api.VM.create(a, {"vmId": a, "restoreState": str(state)})
    assert err.value.data == {"param": "restoreState"}
    assert api.registry.snapshot()[0] == []
    assert api.VM.destroy(b) is True
    assert wait_job(api, api.VM.create(a, {"vmId": a, "restoreState": str(
        state)})["jobId"])["status"] == "done"
    refused(api, b, serial_file(images / "a.out"))
    assert api.VM.destroy(a) is True


def test_a_recovered_vm_holds_its_paths(make_api, images):
    """After a restart, recovery reads each domain's paths back from its
    XML: a new VM naming a recovered VM's output file is refused."""
    first = make_api(image_dirs=[str(images)])
    a = running(first, serial_file(images / "a.out") + channel(
        images / "a.sock"))
    first.close()
    api = make_api(image_dirs=[str(images)])
    assert api.wait_recovered(WAIT)
    assert api.Host.getVMList() == [a]
    b = new_id()
    refused(api, b, serial_file(images / "a.out"))
    refused(api, b, serial_socket(images / "a.sock"))
    assert wait_job(api, create(api, b, serial_file(images / "b.out")))[
        "status"] == "done"
    assert api.VM.destroy(a) is True
    assert wait_job(api, create(api, new_id(), serial_file(
        images / "a.out")))["status"] == "done"


def test_a_recovered_vm_holds_its_backing_chain(make_api, images):
    """Recovery reads the backing files back from the chain libvirt
    states, each level nested in the one above: a share over the base two
    levels down is refused after a restart too (round 12); the control,
    a share beside it, runs."""
    qcow2(str(images / "mid.qcow2"), backing=str(images / "share" /
                                                  "base.raw"))
    qcow2(str(images / "deep.qcow2"), backing=str(images / "mid.qcow2"),
          backing_fmt="qcow2")
    first = make_api(image_dirs=[str(images)])
    a = running(first, qcow2_disk(images / "deep.qcow2"))
    first.close()
    api = make_api(image_dirs=[str(images)])
    assert api.wait_recovered(WAIT)
    assert api.Host.getVMList() == [a]
    assert a in str(refused(api, new_id(), share(images / "share")))
    b = new_id()
    assert wait_job(api, create(api, b, share(images / "other")))[
        "status"] == "done"
    assert api.VM.destroy(b) is True
    assert api.VM.destroy(a) is True


def test_every_way_out_of_the_registry_gives_the_paths_back(tmp_path):
    """A VM's paths go with it, in the critical section that takes it out
    of the registry, whichever: its job's end without a commit (unstage),
    its hibernation's or migration's commit or a destroy (drop_claimed),
    a destroy by force under its job (end_claim), its guest stopped
    outside vmjobs (guest_changed, on a daemon)."""
    registry = VmRegistry()
    out = str(tmp_path / "out")
    paths = hostpaths.holding([(out, hostpaths.Use.WRITE)])

    def staged():
        vm_id, job = new_id(), object()
        registry.stage(vm_id, VmStatus.WAIT_FOR_LAUNCH, {}, job, paths=paths)
        assert set(registry.held_paths()) == {vm_id}
        with pytest.raises(hostpaths.Taken):
            registry.stage(new_id(), VmStatus.WAIT_FOR_LAUNCH, {}, object(),
                           paths=paths)
        return vm_id, job

    def public():
        vm_id, job = staged()
        registry.commit(vm_id, VmStatus.UP, job)
        assert set(registry.held_paths()) == {vm_id}
        return vm_id

    vm_id, job = staged()
    registry.unstage(vm_id, job)
    assert registry.held_paths() == {}

    vm_id, claimer = public(), object()
    registry.claim(vm_id, VmStatus.SAVING_STATE, claimer)
    registry.end_claim(vm_id, claimer)          # stays: still holds them
    assert set(registry.held_paths()) == {vm_id}
    registry.claim(vm_id, VmStatus.SAVING_STATE, claimer)
    registry.drop_claimed(vm_id, claimer)
    assert registry.held_paths() == {}

    vm_id = public()
    registry.claim(vm_id, VmStatus.MIGRATION_SOURCE, claimer)
    registry.destroyed_under(vm_id, claimer)
    registry.end_claim(vm_id, claimer)
    assert registry.held_paths() == {}

    vm_id = public()
    registry.guest_changed(vm_id, registry.idle(vm_id), VmStatus.PAUSED)
    assert set(registry.held_paths()) == {vm_id}
    registry.guest_changed(vm_id, registry.idle(vm_id), VmStatus.DOWN)
    assert registry.held_paths() == {}
    registry.stage(new_id(), VmStatus.WAIT_FOR_LAUNCH, {}, object(),
                   paths=paths)
