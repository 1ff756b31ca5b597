"""A sandbox's own libvirtd.conf settings reach its daemon: the limits
written are the ones it runs with (read back through its admin socket),
and the log filters written decide what it logs. The stock-limits storm
(tests/benchmarks/stock_storm.py) relies on both."""

import os
import subprocess

import libvirt
import pytest

from realdaemon import require_daemon
from vmjobs.tools.sandbox import Sandbox, conf_value


def threadpool_info(sandbox):
    admin = os.path.join(sandbox.dir, "sock", "libvirt-admin-sock")
    result = subprocess.run(
        ["virt-admin", "-c", f"libvirtd:///system?socket={admin}",
         "srv-threadpool-info", "libvirtd"],
        capture_output=True, text=True, timeout=60, check=True)
    return {key.strip(): value.strip() for key, value in
            (line.split(":", 1) for line in result.stdout.splitlines()
             if ":" in line)}


def test_settings_reach_the_daemon(tmp_path):
    require_daemon()
    sandbox = Sandbox(str(tmp_path / "daemon"), settings={
        "min_workers": 3, "max_workers": 7,
        "log_filters": "1:rpc.keepalive", "log_outputs": "1:file:{log}"})
    sandbox.start()
    try:
        info = threadpool_info(sandbox)
        conn = libvirt.open(sandbox.uri)
        conn.close()
        with open(sandbox.log) as f:
            log = f.read()
    finally:
        sandbox.stop()
    assert (info["minWorkers"], info["maxWorkers"]) == ("3", "7")
    # rpc.keepalive's debug lines: each client gets a keepalive object.
    assert "RPC_KEEPALIVE_NEW" in log


def test_the_default_daemon_logs_warnings_only(daemon):
    conn = libvirt.open(daemon.uri)
    conn.close()
    with open(daemon.log) as f:
        assert "RPC_KEEPALIVE_NEW" not in f.read()


def test_a_value_libvirt_could_not_read_is_refused():
    assert conf_value(5) == "5"
    assert conf_value(True) == "1"
    assert conf_value("1:rpc 3:*") == '"1:rpc 3:*"'
    # libvirt's parser has no escape: the quote would end the string.
    with pytest.raises(ValueError):
        conf_value('1:rpc" x = "y')
