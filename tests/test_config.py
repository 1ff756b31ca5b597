"""Configuration: defaults, overridden by the INI file, overridden by
flags; unknown sections, unknown keys and bad values are reported by name
and the service does not start on them."""

import os
import subprocess
import sys

import pytest

from vmjobs import config

from serve import ROOT


def vmjobs(*args):
    return subprocess.run([sys.executable, "-m", "vmjobs", *args],
                          capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)


def test_show_defaults_file_and_flags(tmp_path):
    path = tmp_path / "vmjobs.conf"
    path.write_text("[pool]\nworkers = 8\nqueue_size = 50\n"
                    "[jobs]\nmax_ended = 7\n")
    result = vmjobs("config", "--show", "--config", str(path),
                    "--workers", "3", "--listen", "unix:/run/vmjobs.sock")
    assert result.returncode == 0, result.stderr
    shown = tmp_path / "shown.conf"
    shown.write_text(result.stdout)
    effective = config.load(str(shown))
    assert effective.workers == 3            # flag over file
    assert effective.queue_size == 50        # file over default
    assert effective.max_ended == 7
    assert effective.listen == "unix:/run/vmjobs.sock"
    assert effective.migration_destination_timeout == 21600   # default
    assert effective.max_incoming == 2
    assert effective.max_request_bytes == 4 * 1024 * 1024


@pytest.mark.parametrize("text,named", [
    ("[pool]\nworkers = many\n", "pool.workers"),
    ("[pool]\nworkers = 0\n", "pool.workers"),
    ("[pool]\nthreads = 4\n", "threads"),
    ("[pools]\nworkers = 4\n", "[pools]"),
    ("[service]\nstop_mode = later\n", "service.stop_mode"),
    ("[rpc]\nmax_request_bytes = -1\n", "rpc.max_request_bytes"),
    ("[rpc]\ntls_cert = /x.pem\n", "tls_cert, tls_key and tls_ca"),
    ("not an ini file\n", "vmjobs.conf"),
])
def test_bad_file_stops_the_service_by_name(tmp_path, text, named):
    path = tmp_path / "vmjobs.conf"
    path.write_text(text)
    result = vmjobs("serve", "--config", str(path), "--listen",
                    "127.0.0.1:0", "--insecure")
    assert result.returncode == 2
    assert named in result.stderr
    assert "serving" not in result.stdout


def test_bad_flag_value_is_refused(tmp_path):
    result = vmjobs("serve", "--workers", "0", "--listen", "127.0.0.1:0",
                    "--insecure")
    assert result.returncode == 2
    assert "pool.workers" in result.stderr
    result = vmjobs("serve", "--listen", "nowhere")
    assert result.returncode == 2
    assert "listen" in result.stderr


def test_missing_file_is_refused(tmp_path):
    result = vmjobs("config", "--show", "--config", str(tmp_path / "no"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr


def test_dump_reads_back():
    defaults = config.Config()
    assert config.load_text(config.dump(defaults)) == defaults.validate()


def test_publish_mode_from_file_flag_and_default(tmp_path):
    """registry.publish: commit by default, accept from the file, the flag
    over the file, and nothing else accepted."""
    assert config.Config().publish == "commit"
    path = tmp_path / "vmjobs.conf"
    path.write_text("[registry]\npublish = accept\n")
    shown = vmjobs("config", "--show", "--config", str(path))
    assert shown.returncode == 0, shown.stderr
    assert config.load_text(shown.stdout).publish == "accept"
    shown = vmjobs("config", "--show", "--config", str(path),
                   "--publish", "commit")
    assert config.load_text(shown.stdout).publish == "commit"
    path.write_text("[registry]\npublish = later\n")
    refused = vmjobs("config", "--show", "--config", str(path))
    assert refused.returncode == 2
    assert "registry.publish" in refused.stderr
