"""On the real daemon, where the harm would show: libvirt's `ext`
transport makes the host's libvirtd run a program of the caller's choice
as root. Asked directly (not through vmjobs), the private libvirtd runs it
(the control: the hole is real); through VM.migrate the same dstUri is
refused with -32602 before anything runs: the program never runs, no job
is queued and the guest keeps running here. The legitimate form (TLS
transport) is accepted beside it."""

import libvirt
import pytest

from conftest import new_id, wait_job
from realdaemon import real_params
from vmjobs.errors import InvalidParams

FLAGS = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER


@pytest.fixture
def program(tmp_path):
    """A program that leaves a mark when it runs."""
    mark = tmp_path / "ran"
    path = tmp_path / "program.sh"
    path.write_text(f"#!/bin/sh\ntouch {mark}\n")
    path.chmod(0o755)
    return path, mark


def test_ext_transport_runs_a_program_unless_refused(make_real_api, daemon,
                                                     program):
    path, mark = program
    uri = f"qemu+ext://b.example/system?command={path}"
    api = make_real_api()
    vm_id = new_id()
    assert wait_job(api, api.VM.create(vm_id, real_params(vm_id))[
        "jobId"])["status"] == "done"

    with pytest.raises(InvalidParams) as err:
        api.VM.migrate(vm_id, {"dst": "127.0.0.1:9", "dstUri": uri})
    assert err.value.data == {"param": "dstUri"}
    assert not mark.exists()
    assert api.Host.getJobs(job_type="migration-source") == {}
    assert api.VM.getStats(vm_id)["status"] == "Up"

    # The positive control: the legitimate form is accepted (its job
    # fails: nobody listens at dst), and the guest is still Up.
    job_id = api.VM.migrate(vm_id, {
        "dst": "b.example:9", "dstUri": "qemu+tls://b.example/system"})[
        "jobId"]
    assert wait_job(api, job_id)["status"] == "failed"
    assert api.VM.getStats(vm_id)["status"] == "Up"
    assert not mark.exists()

    # The control: asked directly, libvirtd runs the program.
    conn = libvirt.open(daemon.uri)
    try:
        dom = conn.lookupByUUIDString(vm_id)
        with pytest.raises(libvirt.libvirtError):
            dom.migrateToURI3(uri, {}, FLAGS)
    finally:
        conn.close()
    assert mark.exists(), "the private libvirtd did not run the program"
    assert api.VM.destroy(vm_id) is True
