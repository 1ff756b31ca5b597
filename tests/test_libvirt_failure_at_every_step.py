"""A libvirt failure at every call of the creation flow: the job ends
failed with createErr (9) and libvirt's message, and nothing is left in
libvirt or in either registry."""

import pytest

from conftest import WAIT, assert_quiet_and_clean, new_id, our_domains, vm_params
from faults import FaultyHypervisor


def calls_of_a_clean_create(make_api, hypervisor, paused):
    faulty = FaultyHypervisor(hypervisor)
    api = make_api(hv=faulty)
    faulty.arm(None)
    vm_id = new_id()
    created = api.VM.create(vm_id, vm_params(vm_id, launchPaused=paused))
    assert api.jobs.get(created["jobId"]).wait(WAIT)
    assert api.VM.getStats(vm_id)["status"] == ("Paused" if paused else "Up")
    api.VM.destroy(vm_id)
    return faulty.calls[:faulty.calls.index("remove")]


@pytest.mark.parametrize("paused", [False, True], ids=["up", "paused"])
def test_failure_at_every_call(make_api, hypervisor, paused):
    calls = calls_of_a_clean_create(make_api, hypervisor, paused)
    assert calls == ["state", "define", "start", "state"]
    for n, call in enumerate(calls, start=1):
        faulty = FaultyHypervisor(hypervisor)
        api = make_api(hv=faulty)
        faulty.arm(n)
        vm_id = new_id()
        created = api.VM.create(vm_id, vm_params(vm_id, launchPaused=paused))
        assert api.jobs.get(created["jobId"]).wait(WAIT)
        info = api.Host.getJobs()[created["jobId"]]
        assert faulty.failed == call
        assert info["status"] == "failed", (n, call, info)
        assert info["error"]["code"] == 9
        assert f"injected fault in {call}" in info["error"]["message"]
        assert our_domains(hypervisor) == []
        assert api.Host.getVMList() == []
        assert_quiet_and_clean(api)
        api.close()


def test_domain_refused_by_libvirt(api):
    # A real refusal: the test driver insists on <os><type>hvm</type></os>.
    vm_id = new_id()
    xml = (f"<domain type='test'><name>no-os</name><uuid>{vm_id}</uuid>"
           "<memory unit='MiB'>64</memory></domain>")
    created = api.VM.create(vm_id, {"vmId": vm_id, "xml": xml})
    assert api.jobs.get(created["jobId"]).wait(WAIT)
    info = api.Host.getJobs()[created["jobId"]]
    assert info["status"] == "failed"
    assert info["step"] == "define"
    assert info["error"]["code"] == 9
    assert "libvirt error" in info["error"]["message"]
    assert_quiet_and_clean(api)


def test_domain_uuid_taken_by_a_foreign_domain(api):
    """A domain we did not make is never redefined, nor removed."""
    vm_id = new_id()
    api.hv.shared_connection.defineXML(
        f"<domain type='test'><name>foreign</name><uuid>{vm_id}</uuid>"
        "<memory unit='MiB'>64</memory><os><type>hvm</type></os></domain>")
    created = api.VM.create(vm_id, vm_params(vm_id))
    assert api.jobs.get(created["jobId"]).wait(WAIT)
    info = api.Host.getJobs()[created["jobId"]]
    assert (info["status"], info["step"]) == ("failed", "prepare")
    assert info["error"]["code"] == 9
    assert api.hv.state(vm_id) == "shutoff"   # still there, untouched
    assert api.registry.snapshot()[0] == [] and api.Host.getVMList() == []
