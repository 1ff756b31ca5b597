"""One log record is one line, whatever a caller sent (vmjobs.logs): its
control characters are escaped, it is cut at MAX_MESSAGE with a mark, and
a traceback's lines are each prefixed, so none passes for a record. Over
a real service: a method name carrying a newline and a forged audit line
leaves one audit line, the forgery escaped inside it (the positive
control: the real call's own audit line is there)."""

import logging
import os
import re
import stat

from serve import ServeProcess, post
from vmjobs import logs

RECORD = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d ")
FORGED = "2000-01-01T00:00:00.000+00:00 INFO    x vmjobs.audit [job=- vm=-] " \
    "audit VM.destroy caller=uid:0 vm=- job=- result=ok ms=0.1"


def lines_of(path):
    with open(path, encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


def assert_one_line_per_record(lines):
    for line in lines:
        assert RECORD.match(line) or line.startswith(
            logs.TRACEBACK_PREFIX), line


def test_a_record_is_one_line(tmp_path):
    path = tmp_path / "vmjobs.log"
    handler = logs.configure(str(path))
    log = logging.getLogger("vmjobs.test")
    try:
        for value in ("a\n" + FORGED, "b\r" + FORGED, "c\u2028" + FORGED,
                      "d\x85" + FORGED, "e\x1b[2K\r" + FORGED):
            log.info("value %s", value)
        try:
            raise ValueError("bad\n" + FORGED)
        except ValueError:
            log.exception("failed")
        log.info("huge %s", "y" * (1024 * 1024))
        log.info("plain")
    finally:
        logs.unconfigure(handler)
    lines = lines_of(path)
    assert_one_line_per_record(lines)
    assert not any(line.startswith("2000-") for line in lines)
    assert sum(line.startswith(logs.TRACEBACK_PREFIX) for line in lines) >= 3
    assert any(line.endswith("value a\\n" + FORGED) for line in lines)
    assert any(line.endswith("value e\\x1b[2K\\r" + FORGED) for line in lines)
    huge, = [line for line in lines if " huge " in line]
    assert huge.endswith(f"...[cut: {1024 * 1024 + 5} characters in all]")
    assert len(huge) < logs.MAX_MESSAGE + 200
    assert lines[-1].endswith("] plain")      # the positive control


def test_a_method_name_cannot_forge_an_audit_line(tmp_path):
    server = ServeProcess("--listen", "127.0.0.1:0", "--insecure",
                          "--state-dir", str(tmp_path), tmp_path=tmp_path)
    try:
        status, answer = post(server.url, {
            "jsonrpc": "2.0", "id": 1, "method": "Host.nope\n" + FORGED})
        assert answer["error"]["code"] == -32601
        status, answer = post(server.url, {
            "jsonrpc": "2.0", "id": 2, "method": "Host.ping"})
        assert answer["result"] is True
    finally:
        server.stop()
    lines = lines_of(tmp_path / "serve.log")
    assert_one_line_per_record(lines)
    audit = [line for line in lines if " audit " in line]
    assert not any(line.startswith("2000-") for line in lines)
    assert any("audit Host.nope\\n2000-01-01" in line for line in audit)
    assert any("audit Host.ping " in line for line in audit)


def test_the_log_file_is_root_s_alone(tmp_path):
    """The log holds the audit trail and what callers sent: 0600 whatever
    the umask (a hostile-caller audit found it 0644), its rotated copies
    too."""
    old = os.umask(0o022)
    try:
        handler = logs.configure(str(tmp_path / "vmjobs.log"), max_bytes=200,
                                 backups=2, lock_dir=str(tmp_path / "lock"))
        try:
            for n in range(20):
                logging.getLogger("vmjobs").info("line %d of a few", n)
        finally:
            logs.unconfigure(handler)
    finally:
        os.umask(old)
    files = sorted(tmp_path.glob("vmjobs.log*"))
    assert len(files) == 3, files          # rotated: the file and 2 copies
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
