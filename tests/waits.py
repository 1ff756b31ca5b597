"""The tests' ways to wait, one per kind of thing waited for, each woken by
what says it (never a sleep, every wait bounded): a stream's
notifications read by a thread of its own (Follower); a service's
subscribers (subscribers); a condition of an
in-process service looked at again at each of its notifications
(until_notified); a domain's state looked at again at each of its
lifecycle events (until_domain_state). (A `vmjobs serve` process ready,
recovery ended, is learnt as systemd learns it: READY=1 on its
$NOTIFY_SOCKET, sdnotify.notify_socket.) And the one wait no event can
end: a caller answered 503 comes back after the Retry-After the service
asked for (retry_after)."""

import threading
import time

from conftest import WAIT
from vmjobs.notifications import VM_STATUS

RETRY_AFTER = 1   # seconds: what the service's 503 asks (Retry-After: 1)


def statuses(events, vm_id):
    """VM `vm_id`'s statuses among the notifications `events`."""
    return [e.params[vm_id]["status"] for e in events
            if e.method == VM_STATUS + vm_id]


class Follower(threading.Thread):
    """Reads a stream of notifications (Client.events(), api.subscribe())
    into `events`, in a thread of its own; `ended` is how it ended:
    "clean", or the exception (None while it goes on)."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream = stream
        self.events = []
        self.ended = None
        self._changed = threading.Condition()   # guards events and ended
        self.start()

    def run(self):
        try:
            for notification in self.stream:
                with self._changed:
                    self.events.append(notification)
                    self._changed.notify_all()
            ended = "clean"
        except Exception as exc:
            ended = exc
        with self._changed:
            self.ended = ended
            self._changed.notify_all()

    def wait_for(self, reached, what, bound=WAIT):
        """Until `reached(events)`, looked at again at each notification
        read (and at the stream's end, which fails the wait at once)."""
        with self._changed:
            self._changed.wait_for(
                lambda: reached(self.events) or self.ended is not None,
                bound)
            assert reached(self.events), \
                f"never: {what} (ended: {self.ended!r})"

    def wait_status(self, vm_id, status, bound=WAIT):
        self.wait_for(lambda events: status in statuses(events, vm_id),
                      f"{vm_id} {status}", bound)


def subscribers(api, count, bound=WAIT):
    """Until in-process service `api`'s feed has `count` subscribers (a
    stream's subscription is made in its connection's thread, and left
    there), woken as each comes or goes."""
    assert api.notifications.wait_subscribers(count, bound), \
        f"never {count} subscribers"


def until_notified(api, reached, what, bound=WAIT):
    """Until `reached()`, looked at again at each of in-process service
    `api`'s notifications (subscribed before the first look: none is
    missed)."""
    deadline = time.monotonic() + bound
    with api.subscribe() as feed:
        while not reached():
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"never {what}"
            feed.get(remaining)


def until_domain_state(hv, vm_id, reached, what, bound=WAIT):
    """Domain `vm_id`'s state (hypervisor.Hypervisor.state) once
    `reached(state)`, looked at again at each of its lifecycle events
    (subscribed before the first look: none is missed)."""
    changed = threading.Condition()   # guards events
    events = [0]

    def on_event(event, detail):      # libvirt's event thread: no block
        with changed:
            events[0] += 1
            changed.notify_all()

    deadline = time.monotonic() + bound
    token = hv.subscribe(vm_id, on_event)
    try:
        while True:
            with changed:
                seen = events[0]
            state = hv.state(vm_id)
            if reached(state):
                return state
            with changed:
                assert changed.wait_for(
                    lambda seen=seen: events[0] != seen,
                    deadline - time.monotonic()), f"never {what}: {state}"
    finally:
        hv.unsubscribe(vm_id, token)


def retry_after(attempt, bound=WAIT):
    """What `attempt()` returns once it is not None (None: answered 503,
    every slot busy), trying again after RETRY_AFTER as the service asks,
    for `bound` seconds at most; None if it never was. A sleep, but no
    event can end this wait: the service says when to come back, and
    what frees a slot (a hostile connection's timeout, a verb's end) is
    not the caller's to see."""
    deadline = time.monotonic() + bound
    while (answer := attempt()) is None:
        if time.monotonic() + RETRY_AFTER > deadline:
            return None
        time.sleep(RETRY_AFTER)
    return answer
