"""Steps more than one flow takes, as plain functions of the adapter."""

from .. import hostfiles
from ..errors import CreateError
from ..hypervisor import DomainState
from ..registry import VmStatus

# The public status of a VM whose domain is in a given state.
PUBLIC_STATUS = {DomainState.RUNNING: VmStatus.UP,
                 DomainState.PAUSED: VmStatus.PAUSED}


def ensure_no_domain(hv, vm_id, error_class=CreateError):
    """Refuse to touch a domain we did not make: defining over an existing
    one would redefine it, and a rollback would then remove it."""
    state = hv.state(vm_id)
    if state is not None:
        raise error_class(f"a domain with UUID {vm_id} already exists "
                          f"here ({state}; if it is a vmjobs domain in no "
                          "registry, VM.destroy removes it)")


def running_status(hv, vm_id, paused, error_class=CreateError):
    """The public status of a domain that must now run (or be paused, when
    `paused`); raise if it does neither."""
    state = hv.state(vm_id)
    expected = DomainState.PAUSED if paused else DomainState.RUNNING
    if state != expected:
        raise error_class(f"domain {vm_id} is {state or 'gone'}, "
                          f"expected {expected}")
    return PUBLIC_STATUS[state]


def check_readable_file(path, error_class=CreateError):
    """A readable regular file, not reached through a symlink."""
    try:
        hostfiles.check_regular_file(path)
    except OSError as exc:
        raise error_class(f"cannot open {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise error_class(str(exc)) from None
