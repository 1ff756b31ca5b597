"""Random interleavings of create, destroy, hibernate, restore,
migrationCreate (with or without the domain arriving), Job.abort and
Host.getJobs, with the pool running concurrently, on the real test driver
(hypothesis' stateful testing), in each publish mode (commit, accept). The
invariants hold at every quiet point.

VMJOBS_STATEFUL_EXAMPLES sets how many runs per mode (default 200)."""

import os
import shutil
import tempfile
import uuid

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from conftest import WAIT
from event_order import EventOrder
from invariants import check_invariants, digest
from vmjobs.api import API
from vmjobs.config import Config
from vmjobs.errors import VdsmError
from vmjobs.tools import simulation

EXAMPLES = int(os.environ.get("VMJOBS_STATEFUL_EXAMPLES", "200"))

# What each verb may answer besides success, in any interleaving.
EXPECTED = {
    "VM.create": {4, 1100},
    "VM.destroy": {1},
    "VM.hibernate": {1, 12, 1100},
    "VM.migrationCreate": {4, 12, 82, 1100},
    "Job.abort": {84},
}


def incoming_xml(vm_id):
    return (f"<domain type='test'><name>in-{vm_id}</name><uuid>{vm_id}"
            "</uuid><memory unit='MiB'>64</memory><os><type>hvm</type>"
            "</os></domain>")


class VmJobsMachine(RuleBasedStateMachine):
    publish = "commit"

    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="vmjobs-stateful-")
        self.api = API(Config(uri=None, workers=2, queue_size=8, publish=self.publish,
                              migration_destination_timeout=0.3,
                              migration_check_interval=0.05,
                              state_dirs=[self.dir]))
        self.vm_ids = []
        self.state_files = {}     # path -> sha256, once fully written
        self.hibernations = {}    # path -> (vm_id, job id)
        self.answers = 0
        # Every notification, checked in order as it comes (API.md Events).
        self.events = self.api.subscribe()
        self.event_order = EventOrder()

    def call(self, method, *params):
        try:
            result = self.api.call(method, list(params))
        except VdsmError as exc:
            assert exc.code in EXPECTED[method], (method, exc.code, exc)
            return None
        self.answers += 1
        return result

    def check_listing(self, vm_id, job_id):
        """Right after its verb answered: in commit mode a listed VM's job
        is done; in accept mode the VM is listed unless its job already
        ended without a commit."""
        listed = vm_id in self.api.Host.getVMList()
        status = self.api.Host.getJobs(job_ids=[job_id])[job_id]["status"]
        if self.publish == "commit":
            assert not listed or status == "done", (vm_id, status)
        else:
            assert listed or status in ("failed", "aborted"), (vm_id, status)

    # Rules draw an index, never from what the system did: the pool runs
    # concurrently, so its state differs from one replay to the next, and
    # hypothesis needs the same draws to replay (and shrink) a failure.
    @staticmethod
    def pick(items, index):
        return items[index % len(items)] if items else None

    @rule(paused=st.booleans())
    def create(self, paused):
        vm_id = str(uuid.uuid4())
        self.vm_ids.append(vm_id)
        result = self.call("VM.create", vm_id, {
            "vmId": vm_id, "vmName": vm_id[:13], "memSize": 64,
            "launchPaused": paused})
        if result is not None:
            self.check_listing(vm_id, result["jobId"])

    @precondition(lambda self: self.vm_ids)
    @rule(index=st.integers(0, 1000))
    def destroy(self, index):
        self.call("VM.destroy", self.pick(self.vm_ids, index))

    @precondition(lambda self: self.vm_ids)
    @rule(index=st.integers(0, 1000))
    def hibernate(self, index):
        vm_id = self.pick(self.vm_ids, index)
        path = os.path.join(self.dir, f"{uuid.uuid4()}.state")
        result = self.call("VM.hibernate", vm_id, path)
        if result is not None:
            self.hibernations[path] = (vm_id, result["jobId"])

    @rule(index=st.integers(0, 1000), paused=st.booleans())
    def restore(self, index, paused):
        path = self.pick(sorted(self.state_files), index)
        if path is None:
            return
        vm_id = self.hibernations[path][0]
        result = self.call("VM.create", vm_id, {
            "vmId": vm_id, "restoreState": path, "launchPaused": paused})
        if result is not None:
            self.check_listing(vm_id, result["jobId"])

    @rule(arrives=st.booleans())
    def migration(self, arrives):
        vm_id = str(uuid.uuid4())
        self.vm_ids.append(vm_id)
        xml = incoming_xml(vm_id)
        result = self.call("VM.migrationCreate", vm_id,
                           {"vmId": vm_id, "xml": xml})
        if result is not None:
            self.check_listing(vm_id, result["params"]["jobId"])
            if arrives:
                simulation.simulate_incoming_migration(self.api.hv, xml)

    @rule(index=st.integers(0, 1000))
    def abort_a_job(self, index):
        job_id = self.pick(sorted(self.api.Host.getJobs()), index)
        if job_id is not None:
            self.call("Job.abort", job_id)

    @rule()
    def get_jobs(self):
        for info in self.api.Host.getJobs().values():
            assert info["status"] in ("pending", "running", "aborting",
                                      "done", "failed", "aborted")

    @rule()
    def quiet(self):
        """Let everything end, then check the invariants."""
        assert self.api.pool.wait_idle(WAIT), self.api.pool.stats()
        for path, (_vm_id, job_id) in self.hibernations.items():
            info = self.api.Host.getJobs(job_ids=[job_id]).get(job_id)
            if path not in self.state_files and info and \
                    info["status"] == "done":
                self.state_files[path] = digest(path)
        check_invariants(self.api, self.state_files)
        self.event_order.check_all(self.events.get(0))
        public = {vm.vm_id: vm.status
                  for vm in self.api.registry.snapshot()[1]}
        for vm_id in self.vm_ids:   # nothing staged: Down if not public
            statuses = self.event_order.statuses(vm_id) or ["Down"]
            assert statuses[-1] == public.get(vm_id, "Down"), (vm_id,
                                                               statuses)

    @invariant()
    def notifications_in_a_legal_order(self):
        self.event_order.check_all(self.events.get(0))

    @invariant()
    def never_in_both_registries(self):
        # One consistent view: read apart, a VM committed between the two
        # reads would be seen in both.
        staged, public = self.api.registry.snapshot()
        assert not {vm.vm_id for vm in staged} & {vm.vm_id for vm in public}

    def teardown(self):
        try:
            self.quiet()
        finally:
            self.api.close()
            shutil.rmtree(self.dir, ignore_errors=True)


class AcceptModeMachine(VmJobsMachine):
    """The same rules and invariants with registry.publish = accept."""
    publish = "accept"


for _machine in (VmJobsMachine, AcceptModeMachine):
    _machine.TestCase.settings = settings(
        max_examples=EXAMPLES, stateful_step_count=25, deadline=None,
        suppress_health_check=[HealthCheck.too_slow])
test_random_interleavings = VmJobsMachine.TestCase
test_random_interleavings_accept_mode = AcceptModeMachine.TestCase
