"""Creation: define the domain, start it, check it runs, commit."""

from ..errors import CreateError
from ..registry import VmStatus
from .base import Rollback, StartupJob, ensure_no_domain, running_status


class CreateJob(StartupJob):
    job_type = "create"
    staged_status = VmStatus.WAIT_FOR_LAUNCH
    error_class = CreateError

    def __init__(self, spec, domain_xml, hypervisor, registry, **kwargs):
        super().__init__(spec, hypervisor, registry, **kwargs)
        self.domain_xml = domain_xml   # with our metadata

    def run(self):
        vm_id, paused = self.vm_id, self.spec.launch_paused
        with Rollback() as rollback:
            self.step("prepare")
            ensure_no_domain(self.hv, vm_id)
            # No domain had this UUID: whatever has it from now on is ours
            # to remove. Pushed before define, whose reply can be lost
            # after libvirt defined the domain.
            rollback.push(f"remove domain {vm_id}", self.hv.remove, vm_id)
            self.step("define")
            self.hv.define(self.domain_xml)
            self.step("start")
            self.hv.start(vm_id, paused=paused)
            self.step("verify")
            status = running_status(self.hv, vm_id, paused)
            self.step("commit")
            self.commit(status)

    def on_ended(self):
        self.domain_xml = None   # libvirt has it, or it was not wanted
        super().on_ended()
