"""What a run leaves behind: the load test's private directory goes at the
end (unless --keep), and the log's lock file is in a private directory,
not a hidden file beside the log."""

import logging
import os
import stat
import subprocess
import sys

from vmjobs import logs


def loadtest(tmp_dir, *flags):
    result = subprocess.run(
        [sys.executable, "-m", "vmjobs", "loadtest", "--vms", "20",
         "--workers", "2", *flags], capture_output=True, text=True,
        timeout=120, env=dict(os.environ, PYTHONPATH=os.getcwd(),
                              TMPDIR=str(tmp_dir)))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_loadtest_removes_its_directory(tmp_path):
    out = loadtest(tmp_path)
    assert "Up           20/20" in out
    assert "log: removed with" in out
    assert list(tmp_path.iterdir()) == []


def test_loadtest_keep_keeps_its_directory_and_log(tmp_path):
    out = loadtest(tmp_path, "--keep")
    [run_dir] = tmp_path.iterdir()
    assert run_dir.name.startswith("vmjobs-loadtest-")
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert f"log: {run_dir}/loadtest.log" in out
    assert (run_dir / "loadtest.log").stat().st_size > 0


def test_log_lock_file_in_the_private_directory(tmp_path):
    log_dir, run_dir = tmp_path / "log", tmp_path / "run"
    log_dir.mkdir()
    handler = logs.configure(str(log_dir / "vmjobs.log"), lock_dir=str(run_dir))
    try:
        logging.getLogger("vmjobs.test").warning("a line")
    finally:
        logs.unconfigure(handler)
    assert [p.name for p in log_dir.iterdir()] == ["vmjobs.log"]
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert [p.name for p in run_dir.iterdir()] == [".__vmjobs.lock"]
    # The control: without lock_dir the library puts it beside the log.
    handler = logs.configure(str(log_dir / "other.log"))
    try:
        logging.getLogger("vmjobs.test").warning("a line")
    finally:
        logs.unconfigure(handler)
    assert ".__other.lock" in {p.name for p in log_dir.iterdir()}
