"""The events of a real migration between two hosts (two private
libvirtds, a `vmjobs serve` each): the source's stream shows the VM
Migration Source, then Down once it left; the destination's shows it
Migration Destination, then Up, before its job's done."""

from event_order import EventOrder
from realdaemon import WAIT
from test_real_migration_source import hosts  # noqa: F401 (a fixture)
from vmjobs.client import Client
from waits import Follower, statuses


def test_migration_events_on_both_hosts(hosts):  # noqa: F811
    a, b = hosts
    client_a, client_b = (Client(host.serve.address, timeout=WAIT)
                          for host in (a, b))
    # (Each stream is subscribed once events() returned.)
    on_a, on_b = Follower(client_a.events()), Follower(client_b.events())
    try:
        (vm_id,) = a.create(1)
        job_id = a.migrate(vm_id, b)
        assert a.wait_job(job_id)["status"] == "done"
        on_a.wait_status(vm_id, "Down", WAIT)
        on_b.wait_status(vm_id, "Up", WAIT)
        assert statuses(on_a.events, vm_id) == [
            "WaitForLaunch", "Up", "Migration Source", "Down"]
        assert statuses(on_b.events, vm_id) == [
            "Migration Destination", "Up"]
        for follower in (on_a, on_b):
            EventOrder().check_all(follower.events)
        assert b.call("VM.destroy", vmID=vm_id) is True
        on_b.wait_status(vm_id, "Down", WAIT)
    finally:
        client_a.close()
        client_b.close()
