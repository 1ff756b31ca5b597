"""What a request may make the host do: the domain XML it carries, or the
state file it restores from, judged before anything is staged or queued.

The service runs as root and libvirt does what a domain XML says; a caller
is trusted to run VMs, not to act as root. A domain XML (the engine's
`vmParams.xml`, an incoming migration's, the one inside a state file) is
accepted only if allowlist.py knows everything in it (an allowlist: an
unknown element or attribute is refused until vmjobs learns it), every
host path in it is inside `storage.image_dirs` (hostfiles.py) and every
disk image is what it says and names nothing outside (images.py).

Parsed with defusedxml (domxml.parse_untrusted): no DTD, no entity.
"""

from . import allowlist, domxml, hostfiles
from .allowlist import Refused
from .errors import CreateError, InvalidParams
from .hypervisor import HypervisorError

__all__ = ["Refused", "check_host_access", "check_engine_xml",
           "check_state_file", "check_domain_xml"]


def confinement(config, written_by_libvirt=False):
    return allowlist.Confinement(tuple(config.image_dirs),
                                 tuple(config.network_hosts),
                                 written_by_libvirt)


def check_host_access(spec, hv, config, incoming=False):
    """What a VM.create or VM.migrationCreate (`incoming`: its XML is the
    source libvirtd's) request names on the host (its restoreState, or its
    domain XML): refused with -32602 before anything is staged or
    queued. Returns the backing chains checked in the domain XML
    (allowlist.Confinement.chains), for domxml.compose to state."""
    if spec.restore_state is not None:
        hostfiles.state_path(spec.restore_state, "restoreState",
                             config.state_dirs, config.image_dirs)
        check_state_file(hv, spec.restore_state,
                         confinement(config, written_by_libvirt=True))
    elif spec.xml is not None:
        ctx = confinement(config, incoming)
        check_engine_xml(spec.xml, ctx)
        return ctx.chains
    return {}


def check_engine_xml(text, ctx):
    """vmParams.xml (or an incoming migration's xml) -> -32602 'xml'."""
    try:
        check_domain_xml(text, ctx)
    except (Refused, domxml.BadDomainXML) as exc:
        raise InvalidParams("xml", f"domain XML refused: {exc}") from None


def check_state_file(hv, path, ctx):
    """A restoreState file (already confined to the state dirs): a regular
    file, not reached through a symlink, whose domain XML passes the
    policy; else -32602 'restoreState'. Only read, before anything runs."""
    try:
        hostfiles.check_regular_file(path)
        check_domain_xml(hv.saved_domain_xml(path), ctx)
    except OSError as exc:
        raise InvalidParams("restoreState", f"cannot open {path}: "
                            f"{exc.strerror}") from None
    except HypervisorError as exc:
        # libvirt could not read it (not a state file, or libvirt failed):
        # the hypervisor refused the restore, as the flow would say.
        raise CreateError(f"cannot read the domain in {path}: {exc}") \
            from None
    except (ValueError, Refused, domxml.BadDomainXML) as exc:
        raise InvalidParams("restoreState", f"{path} refused: {exc}") \
            from None


def check_domain_xml(text, ctx):
    """Refuse (Refused, saying what) a domain XML text that breaks the
    policy; BadDomainXML if it is not acceptable XML. `ctx`: an
    allowlist.Confinement, or a list of image directories."""
    if not isinstance(ctx, allowlist.Confinement):
        ctx = allowlist.Confinement(tuple(ctx))
    allowlist.check(domxml.parse_untrusted(text), ctx)
