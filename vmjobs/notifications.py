"""The engine's live view (API.md "Events"): every change of a VM's status
and of a job's status or step, as a numbered notification with VDSM's
method names, kept in a bounded buffer and read by subscribers.

(Not to be confused with hypervisor/events.py, libvirt's own lifecycle
events of domains, which the flows wait on.)

Posting is an append under the feed's own lock, which is innermost of
all: the registry posts a VM's change under its lock and a job its
change under its own, so the order of the notifications is the order of
the changes, and a VM's `Up` (posted by the commit) comes before its
job's `done` (posted once the job's end hooks ran). Nothing is called
out under the lock: subscribers are not called, they read the buffer
from their own thread, each at its own position. A subscriber that falls
`buffer` notifications behind is cut off (its position left the buffer)
rather than ever making the poster wait; it resumes from the id it
last got, or is told to resync if that id is gone.

Ids grow by one per notification and start from the clock (microseconds
since the epoch), so a restarted service numbers above its predecessor
(unless it posted more than a million a second on average) and an id
from before the restart is answered with a resync.
"""

import collections
import itertools
import json
import threading
import time

VM_STATUS = "|virt|VM_status|"
JOB_STATUS = "|jobs|status|"
RESYNC = "|events|resync|"

DEFAULT_BUFFER = 10_000

# json.dumps with other separators than its defaults makes a new encoder
# at each call; one made once costs a notification less (they are ten a
# VM).
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


class SubscriptionCut(Exception):
    """The subscriber fell `buffer` notifications behind and was cut off;
    `last_id` is the last id it got (resume from it)."""

    def __init__(self, last_id):
        super().__init__(f"cut off: fell behind after notification "
                         f"{last_id}; subscribe again from it")
        self.last_id = last_id


class Notification:
    """One JSON-RPC notification, numbered; `time` is when it was
    posted (time.monotonic()). Immutable once posted."""
    __slots__ = ("id", "method", "params", "time", "_json", "sse")

    def __init__(self, id, method, params, at):
        self.id = id
        self.method = method
        self.params = params
        self.time = at
        self._json = None
        self.sse = None   # its SSE frame, made once by sse.frame()

    def message(self):
        return {"jsonrpc": "2.0", "method": self.method,
                "params": self.params}

    def json(self):
        """The message as one line of JSON, made once for every reader (a
        race makes it twice at worst, with the same text)."""
        text = self._json
        if text is None:
            text = self._json = _ENCODE(self.message())
        return text

    def __repr__(self):
        return f"<Notification {self.id} {self.method}>"


class Notifications:
    """The feed: post from anywhere, subscribe from anywhere."""

    def __init__(self, buffer=DEFAULT_BUFFER, clock=time.time):
        if buffer < 1:
            raise ValueError("the buffer holds at least one notification")
        self.buffer = buffer
        # Guards everything below. Innermost lock: nothing is called out
        # under it, and it is held only to append or to copy.
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        # Notified as a subscriber comes or goes (subscribes, leaves, or
        # is cut off): wait_subscribers.
        self._membership = threading.Condition(self._lock)
        self._kept = collections.deque(maxlen=buffer)
        self._last_id = int(clock() * 1_000_000)
        self._subscribers = set()
        self._closed = False
        self.cut = 0        # subscribers cut off
        self.dropped = 0    # notifications those had not read when cut

    # -- posting ----------------------------------------------------------

    def vm_changed(self, vm_id, status, staging):
        """A VM's status changed (`Down`: it left the host)."""
        self._post(VM_STATUS + vm_id, vm_id, {
            "vmId": vm_id, "status": str(status), "staging": staging}, True)

    def job_changed(self, job, info):
        """A job's status or step changed (a workers.Job observer)."""
        self._post(JOB_STATUS + job.id, job.id, info, False)

    def _post(self, method, key, body, timed):
        with self._lock:
            if self._closed:
                return
            now = time.monotonic()
            params = {key: body}
            if timed:
                params["notify_time"] = int(now * 1000)
            self._last_id += 1
            kept = self._kept
            if self._subscribers:
                if len(kept) == self.buffer:
                    self._cut_behind(kept[0].id)
                self._arrived.notify_all()
            kept.append(Notification(self._last_id, method, params, now))

    def _cut_behind(self, evicted_id):
        # Caller holds _lock: `evicted_id` leaves the buffer now; whoever
        # still needs it is cut off.
        for sub in [s for s in self._subscribers if s.position <= evicted_id]:
            self._subscribers.discard(sub)
            sub.cut_off = True
            self.cut += 1
            self.dropped += self._last_id - sub.position + 1
            self._membership.notify_all()

    # -- subscribing ------------------------------------------------------

    def subscribe(self, last_event_id=None):
        """A Subscription to the notifications after `last_event_id` that
        the buffer still holds, then the live ones; if the buffer no longer
        holds them (or the id is not one of ours), it starts with a
        RESYNC notification instead. None: the live ones only."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the service is stopping")
            last = self._last_id
            first_kept = self._kept[0].id if self._kept else last + 1
            resync = None
            if last_event_id is None:
                start = last + 1
            elif first_kept - 1 <= last_event_id <= last:
                start = last_event_id + 1
            else:
                start = last + 1
                resync = Notification(last, RESYNC, {}, time.monotonic())
            sub = Subscription(self, start, resync)
            self._subscribers.add(sub)
            self._membership.notify_all()
            return sub

    def close(self):
        """End every subscription (after what it has not read yet)."""
        with self._lock:
            self._closed = True
            self._arrived.notify_all()

    def wake(self):
        """Wake whoever waits in wait_past now (a new reader has a backlog
        to be sent: it should not wait for the next notification)."""
        with self._lock:
            self._arrived.notify_all()

    def wait_past(self, last_id, timeout, unless):
        """Wait up to `timeout` seconds for a notification after
        `last_id` (None: any), for a subscriber's end, for the close, or
        for wake(); returns the newest id. No wait if `unless()` holds
        (checked under the lock, so a wake() that follows what makes it
        true is never lost)."""
        with self._lock:
            if (last_id is None or self._last_id == last_id) and \
                    not unless():
                self._arrived.wait(timeout)
            return self._last_id

    @property
    def newest(self):
        """The newest notification's id, read without the lock: a hint
        whether there is anything to read (it may be a post behind)."""
        return self._last_id

    def wait_subscribers(self, count, timeout):
        """Wait up to `timeout` seconds until `count` subscribers read the
        feed (a stream's subscription is made in its connection's thread);
        True if they do."""
        with self._lock:
            return self._membership.wait_for(
                lambda: len(self._subscribers) == count, timeout)

    def was_cut(self, sub):
        """(Subscription.was_cut's.) True if `sub` was cut off."""
        with self._lock:
            return sub.cut_off

    def stats(self):
        with self._lock:
            return {"subscribers": len(self._subscribers), "cut": self.cut,
                    "dropped": self.dropped, "last_id": self._last_id}

    def take(self, sub, timeout):
        """(Subscription.get's.) The notifications `sub` has not read; wait
        up to `timeout` for one. [] on timeout, None once it is closed (or
        the feed) and read."""
        with self._lock:
            def ready():
                return (sub.cut_off or sub.left or self._closed or
                        self._last_id >= sub.position)
            if not ready():
                self._arrived.wait_for(ready, timeout)
            if sub.cut_off:
                raise SubscriptionCut(sub.position - 1)
            # Closed (by a stop, or the feed's): what was posted before
            # is still handed out, then the end.
            new = self._last_id - sub.position + 1
            if new <= 0:
                return None if sub.left or self._closed else []
            # From the right: the reader is near the newest end, and a
            # deque's islice walks from the left.
            events = list(itertools.islice(reversed(self._kept), new))
            events.reverse()
            sub.position = self._last_id + 1
            return events

    def leave(self, sub):
        """(Subscription.close's.) `sub` reads no more."""
        with self._lock:
            sub.left = True
            self._subscribers.discard(sub)
            self._arrived.notify_all()
            self._membership.notify_all()


class Subscription:
    """One subscriber's position in the feed. Iterate for notifications
    (raises SubscriptionCut if it fell behind; ends when closed), or call
    get(). Read it from one thread; close() from any."""

    def __init__(self, feed, start, resync):
        self._feed = feed
        # Guarded by the feed's lock, written by the feed: the next id to
        # read, cut off (fell behind the buffer), left (closed by close()).
        self.position = start
        self.cut_off = False
        self.left = False
        self._resync = resync       # read by the reading thread only
        self.last_id = start - 1    # the last id handed out

    def get(self, timeout=None):
        """The notifications not read yet, waiting up to `timeout` seconds
        for one: a list ([] on timeout), or None once closed and read."""
        if self._resync is not None:
            resync, self._resync = self._resync, None
            return [resync]
        events = self._feed.take(self, timeout)
        if events:
            self.last_id = events[-1].id
        return events

    def __iter__(self):
        while (events := self.get()) is not None:
            yield from events

    @property
    def was_cut(self):
        return self._feed.was_cut(self)

    def close(self):
        self._feed.leave(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
