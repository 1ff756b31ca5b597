"""The notifications in process (API.md "Events", api.subscribe()): every
VM status change and every job status or step change, in a legal order
per VM and per job under concurrency (tests/event_order.py), Up before
done, Down for every way a VM leaves, ids growing by one; resume from the
buffer, resync beyond it; a stalled subscriber is cut off and the
publisher never waits for it."""

import random
import threading

import pytest

from conftest import WAIT, DestroyAt, new_id, vm_params, wait_job
from event_order import EventOrder
from vmjobs.errors import VdsmError
from vmjobs.notifications import (
    JOB_STATUS,
    RESYNC,
    VM_STATUS,
    Notifications,
    SubscriptionCut,
)
from vmjobs.registry import VmStatus


def drain(subscription, until=None):
    """Read notifications until `until(list so far)` holds (or, without
    `until`, until none comes for a moment)."""
    got = []
    while True:
        events = subscription.get(WAIT if until else 0.2)
        assert events is not None, "the subscription ended"
        if not events and until is None:
            return got
        assert events or until is None, f"nothing came; got {got}"
        got += events
        if until is not None and until(got):
            return got


def vm_statuses(events, vm_id):
    return [e.params[vm_id]["status"] for e in events
            if e.method == VM_STATUS + vm_id]


def job_statuses(events, job_id):
    return [e.params[job_id]["status"] for e in events
            if e.method == JOB_STATUS + job_id]


def ended(job_id):
    def until(events):
        return any(s in ("done", "failed", "aborted")
                   for s in job_statuses(events, job_id))
    return until


def test_a_creation_notified_in_order(api):
    with api.subscribe() as sub:
        vm_id = new_id()
        job_id = api.VM.create(vm_id, vm_params(vm_id))["jobId"]
        events = drain(sub, ended(job_id))
    EventOrder().check_all(events)
    assert vm_statuses(events, vm_id) == ["WaitForLaunch", "Up"]
    assert job_statuses(events, job_id)[-1] == "done"
    up = next(e for e in events if e.method == VM_STATUS + vm_id and
              e.params[vm_id]["status"] == "Up")
    done = next(e for e in events if e.method == JOB_STATUS + job_id and
                e.params[job_id]["status"] == "done")
    assert up.id < done.id
    assert up.params[vm_id] == {"vmId": vm_id, "status": "Up",
                                "staging": False}
    assert done.params[job_id] == api.Host.getJobs(
        job_ids=[job_id])[job_id]
    assert up.message() == {"jsonrpc": "2.0", "method": up.method,
                            "params": up.params}


@pytest.mark.parametrize("how", ["destroy-public", "destroy-staged",
                                 "failure", "hibernate", "queue-full"])
def test_down_for_every_way_a_vm_leaves(make_api, tmp_path, how):
    """A VM that leaves the host ends with Down, whatever the way;
    (migrating away: test_real_events.py, on two real daemons)."""
    hook = DestroyAt("start") if how == "destroy-staged" else None
    blocker, held, gate = new_id(), threading.Event(), threading.Event()

    def fail_at_define(job, step):
        if step == "define":
            raise RuntimeError("injected failure")

    def hold(job, step):   # the queue-full case: one job holds the worker
        if job.vm_id == blocker and step == "prepare":
            held.set()
            assert gate.wait(WAIT)
    step_hook = {"destroy-staged": hook, "failure": fail_at_define,
                 "queue-full": hold}.get(how)
    api = make_api(step_hook=step_hook,
                   queue_size=1 if how == "queue-full" else 1000,
                   workers=1 if how == "queue-full" else 4)
    if hook is not None:
        hook.api = api
    vm_id = new_id()
    with api.subscribe() as sub:
        if how == "queue-full":
            api.VM.create(blocker, vm_params(blocker))
            assert held.wait(WAIT)
            other = new_id()   # waits in the queue, which is then full
            api.VM.create(other, vm_params(other))
            with pytest.raises(VdsmError) as err:
                api.VM.create(vm_id, vm_params(vm_id))
            assert err.value.code == 1100
            gate.set()
            # The refused request staged nothing, so it made no event: by
            # the queued VM's Up (which came after the refusal), none.
            events = drain(sub, lambda got: "Up" in vm_statuses(got, other))
            assert vm_statuses(events, other) == ["WaitForLaunch", "Up"]
            assert vm_statuses(events, vm_id) == []
            return
        job_id = api.VM.create(vm_id, vm_params(vm_id))["jobId"]
        info = wait_job(api, job_id)
        if how == "destroy-public":
            assert api.VM.destroy(vm_id) is True
            expected = ["WaitForLaunch", "Up", "Down"]
        elif how == "hibernate":
            hibernation = api.VM.hibernate(
                vm_id, str(tmp_path / "vm.state"))["jobId"]
            assert wait_job(api, hibernation)["status"] == "done"
            expected = ["WaitForLaunch", "Up", "Saving State", "Down"]
        else:
            hook is None or hook.thread.join(WAIT)
            assert info["status"] in ("failed", "aborted")
            expected = ["WaitForLaunch", "Down"]
        events = drain(sub, lambda got: vm_statuses(got, vm_id) == expected)
    EventOrder().check_all(events)
    assert vm_statuses(events, vm_id) == expected
    # `staging` says whether the VM is staged: true for its staged
    # statuses only; a VM that left (Down) is in no registry, whether it
    # left staged or public.
    assert [e.params[vm_id]["staging"] for e in events
            if e.method == VM_STATUS + vm_id] == [
        status in ("WaitForLaunch",) for status in expected]


def test_a_destroy_keeps_the_status_the_guest_took_meanwhile(
        api, monkeypatch):
    # VM.destroy looked the VM up, then claimed it with the status it had
    # read: a pause taken in between (the guest watch, guests.py) was
    # undone for the destruction, with an "Up" event for a paused guest.
    vm_id = new_id()
    assert wait_job(api, api.VM.create(vm_id, vm_params(vm_id))["jobId"])[
        "status"] == "done"
    registry, get, paused = api.registry, api.registry.get, []

    def get_then_paused(wanted, **how):   # the watch reads a pause right after
        found = get(wanted, **how)
        if wanted == vm_id and not paused:
            paused.append(found)
            registry.guest_changed(vm_id, found, VmStatus.PAUSED)
        return found
    monkeypatch.setattr(registry, "get", get_then_paused)
    with api.subscribe() as sub:
        assert api.VM.destroy(vm_id) is True
        events = drain(sub, lambda got: "Down" in vm_statuses(got, vm_id))
    assert paused, "the interleaving was not forced"
    assert vm_statuses(events, vm_id) == ["Paused", "Down"]


def test_a_failed_hibernation_gives_the_vm_back_up(make_api, tmp_path):
    def fail_at_save(job, step):
        if job.job_type == "hibernate" and step == "save":
            raise RuntimeError("injected failure")
    api = make_api(step_hook=fail_at_save)
    vm_id = new_id()
    assert wait_job(api, api.VM.create(vm_id, vm_params(vm_id))["jobId"])[
        "status"] == "done"
    with api.subscribe() as sub:
        job_id = api.VM.hibernate(vm_id, str(tmp_path / "vm.state"))["jobId"]
        assert wait_job(api, job_id)["status"] == "failed"
        events = drain(sub, ended(job_id))
    assert vm_statuses(events, vm_id) == ["Saving State", "Up"]
    assert api.VM.getStats(vm_id)["status"] == "Up"


def test_order_under_concurrency(make_api, tmp_path):
    """Many VMs created, destroyed (public or staged), hibernated and
    restored from eight threads at once: every VM's and every job's
    notifications are in a legal order of its state machine, the ids grow
    by one, and each VM's last status is what the registry says."""
    api = make_api(workers=4)
    sub = api.subscribe()
    vm_ids = [new_id() for _ in range(120)]
    errors = []

    def engine(seed, mine):
        rng = random.Random(seed)
        try:
            for vm_id in mine:
                api.VM.create(vm_id, vm_params(vm_id))
                action = rng.choice(["keep", "destroy", "destroy-now",
                                     "hibernate", "restore"])
                if action == "destroy-now":
                    api.VM.destroy(vm_id)
                    continue
                job = api.Host.getJobs(job_type="create")
                job_id = next(i for i, info in job.items()
                              if info["vm_id"] == vm_id)
                if wait_job(api, job_id)["status"] != "done":
                    continue
                if action == "destroy":
                    api.VM.destroy(vm_id)
                elif action in ("hibernate", "restore"):
                    path = str(tmp_path / f"{vm_id}.state")
                    h = api.VM.hibernate(vm_id, path)["jobId"]
                    if wait_job(api, h)["status"] == "done" and \
                            action == "restore":
                        api.VM.create(vm_id, {"vmId": vm_id,
                                              "restoreState": path})
        except BaseException as exc:   # reported below, with its thread
            errors.append(exc)

    threads = [threading.Thread(target=engine, args=(i, vm_ids[i::8]))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert not errors, errors
    assert api.pool.wait_idle(WAIT)
    order = EventOrder()
    order.check_all(drain(sub))
    sub.close()
    assert order.count > 600
    public = {vm.vm_id: vm.status for vm in api.registry.snapshot()[1]}
    for vm_id in vm_ids:
        last = order.statuses(vm_id)[-1]
        assert last == public.get(vm_id, "Down"), (vm_id,
                                                   order.statuses(vm_id))
    for job_id, info in api.Host.getJobs().items():
        assert order.job_statuses(job_id)[-1] == info["status"]


def test_resume_from_the_buffer_and_resync_beyond_it():
    feed = Notifications(buffer=5)
    for i in range(3):
        feed.vm_changed(f"vm{i}", "Up", False)
    first = feed.subscribe(last_event_id=None)
    feed.vm_changed("vm3", "Up", False)
    (e3,) = first.get(0)
    ids = [e3.id - 3, e3.id - 2, e3.id - 1, e3.id]
    # Resume: everything after the id given, still held.
    again = feed.subscribe(last_event_id=ids[0])
    assert [e.id for e in again.get(0)] == ids[1:]
    assert again.get(0) == []
    # The newest id: nothing missed, nothing again.
    assert feed.subscribe(last_event_id=ids[-1]).get(0) == []
    for i in range(4, 10):
        feed.vm_changed(f"vm{i}", "Up", False)
    # ids[0] left the buffer (5 kept): resync, then the live ones.
    late = feed.subscribe(last_event_id=ids[0])
    (resync,) = late.get(0)
    assert resync.method == RESYNC
    assert late.get(0) == []
    feed.vm_changed("vm10", "Up", False)
    (live,) = late.get(0)
    assert live.id == resync.id + 1
    # The oldest held id (positive control of the bound): a resume.
    oldest = live.id - 4
    assert [e.id for e in feed.subscribe(last_event_id=oldest - 1).get(0)
            ] == list(range(oldest, live.id + 1))


def test_ids_of_a_restarted_feed_are_above_its_predecessor():
    """Ids start from the clock: a new feed (a restarted service) numbers
    above every id the one before sent, so their ids get a resync."""
    clock = [1000.0]
    before = Notifications(clock=lambda: clock[0])
    for i in range(100):
        before.vm_changed(f"vm{i}", "Up", False)
    last = before.stats()["last_id"]
    clock[0] += 1.0   # a restart, a second later
    after = Notifications(clock=lambda: clock[0])
    after.vm_changed("vm", "Up", False)
    sub = after.subscribe(last_event_id=last)
    events = sub.get(0)
    assert events[0].method == RESYNC
    assert after.stats()["last_id"] > last
    # Positive control: its own id resumes.
    assert after.subscribe(last_event_id=after.stats()["last_id"] - 1
                           ).get(0)[0].method == VM_STATUS + "vm"


def test_a_stalled_subscriber_is_cut_and_never_holds_the_service(make_api):
    """A subscriber that reads nothing is cut off once it falls
    events.buffer behind; the storm and the verbs go on meanwhile (the
    publisher never waits for a reader), a reading subscriber gets
    everything, and the stalled one resumes with a resync."""
    api = make_api(events_buffer=100, workers=4)
    stalled = api.subscribe()
    reader = api.subscribe()
    got = []
    vm_ids = [new_id() for _ in range(40)]   # ~10 notifications each
    for batch in range(0, len(vm_ids), 4):   # 4 at once; read after each
        jobs = [api.VM.create(vm_id, vm_params(vm_id))["jobId"]
                for vm_id in vm_ids[batch:batch + 4]]
        for job_id in jobs:
            assert wait_job(api, job_id)["status"] == "done"
        got += reader.get(0)   # all published: the jobs ended
    assert api.Host.ping() is True
    assert stalled.was_cut
    with pytest.raises(SubscriptionCut) as cut:
        stalled.get(0)
    assert api.notifications.stats()["cut"] == 1
    metrics = api.metrics.render().decode()
    assert "vmjobs_event_subscribers_cut_total 1.0" in metrics
    assert "vmjobs_event_subscribers 1.0" in metrics   # the reader
    # The one that read is not cut, and got every notification.
    assert not reader.was_cut
    order = EventOrder()
    order.check_all(got)
    assert all(order.statuses(vm_id)[-1] == "Up" for vm_id in vm_ids)
    # Its resume: too late for the buffer, so a resync first.
    resumed = api.subscribe(cut.value.last_id)
    assert resumed.get(0)[0].method == RESYNC


def test_close_ends_the_subscriptions(make_api):
    api = make_api()
    sub = api.subscribe()
    ended = threading.Event()
    threading.Thread(target=lambda: (list(sub), ended.set())).start()
    api.close()
    assert ended.wait(WAIT)


def test_recovery_at_start_is_notified(make_api):
    """The VMs recovery finds at start are notified as any startup: staged,
    then Up, before their recover job's done (read from the buffer: the
    service published them before anyone could subscribe)."""
    first = make_api()
    vm_id = new_id()
    assert wait_job(first, first.VM.create(vm_id, vm_params(vm_id))[
        "jobId"])["status"] == "done"
    first.close()   # its public VMs keep running, for the next start
    second = make_api()
    assert second.wait_recovered(WAIT)
    assert second.pool.wait_idle(WAIT)
    oldest = second.notifications._kept[0].id
    with second.subscribe(oldest - 1) as sub:
        events = sub.get(0)
    EventOrder().check_all(events)
    assert events[0].id == oldest
    assert vm_statuses(events, vm_id) == ["WaitForLaunch", "Up"]
    (job_id,) = second.Host.getJobs(job_type="recover")
    assert job_statuses(events, job_id)[-1] == "done"


def test_wait_subscribers_is_woken_as_subscribers_come_and_go():
    """wait_subscribers (the tests' wait for a stream's subscription, made
    in its connection's thread) is woken by a subscribe, a leave and a
    cut, and times out while the count is not reached."""
    feed = Notifications(buffer=1)
    assert not feed.wait_subscribers(1, 0)
    came = threading.Thread(target=feed.subscribe)
    came.start()
    assert feed.wait_subscribers(1, WAIT)
    came.join()
    (first,) = feed._subscribers
    second = feed.subscribe()
    first.close()
    assert feed.wait_subscribers(1, WAIT)
    feed.vm_changed(new_id(), VmStatus.UP, False)
    feed.vm_changed(new_id(), VmStatus.UP, False)   # second is cut off
    assert feed.wait_subscribers(0, WAIT) and second.was_cut
