"""Host.getStats costs one libvirt listing, plus the calls of the
domains that are not VMs of ours, whatever the number of the host's VMs
and jobs: counted on the test driver's real connection (every call made
on it, and on the domains it hands out), at two sizes of host."""

import uuid

from conftest import WAIT, new_id, vm_params
from libvirt_counting import counting_open
from vmjobs.api import API
from vmjobs.config import Config
from vmjobs.hypervisor import Hypervisor, connections

EXTERNAL = 3


def stats_calls(monkeypatch, vms):
    """(Host.getStats' answer, the libvirt calls it made) on a host of
    `vms` public VMs, EXTERNAL domains of another tool and one stopped
    domain of ours."""
    counters = []
    with monkeypatch.context() as patch:
        patch.setattr(connections.libvirt, "open", counting_open(counters))
        hv = Hypervisor()
    with hv, API(Config(workers=2, queue_size=vms + 1),
                                 hypervisor=hv) as api:
        assert api.wait_recovered(WAIT)
        for i in range(EXTERNAL):
            hv.shared_connection.defineXML(
                f"<domain type='test'><name>other-{i}</name>"
                f"<uuid>{uuid.uuid4()}</uuid><memory unit='MiB'>64</memory>"
                "<os><type>hvm</type></os></domain>")
        ids = [new_id() for _ in range(vms + 1)]
        for vm_id in ids:
            api.VM.create(vm_id, vm_params(vm_id))
        assert api.pool.wait_idle(WAIT)
        # One of ours stopped: destroyed through the verbs, then defined
        # back (stopped) by another client.
        xml = hv.shared_connection.lookupByUUIDString(ids[-1]).XMLDesc(0)
        assert api.VM.destroy(ids[-1]) is True
        hv.shared_connection.defineXML(xml)
        (counter,) = counters
        before = counter.calls
        stats = api.Host.getStats()
        return stats, counter.calls - before


def test_get_stats_makes_no_call_per_vm_of_ours(monkeypatch):
    small, small_calls = stats_calls(monkeypatch, 5)
    large, large_calls = stats_calls(monkeypatch, 200)
    for stats, vms in ((small, 5), (large, 200)):
        assert stats["public"] == vms
        assert stats["external_domains"] == EXTERNAL
        assert stats["stopped_domains"] == 1
    # The same requests at 5 VMs as at 200: the listing, the states of
    # the 4 domains that are not public VMs (one request), and their
    # metadata (libvirt gives it one domain at a time).
    assert small_calls == large_calls == 1 + 1 + (EXTERNAL + 1)
