"""The verb table of API.md, and how a call's params bind to a verb's
method: named (a dict) or positional (a list), as JSON-RPC allows. API
(api.py) serves the verbs; this module only says what they are."""

from .errors import InvalidParams

# verb -> (method, parameter names in positional order)
VERBS = {
    "Host.ping": ("host_ping", ()),
    "Host.getVMList": ("host_get_vm_list",
                       ("fullStatus", "vmList", "onlyUUID")),
    "Host.getAllVmStats": ("host_get_all_vm_stats", ()),
    "Host.getJobs": ("host_get_jobs", ("job_type", "job_ids")),
    "Host.getStats": ("host_get_stats", ()),
    "VM.create": ("vm_create", ("vmID", "vmParams")),
    "VM.migrationCreate": ("vm_migration_create",
                           ("vmID", "params", "incomingLimit")),
    "VM.migrate": ("vm_migrate", ("vmID", "params")),
    "VM.hibernate": ("vm_hibernate", ("vmID", "hibernationVolHandle")),
    "VM.destroy": ("vm_destroy", ("vmID", "gracefulAttempts")),
    "VM.getStats": ("vm_get_stats", ("vmID",)),
    "Job.abort": ("job_abort", ("jobId",)),
    "Job.delete": ("job_delete", ("jobId",)),
}

# What each param is, for `vmjobs call --list` (API.md "Verbs"): name ->
# its JSON type; and the params a verb may go without.
PARAM_TYPES = {
    "vmID": "UUID", "vmParams": "object", "params": "object",
    "incomingLimit": "int", "hibernationVolHandle": "path",
    "gracefulAttempts": "int", "fullStatus": "bool",
    "vmList": "list of UUIDs", "onlyUUID": "bool", "job_type": "string",
    "job_ids": "list of job ids", "jobId": "job id",
}
OPTIONAL = {
    "Host.getVMList": {"fullStatus", "vmList", "onlyUUID"},
    "Host.getJobs": {"job_type", "job_ids"},
    "VM.migrationCreate": {"incomingLimit"},
    "VM.destroy": {"gracefulAttempts"},
}

# What answers while recovery at start-up runs; everything else answers
# `recovery` (99) until every recover job has ended.
OPEN_DURING_RECOVERY = frozenset({"Host.ping", "Host.getJobs",
                                  "Host.getStats"})


def bind(method, param_names, params):
    """(args, kwargs) for verb `method`, taking `param_names`, called with
    `params`: named (a dict), positional (a list) or none."""
    if params is None:
        return (), {}
    if isinstance(params, dict):
        for key in params:
            if key not in param_names:
                raise InvalidParams(key, f"{method} takes no such parameter")
        return (), params
    if isinstance(params, (list, tuple)):
        if len(params) > len(param_names):
            raise InvalidParams(param_names[-1] if param_names else
                                "params", f"{method} takes at most "
                                f"{len(param_names)} parameter(s)")
        return tuple(params), {}
    raise InvalidParams("params", "must be an object or an array")


class Namespace:
    """`api.VM.create(...)` for `api.call("VM.create", ...)`."""

    def __init__(self, api, prefix):
        self._api = api
        self._prefix = prefix

    def __getattr__(self, name):
        method = f"{self._prefix}.{name}"
        if method not in VERBS:
            raise AttributeError(method)

        def verb(*args, **kwargs):
            if args and kwargs:
                raise TypeError("give params by name or by position, "
                                "not both")
            return self._api.call(method, kwargs if kwargs else list(args))
        verb.__name__ = name
        return verb
