"""The errors a verb can answer with, each mapped once to its VDSM code.

The numbers are VDSM's (API.md), so an oVirt-style engine understands them.
"""

from workers import bounded_error


class VdsmError(Exception):
    """A verb failure: `code` and `name` as in API.md, a message a person
    can act on, and optional JSON-RPC `data`."""
    code = 100
    name = "GeneralException"
    # An expected failure is logged as one line, not with a traceback.
    expected = True

    def __init__(self, message, data=None):
        # Cut as a job's error is (workers.bounded_error): a message may
        # echo what the caller sent (a value, a method's name), and a
        # 200 KB vmID came back whole in the answer (the clean-room run).
        message = bounded_error({"message": message})["message"]
        super().__init__(message)
        self.message = message
        self.data = data

    def to_dict(self):
        return {"code": self.code, "message": self.message}


class NoVM(VdsmError):
    code, name = 1, "noVM"


class VmExists(VdsmError):
    code, name = 4, "exist"


class CreateError(VdsmError):
    code, name = 9, "createErr"


class MissParam(VdsmError):
    code, name = 11, "MissParam"


class MigrateError(VdsmError):
    code, name = 12, "migrateErr"


class NoSuchJob(VdsmError):
    code, name = 66, "NoSuchJob"


class JobNotDone(VdsmError):
    code, name = 68, "JobNotDone"


class MigrateLimit(VdsmError):
    code, name = 82, "migrateLimit"


class JobNotActive(VdsmError):
    code, name = 84, "JobNotActive"


class Recovering(VdsmError):
    code, name = 99, "recovery"


class GeneralException(VdsmError):
    code, name = 100, "GeneralException"
    expected = False


class ResourceExhausted(VdsmError):
    code, name = 1100, "ResourceExhausted"


class InvalidParams(VdsmError):
    """A parameter is present but malformed; `data.param` names it."""
    code, name = -32602, "InvalidParams"

    def __init__(self, param, message):
        super().__init__(f"invalid parameter {param!r}: {message}",
                         data={"param": param})
        self.param = param


class UnknownMethod(VdsmError):
    code, name = -32601, "MethodNotFound"


class InternalError(VdsmError):
    """JSON-RPC's -32603: what a call is answered with when its answer
    cannot be sent (larger than rpc.max_response_bytes, or not JSON) or an
    error escaped the verbs (a bug); never raised by a verb."""
    code, name = -32603, "InternalError"
