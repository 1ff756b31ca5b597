"""The settings of issue 10: rpc.insecure, storage.state_dirs and
storage.image_dirs, read from the file and from the flags; the default
listener; plain TCP refused unless insecure, and then on loopback only."""

import pytest

from vmjobs import cli, config
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
