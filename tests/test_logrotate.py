"""The shipped logrotate file (contrib/vmjobs.logrotate, in the package as
/etc/logrotate.d/vmjobs) and the service's own rotation at [log] max_bytes
(vmjobs.log.1 ... .N, concurrent-log-handler) keep apart: logrotate's
daily rotation writes dated names and never renames the service's
backups. Both numbered their files (an operator audit: logrotate's
renames put day 2 after day 3, and its 14 days were not what was kept).
Run by logrotate itself, on a scratch directory; the control is the same
file without dateext, which does rename them."""

import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHIPPED = (ROOT / "contrib" / "vmjobs.logrotate").read_text()


def rotate(tmp_path, conf_text):
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o700)
    conf = tmp_path / "vmjobs.logrotate"
    conf.write_text(conf_text.replace("/var/log/vmjobs", str(logs)))
    backups = {f"vmjobs.log.{n}": f"the service's backup {n}\n"
               for n in (1, 2)}
    for name, text in backups.items():
        (logs / name).write_text(text)
    (logs / "vmjobs.log").write_text("today\n")
    subprocess.run(["logrotate", "-f", "-s", str(tmp_path / "state"),
                    str(conf)], check=True, capture_output=True, timeout=60)
    return logs, backups


def test_logrotate_never_renames_the_services_backups(tmp_path):
    logs, backups = rotate(tmp_path, SHIPPED)
    for name, text in backups.items():
        assert (logs / name).read_text() == text
    dated = sorted(p.name for p in logs.iterdir()
                   if p.name.startswith("vmjobs.log-"))
    assert len(dated) == 1, sorted(p.name for p in logs.iterdir())
    assert (logs / dated[0]).read_text() == "today\n"
    assert (logs / "vmjobs.log").read_text() == ""   # made anew


def test_without_dated_names_they_collide(tmp_path):
    """The control: numbered, logrotate renames the service's files."""
    numbered = SHIPPED.replace("    dateext\n", "").replace(
        "    dateformat -%Y%m%d-%s\n", "")
    assert numbered != SHIPPED
    logs, backups = rotate(tmp_path, numbered)
    with pytest.raises(AssertionError):
        for name, text in backups.items():
            assert (logs / name).read_text() == text
