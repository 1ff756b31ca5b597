"""The lock file is opened without following a symlink and a file the
service did not create is never truncated (vmjobs.instance_lock): a
symlink at the lock path is refused and its target untouched; an existing
file that is not a lock file of ours is refused, unchanged. The positive
controls: a fresh path, and a file a previous instance left (empty, or a
stale PID), are taken, the PID written, and a second take refused."""

import os
import stat
import subprocess
import sys

import pytest

from serve import ROOT
from vmjobs.instance_lock import InstanceLock, InstanceLocked

SECRET = b"root:$6$secret:19000:0:99999:7:::\n"


def snapshot(path):
    info = os.stat(path)
    with open(path, "rb") as f:
        return f.read(), info.st_mtime_ns, info.st_size


def test_a_fresh_path_is_locked(tmp_path):
    path = tmp_path / "run" / "vmjobs.lock"
    with InstanceLock(str(path)):
        assert path.read_bytes() == f"{os.getpid()}\n".encode()
        with pytest.raises(InstanceLocked, match="another vmjobs"):
            InstanceLock(str(path))
    assert path.read_bytes() == b""
    with InstanceLock(str(path)):          # taken again once released
        pass


@pytest.mark.parametrize("left", [b"", b"4242\n"])
def test_what_a_previous_instance_left_is_taken(tmp_path, left):
    path = tmp_path / "vmjobs.lock"
    path.write_bytes(left)
    with InstanceLock(str(path)):
        assert path.read_bytes() == f"{os.getpid()}\n".encode()


def test_a_symlink_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "shadow"
    target.write_bytes(SECRET)
    before = snapshot(target)
    path = tmp_path / "vmjobs.lock"
    path.symlink_to(target)
    with pytest.raises(InstanceLocked, match="symlink"):
        InstanceLock(str(path))
    assert snapshot(target) == before
    # Even a symlink to what would be a fine lock file.
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    os.unlink(path)
    path.symlink_to(empty)
    with pytest.raises(InstanceLocked, match="symlink"):
        InstanceLock(str(path))
    # A dangling one is not followed to create its target either.
    os.unlink(path)
    path.symlink_to(tmp_path / "created-through-the-link")
    with pytest.raises(InstanceLocked, match="symlink"):
        InstanceLock(str(path))
    assert not (tmp_path / "created-through-the-link").exists()


def test_an_existing_file_not_ours_is_not_truncated(tmp_path):
    path = tmp_path / "vmjobs.lock"
    path.write_bytes(SECRET)
    before = snapshot(path)
    with pytest.raises(InstanceLocked, match="not a vmjobs lock file"):
        InstanceLock(str(path))
    assert snapshot(path) == before


def test_a_hard_link_is_not_truncated(tmp_path):
    target = tmp_path / "shadow"
    target.write_bytes(b"")        # looks like ours, but has two names
    path = tmp_path / "vmjobs.lock"
    os.link(target, path)
    with pytest.raises(InstanceLocked, match="hard links"):
        InstanceLock(str(path))
    assert target.read_bytes() == b""


def test_a_fifo_is_refused(tmp_path):
    path = tmp_path / "vmjobs.lock"
    os.mkfifo(path)
    with pytest.raises(InstanceLocked, match="not a regular file"):
        InstanceLock(str(path))


def test_serve_refuses_a_symlinked_lock_file(tmp_path):
    """`vmjobs serve` itself: a one-line refusal, the target untouched,
    nothing served."""
    target = tmp_path / "shadow"
    target.write_bytes(SECRET)
    before = snapshot(target)
    (tmp_path / "vmjobs.lock").symlink_to(target)
    result = subprocess.run(
        [sys.executable, "-m", "vmjobs", "serve", "--config", os.devnull,
         "--listen", f"unix:{tmp_path}/vmjobs.sock", "--state-dir",
         str(tmp_path), "--lock-file", str(tmp_path / "vmjobs.lock")],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 2, result
    assert "is a symlink" in result.stderr
    assert "serving on" not in result.stdout
    assert snapshot(target) == before
    assert not (tmp_path / "vmjobs.sock").exists()


def test_the_run_directory_is_private_once_the_lock_is_taken(run_dirs):
    """The instance lock is the first thing the service makes in its run
    directory (/run/vmjobs): that directory is the service's own, 0700,
    from then on, even when it was there more open (a tmpfs mounted over
    it is 1777), not only once the listener binds its socket there. The
    control: an existing directory elsewhere that a --lock-file names (it
    may be /tmp) is left as it is."""
    run, shared = run_dirs
    for directory, mode in ((run, 0o700), (shared, 0o755)):
        with InstanceLock(str(directory / "vmjobs.lock")):
            assert stat.S_IMODE(directory.stat().st_mode) == mode
