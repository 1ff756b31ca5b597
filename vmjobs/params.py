"""Engine parameters, parsed and validated into a VmSpec before anything is
queued: a request that would fail on its parameters fails at once, with the
parameter named, and never reaches the pool or libvirt."""

import dataclasses
import json
import re
import uuid

from . import domxml, endpoints, hostfiles
from .allowlist import MAX_VCPUS
from .errors import InvalidParams, MissParam

MEM_MIB_RANGE = (16, 4194304)
# As many vCPUs as a domain XML may give (allowlist.VCPUS).
SMP_RANGE = (1, MAX_VCPUS)

_CANONICAL_UUID = re.compile(
    "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Characters XML 1.0 cannot carry at all, even escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# Nor a name: libvirt refuses line breaks in it, and a carriage return
# would silently become a line feed on the way through XML.
_CONTROL = re.compile("[\x00-\x1f\x7f\ufffe\uffff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


# The vmParams keys vmjobs reads; every other key is the engine's own,
# kept opaque (API.md "vmParams").
READ_KEYS = frozenset({"vmId", "xml", "vmName", "memSize", "smp",
                       "launchPaused", "restoreState"})


@dataclasses.dataclass(frozen=True)
class VmSpec:
    vm_id: str
    params: dict              # every vmParams key but `xml`, kept opaque
    xml: str | None = None    # the engine's domain XML, if it gave one
    name: str | None = None
    mem_mib: int | None = None
    smp: int = 1
    launch_paused: bool = False
    restore_state: str | None = None

    def engine_keys(self):
        """The params vmjobs does not read: the engine's own."""
        return {key: value for key, value in self.params.items()
                if key not in READ_KEYS}


def parse_vm_id(value, param="vmID"):
    """A UUID string, returned in canonical (lower-case) form."""
    if value is None:
        raise MissParam(f"missing parameter {param!r}")
    if not isinstance(value, str):
        raise InvalidParams(param, "must be a UUID string")
    if _CANONICAL_UUID.fullmatch(value):
        return value   # the common case, without building a UUID object
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidParams(param, f"{value!r} is not a UUID") from None


def parse_create(vm_id, vm_params):
    """Parse `VM.create`'s (vmID, vmParams) into a VmSpec."""
    vm_id, params, size = _params_of_vm(vm_id, vm_params, "vmParams",
                                        READ_KEYS)
    launch_paused = _optional_bool(params, "launchPaused")
    opaque = _opaque(params, size, "vmParams")

    if "restoreState" in params:
        path = params["restoreState"]
        if not isinstance(path, str) or not path or _NOT_XML.search(path):
            raise InvalidParams("restoreState", "must be a file path")
        return VmSpec(vm_id, opaque, launch_paused=launch_paused,
                      restore_state=path)

    if "xml" in params:
        return VmSpec(vm_id, opaque, xml=_domain_xml(params["xml"], vm_id),
                      launch_paused=launch_paused)

    for required in ("vmName", "memSize"):
        if required not in params:
            raise MissParam(f"missing parameter {required!r} in vmParams "
                            "(give either 'xml' or 'vmName' and 'memSize')")
    name = params["vmName"]
    if not isinstance(name, str) or not name.strip():
        raise InvalidParams("vmName", "must be a non-empty string")
    if len(name) > 255 or not hostfiles.is_entry_name(name) or \
            _CONTROL.search(name):
        # libvirt makes directories of the bare name (hostfiles says why)
        raise InvalidParams("vmName", "must be at most 255 characters, "
                            "without '/' or control characters, and not "
                            "'.' or '..'")
    mem = _int_in_range(params, "memSize", *MEM_MIB_RANGE)
    smp = _int_in_range(params, "smp", *SMP_RANGE, default=1)
    return VmSpec(vm_id, opaque, name=name, mem_mib=mem, smp=smp,
                  launch_paused=launch_paused)


def parse_migration(vm_id, params):
    """Parse `VM.migrationCreate`'s (vmID, params): the incoming VM's
    parameters, with the domain XML it arrives with in `xml`."""
    vm_id, params, size = _params_of_vm(vm_id, params, "params", READ_KEYS)
    if "xml" not in params:
        raise MissParam("missing parameter 'xml' in params (the domain XML "
                        "of the incoming VM)")
    opaque = _opaque(params, size, "params")
    xml = _domain_xml(params["xml"], vm_id)
    return VmSpec(vm_id, opaque, xml=xml)


@dataclasses.dataclass(frozen=True)
class MigrationTarget:
    """Where VM.migrate sends a VM."""
    dst: str                  # the destination service: HOST:PORT or unix:
    dst_uri: str              # its libvirtd, as the source libvirtd sees it
    migration_uri: str | None = None   # where the data goes, if not dst_uri
    timeout: float | None = None       # seconds, default from the config
    max_bandwidth: int | None = None   # MiB/s, VDSM's maxBandwidth


def parse_migrate(vm_id, params, socket_dirs, migration_networks,
                  migration_ports, image_dirs):
    """Parse `VM.migrate`'s (vmID, params); `dst`, `dstUri` and
    `migrationUri` are judged by endpoints.py, unix sockets confined to
    `socket_dirs` (migration.socket_dirs) and never in `image_dirs`
    (storage.image_dirs, guests' sockets), migrationUri to the destination
    (migration.networks, port_min and port_max)."""
    vm_id = parse_vm_id(vm_id)
    params = _params_and_size(params, "params", MIGRATE_KEYS)[0]
    for key in params:
        if key not in MIGRATE_KEYS and key not in VDSM_MIGRATE_KEYS_IGNORED:
            raise InvalidParams(key, "VM.migrate takes no such parameter")
    if "vmId" in params and parse_vm_id(params["vmId"], "vmId") != vm_id:
        raise InvalidParams("vmId", "must equal vmID")
    for required in ("dst", "dstUri"):
        if required not in params:
            raise MissParam(f"missing parameter {required!r} in params")
    dst = endpoints.dst(params["dst"], socket_dirs, image_dirs)
    dst_uri = endpoints.dst_uri(params["dstUri"], socket_dirs, image_dirs)
    endpoints.same_host(dst, dst_uri)
    migration_uri = params.get("migrationUri")
    if migration_uri is not None:
        migration_uri = endpoints.migration_uri(
            migration_uri, dst_uri, migration_networks, migration_ports)
    timeout = params.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or
                                not isinstance(timeout, (int, float)) or
                                not 0 < timeout <= 7 * 86400):
        raise InvalidParams("timeout", "must be a number of seconds, "
                            "above 0 and at most a week")
    max_bandwidth = None
    if "maxBandwidth" in params:
        max_bandwidth = _int_in_range(params, "maxBandwidth", 1, 1 << 20)
    return vm_id, MigrationTarget(dst, dst_uri, migration_uri, timeout,
                                  max_bandwidth)


# The VM.migrate params keys vmjobs reads.
MIGRATE_KEYS = frozenset(("dst", "dstUri", "migrationUri", "timeout",
                          "maxBandwidth", "vmId"))


# What an engine's VM.migrate also sends (VDSM's MigrateParams, in
# vdsm-api.yml), accepted so that an engine's request is not refused for
# them, and not acted on: none reaches libvirt. vmjobs migrates live,
# not tunneled, by the fields above; see docs/api.md.
VDSM_MIGRATE_KEYS_IGNORED = frozenset((
    "src", "mode", "method", "tunneled", "dstqemu", "dstparams",
    "abortOnError", "compressed", "autoConverge", "consoleAddress",
    "encrypted", "convergenceSchedule", "enableGuestEvents",
    "outgoingLimit", "incomingLimit", "parallel", "cpusets",
    "numaNodesets", "zerocopy", "migrationDowntime",
))


# VDSM's gracefulAttempts is any integer (its range(gracefulAttempts));
# at most this many are tried, as each graceful try may take libvirt's
# own timeout (about 10 s on QEMU).
MAX_GRACEFUL_ATTEMPTS = 10


def parse_graceful_attempts(value):
    """VM.destroy's gracefulAttempts: graceful destroys tried before the
    forced one (None or below 1: none; above MAX_GRACEFUL_ATTEMPTS: that
    many)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParams("gracefulAttempts", "must be an integer")
    return max(0, min(value, MAX_GRACEFUL_ATTEMPTS))


def reject_surrogates(params, param_names):
    """-32602 naming the param if any text in it (keys included) holds a
    lone surrogate: JSON lets one through, no encoding can carry it."""
    items = params.items() if isinstance(params, dict) else \
        zip(param_names, params, strict=False) if isinstance(params, (list, tuple)) else ()
    for name, value in items:
        try:
            found = _has_surrogate(name) or _has_surrogate(value)
        except RecursionError:
            raise InvalidParams(name, "nested too deep") from None
        if found:
            raise InvalidParams(name, "holds a lone surrogate (\\ud800-"
                                "\\udfff), which is not Unicode text")


def _has_surrogate(value):
    if isinstance(value, str):
        # isascii() reads a flag CPython keeps on the string: most text
        # needs no search at all (benchmark 2 counts this per VM).
        return not value.isascii() and _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v)
                   for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(map(_has_surrogate, value))
    return False


def _domain_xml(xml, vm_id):
    if not isinstance(xml, str):
        raise InvalidParams("xml", "must be a string")
    try:
        xml_uuid = domxml.domain_uuid(xml)
    except domxml.BadDomainXML as exc:
        raise InvalidParams("xml", str(exc)) from None
    if xml_uuid != vm_id:
        raise InvalidParams("xml", f"its uuid {xml_uuid} is not {vm_id}")
    return xml


def _opaque(params, size, param):
    """The VM's opaque parameters (all but `xml`) of `params`, whose JSON
    took `size` bytes in all; -32602 naming `param` if they are more than
    the metadata holds (domxml.MAX_PARAMS_BYTES)."""
    opaque = {key: value for key, value in params.items() if key != "xml"}
    if size > domxml.MAX_PARAMS_BYTES and not domxml.params_fit(opaque):
        raise InvalidParams(param, "the VM's parameters other than xml "
                            f"take more than {domxml.MAX_PARAMS_BYTES} "
                            "bytes of JSON")
    return opaque


def _params_of_vm(vm_id, vm_params, param, read):
    """(vmID, the JSON object `vm_params` made anew without the null keys
    of `read`, the size of its JSON) of a verb that names the VM twice:
    the object's `vmId` must be the verb's `vmID`."""
    vm_id = parse_vm_id(vm_id)
    params, size = _params_and_size(vm_params, param, read)
    if "vmId" not in params:
        raise MissParam(f"missing parameter 'vmId' in {param}")
    if parse_vm_id(params["vmId"], "vmId") != vm_id:
        raise InvalidParams("vmId", f"{params['vmId']} is not vmID {vm_id}")
    return vm_id, params, size


def _params_and_size(vm_params, param, read):
    """The JSON object `vm_params`, made anew, and the size of its JSON.
    A key of `read` (those vmjobs reads) whose value is null is left out:
    null is that key not given, as it is for a verb's own optional
    params, so an optional key takes its default and a required one is
    MissParam; the engine's own keys are kept as they came."""
    if vm_params is None:
        raise MissParam(f"missing parameter {param!r}")
    if not isinstance(vm_params, dict):
        raise InvalidParams(param, "must be an object")
    try:
        # Kept in the domain's metadata and returned by VM.getStats: it must
        # survive a JSON round trip unchanged.
        # allow_nan=False: NaN and Infinity are not JSON; kept, they would
        # make every later answer that returns them invalid.
        text = json.dumps(vm_params, allow_nan=False)
        params = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise InvalidParams(_not_json(vm_params, param),
                            f"not JSON: {exc}") from None
    return {key: value for key, value in params.items()
            if value is not None or key not in read}, len(text)


def _not_json(params, param):
    """The key of `params` (a dict JSON cannot carry) whose value is what
    JSON cannot carry (NaN, infinity: 1e999 over the wire; an object of
    no JSON type in-process), so that -32602 names it as it names any
    malformed key; `param` itself if no one value is (a key that is no
    string)."""
    for key, value in params.items():
        if not isinstance(key, str):
            break
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            return key
    return param


def _optional_bool(params, key):
    value = params.get(key, False)
    if not isinstance(value, bool):
        raise InvalidParams(key, "must be true or false")
    return value


def _int_in_range(params, key, low, high, default=None):
    value = params.get(key, default)
    # bool is an int in Python, never a size.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParams(key, "must be an integer")
    if not low <= value <= high:
        raise InvalidParams(key, f"{value} is outside {low}..{high}")
    return value
