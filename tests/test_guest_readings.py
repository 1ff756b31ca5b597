"""How the registry takes a reading of a guest's state made outside any
job (guests.py): only for the public VM record it was read for, so that a
job claiming the VM meanwhile, or a VM made again with the same id, keeps
its status; and when a public VM becomes nobody's job's, the follower is
told (its commit, the end of a claim), never under the registry's lock.
(The readings themselves, on a real daemon: test_real_guest_changes.py.)"""

import sys

from conftest import new_id
from vmjobs.notifications import VM_STATUS, Notifications
from vmjobs.registry import VmRegistry, VmStatus


class Holder:
    """A job or a destroy working on a VM: the registry knows only its
    identity."""


def registry_and_feed():
    feed = Notifications()
    registry = VmRegistry(notifications=feed)
    told = []

    def on_idle(vm_id):
        # Called outside the registry's lock: the registry answers here.
        registry.counts()
        told.append(vm_id)

    registry.on_idle = on_idle
    return registry, feed, told


def up(registry, vm_id):
    job = Holder()
    registry.stage(vm_id, VmStatus.WAIT_FOR_LAUNCH, {}, job)
    registry.commit(vm_id, VmStatus.UP, job)


def statuses(subscription, vm_id):
    return [e.params[vm_id]["status"] for e in subscription.get(0) or []
            if e.method == VM_STATUS + vm_id]


def test_a_reading_is_taken_and_a_stopped_guest_leaves():
    registry, feed, told = registry_and_feed()
    vm_id = new_id()
    up(registry, vm_id)
    assert told == [vm_id]   # its commit
    with feed.subscribe() as subscription:
        registry.guest_changed(vm_id, registry.idle(vm_id), VmStatus.PAUSED)
        assert registry.get(vm_id).status == VmStatus.PAUSED
        registry.guest_changed(vm_id, registry.idle(vm_id), VmStatus.PAUSED)
        registry.guest_changed(vm_id, registry.idle(vm_id), VmStatus.DOWN)
        assert statuses(subscription, vm_id) == ["Paused", "Down"]
    assert registry.idle(vm_id) is None
    assert registry.counts() == {"staged": 0, "public": 0}


def test_a_reading_of_a_vm_claimed_meanwhile_is_not_taken():
    registry, feed, told = registry_and_feed()
    vm_id = new_id()
    up(registry, vm_id)
    seen = registry.idle(vm_id)
    hibernation = Holder()
    registry.claim(vm_id, VmStatus.SAVING_STATE, hibernation)
    assert registry.idle(vm_id) is None
    assert registry.idle_ids() == []
    registry.guest_changed(vm_id, seen, VmStatus.DOWN)
    assert registry.get(vm_id).status == VmStatus.SAVING_STATE
    registry.end_claim(vm_id, hibernation)
    assert told == [vm_id, vm_id]   # its commit, its claim's end
    # The record changed at the claim: the old reading stays refused.
    registry.guest_changed(vm_id, seen, VmStatus.DOWN)
    assert registry.get(vm_id).status == VmStatus.UP
    assert registry.idle_ids() == [vm_id]


def test_a_late_reading_of_a_vm_made_again_is_not_taken():
    registry, feed, told = registry_and_feed()
    vm_id = new_id()
    up(registry, vm_id)
    old = registry.idle(vm_id)
    destruction = Holder()
    registry.claim(vm_id, VmStatus.UP, destruction)
    registry.drop_claimed(vm_id, destruction)
    up(registry, vm_id)   # the same id, a new VM
    registry.guest_changed(vm_id, old, VmStatus.DOWN)
    assert registry.get(vm_id).status == VmStatus.UP
    registry.guest_changed(vm_id, registry.idle(vm_id), VmStatus.PAUSED)
    assert registry.get(vm_id).status == VmStatus.PAUSED


def test_only_commits_and_claims_ends_tell_the_follower():
    registry, feed, told = registry_and_feed()
    rolled_back, claimed = new_id(), new_id()
    job = Holder()
    registry.stage(rolled_back, VmStatus.WAIT_FOR_LAUNCH, {}, job)
    assert registry.unstage(rolled_back, job) is True
    up(registry, claimed)
    destruction = Holder()
    registry.claim(claimed, VmStatus.UP, destruction)
    registry.end_claim(claimed, Holder())   # not its claimer: nothing
    registry.drop_claimed(claimed, destruction)
    assert told == [claimed]   # its commit only


def test_a_follower_gone_meanwhile_is_not_called():
    # A stop ends the guest watch (GuestWatch.close sets on_idle to None,
    # from its thread) while a VM.destroy on a kept connection gives its
    # claim back: the registry looked at on_idle, then read it again to
    # call it, and called None (a TypeError: the destroy answered it, a
    # GeneralException, in place of its own failure).
    # The stop's write is made here between the two (a trace function on
    # the releasing thread, at the second line of the hand-over).
    registry, feed, told = registry_and_feed()
    vm_id = new_id()
    up(registry, vm_id)
    destruction = Holder()
    registry.claim(vm_id, VmStatus.UP, destruction)
    lines = []

    def trace(frame, event, arg):
        if frame.f_code is not VmRegistry._now_idle.__code__:
            return None

        def line(frame, event, arg):
            if event == "line":
                lines.append(frame.f_lineno)
                if len(lines) == 2:
                    registry.on_idle = None   # the stop, meanwhile
            return line
        return line
    sys.settrace(trace)
    try:
        registry.end_claim(vm_id, destruction)
    finally:
        sys.settrace(None)
    assert len(lines) >= 2, "the interleaving was not forced"
    # Its commit, then the claim's end: the follower it read before the stop
    # (a closed watch only notes the vmId).
    assert told == [vm_id, vm_id]
    assert registry.idle(vm_id) is not None
