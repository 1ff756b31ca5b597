"""The domain XML the jobs not ended keep is bounded in all
(api.KEPT_XML_BYTES): a queued VM.create keeps its domain XML until it
ends, and the queue takes pool.queue_size (1,000) of them. A hostile-caller
audit, round 14, measured 8 MiB kept for each 4 MiB request (the engine's
XML and the composed one), 36 MiB with one emoji among ASCII (Python then
holds four bytes a character): 36 GB for a full queue. Past the bound a
verb is refused, ResourceExhausted (1100, "try again later"), and nothing
of it is staged; beside the controls: the same requests taken once the
jobs before them ended."""

import uuid

import vmjobs.api
from conftest import WAIT, StepGate, wait_job
from vmjobs.errors import NoVM, ResourceExhausted

BOUND = 1024 * 1024
TEXT = 300_000           # characters of <description> in each XML


def _xml(vm_id, text=""):
    return (f"<domain type='test'><name>v{vm_id[:8]}</name>"
            f"<uuid>{vm_id}</uuid><description>{text}</description>"
            "<memory unit='KiB'>65536</memory><os><type>hvm</type></os>"
            "</domain>")


def _create(api, text=""):
    vm_id = str(uuid.uuid4())
    return vm_id, api.VM.create(vm_id, {"vmId": vm_id,
                                        "xml": _xml(vm_id, text)})


def _refused(api, text):
    vm_id = str(uuid.uuid4())
    jobs = set(api.Host.getJobs())
    try:
        api.VM.create(vm_id, {"vmId": vm_id, "xml": _xml(vm_id, text)})
    except ResourceExhausted as exc:
        # Nothing of it staged, no job listed.
        try:
            api.VM.getStats(vm_id)
        except NoVM:
            pass
        else:
            raise AssertionError("a refused VM was staged")
        assert set(api.Host.getJobs()) == jobs
        return exc
    raise AssertionError("taken past the bound")


def test_queued_jobs_keep_at_most_the_bound(make_api, monkeypatch):
    monkeypatch.setattr(vmjobs.api, "KEPT_XML_BYTES", BOUND)
    gate = StepGate("define")
    api = make_api(workers=1, step_hook=gate)
    first, answer = _create(api)         # holds the one worker
    assert gate.reached.wait(WAIT)
    queued = []
    for _ in range(BOUND // TEXT):
        queued.append(_create(api, "x" * TEXT)[1]["jobId"])
    exc = _refused(api, "x" * TEXT)
    assert "try again later" in exc.message
    # What it counts is what the jobs keep.
    jobs = [gate.job] + [api.jobs.get(job_id) for job_id in queued]
    assert api.kept_xml.held == sum(j.kept_xml_bytes() for j in jobs)
    assert api.kept_xml.held <= BOUND
    gate.release.set()
    for job_id in [answer["jobId"]] + queued:
        assert wait_job(api, job_id)["status"] == "done"
    assert api.kept_xml.wait_held(0, WAIT)
    # The control: with the jobs ended, the same request is taken.
    _, answer = _create(api, "x" * TEXT)
    assert wait_job(api, answer["jobId"])["status"] == "done"
    assert api.kept_xml.wait_held(0, WAIT)


def test_what_python_keeps_is_counted(make_api, monkeypatch):
    """An XML of ASCII and one emoji is kept at four bytes a character:
    three times the bound's text is refused with it, taken without it."""
    monkeypatch.setattr(vmjobs.api, "KEPT_XML_BYTES", BOUND)
    api = make_api()
    text = "x" * (BOUND // 3)
    _refused(api, text + "\U0001F600")
    _, answer = _create(api, text + "x")       # the control
    assert wait_job(api, answer["jobId"])["status"] == "done"
    assert api.kept_xml.wait_held(0, WAIT)


def test_a_created_job_keeps_one_copy_of_its_xml(make_api):
    """The engine's XML is let go once the domain's is composed: a queued
    creation kept both (8 MiB for a 4 MiB request)."""
    gate = StepGate("define")
    api = make_api(workers=1, step_hook=gate)
    _create(api)
    assert gate.reached.wait(WAIT)
    try:
        _, answer = _create(api, "x" * TEXT)
        job = api.jobs.get(answer["jobId"])
        assert job.spec.xml is None
        assert TEXT < job.kept_xml_bytes() < TEXT + 10_000
    finally:
        gate.release.set()
