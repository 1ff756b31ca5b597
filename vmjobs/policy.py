"""What a request may make the host do: the domain XML it carries, or the
state file it restores from, judged before anything is staged or queued.

The service runs as root and libvirt does what a domain XML says; a caller
is trusted to run VMs, not to act as root. A domain XML (the engine's
`vmParams.xml`, an incoming migration's, the one inside a state file) is
accepted only if allowlist.py knows everything in it (an allowlist: an
unknown element or attribute is refused until vmjobs learns it), every
host path in it is inside `storage.image_dirs` (hostfiles.py) and every
disk image is what it says and names nothing outside (images.py). What it
accepts comes with the host paths the domain holds while it runs
(hostpaths.py), which its VM takes with its vmId's stage.

Parsed with defusedxml (domxml.parse_untrusted): no DTD, no entity.
"""

import functools

from . import allowlist, domxml, hostpaths, statefiles
from .allowlist import Refused
from .errors import CreateError, InvalidParams
from .hypervisor import HypervisorError

__all__ = ["Refused", "check_host_access", "check_engine_xml",
           "checked_state_xml", "check_domain_xml", "paths_held"]


def confinement(config, written_by_libvirt=False, hv=None):
    """Where a request's domain XML may reach: the config's, and the
    bridges of libvirt's networks read from `hv` (None: not known)."""
    return allowlist.Confinement(
        tuple(config.image_dirs), tuple(config.network_hosts),
        written_by_libvirt,
        network_bridge=None if hv is None else hv.network_bridge)


def check_host_access(spec, hv, config, incoming=False):
    """What a VM.create or VM.migrationCreate (`incoming`: its XML is the
    source libvirtd's) request's domain XML names on the host: refused
    with -32602 'xml' before anything is staged or queued. Returns the
    allowlist.Confinement it was judged in, with what the check found:
    the backing chains checked (`chains`, for domxml.compose to state)
    and the host paths the domain will hold (`paths`, none for the guest
    vmjobs builds)."""
    ctx = confinement(config, incoming, hv)
    if spec.xml is not None:
        check_engine_xml(spec.xml, ctx)
    return ctx


def check_engine_xml(text, ctx):
    """vmParams.xml (or an incoming migration's xml) -> -32602 'xml'."""
    try:
        check_domain_xml(text, ctx)
    except (Refused, domxml.BadDomainXML) as exc:
        raise InvalidParams("xml", f"domain XML refused: {exc}") from None


def checked_state_xml(hv, path, config):
    """(domain XML, paths): the domain XML a restore of `path` gives
    libvirt, and the host paths it holds (hostpaths.Hold). The XML is
    the state file's, read once, judged, with the backing chains checked
    stated. libvirt
    restores the file's memory with this XML in place of the one the
    file holds by then, so a file rewritten after this check (as `virsh
    save-image-define` does) cannot name what was not judged.

    `path` must be a regular file in the state dirs, not reached through a
    symlink: else -32602 'restoreState', as is an XML the policy refuses.
    createErr when libvirt cannot read the file. Only read, before
    anything runs."""
    statefiles.confined(path, "restoreState", config.state_dirs,
                        config.image_dirs)
    statefiles.check_readable(path, functools.partial(InvalidParams,
                                                      "restoreState"))
    ctx = confinement(config, written_by_libvirt=True, hv=hv)
    try:
        text = hv.saved_domain_xml(path)
        check_domain_xml(text, ctx)
    except HypervisorError as exc:
        # libvirt could not read it (not a state file, or libvirt failed):
        # the hypervisor refused the restore, as the flow would say.
        raise CreateError(f"cannot read the domain in {path}: {exc}") \
            from None
    except (ValueError, Refused, domxml.BadDomainXML) as exc:
        raise InvalidParams("restoreState", f"{path} refused: {exc}") \
            from None
    try:
        return domxml.with_chains(text, ctx.chains), tuple(ctx.paths)
    except domxml.BadDomainXML as exc:
        raise InvalidParams("restoreState", f"{path} refused: {exc}") \
            from None


def check_domain_xml(text, ctx):
    """Refuse (Refused, saying what) a domain XML text that breaks the
    policy; BadDomainXML if it is not acceptable XML. `ctx`: an
    allowlist.Confinement (given the paths the domain holds, once it
    passed), or a list of image directories."""
    if not isinstance(ctx, allowlist.Confinement):
        ctx = allowlist.Confinement(tuple(ctx))
    root = domxml.parse_untrusted(text)
    allowlist.check(root, ctx)
    # With the backing files read from the images' headers, which the XML
    # does not name (domxml.compose states them for libvirt): read while
    # the guest runs, as a stated <backingStore>'s are.
    ctx.paths.extend(hostpaths.holding([
        *allowlist.held(root),
        *((real, hostpaths.Use.READ)
          for chain in ctx.chains.values() for real, _format in chain)]))


def paths_held(root):
    """The host paths (hostpaths.Hold) a domain that runs holds, read from
    its XML as libvirt gives it (`root`, parsed by domxml.parse_untrusted;
    recovery: a restart keeps them); read as a checked XML's are, by the
    allowlist's table."""
    return hostpaths.holding(allowlist.held(root))
