"""Recovery: take back a VM found in libvirt at start-up. Read the vmId and
params from the domain's metadata, map its state to a status, commit.

Recovery never changes a domain: a running one becomes public as it is; a
stopped one is left alone for the engine to decide; on failure nothing is
undone, because nothing was done."""

import logging

from .. import domxml
from ..errors import CreateError
from ..hypervisor import DomainState
from ..registry import VmStatus
from .base import StartupJob
from .steps import PUBLIC_STATUS

log = logging.getLogger("vmjobs.flows.recover")


class RecoverJob(StartupJob):
    job_type = "recover"
    # Never seen through the verbs: they answer `recovery` meanwhile.
    staged_status = VmStatus.WAIT_FOR_LAUNCH
    error_class = CreateError

    def run(self):
        vm_id = self.vm_id
        self.step("read-metadata")
        metadata = self.hv.metadata(vm_id, domxml.METADATA_NS)
        try:
            meta_vm_id, params = domxml.read_metadata(metadata)
        except domxml.BadDomainXML as exc:
            raise CreateError(f"domain {vm_id}: {exc}") from None
        if meta_vm_id != vm_id:
            raise CreateError(f"domain {vm_id} carries the metadata of VM "
                              f"{meta_vm_id}")
        self.step("inspect")
        state = self.hv.state(vm_id)
        if state == DomainState.SHUTOFF:
            log.info("VM %s is defined but not running: left alone for the "
                     "engine to decide", vm_id)
            self.step("left-stopped")
            return
        if state not in PUBLIC_STATUS:
            raise CreateError(f"domain {vm_id} is {state or 'gone'}")
        self.step("commit")
        self.commit(PUBLIC_STATUS[state], params=params)
