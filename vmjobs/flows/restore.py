"""Restore (dehibernation): check the state file, read the domain inside
it, restore it, make it persistent, check it runs, commit.

The domain is the one the verb read from the state file and judged
(policy.checked_state_xml), given to libvirt with the file: what the file
holds by the time of the restore is not read again. The state file is
only ever read: restored or not, it stays as it was."""

from .. import domxml, ownership, statefiles
from ..errors import CreateError
from ..registry import VmStatus
from .base import Rollback, StartupJob, over_a_stopped_definition, status_of


class RestoreJob(StartupJob):
    job_type = "restore"
    staged_status = VmStatus.RESTORING_STATE
    error_class = CreateError
    # Its domain XML, and the paths it holds, are the state file's.
    paths_param = "restoreState"

    def __init__(self, spec, domain_xml, hypervisor, registry, **kwargs):
        super().__init__(spec, hypervisor, registry, **kwargs)
        self.domain_xml = domain_xml   # the state file's, as judged

    def run(self):
        vm_id, path = self.vm_id, self.spec.restore_state
        paused = self.spec.launch_paused
        with Rollback() as rollback:
            self.step("check-file")
            statefiles.check_readable(path, CreateError)
            self.step("read-domain")
            params, saved = restored_vm_params(self.domain_xml, path,
                                               vm_id, self.spec)
            self.step("prepare")
            if over_a_stopped_definition(self.hv, vm_id, CreateError):
                # A hibernation interrupted between its save and its
                # undefine (a crash) left the VM's definition: the state
                # file restores over it, as libvirt does after a plain
                # `virsh save`. It was there before: only stopped on undo.
                rollback.push(f"stop domain {vm_id}",
                              lambda: self.hv.remove(vm_id,
                                                     keep_definition=True))
            else:
                # No domain had this UUID: whatever has it from now on,
                # even half-restored, is ours to remove.
                rollback.push(f"remove domain {vm_id}", self.hv.remove,
                              vm_id)
            self.step("restore")
            self.hv.restore(path, vm_id, self.domain_xml, paused=paused)
            self.step("persist")
            self.hv.persist(vm_id)
            if params != saved:   # so that a restart recovers them
                ownership.mark(self.hv, vm_id, params)
            self.step("verify")
            status = running_status(self.hv, vm_id, paused)
            self.step("commit")
            self.commit(status, params=params)


def running_status(hv, vm_id, paused):
    """The public status of the restored domain, which must now run (or be
    paused, when `paused`); raise if it does neither."""
    return status_of(hv.state(vm_id), vm_id, paused)


def restored_vm_params(domain_xml, path, vm_id, spec):
    """(params, saved): the params the VM had when it was saved, from the
    metadata in the state file's `domain_xml`, with the engine's own keys
    of this request on top (its newer word on them; the keys vmjobs reads,
    the path and launchPaused among them, are this restore's, not the
    VM's); or the request's, saved None, when the file is not vmjobs' (a
    plain `virsh save`). Refuses a file whose domain is not `vm_id`."""
    try:
        uuid = domxml.domain_uuid(domain_xml)
        metadata = domxml.metadata_of_domain(domain_xml)
    except domxml.BadDomainXML as exc:
        raise CreateError(f"{path}: {exc}") from None
    if uuid != vm_id:
        raise CreateError(f"{path} holds domain {uuid}, not VM {vm_id}")
    if metadata is None:
        return spec.params, None
    saved = metadata[1]
    params = {**saved, **spec.engine_keys()}
    if not domxml.params_fit(params):
        # Each restore may add its own keys: bounded as the verb bounds a
        # request's (a hostile-caller audit grew them by hibernating and
        # restoring, 64 KiB a turn, until the list verbs failed).
        raise CreateError(f"VM {vm_id}: its parameters with this "
                          f"restore's would take more than "
                          f"{domxml.MAX_PARAMS_BYTES} bytes of JSON")
    return params, saved
