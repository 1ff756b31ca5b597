"""The legal orders of the notifications (API.md "Events"), checked as
they are read: ids grow by one; each VM's statuses follow its life
(staged, then public or Down; public, then claimed, back, or Down; Down,
then perhaps staged anew); each job's statuses follow
workers.TRANSITIONS, a notification with the same status being a change
of step; a VM's Up (or Paused) comes after its job entered its commit
step (when that job was seen) and before that job's done."""

from vmjobs.notifications import JOB_STATUS, RESYNC, VM_STATUS
from workers import TRANSITIONS, JobStatus

STAGED = {"WaitForLaunch", "Restoring state", "Migration Destination"}
UP = {"Up", "Paused"}
CLAIMED = {"Saving State", "Migration Source"}
VM_MOVES = {
    None: STAGED,
    "Down": STAGED,
    **{status: UP | {"Down"} for status in STAGED},
    **{status: CLAIMED | {"Down"} for status in UP},
    **{status: UP | {"Down"} for status in CLAIMED},
}
STARTUPS = {"create", "restore", "migration-destination", "recover"}


class EventOrder:
    def __init__(self):
        self.last_id = None
        self.vms = {}        # vm_id -> [status, ...]
        self.jobs = {}       # job_id -> [(status, step), ...]
        self.startup = {}    # vm_id -> its latest startup job seen
        self.done = set()    # startup jobs seen done
        self.count = 0

    def check(self, notification):
        """Check one notification against those before it."""
        if self.last_id is not None:
            assert notification.id == self.last_id + 1, \
                (self.last_id, notification)
        self.last_id = notification.id
        self.count += 1
        method, params = notification.method, notification.params
        if method.startswith(VM_STATUS):
            vm_id = method[len(VM_STATUS):]
            self._vm(vm_id, params[vm_id], params["notify_time"])
        elif method.startswith(JOB_STATUS):
            job_id = method[len(JOB_STATUS):]
            self._job(job_id, params[job_id])
        else:
            assert method == RESYNC, method

    def check_all(self, notifications):
        for notification in notifications:
            self.check(notification)

    def _vm(self, vm_id, body, notify_time):
        assert body["vmId"] == vm_id and isinstance(notify_time, int)
        status = body["status"]
        history = self.vms.setdefault(vm_id, [])
        before = history[-1] if history else None
        assert status in VM_MOVES[before], (vm_id, history, status)
        assert body["staging"] is (status in STAGED), body
        job_id = self.startup.get(vm_id)
        if status in UP and before in STAGED and job_id in self.jobs:
            # Its job, if seen already, has entered its commit step; or,
            # for an incoming migration whose guest arrived, it commits
            # while aborting (an arrived guest is never destroyed).
            job_status, step = self.jobs[job_id][-1]
            assert (job_status, step) == (JobStatus.RUNNING, "commit") or \
                job_status is JobStatus.ABORTING, \
                f"{vm_id} {status} before its commit: {self.jobs[job_id]}"
        history.append(status)

    def _job(self, job_id, info):
        assert info["id"] == job_id
        status, step = JobStatus(info["status"]), info["step"]
        history = self.jobs.setdefault(job_id, [])
        if history:
            before, before_step = history[-1]
            assert before not in (JobStatus.DONE, JobStatus.FAILED,
                                  JobStatus.ABORTED), (job_id, history, info)
            if status is before:
                assert step != before_step, (job_id, history, info)
            else:
                assert status in TRANSITIONS[before], (job_id, history, info)
        history.append((status, step))
        if info["job_type"] in STARTUPS:
            vm_id = info["vm_id"]
            self.startup[vm_id] = job_id
            if status is JobStatus.DONE:
                # Its VM's Up (or Paused) came first.
                assert self.vms.get(vm_id, [None])[-1] in UP | CLAIMED | \
                    {"Down"}, (job_id, vm_id, self.vms.get(vm_id))
                self.done.add(job_id)

    def statuses(self, vm_id):
        return self.vms.get(vm_id, [])

    def job_statuses(self, job_id):
        return [status.value for status, _ in self.jobs.get(job_id, [])]
