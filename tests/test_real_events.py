"""The events of a real migration between two hosts (two private
libvirtds, a `vmjobs serve` each): the source's stream shows the VM
Migration Source, then Down once it left; the destination's shows it
Migration Destination, then Up, before its job's done."""

import threading

from event_order import EventOrder
from realdaemon import WAIT
from test_real_migration_source import hosts  # noqa: F401 (a fixture)
from vmjobs.client import Client
from vmjobs.notifications import VM_STATUS


class Follower(threading.Thread):
    def __init__(self, address):
        super().__init__(daemon=True)
        self.client = Client(address, timeout=WAIT)
        self.stream = self.client.events()   # subscribed once it answers
        self.events = []
        self.changed = threading.Condition()
        self.start()

    def run(self):
        try:
            for notification in self.stream:
                with self.changed:
                    self.events.append(notification)
                    self.changed.notify_all()
        except Exception:
            pass   # closed by the test

    def statuses(self, vm_id):
        return [e.params[vm_id]["status"] for e in list(self.events)
                if e.method == VM_STATUS + vm_id]

    def wait_status(self, vm_id, status):
        with self.changed:
            assert self.changed.wait_for(
                lambda: status in self.statuses(vm_id), WAIT), \
                self.statuses(vm_id)


def test_migration_events_on_both_hosts(hosts):  # noqa: F811
    a, b = hosts
    on_a, on_b = Follower(a.serve.address), Follower(b.serve.address)
    try:
        (vm_id,) = a.create(1)
        job_id = a.migrate(vm_id, b)
        assert a.wait_job(job_id)["status"] == "done"
        on_a.wait_status(vm_id, "Down")
        on_b.wait_status(vm_id, "Up")
        assert on_a.statuses(vm_id) == ["WaitForLaunch", "Up",
                                        "Migration Source", "Down"]
        assert on_b.statuses(vm_id) == ["Migration Destination", "Up"]
        for follower in (on_a, on_b):
            EventOrder().check_all(follower.events)
        assert b.call("VM.destroy", vmID=vm_id) is True
        on_b.wait_status(vm_id, "Down")
    finally:
        on_a.client.close()
        on_b.client.close()
