"""VM.create makes four libvirt requests per VM: the UUID looked up
(there must be no domain), define, then create and the state check on
the handle define returned (docs/benchmarks.md, section 20, says why
these four and not fewer). Counted on the test driver's real connection
(every call made on it and on the domains it hands out), at two sizes of
host: the count per VM does not grow with the host either."""

import pytest

from conftest import WAIT, new_id, vm_params
from libvirt_counting import counting_open
from vmjobs.api import API
from vmjobs.config import Config
from vmjobs.hypervisor import Hypervisor, connections

# Look up (NO_DOMAIN), define, create, state.
CALLS_PER_VM = 4
# The test driver refuses to start a domain paused: create, then suspend.
CALLS_PER_PAUSED_VM = CALLS_PER_VM + 1


def create_calls(monkeypatch, vms, paused):
    """The libvirt calls made by `vms` VM.create (after as many already
    made), counted from the first request to the last job's end."""
    counters = []
    with monkeypatch.context() as patch:
        patch.setattr(connections.libvirt, "open", counting_open(counters))
        hv = Hypervisor()
    with hv, API(Config(workers=2, queue_size=2 * vms),
                 hypervisor=hv) as api:
        assert api.wait_recovered(WAIT)
        for _ in range(vms):
            vm_id = new_id()
            api.VM.create(vm_id, vm_params(vm_id))
        assert api.pool.wait_idle(WAIT)
        (counter,) = counters
        before = counter.calls
        ids = [new_id() for _ in range(vms)]
        for vm_id in ids:
            api.VM.create(vm_id, vm_params(vm_id, launchPaused=paused))
        assert api.pool.wait_idle(WAIT)
        calls = counter.calls - before
        expected = "Paused" if paused else "Up"
        assert [api.VM.getStats(v)["status"] for v in ids] == \
            [expected] * vms
        return calls


@pytest.mark.parametrize("paused", [False, True], ids=["up", "paused"])
def test_create_makes_four_calls_per_vm(monkeypatch, paused):
    per_vm = CALLS_PER_PAUSED_VM if paused else CALLS_PER_VM
    for vms in (5, 100):
        assert create_calls(monkeypatch, vms, paused) == per_vm * vms
