"""The settings of issue 10: rpc.insecure, storage.state_dirs and
storage.image_dirs, read from the file and from the flags; the default
listener; plain TCP refused unless insecure, and then on loopback only."""

import pytest

from conftest import new_id, vm_params, wait_job
from vmjobs import cli, config
from vmjobs.errors import InvalidParams
from vmjobs.listener import check_listener, host_header_allowed


def test_defaults():
    defaults = config.Config()
    assert defaults.listen == "unix:/run/vmjobs/vmjobs.sock"
    assert defaults.insecure is False
    assert defaults.state_dirs == ["/var/lib/vmjobs/states"]
    assert defaults.image_dirs == ["/var/lib/vmjobs/images"]


def test_file_and_round_trip():
    loaded = config.load_text(
        "[rpc]\nlisten = 127.0.0.1:5000\ninsecure = yes\n"
        "[storage]\nstate_dirs = /srv/a\nstate_dirs = /srv/b\n"
        "image_dirs = /img/one   ; a list: one path per line\n"
        "image_dirs = /img/two\n")
    assert loaded.insecure is True
    assert loaded.state_dirs == ["/srv/a", "/srv/b"]
    assert loaded.image_dirs == ["/img/one", "/img/two"]
    assert config.load_text(config.dump(loaded)) == loaded


@pytest.mark.parametrize("text, named", [
    ("[rpc]\ninsecure = maybe\n", "rpc.insecure"),
    ("[storage]\nstate_dirs = relative/dir\n", "storage.state_dirs"),
    ("[storage]\nimage_dirs =\n", "storage.image_dirs"),
])
def test_bad_values_are_named(text, named):
    with pytest.raises(config.ConfigError, match=named):
        config.load_text(text)


def test_flags_override(capsys):
    assert cli.main(["config", "--show", "--insecure", "--state-dir", "/s1",
                     "--state-dir", "/s2", "--image-dir", "/i"]) == 0
    effective = config.load_text(capsys.readouterr().out)
    assert effective.insecure is True
    assert effective.state_dirs == ["/s1", "/s2"]
    assert effective.image_dirs == ["/i"]


@pytest.mark.parametrize("listen, insecure, tls, refused", [
    ("unix:/run/x.sock", False, False, None),
    ("127.0.0.1:1", False, True, None),
    ("0.0.0.0:1", False, True, None),
    ("127.0.0.1:1", False, False, "mutual TLS"),
    ("127.0.0.1:1", True, False, None),
    ("[::1]:1", True, False, None),
    ("localhost:1", True, False, None),
    ("0.0.0.0:1", True, False, "loopback"),
    ("10.0.0.1:1", True, False, "loopback"),
    (":1", True, False, None),          # an empty host is 127.0.0.1
])
def test_listener_policy(listen, insecure, tls, refused):
    settings = config.Config(listen=listen, insecure=insecure)
    if tls:
        settings.tls_cert = settings.tls_key = settings.tls_ca = "/x"
    if refused is None:
        check_listener(settings)
    else:
        with pytest.raises(config.ConfigError, match=refused):
            check_listener(settings)


@pytest.mark.parametrize("host, allowed", [
    ("localhost", True), ("localhost:80", True), ("127.0.0.1:54321", True),
    ("[::1]:1", True), ("::1", True), ("127.9.9.9", True),
    ("evil.example", False), ("localhost.evil.example", False),
    ("127.0.0.1.nip.io", False), ("", False), (None, False),
    ("[::1", False), ("0.0.0.0", False),
    # After the host, only a port (RFC 9110, 7.2: digits, perhaps none):
    # round 13 of the hostile-caller audits found anything taken there.
    ("[::1]evil.example", False), ("[::1]:80.evil.example", False),
    ("localhost:evil.example", False), ("127.0.0.1:8O", False),
    ("localhost:", True), ("[::1]:", True),
])
def test_host_header(host, allowed):
    assert host_header_allowed(host) is allowed


def test_network_hosts(capsys):
    """storage.network_hosts (issue 19): empty by default, host names or
    addresses from the file and from --network-host, nothing else."""
    assert config.Config().network_hosts == []
    loaded = config.load_text("[storage]\nnetwork_hosts = ceph1.example\n"
                              "network_hosts = 10.0.0.2\n")
    assert loaded.network_hosts == ["ceph1.example", "10.0.0.2"]
    assert config.load_text(config.dump(loaded)) == loaded
    assert config.load_text("[storage]\nnetwork_hosts =\n").network_hosts \
        == []
    for bad in ("/etc/ceph", "a b", "host;rm"):
        with pytest.raises(config.ConfigError,
                           match="storage.network_hosts"):
            config.load_text(f"[storage]\nnetwork_hosts = {bad}\n")
    assert cli.main(["config", "--show", "--network-host", "nbd1",
                     "--network-host", "::1"]) == 0
    effective = config.load_text(capsys.readouterr().out)
    assert effective.network_hosts == ["nbd1", "::1"]


@pytest.mark.parametrize("field", ["state_dirs", "migration_socket_dirs"])
@pytest.mark.parametrize("other, images", [
    ("d", "d"), ("d", "d/images"), ("d/other", "d"), ("link", "d")])
def test_dirs_overlapping_the_image_dirs_are_refused(tmp_path, field, other,
                                                     images):
    """Image directories are where guests write: their disks, and the
    sockets of their chardevs and consoles. A disk named as a state file
    would have its bytes restored into QEMU; a guest's socket named as
    VM.migrate's dst or dstUri was sent the VM's params and domain XML
    and could answer for the destination (hostile-caller audits, the
    second in round 7, each with one directory for both). Resolved
    first: a symlink to the other is the same."""
    (tmp_path / "d").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "d")
    with pytest.raises(config.ConfigError) as err:
        config.Config(**{field: [str(tmp_path / other)]},
                      image_dirs=[str(tmp_path / images)]).validate()
    assert "overlap" in str(err.value)
    # The control: apart, side by side.
    config.Config(**{field: [str(tmp_path / "other")]},
                  image_dirs=[str(tmp_path / "images")]).validate()


def test_a_state_file_in_an_image_dir_is_refused_at_the_verb(make_api,
                                                             tmp_path):
    """Whatever the configuration (an API made in process is not
    validated), a restoreState or hibernationVolHandle inside an image
    directory is refused, nothing read or written; beside it, a state path
    outside it is taken (the verb goes on to the file)."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "disk.raw").write_bytes(b"\0" * 4096)
    api = make_api(state_dirs=[str(tmp_path)], image_dirs=[str(images)])
    vm_id = new_id()
    with pytest.raises(InvalidParams) as err:
        api.VM.create(vm_id, {"vmId": vm_id,
                              "restoreState": str(images / "disk.raw")})
    assert err.value.data == {"param": "restoreState"}
    assert "image directory" in str(err.value)
    up = new_id()
    assert wait_job(api, api.VM.create(up, vm_params(up))["jobId"])[
        "status"] == "done"
    with pytest.raises(InvalidParams) as err:
        api.VM.hibernate(up, str(images / "up.state"))
    assert err.value.data == {"param": "hibernationVolHandle"}
    assert not (images / "up.state").exists()
    assert api.Host.getJobs(job_type="hibernate") == {}
    job = api.VM.hibernate(up, str(tmp_path / "up.state"))["jobId"]
    assert wait_job(api, job)["status"] == "done"


@pytest.mark.parametrize("image_dir, tree", [
    ("/", "/etc"),
    ("/var", "/var/lib/libvirt/qemu"),
    ("/var/lib/libvirt", "/var/lib/libvirt/qemu"),
    ("/var/lib/libvirt/qemu", "/var/lib/libvirt/qemu"),
    ("/run", "/run/libvirt"),
    ("/etc", "/etc"),
])
def test_an_image_dir_holding_the_hosts_own_files_is_refused(image_dir,
                                                             tree):
    """Every file in an image directory is one a domain XML may name: one
    holding libvirt's state directory made other guests' firmware
    variables and master keys a disk of any guest (a hostile-caller
    audit, round 9: suspected, written in docs/security.md)."""
    with pytest.raises(config.ConfigError, match=f"holds {tree} "):
        config.Config(image_dirs=[image_dir]).validate()


def test_an_image_dir_inside_the_hosts_own_trees_is_the_operators():
    """The control: an engine's channel sockets go in libvirt's
    channels/ (docs/security.md), and the default image dir is taken."""
    config.Config(image_dirs=["/var/lib/libvirt/qemu/channels",
                              "/var/lib/vmjobs/images"]).validate()
    config.Config().validate()
