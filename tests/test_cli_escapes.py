"""What the command line prints from the server reaches no terminal raw:
a job's error (which may echo what a caller sent, through libvirt) has its
control characters escaped in `vmjobs jobs`' table, so an escape sequence
or a newline cannot clear the screen or forge a row. A plain message is
shown as it is (the positive control)."""

from vmjobs.cli_call import job_table


def info(job_id, message):
    return {"id": job_id, "job_type": "create", "vm_id": "-",
            "status": "failed", "step": "define", "created": 0.0,
            "error": {"code": 9, "message": message}}


def test_a_job_error_cannot_drive_the_terminal():
    table = job_table({
        "a": info("a", "libvirt: bad value '\x1b[2J\x1b[H'\nb  create  -  "
                  "done  commit  0s"),
        "b": info("b", "libvirt: no such file")}, now=0.0)
    lines = table.split("\n")
    assert len(lines) == 3                     # the header and two jobs
    assert "\x1b" not in table
    assert "bad value '\\x1b[2J\\x1b[H'\\nb  create" in lines[1]
    assert lines[2].endswith("libvirt: no such file")
