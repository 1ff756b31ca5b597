"""32 threads creating the same vmId at once: exactly one is accepted."""

import threading

import pytest

from conftest import WAIT, assert_quiet_and_clean, new_id, vm_params
from vmjobs.errors import VmExists

# The same contract in both publish modes (conftest.py).
pytestmark = pytest.mark.both_publish_modes

THREADS = 32


def test_same_vm_id_from_32_threads(make_api):
    api = make_api(workers=4)
    for _ in range(5):   # a few rounds, each its own race
        race_one_vm_id(api)
    assert len(api.Host.getVMList()) == 5
    assert len(api.Host.getJobs()) == 5
    assert_quiet_and_clean(api)


def race_one_vm_id(api):
    """THREADS creates of one new vmId at once: exactly one is accepted."""
    vm_id = new_id()
    barrier = threading.Barrier(THREADS)
    accepted, refused, other = [], [], []

    def create():
        barrier.wait(WAIT)
        try:
            accepted.append(api.VM.create(vm_id, vm_params(vm_id)))
        except VmExists as exc:
            refused.append(exc.code)
        except Exception as exc:  # noqa: BLE001 - reported below
            other.append(exc)

    threads = [threading.Thread(target=create) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert other == []
    assert len(accepted) == 1
    assert refused == [4] * (THREADS - 1)
    assert api.jobs.get(accepted[0]["jobId"]).wait(WAIT)
    assert api.VM.getStats(vm_id)["status"] == "Up"


def test_create_of_public_vm_is_refused(api):
    vm_id = new_id()
    job = api.VM.create(vm_id, vm_params(vm_id))
    assert api.jobs.get(job["jobId"]).wait(WAIT)
    try:
        api.VM.create(vm_id, vm_params(vm_id))
    except VmExists as exc:
        assert exc.code == 4
    else:
        raise AssertionError("a second create of a public VM was accepted")
    assert_quiet_and_clean(api)
