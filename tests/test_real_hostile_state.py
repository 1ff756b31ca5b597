"""On the real daemon: a state file whose domain XML was rewritten (as
`virsh save-image-define` does) to pass arguments to QEMU or to give the
guest a host file is refused by the restore verb with -32602, before
anything runs, and the file is left as it was."""

import hashlib

import libvirt
import pytest

from conftest import new_id, our_domains
from realdaemon import WAIT, command_line, real_params
from vmjobs import domxml
from vmjobs.errors import InvalidParams

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"

EDITS = {
    "qemu-commandline": lambda xml, _: xml.replace(
        "<domain ", f"<domain xmlns:qemu='{QEMU_NS}' ", 1).replace(
        "</domain>", "<qemu:commandline><qemu:arg value='-S'/>"
        "</qemu:commandline></domain>"),
    "kernel-outside": lambda xml, victim: xml.replace(
        "</os>", f"<kernel>{victim}</kernel></os>"),
    # libvirt joins the text around the child: the kernel is the victim
    # (save-image-define takes no new device, so an rng cannot be added)
    "kernel-split-text": lambda xml, victim: xml.replace(
        "</os>", f"<kernel>{victim.parent}/<b/>{victim.name}</kernel>"
        "</os>"),
    "seclabel": lambda xml, _: xml.replace(
        "</devices>", "</devices><seclabel type='none'/>"),
}

# The legitimate edit beside them: a description, restored as usual.
CONTROL = lambda xml, _: xml.replace(    # noqa: E731
    "</name>", "</name><description>edited</description>", 1)


def hibernated(api, tmp_path):
    vm_id = new_id()
    assert finished(api, api.VM.create(vm_id, real_params(vm_id))[
        "jobId"])["status"] == "done"
    path = tmp_path / "vm.state"
    assert finished(api, api.VM.hibernate(vm_id, str(path))["jobId"])[
        "status"] == "done"
    return vm_id, path


def define_image(daemon, path, xml):
    conn = libvirt.open(daemon.uri)   # as virsh save-image-define would
    try:
        conn.saveImageDefineXML(str(path), xml, 0)
    finally:
        conn.close()


def test_legitimately_edited_state_file_is_restored(make_real_api, daemon,
                                                    tmp_path):
    """The control: the same edit path, with an edit the policy takes."""
    api = make_real_api()
    vm_id, path = hibernated(api, tmp_path)
    define_image(daemon, path, CONTROL(api.hv.saved_domain_xml(str(path)),
                                       None))
    assert "edited" in api.hv.saved_domain_xml(str(path))
    job = api.VM.create(vm_id, {"vmId": vm_id, "restoreState": str(path)})
    assert finished(api, job["jobId"])["status"] == "done"
    assert len(daemon.qemu_pids()) == 1
    assert api.VM.destroy(vm_id) is True


def test_a_state_file_rewritten_after_the_check_changes_nothing(
        make_real_api, daemon, tmp_path):
    """A state file rewritten between the verb's check and libvirt's
    restore (as `virsh save-image-define` does), to give the guest a host
    file as its kernel: libvirt restores with the XML that was judged,
    and QEMU never names the file. Before, libvirt read the XML from the
    file again at the restore (`restoreFlags(path, None)`)."""
    victim = tmp_path / "victim"
    victim.write_text("not for the guest")
    checked = []

    def rewrite(job, step):
        if job.job_type == "restore" and step == "restore":
            define_image(daemon, path, EDITS["kernel-outside"](checked[0],
                                                               victim))

    api = make_real_api(step_hook=rewrite)
    vm_id, path = hibernated(api, tmp_path)
    checked.append(api.hv.saved_domain_xml(str(path)))
    info = finished(api, api.VM.create(
        vm_id, {"vmId": vm_id, "restoreState": str(path)})["jobId"])
    assert str(victim) in api.hv.saved_domain_xml(str(path))  # rewritten
    assert info["status"] == "done", info
    assert str(victim) not in command_line(daemon.qemu_pids()[0])
    assert str(victim) not in api.hv.migratable_xml(vm_id)
    assert api.VM.destroy(vm_id) is True
    assert victim.read_text() == "not for the guest"


def finished(api, job_id):
    assert api.jobs.get(job_id).wait(WAIT)
    return api.Host.getJobs(job_ids=[job_id])[job_id]


@pytest.mark.parametrize("edit", EDITS)
def test_rewritten_state_file_is_refused(make_real_api, daemon, tmp_path,
                                         edit):
    api = make_real_api()
    vm_id, path = hibernated(api, tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("not for the guest")
    xml = api.hv.saved_domain_xml(str(path))
    conn = libvirt.open(daemon.uri)   # as virsh save-image-define would
    try:
        conn.saveImageDefineXML(str(path), EDITS[edit](xml, victim), 0)
    finally:
        conn.close()
    assert api.hv.saved_domain_xml(str(path)) != xml
    before = hashlib.sha256(path.read_bytes()).hexdigest()

    with pytest.raises(InvalidParams) as err:
        api.VM.create(vm_id, {"vmId": vm_id, "restoreState": str(path)})
    assert err.value.data == {"param": "restoreState"}
    assert api.jobs.jobs() and all(j.job_type != "restore"
                                   for j in api.jobs.jobs())
    assert our_domains(api.hv) == [] and daemon.qemu_pids() == []
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert victim.read_text() == "not for the guest"


def test_a_restore_cannot_grow_the_params_past_the_bound(make_real_api,
                                                         daemon, tmp_path):
    """Each restore adds its request's own keys to the VM's saved params:
    bounded as one request's (a hostile-caller audit grew a VM's params
    to 3.7 MB by hibernating and restoring, 56 KiB a turn, until
    Host.getAllVmStats failed for everyone). Refused: the job fails, the
    state file is untouched, nothing is left; the control, a restore
    adding a small key, brings the VM back. (On the real daemon: the test
    driver's state files hold 8 KiB of XML at most.)"""
    api = make_real_api()
    half = "A" * (domxml.MAX_PARAMS_BYTES // 2 + 100)
    vm_id = new_id()
    params = real_params(vm_id, first=half)
    assert finished(api, api.VM.create(vm_id, params)["jobId"])[
        "status"] == "done"
    path = tmp_path / "vm.state"
    assert finished(api, api.VM.hibernate(vm_id, str(path))["jobId"])[
        "status"] == "done"
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    info = finished(api, api.VM.create(vm_id, {
        "vmId": vm_id, "restoreState": str(path), "second": half})["jobId"])
    assert (info["status"], info["error"]["code"]) == ("failed", 9), info
    assert "more than 65536 bytes" in info["error"]["message"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert api.Host.getVMList() == [] and our_domains(api.hv) == []
    info = finished(api, api.VM.create(vm_id, {
        "vmId": vm_id, "restoreState": str(path), "small": 1})["jobId"])
    assert info["status"] == "done", info
    assert api.VM.getStats(vm_id)["params"] == {**params, "small": 1}
    assert api.VM.destroy(vm_id) is True

