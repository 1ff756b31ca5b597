"""A few large requests cannot flush the audit trail (README, Security):
with the default log rotation (log.max_bytes 20 MiB, 5 backups), 30
requests of nearly 4 MiB (rpc.max_request_bytes), each echoing its value
in an error, leave 30 audit lines of a few KiB, and the audit line of a
call made before them is still in the log. (Each audit line is bounded:
before, each echoed its 4 MiB, and 30 of them rotated every earlier line
out of the log and its backups.)"""

import glob
import uuid

from serve import ServeProcess, post

BIG = 4 * 1024 * 1024 - 4096        # under rpc.max_request_bytes


def log_text(tmp_path):
    text = ""
    for path in sorted(glob.glob(str(tmp_path / "serve.log*"))):
        with open(path, encoding="utf-8") as f:
            text += f.read()
    return text


def test_large_requests_do_not_flush_the_audit_trail(tmp_path):
    server = ServeProcess("--listen", "127.0.0.1:0", "--insecure",
                          "--state-dir", str(tmp_path), tmp_path=tmp_path)
    marker = str(uuid.uuid4())
    try:
        _, answer = post(server.url, {"jsonrpc": "2.0", "id": 1,
                                      "method": "VM.getStats",
                                      "params": [marker]})
        assert answer["error"]["code"] == 1          # noVM: audited
        for i in range(30):
            # An unknown method of 4 MiB, and a vmID of 4 MiB that the
            # error message echoes.
            request = {"jsonrpc": "2.0", "id": i, "method": "x" * BIG} \
                if i % 2 else {"jsonrpc": "2.0", "id": i,
                               "method": "VM.destroy",
                               "params": ["y" * BIG]}
            status, answer = post(server.url, request, timeout=120)
            assert answer["error"]["code"] in (-32601, -32602), answer
    finally:
        server.stop()
    text = log_text(tmp_path)
    audit = [line for line in text.split("\n") if " audit " in line]
    assert any(f"vm={marker}" in line for line in audit)
    big = [line for line in audit if "xxxx" in line or "yyyy" in line]
    assert len(big) == 30                       # the positive control
    assert max(map(len, big)) < 4096
    assert len(text) < 1024 * 1024
