"""The log file is opened when the service starts, not at its first line:
a path the service cannot write ([log] file in a missing directory, a
symlink) stops `vmjobs serve` with one line naming log.file, instead of a
service that runs without its audit trail and writes a traceback to
stderr for every line it would have logged (an operability audit)."""

import errno
import os
import stat
import subprocess
import sys

import pytest

from serve import ROOT, TEST_URI, ServeProcess
from vmjobs import logs
from vmjobs.client import Client
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


@pytest.fixture
def small_disk(tmp_path):
    """A directory on a tmpfs of 1 MiB (root: a mount)."""
    if os.geteuid() != 0:
        pytest.skip("a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755",
                    "vmjobs-test-log", str(disk)], check=True)
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk):
    """Fill `disk` up (ENOSPC); returns the filler, to be removed."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_a_full_log_disk_is_said_once_and_the_gap_when_it_passes(
        small_disk, tmp_path):
    """The log's disk full: the service serves on, says so on stderr (the
    journal) in one line, not a traceback for every line it could not
    write, and once the disk has room again writes in the log how many
    lines were lost, and says it on stderr. Before, each lost line (here
    the audit line of each call) was a traceback of about 2 KiB on
    stderr, and each verb took twice as long; a stderr no one reads (a
    full pipe) would have stopped every thread that logs."""
    log = small_disk / "vmjobs.log"
    service = ServeProcess("--log-file", str(log), tmp_path=tmp_path)
    try:
        client = Client(service.address, timeout=30)
        assert client.call("Host.ping", {}) is True
        filler = fill(small_disk)
        # The log's last page has room for some lines (a tmpfs counts
        # pages): 30 audit lines, of about 150 bytes, go beyond it.
        for _ in range(30):
            assert client.call("Host.ping", {}) is True
        filler.unlink()
        assert client.call("Host.ping", {}) is True
        client.close()
    finally:
        status, _, err = service.stop()
    assert status == 0, err
    assert "Traceback" not in err and "Logging error" not in err, err
    lost, back = err.strip().splitlines()
    assert lost.startswith(f"vmjobs: log file {log}: cannot write a line"
                           ), lost
    assert "No space left on device" in lost, lost
    assert back.startswith(f"vmjobs: log file {log}: written again, "), back
    text = log.read_text()
    assert text.count("audit Host.ping") >= 2   # before, and after
    notes = [line for line in text.splitlines() if "lines lost" in line]
    assert len(notes) == 1, notes
