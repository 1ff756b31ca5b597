"""What the flows share: a job bound to one VM; a startup job, staged
before it is queued, committed at its end, unstaged when it ends without a
commit; a job on a public VM, claimed before it is queued, dropped from the
public registry at its commit, given back as it was otherwise; the
rollback stack that undoes, newest first, whatever a flow made; and the
steps more than one flow takes, as plain functions of the adapter."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import workers

from .. import hostpaths, ownership
from ..errors import CreateError, GeneralException, InvalidParams, VdsmError
from ..hypervisor import DomainState, HypervisorError
from ..registry import PUBLIC_STATUS, VmBusy, VmStatus

if TYPE_CHECKING:
    from ..hypervisor import Hypervisor
    from ..params import VmSpec
    from ..registry import Vm, VmRegistry

log = logging.getLogger("vmjobs.flows")


class RollbackFailed(Exception):
    """Undoing a failed or aborted flow failed too: something may be left
    behind, and the message says what."""
    expected = True


class Rollback:
    """Undo actions, pushed as a flow makes things; run newest first if a
    `with` block ends with an exception (a failure, or an abort at a step
    boundary), never if it ends normally (the flow committed, or goes on
    in a continuation)."""

    def __init__(self) -> None:
        self._undo: list[tuple[str, Callable[..., Any], tuple[Any, ...]]] = []

    def push(self, description: str, action: Callable[..., Any],
             *args: Any) -> None:
        self._undo.append((description, action, args))

    def __enter__(self) -> Rollback:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None,
                 tb: Any) -> Literal[False]:
        if exc is None:
            return False
        # Once: a flow that goes on in continuations may leave two nested
        # `with` blocks of its rollback with the same exception.
        undo, self._undo = self._undo, []
        failures = []
        for description, action, args in reversed(undo):
            try:
                action(*args)
                log.info("rolled back: %s", description)
            except Exception as undo_exc:
                log.error("rollback failed: %s: %s", description, undo_exc)
                failures.append(f"{description}: {undo_exc}")
        if failures:
            raise RollbackFailed(
                f"{exc}; then rollback failed: {'; '.join(failures)}"
            ) from exc
        return False


class VmJob(workers.Job):
    """A job working on one VM, owning its whole life: `reserve()` takes
    what it needs before it is queued (refusing the request if it cannot),
    `release()` gives it back if the queue refuses the job, `run()` is the
    flow, `on_ended()` cleans up whatever the end. Subclasses set
    `job_type` and `error_class` (the VDSM error a hypervisor failure is
    reported as)."""
    job_type: str = "vm"
    error_class: type[VdsmError] = GeneralException

    def __init__(self, vm_id: str, hypervisor: Hypervisor,
                 registry: VmRegistry,
                 on_step: Callable[[workers.Job, str], None] | None = None,
                 timeout: float | None = None) -> None:
        super().__init__(description=f"{self.job_type} VM {vm_id}",
                         timeout=timeout, on_step=on_step)
        self.vm_id = vm_id
        self.hv = hypervisor
        self.registry = registry

    def refuse_early(self) -> None:
        """Raise the VdsmError that refuses this request whatever the
        queue holds, taking nothing: called before the job's place in the
        queue is taken, so that a full queue (1100, 'try again later')
        never answers a request no retry can make good."""

    def reserve(self) -> None:
        """Take the VM for this job, before it is queued; raise a VdsmError
        (and take nothing) if it cannot be had."""
        raise NotImplementedError

    def release(self) -> None:
        """Give back what reserve() took, for a job that will never run."""
        raise NotImplementedError

    def info_extra(self) -> dict[str, Any]:
        return {"vm_id": self.vm_id}

    def kept_xml_bytes(self) -> int:
        """The bytes of domain XML it keeps until it ends (what counts
        against api.KEPT_XML_BYTES)."""
        return 0

    def error_info(self, exc: BaseException) -> dict[str, Any]:
        if isinstance(exc, VdsmError):
            return exc.to_dict()
        if isinstance(exc, (HypervisorError, RollbackFailed)):
            return {"code": self.error_class.code, "message": str(exc)}
        return {"code": GeneralException.code,
                "message": f"unexpected error: {exc!r}"}


class StartupJob(VmJob):
    """A job that brings one VM up: staged before it is queued, committed
    to the public registry at its end, unstaged if it ends otherwise.
    Subclasses also set `staged_status` and write their flow in `run()`.

    The host paths its domain will hold (`paths`, hostpaths.Hold: what
    the verb's check found in its domain XML) are taken with its stage
    and held by its VM as long as it is in the registry; a path another
    VM holds so that they clash refuses the request (-32602 naming
    `paths_param`, the parameter that carried the XML)."""
    staged_status: VmStatus
    # At most this many VMs staged with staged_status at once (None: no
    # limit); a job beyond it is refused (MigrateLimit).
    staging_limit: int | None = None
    paths_param = "xml"
    # The domain XML it defines (a creation's, a restore's), kept until it
    # ends; None when libvirt brings the domain (an incoming migration).
    domain_xml: str | None = None
    # Set by its commit: the VM came up. A job may end done without one
    # (a recovery that finds its domain stopped, or migrated away).
    committed = False

    def __init__(self, spec: VmSpec, hypervisor: Hypervisor,
                 registry: VmRegistry,
                 paths: tuple[hostpaths.Hold, ...] = (),
                 **kwargs: Any) -> None:
        super().__init__(spec.vm_id, hypervisor, registry, **kwargs)
        self.spec = spec
        self.paths = tuple(paths)

    def reserve(self) -> None:
        """Stage the vmId with the paths its domain holds (raises
        VmExists, InvalidParams, or MigrateLimit)."""
        try:
            self.registry.stage(self.vm_id, self.staged_status,
                                self.spec.params, self,
                                max_with_status=self.staging_limit,
                                paths=self.paths)
        except hostpaths.Taken as exc:
            raise InvalidParams(self.paths_param,
                                f"domain XML refused: {exc}") from None

    def release(self) -> None:
        self.registry.unstage(self.vm_id, self)

    def kept_xml_bytes(self) -> int:
        # As Python holds it: a string of ASCII and one emoji takes four
        # bytes a character.
        xml = self.domain_xml
        return 0 if xml is None else sys.getsizeof(xml)

    def commit(self, status: VmStatus,
               params: dict[str, Any] | None = None) -> None:
        """Make the VM public with `status`, and end the job done, in one
        step; refused (JobAborted) if an abort came first."""
        def commit() -> None:
            self.registry.commit(self.vm_id, status, self, params=params)
            self.committed = True
        self.complete(commit)
        log.info("VM %s committed %s", self.vm_id, status)

    def on_ended(self) -> None:
        # Whatever the end (done, failed, aborted, even aborted while still
        # queued) nothing of this job stays staged; and an ended job, kept
        # listed for a while, keeps its JobInfo, not the request.
        self.release()
        # Nothing reads the spec or the domain XML once the job ended (the
        # flow is over: libvirt has the XML, or it was not wanted); its
        # paths, taken, are the registry's to give back.
        self.spec = None  # type: ignore[assignment]
        self.domain_xml = None
        self.paths = ()


class ClaimJob(VmJob):
    """A job on a public VM (a hibernation, a migration away): it claims
    the VM before it is queued, `claimed_status` meanwhile; its commit
    drops the VM from the public registry (it left this host); any other
    end gives the VM back with the status it had (the registry keeps it:
    `Vm.status_before_claim`). Subclasses also set `refusal`, what a busy
    VM's refusal begins with, and write their flow in `run()`."""
    claimed_status: VmStatus
    refusal: str

    def __init__(self, vm_id: str, hypervisor: Hypervisor,
                 registry: VmRegistry, **kwargs: Any) -> None:
        super().__init__(vm_id, hypervisor, registry, **kwargs)
        # The VM as reserve() claimed it: its params, and the status it
        # had then, which an undo may need (its guest paused or running).
        self.vm_before_claim: Vm | None = None

    def refuse_early(self) -> None:
        """noVM (1) for a vmId neither staged nor public (reserve() still
        decides: the VM may leave before it claims it)."""
        self.registry.get(self.vm_id)

    def reserve(self) -> None:
        """Claim the public VM (raises NoVM; error_class if another job
        works on it)."""
        try:
            self.vm_before_claim = self.registry.claim(
                self.vm_id, self.claimed_status, self)
        except VmBusy as exc:
            raise self.error_class(f"{self.refusal}: {exc}") from None

    def release(self) -> None:
        """End the claim: the VM stays public, as it was before."""
        self.registry.end_claim(self.vm_id, self)

    def commit(self) -> None:
        """Drop the VM from the public registry, and end the job done, in
        one step; refused (JobAborted) if an abort came first."""
        self.complete(lambda: self.registry.drop_claimed(self.vm_id, self))

    def on_ended(self) -> None:
        # Last of a subclass's on_ended, whatever the end: an ended job,
        # kept listed for a while, keeps its JobInfo, not the VM it worked
        # on (its params, up to 64 KiB; the claim's end, done by now,
        # needed only the registry's own record).
        self.vm_before_claim = None


# -- steps more than one flow takes ------------------------------------------

def over_a_stopped_definition(hv: Hypervisor, vm_id: str,
                              error_class: type[VdsmError]) -> bool:
    """True if the VM's own definition is here, stopped (vmjobs metadata):
    the VM's saved state (a restore) or its running guest (an incoming
    migration) may go over it, as libvirt lets them, and an undo must
    leave it as it was. False if no domain has the UUID; any other domain
    with it is refused (error_class), never touched.

    Such a definition is what a hibernation interrupted between its save
    and its undefine (a crash) leaves, or a guest stopped outside vmjobs:
    its VM's state, or its guest, is elsewhere now."""
    state = hv.state(vm_id)
    if state is None:
        return False
    if state is DomainState.SHUTOFF and ownership.carries_mark(hv, vm_id):
        return True
    raise uuid_taken(vm_id, state, error_class)


def uuid_taken(vm_id: str, state: DomainState,
               error_class: type[VdsmError]) -> VdsmError:
    """The refusal (error_class) of a VM whose UUID a domain here has."""
    return error_class(f"a domain with UUID {vm_id} already exists here "
                       f"({state}; if it is a vmjobs domain in no "
                       "registry, VM.destroy removes it)")


def status_of(state: DomainState | None, vm_id: str,
              paused: bool) -> VmStatus:
    """The public status of a domain found in `state` (None: gone) that
    must now run (or be paused, when `paused`); raise (CreateError) if it
    does neither."""
    expected = DomainState.PAUSED if paused else DomainState.RUNNING
    if state != expected:
        raise CreateError(f"domain {vm_id} is {state or 'gone'}, "
                          f"expected {expected}")
    return PUBLIC_STATUS[state]
