"""What the command line prints from the server reaches no terminal raw:
a job's error (which may echo what a caller sent, through libvirt) has its
control characters escaped in `vmjobs jobs`' table, so an escape sequence
or a newline cannot clear the screen or forge a row. A plain message is
shown as it is (the positive control)."""

from vmjobs.cli_call import job_table
from vmjobs.cli_events import line
from vmjobs.notifications import JOB_STATUS, VM_STATUS, Notification


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


def test_an_event_line_cannot_drive_the_terminal():
    """`vmjobs events` prints what a server sent: a job's error set by a
    hostile migration destination (a hostile-caller audit saw the title
    set, the screen cleared and a line forged), a status, a vmId."""
    job_id, vm_id = "j1", "v\x1b[31m"
    hostile = Notification(1, JOB_STATUS + job_id, {job_id: {
        "id": job_id, "job_type": "migration-source", "status": "failed",
        "step": "prepare-destination\x1b[2J", "vm_id": vm_id,
        "error": {"code": 12, "message": "\x1b]0;PWNED\x07\x1b[2J\x1b[H"
                  "fake\nforged line"}}}, 0.0)
    printed = line(hostile)
    assert "\x1b" not in printed and "\n" not in printed
    assert "\x07" not in printed
    assert "\\x1b]0;PWNED\\x07\\x1b[2J\\x1b[H" "fake\\nforged line" in printed
    staged = Notification(2, VM_STATUS + vm_id, {vm_id: {
        "vmId": vm_id, "status": "Up\r", "staging": False}}, 0.0)
    assert line(staged).endswith("VM v\\x1b[31m Up\\r")
    # The control: a plain event as it is.
    plain = Notification(3, VM_STATUS + "v2", {"v2": {
        "vmId": "v2", "status": "Up", "staging": False}}, 0.0)
    assert line(plain).endswith("event 3: VM v2 Up")
