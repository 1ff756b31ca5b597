"""The log file is opened when the service starts, not at its first line:
a path the service cannot write ([log] file in a missing directory, a
symlink) stops `vmjobs serve` with one line naming log.file, instead of a
service that runs without its audit trail and writes a traceback to
stderr for every line it would have logged (an operability audit)."""

import os
import stat
import subprocess
import sys

import pytest

from serve import ROOT, TEST_URI
from vmjobs import logs
from vmjobs.settings import ConfigError


def serve(tmp_path, log_file):
    for made in ("states", "images"):
        (tmp_path / made).mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "vmjobs", "serve", "--config", os.devnull,
         "--uri", TEST_URI, "--listen", f"unix:{tmp_path}/s.sock",
         "--lock-file", str(tmp_path / "lock"),
         "--state-dir", str(tmp_path / "states"),
         "--image-dir", str(tmp_path / "images"), "--log-file", log_file],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={**os.environ, "PYTHONPATH": ROOT})


def test_a_log_file_in_a_missing_directory_stops_serve_in_one_line(
        tmp_path):
    path = str(tmp_path / "no-such-dir" / "vmjobs.log")
    result = serve(tmp_path, path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"vmjobs serve: log.file {path}: "), lines
    assert "No such file or directory" in lines[0]
    assert "Logging error" not in result.stderr
    assert "serving on" not in result.stdout
    assert not os.path.exists(tmp_path / "s.sock")


def test_a_writable_path_is_created_private(tmp_path):
    # Positive control: the file exists, 0600, before any line is logged.
    path = tmp_path / "vmjobs.log"
    handler = logs.configure(str(path))
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == logs.LOG_FILE_MODE
    finally:
        logs.unconfigure(handler)


def test_a_symlinked_log_file_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "target"
    target.write_text("not a log\n")
    target.chmod(0o644)
    link = tmp_path / "vmjobs.log"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="symlink"):
        logs.configure(str(link))
    assert target.read_text() == "not a log\n"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="log.file"):
        logs.configure(str(tmp_path))


def test_a_log_file_another_user_left_is_refused_and_untouched(tmp_path):
    """A user who may write /tmp plants the log file (a sticky directory:
    the file is theirs): root would write the audit trail into a file its
    owner reads and rewrites. Refused, the file untouched; root's own file
    in the same sticky directory is the positive control."""
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    planted = sticky / "vmjobs.log"
    planted.write_text("theirs\n")
    planted.chmod(0o644)
    os.chown(planted, 65534, 65534)
    result = serve(tmp_path, str(planted))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "owned by uid 65534" in lines[0], lines
    assert planted.read_text() == "theirs\n"
    assert stat.S_IMODE(os.stat(planted).st_mode) == 0o644
    own = sticky / "own.log"
    handler = logs.configure(str(own))
    logs.unconfigure(handler)
    assert own.stat().st_uid == 0


@pytest.mark.parametrize("mode", [0o777, 0o757])
def test_a_log_file_in_a_directory_others_may_write_is_refused(
        tmp_path, mode):
    """Others could rename it away and put their own in its place."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    with pytest.raises(ConfigError, match="a directory writable by every"):
        logs.configure(str(shared / "vmjobs.log"))
    shared.chmod(0o755)
    logs.unconfigure(logs.configure(str(shared / "vmjobs.log")))
