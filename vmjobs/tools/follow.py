"""The load tests play the engine as an engine should: they follow the
service's notifications (API.md "Events") instead of polling Host.getJobs.

`Follower` reads a target's notifications in a thread of its own into a
queue (resuming with Last-Event-ID if the stream is cut); `Jobs` turns the
notifications of the jobs it is told of into their records: when each
VM was staged, when its job started, when the VM was Up (from its `Up`
event) and how the job ended, all in wall-clock seconds as JobInfo's
times. A resync (events were missed) is made good from Host.getJobs.
"""

import queue
import threading
import time

from workers import ENDED

from ..notifications import JOB_STATUS, RESYNC, VM_STATUS, SubscriptionCut

STAGED = ("WaitForLaunch", "Restoring state", "Migration Destination")
UP = ("Up", "Paused")


class Follower(threading.Thread):
    """The notifications of `subscribe(last_id)` (an iterable of them that
    raises SubscriptionCut when cut short), into `self.queue` (or given to
    `sink`); None once the service ended the stream. `precise`: a
    notification's `time` is when it was published (in process), not when
    it was read."""

    def __init__(self, subscribe, close, precise, sink=None):
        super().__init__(name="loadtest-follower", daemon=True)
        self.queue = queue.Queue()
        self._sink = sink or self.queue.put
        self.precise = precise
        self._subscribe = subscribe
        self._close = close
        self._closing = False
        self._stream = subscribe(None)   # subscribed before any request
        self.start()

    def run(self):
        last_id = None
        stream = self._stream
        try:
            while True:
                try:
                    if stream is None:   # resubscribe, in the try: a close
                        stream = self._subscribe(last_id)   # may cut it
                    for notification in stream:
                        last_id = notification.id
                        self._sink(notification)
                    break
                except SubscriptionCut as cut:
                    if self._closing:
                        break
                    last_id, stream = cut.last_id, None
                except Exception:
                    if self._closing:   # its connection closed under it
                        break
                    raise
        finally:
            self._sink(None)   # the reader learns the end, whatever it was

    def close(self):
        self._closing = True
        self._close()
        self.join(10)

    def when(self, notification):
        """time.monotonic() of the change: the service's own time for a
        VM's status (notify_time, in milliseconds, when it is on this
        host's clock), else when it was read."""
        if self.precise:
            return notification.time
        notify_ms = notification.params.get("notify_time")
        if notify_ms is not None and \
                abs(notify_ms / 1000 - notification.time) < 1.0:
            return notify_ms / 1000
        return notification.time


class Jobs:
    """The records of the jobs being waited for, kept from the events."""

    def __init__(self, follower, call):
        self.follower = follower
        self._call = call           # a verb on the target, for a resync
        self._wall = time.time() - time.monotonic()   # monotonic -> wall
        self.records = {}           # job id -> record
        self._by_vm = {}            # vm id -> record of its running job
        self._pending = set()       # job ids not ended yet
        self._early = {}            # job id -> (info, when) before add()
        self.last = None            # time.monotonic() of the last Up/end

    def add(self, job_id, record):
        """Follow job `job_id` (of VM record["vm_id"]) into `record`."""
        record["job_id"] = job_id
        self.records[job_id] = record
        self._by_vm[record["vm_id"]] = record
        self._pending.add(job_id)
        if job_id in self._early:   # it ran before its verb answered
            self._job(job_id, *self._early.pop(job_id))

    def ended(self):
        return not self._pending

    def counts(self):
        """(ended, up, failed, queued, running) of the jobs followed."""
        records = self.records.values()
        ended = len(self.records) - len(self._pending)
        up = sum(1 for r in records if r.get("up"))
        failed = sum(1 for r in records if r.get("status") in ENDED and
                     r["status"] != "done")
        queued = sum(1 for r in records
                     if r.get("status", "pending") == "pending")
        return ended, up, failed, queued, len(self._pending) - queued

    def wait(self, timeout):
        """Take the notifications that came, waiting up to `timeout`
        seconds for one. False once the stream ended."""
        try:
            notification = self.follower.queue.get(timeout=timeout)
            while notification is not None:
                self._take(notification)
                notification = self.follower.queue.get_nowait()
        except queue.Empty:
            return True
        return False

    def _take(self, notification):
        method, params = notification.method, notification.params
        when = self.follower.when(notification)
        if method.startswith(VM_STATUS):
            vm_id = method[len(VM_STATUS):]
            record = self._by_vm.get(vm_id)
            if record is not None:
                self._vm(record, params[vm_id]["status"], when)
        elif method.startswith(JOB_STATUS):
            job_id = method[len(JOB_STATUS):]
            if job_id in self.records:
                self._job(job_id, params[job_id], when)
            else:   # not added yet (or not the load test's)
                self._early[job_id] = (params[job_id], when)
        elif method == RESYNC:
            self._resync()

    def _vm(self, record, status, when):
        if status in STAGED and "staged" not in record:
            record["staged"] = when + self._wall
        elif status in UP and "staged" in record and "up" not in record:
            record["up"] = when + self._wall
            self.last = max(self.last or 0, when)

    def _job(self, job_id, info, when):
        record = self.records[job_id]
        if record.get("status") in ENDED:
            # Ended (a resync read it from Host.getJobs): what the events
            # queued before that reading say is older.
            return
        record.update(status=info["status"], enqueued=info["created"],
                      started=info.get("started"), ended=info.get("ended"),
                      error=info.get("error", {}).get("message"))
        if info["status"] in ENDED and job_id in self._pending:
            self._pending.discard(job_id)
            if info["status"] != "done" or "up" not in record:
                # No Up (failed, or an Up missed in a resync): its end.
                self.last = max(self.last or 0, when or time.monotonic())

    def _resync(self):
        """Events were missed: what the missed ones said, from the jobs."""
        infos = self._call("Host.getJobs", {"job_ids": list(self._pending)})
        for job_id, info in infos.items():
            record = self.records[job_id]
            if info["status"] == "done" and "up" not in record:
                record["up"] = info["ended"]
            self._job(job_id, info, None)
