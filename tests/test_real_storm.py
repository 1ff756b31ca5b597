"""A storm on the real daemon: 50 tiny VMs through the verbs with a pool of
4, all Up, then all destroyed, and no QEMU process left."""

from conftest import new_id, our_domains
from realdaemon import WAIT, real_params

VMS = 50


def test_fifty_real_vms(make_real_api, daemon):
    api = make_real_api(workers=4)
    vm_ids = [new_id() for _ in range(VMS)]
    for vm_id in vm_ids:
        api.VM.create(vm_id, real_params(vm_id, memSize=32))
    assert api.pool.wait_idle(WAIT)
    jobs = api.Host.getJobs()
    failed = [i for i in jobs.values() if i["status"] != "done"]
    assert failed == []
    assert sorted(api.Host.getVMList()) == sorted(vm_ids)
    assert len(daemon.qemu_pids()) == VMS
    for vm_id in vm_ids:
        assert api.VM.destroy(vm_id) is True
    assert our_domains(api.hv) == []
    assert daemon.qemu_pids() == []
