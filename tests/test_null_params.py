"""null for a key vmjobs reads inside a verb's params object (VM.create's
vmParams, VM.migrationCreate's and VM.migrate's params) is that key not
given, as null for a verb's own optional param is (docs/api.md): an
optional key takes its default, a required one is MissParam (11). A value
of another type is still malformed (-32602)."""

import pytest

from conftest import new_id, vm_params, wait_job
from vmjobs.errors import InvalidParams, MissParam, NoVM

TLS_DST = {"dst": "dst.example:4444", "dstUri": "qemu+tls://dst.example/system"}


@pytest.mark.parametrize("key", ["launchPaused", "smp", "xml",
                                 "restoreState"])
def test_null_optional_create_key_takes_its_default(api, key):
    vm_id = new_id()
    params = vm_params(vm_id, **{key: None})
    answer = api.VM.create(vmID=vm_id, vmParams=params)
    assert answer["status"] == "WaitForLaunch"
    assert wait_job(api, answer["jobId"])["status"] == "done"
    stats = api.VM.getStats(vmID=vm_id)
    assert stats["status"] == "Up"          # not launched paused
    assert key not in stats["params"]       # no null kept for it
    assert ">1</vcpu>" in api.hv.domain_xml(vm_id)   # smp's default


@pytest.mark.parametrize("key", ["vmId", "vmName", "memSize"])
def test_null_required_create_key_is_miss_param(api, key):
    vm_id = new_id()
    with pytest.raises(MissParam) as err:
        api.VM.create(vmID=vm_id, vmParams=vm_params(vm_id, **{key: None}))
    assert err.value.code == 11 and key in err.value.message
    assert api.Host.getJobs() == {}


@pytest.mark.parametrize(("key", "value"), [("launchPaused", "true"),
                                            ("smp", "2"), ("smp", 0),
                                            ("memSize", "64")])
def test_a_value_of_another_type_is_still_malformed(api, key, value):
    vm_id = new_id()
    with pytest.raises(InvalidParams) as err:
        api.VM.create(vmID=vm_id, vmParams=vm_params(vm_id, **{key: value}))
    assert err.value.data == {"param": key}
    assert api.Host.getJobs() == {}


def test_null_migration_create_xml_is_miss_param(api):
    vm_id = new_id()
    with pytest.raises(MissParam) as err:
        api.VM.migrationCreate(vmID=vm_id,
                               params={"vmId": vm_id, "xml": None})
    assert "'xml'" in err.value.message
    assert api.Host.getJobs() == {}


@pytest.mark.parametrize("key", ["vmId", "migrationUri", "timeout",
                                 "maxBandwidth"])
def test_null_optional_migrate_key_is_not_given(api, key):
    # Every parameter passes: the VM not being here is what is answered.
    with pytest.raises(NoVM):
        api.VM.migrate(vmID=new_id(), params=dict(TLS_DST, **{key: None}))


@pytest.mark.parametrize("key", ["dst", "dstUri"])
def test_null_required_migrate_key_is_miss_param(api, key):
    with pytest.raises(MissParam) as err:
        api.VM.migrate(vmID=new_id(), params=dict(TLS_DST, **{key: None}))
    assert key in err.value.message


@pytest.mark.parametrize(("key", "value"), [("maxBandwidth", 0),
                                            ("timeout", "5"),
                                            ("vmId", "not-a-uuid")])
def test_a_malformed_migrate_key_is_still_refused(api, key, value):
    with pytest.raises(InvalidParams) as err:
        api.VM.migrate(vmID=new_id(), params=dict(TLS_DST, **{key: value}))
    assert err.value.data == {"param": key}
