"""Creation: check the UUID is free, define the domain, start it, check it
runs (the last two on define's handle), commit."""

from ..errors import CreateError
from ..registry import VmStatus
from .base import Rollback, StartupJob, status_of, uuid_taken


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
            # Start and check on define's handle: two lookups fewer per VM
            # (docs/benchmarks.md, section 20). Left before the undo runs:
            # the undo takes a connection of its own.
            with self.hv.new_domain() as new:
                self.step("define")
                new.define(self.domain_xml)
                self.step("start")
                new.start(paused=paused)
                self.step("verify")
                status = status_of(new.state(), vm_id, paused)
            self.step("commit")
            self.commit(status)


def ensure_no_domain(hv, vm_id):
    """Refuse to touch a domain we did not make: defining over an existing
    one would redefine it, and a rollback would then remove it."""
    state = hv.state(vm_id)
    if state is not None:
        raise uuid_taken(vm_id, state, CreateError)
