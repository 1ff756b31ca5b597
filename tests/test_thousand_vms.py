"""1000 VMs created through the verbs with a pool of 4: all end Up and
public, every job done."""

from conftest import WAIT, assert_quiet_and_clean, new_id, vm_params

VMS = 1000


def test_thousand_vms_with_four_workers(make_api):
    api = make_api(workers=4, queue_size=VMS)
    vm_ids = [new_id() for _ in range(VMS)]
    for vm_id in vm_ids:
        assert api.VM.create(vm_id, vm_params(vm_id))["status"] == \
            "WaitForLaunch"
    assert api.pool.wait_idle(WAIT * 5)
    jobs = api.Host.getJobs()
    assert len(jobs) == VMS
    assert {info["status"] for info in jobs.values()} == {"done"}
    assert sorted(api.Host.getVMList()) == sorted(vm_ids)
    assert {s["status"] for s in api.Host.getAllVmStats()} == {"Up"}
    stats = api.Host.getStats()
    assert (stats["public"], stats["staged"], stats["jobs_done"]) == \
        (VMS, 0, VMS)
    assert_quiet_and_clean(api)
    for vm_id in vm_ids:
        api.VM.destroy(vm_id)
    assert api.Host.getVMList() == []
    assert_quiet_and_clean(api)
