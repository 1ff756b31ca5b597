"""The service serves the host's hypervisor unless asked otherwise:
`vmjobs serve` with no URI means qemu:///system; libvirt's test driver
serves only when named, and the service then says so at start (console
and log) and in Host.getStats `uri`. The load test alone keeps a private
test driver as its default."""

import os
import subprocess
import sys

from serve import ROOT, TEST_URI, ServeProcess, rpc
from vmjobs import cli, config
from vmjobs.tools.targets import InProcess


def effective(*argv):
    parser = cli.build_parser()
    return cli.effective_config(parser.parse_args(list(argv)))


def test_serve_with_no_uri_uses_the_hosts_hypervisor():
    assert config.DEFAULT_URI == "qemu:///system"
    assert effective("serve", "--config", os.devnull).uri == "qemu:///system"
    # Positive control: a named URI is what serves.
    assert effective("serve", "--config", os.devnull, "--uri",
                     TEST_URI).uri == TEST_URI


def test_config_show_names_the_default_uri():
    result = subprocess.run(
        [sys.executable, "-m", "vmjobs", "config", "--show", "--config",
         os.devnull], capture_output=True, text=True, cwd=ROOT, timeout=60,
        env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines()
                if line.startswith("uri "))
    assert line.startswith("uri = qemu:///system ")
    assert "[default]" in line


def test_an_empty_uri_in_a_file_is_refused(tmp_path):
    """No file or flag can reach the private test driver by leaving the
    URI out: empty is refused, by name."""
    path = tmp_path / "vmjobs.conf"
    path.write_text("[libvirt]\nuri =\n")
    try:
        config.load(str(path))
    except config.ConfigError as exc:
        assert "libvirt.uri" in str(exc) and "required" in str(exc)
    else:
        raise AssertionError("an empty uri was accepted")
    path.write_text(f"[libvirt]\nuri = {TEST_URI}\n")   # positive control
    assert config.load(str(path)).uri == TEST_URI


def test_the_test_driver_says_so_at_start_and_in_get_stats(tmp_path):
    server = ServeProcess("--uri", TEST_URI, "--listen", "127.0.0.1:0",
                          "--insecure", "--state-dir", str(tmp_path / "states"),
                          "--image-dir", str(tmp_path / "images"),
                          tmp_path=tmp_path)
    try:
        assert len(server.warnings) == 1, server.warnings
        assert "test driver" in server.warnings[0]
        assert TEST_URI in server.warnings[0]
        stats = rpc(server.url, "Host.getStats")["result"]
        assert stats["uri"] == TEST_URI
    finally:
        status, _, err = server.stop()
    assert status == 0, err
    log = (tmp_path / "serve.log").read_text()
    assert "WARNING" in log and "test driver" in log


def test_a_real_daemon_serves_without_the_warning(daemon, tmp_path):
    server = ServeProcess("--uri", daemon.uri, "--listen", "127.0.0.1:0",
                          "--insecure", "--state-dir", str(tmp_path / "states"),
                          "--image-dir", str(tmp_path / "images"),
                          tmp_path=tmp_path)
    try:
        assert server.warnings == []
        assert rpc(server.url, "Host.getStats")["result"]["uri"] == \
            daemon.uri
    finally:
        status, _, err = server.stop()
    assert status == 0, err
    assert "test driver" not in (tmp_path / "serve.log").read_text()


def test_the_load_test_keeps_its_private_test_driver(tmp_path):
    args = cli.build_parser().parse_args(["loadtest"])
    assert args.uri is None   # None: a private test driver, made for it
    target = InProcess(config.Config(uri=args.uri, workers=1,
                                     state_dirs=[str(tmp_path)]))
    try:
        uri = target.api.hv.uri
        assert uri.startswith("test://") and uri != TEST_URI
        assert target.api.hv.is_test_driver
    finally:
        target.close()
