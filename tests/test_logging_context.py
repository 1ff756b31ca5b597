"""Every line of a job's work, the libvirt adapter's included, carries the
job id and the vm id; the file is concurrent-log-handler's."""

import logging

from concurrent_log_handler import ConcurrentRotatingFileHandler

from conftest import WAIT, new_id, vm_params
from vmjobs import logs


def test_job_lines_carry_job_and_vm_id(make_api, tmp_path):
    path = tmp_path / "vmjobs.log"
    handler = logs.configure(str(path), level="DEBUG")
    try:
        assert isinstance(handler, ConcurrentRotatingFileHandler)
        api = make_api()
        vm_id = new_id()
        failing = new_id()
        ok = api.VM.create(vm_id, vm_params(vm_id))
        bad = api.VM.create(failing, {"vmId": failing, "xml": (
            f"<domain type='test'><name>x</name><uuid>{failing}</uuid>"
            "<memory>65536</memory></domain>")})
        for created in (ok, bad):
            assert api.jobs.get(created["jobId"]).wait(WAIT)
        # A line from the adapter, logged in the worker thread, and one
        # from outside any job.
        logging.getLogger("vmjobs.hypervisor").info("outside any job")
    finally:
        logs.unconfigure(handler)
    lines = path.read_text().splitlines()
    for created, vm in ((ok, vm_id), (bad, failing)):
        tagged = [line for line in lines
                  if f"[job={created['jobId']} vm={vm}]" in line]
        assert tagged, f"no line tagged with job {created['jobId']}"
    assert any("committed Up" in line and vm_id in line for line in lines)
    assert any("failed" in line and f"vm={failing}" in line
               for line in lines)
    assert any("[job=- vm=-] outside any job" in line for line in lines)
