"""The service runs as root with what its configuration says: a file (or
a conf.d file, or the directory it is in) that another user may change is
refused, naming the file and what to do, before anything starts; root's
own file is read (the positive control)."""

import os
import subprocess
import sys

import pytest

from serve import ROOT
from vmjobs import config

TEXT = "[pool]\nworkers = 3\n"


def vmjobs(*args):
    return subprocess.run([sys.executable, "-m", "vmjobs", *args],
                          capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)


@pytest.fixture
def conf(tmp_path):
    directory = tmp_path / "etc"
    directory.mkdir(mode=0o755)
    path = directory / "vmjobs.conf"
    path.write_text(TEXT)
    path.chmod(0o644)
    return path


def test_a_private_file_is_read(conf):
    assert config.load(str(conf)).workers == 3
    result = vmjobs("config", "--config", str(conf))
    assert result.returncode == 0, result.stderr
    assert "workers = 3" in result.stdout


@pytest.mark.parametrize("mode", [0o666, 0o646])
def test_a_file_others_may_write_is_refused(conf, mode):
    conf.chmod(mode)
    with pytest.raises(config.ConfigError, match="writable by every user"):
        config.load(str(conf))
    result = vmjobs("serve", "--config", str(conf), "--listen",
                    "127.0.0.1:0", "--insecure")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(conf) in lines[0] and "chmod go-w" in lines[0]
    assert "serving" not in result.stdout


def test_a_file_of_another_user_is_refused(conf):
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    os.chown(conf, 65534, -1)
    with pytest.raises(config.ConfigError, match="owned by uid 65534"):
        config.load(str(conf))


def test_a_group_writable_file_of_another_group_is_refused(conf):
    if os.geteuid() != 0:
        pytest.skip("chgrp needs root")
    conf.chmod(0o664)
    os.chown(conf, -1, 0)
    assert config.load(str(conf)).workers == 3     # root's group: fine
    os.chown(conf, -1, 65534)
    with pytest.raises(config.ConfigError, match="writable by group 65534"):
        config.load(str(conf))


def test_a_conf_d_in_a_directory_others_may_write_is_refused(conf):
    extras = conf.parent / "vmjobs.conf.d"
    extras.mkdir()
    (extras / "10-local.conf").write_text("[pool]\nqueue_size = 7\n")
    (extras / "10-local.conf").chmod(0o644)
    extras.chmod(0o755)
    assert config.load_default(str(conf)).queue_size == 7
    extras.chmod(0o777)   # anyone may drop a file here
    with pytest.raises(config.ConfigError, match="a directory writable"):
        config.load_default(str(conf))
    extras.chmod(0o1777)  # sticky: others cannot replace root's file
    assert config.load_default(str(conf)).queue_size == 7


def test_dev_null_is_an_empty_configuration():
    assert config.load(os.devnull) == config.Config()
