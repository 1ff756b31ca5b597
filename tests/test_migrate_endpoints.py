"""VM.migrate's dst, dstUri and migrationUri against their allowlist
(vmjobs.endpoints, docs/security.md): every refused form answers -32602
naming the parameter before anything runs (no job, the VM Up, no program
run), and beside each refusal the legitimate form of the same parameter
is accepted (a job is queued), so a refusal for the wrong reason cannot
pass."""

import urllib.parse

import pytest

from conftest import new_id, vm_params, wait_job
from vmjobs.config import Config, ConfigError
from vmjobs.errors import InvalidParams

# The destination service on the destination libvirtd's host; b.example
# does not resolve: an accepted job fails at once.
GOOD = {"dst": "b.example:9", "dstUri": "qemu+tls://b.example/system"}


def dst_of(uri):
    """A dst on the host of `uri` (this machine for a unix one), where no
    service listens."""
    host = urllib.parse.urlsplit(uri).hostname
    if host is None:
        return "127.0.0.1:9"
    return f"[{host}]:9" if ":" in host else f"{host}:9"


@pytest.fixture
def setup(make_api, tmp_path):
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    api = make_api(migration_socket_dirs=[str(sockets)],
                   migration_networks=["10.0.0.0/24", "fd00::/64"])
    vm_id = new_id()
    job_id = api.VM.create(vm_id, vm_params(vm_id))["jobId"]
    assert wait_job(api, job_id)["status"] == "done"
    yield api, vm_id, str(sockets), tmp_path
    api.VM.destroy(vm_id)


def refused(api, vm_id, param, **params):
    before = api.Host.getJobs(job_type="migration-source")
    with pytest.raises(InvalidParams) as err:
        api.VM.migrate(vm_id, {**GOOD, **params})
    assert err.value.data == {"param": param}, err.value
    assert api.Host.getJobs(job_type="migration-source") == before
    assert api.VM.getStats(vm_id)["status"] == "Up"
    return err.value.message


def accepted(api, vm_id, **params):
    # A short timeout: a dst address that does not answer (10.0.0.2) ends
    # the call at it.
    job_id = api.VM.migrate(vm_id, {**GOOD, "timeout": 2, **params})[
        "jobId"]
    # No destination answers: the job fails, the VM stays Up here.
    assert wait_job(api, job_id)["status"] == "failed"
    assert api.VM.getStats(vm_id)["status"] == "Up"


def good_uris(sockets):
    return ["qemu+tls://b.example/system", "qemu+tcp://b.example/system",
            "qemu+tls://10.0.0.2:16514/system", "qemu+tcp://[fd00::2]/system",
            f"qemu+unix:///system?socket={sockets}/libvirt-sock",
            # No transport but a host: libvirt's default, tls (API.md: a
            # qemu driver URI over the tls transport).
            "qemu://b.example/system", "qemu://10.0.0.2:16514/system"]


def test_the_legitimate_dst_uris_are_accepted(setup):
    api, vm_id, sockets, _ = setup
    for uri in good_uris(sockets):
        accepted(api, vm_id, dstUri=uri, dst=dst_of(uri))


BAD_URIS = {
    # libvirt's ext transport runs the command as root.
    "ext-command": "qemu+ext:///system?command={mark}",
    "ssh": "qemu+ssh://root@b.example/system",
    "ssh-no-user": "qemu+ssh://b.example/system",
    "libssh": "qemu+libssh://b.example/system",
    "libssh2": "qemu+libssh2://b.example/system?known_hosts=/root/x",
    "no-transport-local": "qemu:///system",
    "default-transport-netcat": "qemu://b.example/system?netcat={mark}",
    "default-transport-no-host": "qemu://:16514/system",
    "unix-default-socket": "qemu+unix:///system",
    "tcp-command": "qemu+tcp://b.example/system?command={mark}",
    "tls-netcat": "qemu+tls://b.example/system?netcat={mark}",
    "tls-no-verify": "qemu+tls://b.example/system?no_verify=1",
    "tls-pkipath": "qemu+tls://b.example/system?pkipath=/root",
    "tls-keyfile": "qemu+tls://b.example/system?keyfile=/root/.ssh/id",
    "unix-and-command": "qemu+unix:///system?socket={sockets}/s&command=x",
    "unix-semicolon": "qemu+unix:///system?socket={sockets}/s;command=x",
    "unix-outside": "qemu+unix:///system?socket=/run/libvirt/libvirt-sock",
    "unix-dotdot": "qemu+unix:///system?socket={sockets}/../s",
    "unix-encoded-dotdot": "qemu+unix:///system?socket={sockets}/%2e%2e/s",
    "unix-encoded-newline": "qemu+unix:///system?socket={sockets}/s%0a",
    # Bytes that are not UTF-8 once decoded: -32602, not an internal error
    # (a hostile-caller audit, round 9: 'utf-8' codec can't decode).
    "unix-encoded-not-utf8": "qemu+unix:///system?socket={sockets}/%ff",
    "unix-relative": "qemu+unix:///system?socket=s",
    "unix-host": "qemu+unix://b.example/system?socket={sockets}/s",
    "session": "qemu+tls://b.example/session",
    "other-driver": "xen+tls://b.example/system",
    "test-driver": "test:///default",
    "user-info": "qemu+tcp://user@b.example/system",
    "fragment": "qemu+tcp://b.example/system#x",
    "newline": "qemu+tcp://b.example/system\n",
    "tab-in-scheme": "qemu+t\tcp://b.example/system",
    "blank": "qemu+tcp://b example/system",
    "upper-case-scheme": "QEMU+EXT:///system?command={mark}",
    "bad-port": "qemu+tcp://b.example:99999/system",
    # Past int()'s 4300 digits: -32602, not an internal error.
    "huge-port": "qemu+tcp://b.example:" + "1" * 5000 + "/system",
    "bad-host": "qemu+tcp://-b/system",
    "ipv6-zone": "qemu+tcp://[fe80::1%25eth0]/system",
    "not-a-string": 3,
}


@pytest.mark.parametrize("name", BAD_URIS)
def test_a_dst_uri_outside_the_allowlist_is_refused(setup, name):
    api, vm_id, sockets, tmp_path = setup
    mark = tmp_path / "ran"
    uri = BAD_URIS[name]
    if isinstance(uri, str):
        uri = uri.format(mark=f"/usr/bin/touch {mark}", sockets=sockets)
    refused(api, vm_id, "dstUri", dstUri=uri)
    assert not mark.exists()


def test_no_unix_socket_without_socket_dirs(make_api, tmp_path):
    """The default, migration.socket_dirs empty: no unix dst or dstUri;
    TCP ones are taken (positive control)."""
    api = make_api(migration_socket_dirs=[])
    vm_id = new_id()
    assert wait_job(api, api.VM.create(vm_id, vm_params(vm_id))[
        "jobId"])["status"] == "done"
    refused(api, vm_id, "dstUri",
            dstUri=f"qemu+unix:///system?socket={tmp_path}/s")
    refused(api, vm_id, "dst", dst=f"unix:{tmp_path}/vmjobs.sock")
    accepted(api, vm_id)
    api.VM.destroy(vm_id)


def test_dst(setup):
    api, vm_id, sockets, _ = setup
    local = f"qemu+unix:///system?socket={sockets}/libvirt-sock"
    for good in ("localhost:9", "127.0.0.1:9", "[::1]:9",
                 f"unix:{sockets}/vmjobs.sock"):
        accepted(api, vm_id, dst=good, dstUri=local)
    for bad in ("b.example", "b.example:0", "b.example:x", ":8000",
                "b example:8000", "user@b:8000", "[nope]:8000",
                "unix:/run/vmjobs/vmjobs.sock", f"unix:{sockets}/../x",
                f"unix:{sockets}", "unix:relative", f"unix:{sockets}/a\n",
                "http://b.example:8000", 8000):
        refused(api, vm_id, "dst", dst=bad)


def test_migration_uri(setup):
    api, vm_id, _, _ = setup
    for good in ("tcp://10.0.0.2", "tcp://b.example:49152",
                 "tcp://B.Example.:49215", "tcp://[fd00::2]:49152"):
        accepted(api, vm_id, migrationUri=good)
    for bad in ("", "rdma://10.0.0.2", "unix:///tmp/x", "tcp://",
                "tcp://10.0.0.2/path", "tcp://10.0.0.2?x=1",
                "tcp://u@10.0.0.2", "tcp://10.0.0.2:0", "fd:3",
                "exec:/usr/bin/touch /tmp/x", "TCP://10.0.0.2"):
        refused(api, vm_id, "migrationUri", migrationUri=bad)


def test_the_guests_memory_goes_to_the_destination_only(setup):
    """QEMU, as root, writes the guest's memory (bytes the guest chose)
    where migrationUri says: a hostile-caller audit had it write into a
    service on this host's own loopback. Only the destination is
    accepted (dstUri's host, migration.networks, loopback for a
    destination on this host's unix socket), on a migration port."""
    api, vm_id, sockets, _ = setup
    for bad in ("tcp://127.0.0.1:49152", "tcp://127.0.0.1", "tcp://[::1]",
                "tcp://0.0.0.0", "tcp://169.254.169.254",
                "tcp://10.0.1.5",          # outside migration.networks
                "tcp://c.example",         # not dstUri's host
                "tcp://b.example:6379",    # dstUri's host, not a migration
                "tcp://10.0.0.2:22"):      # port
        message = refused(api, vm_id, "migrationUri", migrationUri=bad)
        assert "destination" in message or "migration port" in message
    # A destination libvirtd on this host (its unix socket): loopback, on
    # a migration port, is where it listens.
    local = {"dst": "127.0.0.1:9",
             "dstUri": f"qemu+unix:///system?socket={sockets}/libvirt-sock"}
    accepted(api, vm_id, **local, migrationUri="tcp://127.0.0.1")
    accepted(api, vm_id, **local, migrationUri="tcp://[::1]:49200")
    refused(api, vm_id, "migrationUri", **local,
            migrationUri="tcp://127.0.0.1:6379")
    refused(api, vm_id, "migrationUri", **local,
            migrationUri="tcp://c.example")


def test_the_service_is_on_the_libvirtd_s_host(setup):
    """The guest goes where dstUri says, on the word of the service at dst
    that it staged the VM: a hostile-caller audit's fake dst said yes, and
    the guest arrived on a libvirtd whose vmjobs never checked its XML nor
    listed it. So dst is on dstUri's host (this machine's, for a unix
    dstUri)."""
    api, vm_id, sockets, _ = setup
    local = f"qemu+unix:///system?socket={sockets}/libvirt-sock"
    for dst, dst_uri in (
            ("127.0.0.1:9", "qemu+tls://b.example/system"),
            ("c.example:9", "qemu+tls://b.example/system"),
            (f"unix:{sockets}/vmjobs.sock", "qemu+tcp://b.example/system"),
            ("b.example:9", local), ("10.0.0.2:9", local),
            ("[fd00::2]:9", "qemu+tcp://[fd00::3]/system")):
        refused(api, vm_id, "dst", dst=dst, dstUri=dst_uri)
    for dst, dst_uri in (
            ("B.Example.:54321", "qemu+tls://b.example:16514/system"),
            ("[fd00::2]:9", "qemu+tcp://[fd00:0::2]/system"),
            ("localhost:9", local), (f"unix:{sockets}/vmjobs.sock", local)):
        accepted(api, vm_id, dst=dst, dstUri=dst_uri)


def test_every_loopback_name_is_this_host(setup):
    """API.md takes any HOST:PORT for dst; vmjobs asks that it be on
    dstUri's host, and localhost, 127.0.0.1 and ::1 all name this one: a
    destination service and libvirtd on this machine, as two sandboxes'
    (qemu+tcp://127.0.0.1:PORT/system), are not refused for naming it in
    two ways. The guest's memory may go to loopback then too."""
    api, vm_id, _, _ = setup
    for dst, dst_uri in (
            ("127.0.0.1:9", "qemu+tcp://localhost/system"),
            ("localhost:9", "qemu+tcp://127.0.0.1:16509/system"),
            ("[::1]:9", "qemu+tls://127.0.0.2/system"),
            ("LOCALHOST.:9", "qemu+tcp://[::1]/system")):
        accepted(api, vm_id, dst=dst, dstUri=dst_uri)
    accepted(api, vm_id, dst="localhost:9",
             dstUri="qemu+tcp://127.0.0.1:16509/system",
             migrationUri="tcp://localhost:49152")
    # Loopback is not another host's name: the controls.
    refused(api, vm_id, "dst", dst="127.0.0.1:9",
            dstUri="qemu+tcp://b.example/system")
    refused(api, vm_id, "dst", dst="b.example:9",
            dstUri="qemu+tcp://localhost/system")
    refused(api, vm_id, "migrationUri", dst="b.example:9",
            dstUri="qemu+tcp://b.example/system",
            migrationUri="tcp://127.0.0.1:49152")


def test_the_migration_settings_are_checked():
    for bad in ({"migration_networks": ["10.0.0.0/33"]},
                {"migration_networks": ["b.example"]},
                {"migration_port_min": 50000, "migration_port_max": 49999}):
        with pytest.raises(ConfigError):
            Config(**bad).validate()
    Config(migration_networks=["10.0.0.1/24", "fd00::/64"],
           migration_port_min=1024, migration_port_max=1024).validate()


def test_a_symlink_out_of_the_socket_dir_is_refused(setup):
    """The socket is judged once symlinks are resolved."""
    api, vm_id, sockets, tmp_path = setup
    (tmp_path / "sockets" / "link").symlink_to("/run/libvirt/libvirt-sock")
    refused(api, vm_id, "dstUri",
            dstUri=f"qemu+unix:///system?socket={sockets}/link")
    refused(api, vm_id, "dst", dst=f"unix:{sockets}/link")


def test_a_socket_in_an_image_dir_is_never_a_destination(make_api,
                                                          tmp_path):
    """Whatever the configuration (an API made in process is not
    validated), a dst or dstUri socket in an image directory is refused:
    it may be a guest's (a unix chardev QEMU listens on). A hostile-caller
    audit (round 7) had VM.migrate, with migration.socket_dirs set to the
    image directory, connect to a guest's serial socket and send it the
    VM's params and domain XML, to take its answer for the destination
    service's. The control: a socket of a socket directory apart."""
    images, sockets = tmp_path / "images", tmp_path / "sockets"
    images.mkdir()
    sockets.mkdir()
    api = make_api(image_dirs=[str(images)],
                   migration_socket_dirs=[str(images), str(sockets)])
    vm_id = new_id()
    assert wait_job(api, api.VM.create(vm_id, vm_params(vm_id))[
        "jobId"])["status"] == "done"
    local = f"qemu+unix:///system?socket={sockets}/libvirt-sock"
    refused(api, vm_id, "dst", dst=f"unix:{images}/guest-serial.sock",
            dstUri=local)
    refused(api, vm_id, "dstUri", dst=f"unix:{sockets}/vmjobs.sock",
            dstUri=f"qemu+unix:///system?socket={images}/guest.sock")
    accepted(api, vm_id, dst=f"unix:{sockets}/vmjobs.sock", dstUri=local)
    api.VM.destroy(vm_id)


def test_an_engines_vdsm_keys_are_accepted_and_others_refused(setup):
    """VDSM's engine sends more than vmjobs acts on (its MigrateParams):
    accepted, ignored. A key VDSM has not is refused (the control), and a
    vmId in params must name the VM migrated."""
    api, vm_id, _, _ = setup
    engine = {"src": "10.0.0.1", "method": "online", "tunneled": "false",
              "dstqemu": "10.0.0.2", "abortOnError": "true",
              "autoConverge": "true", "compressed": "false",
              "enableGuestEvents": True, "outgoingLimit": 2,
              "incomingLimit": 2, "convergenceSchedule": {"init": [],
                                                          "stalling": []},
              "vmId": vm_id.upper()}
    accepted(api, vm_id, **engine)
    refused(api, vm_id, "speed", **engine, speed=1)
    refused(api, vm_id, "vmId", **{**engine, "vmId": new_id()})
    refused(api, vm_id, "vmId", **{**engine, "vmId": "not-a-uuid"})

