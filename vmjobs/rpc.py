"""JSON-RPC 2.0 (https://www.jsonrpc.org/specification) over the verbs:
request bytes in, response bytes (or nothing, for notifications) out.
Knows nothing of the transport.

Verb failures answer with VDSM's codes (VdsmError.code); the protocol's own
failures with the standard ones."""

import json
import logging

from .audit import Audit
from .errors import GeneralException, VdsmError

log = logging.getLogger("vmjobs.rpc")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INTERNAL_ERROR = -32603


class Dispatcher:
    def __init__(self, api):
        self.api = api
        self.audit = Audit(getattr(api, "metrics", None))

    def handle(self, body, caller="-"):
        """Answer the request `body` (bytes) from `caller` (for the audit
        log). Returns the response bytes, or None when there is nothing to
        answer (only notifications)."""
        try:
            request = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            # RecursionError: nesting deeper than the parser goes.
            return _dump(_error(None, PARSE_ERROR,
                                f"parse error: {exc or 'nested too deep'}"))
        if isinstance(request, list):
            if not request:
                return _dump(_error(None, INVALID_REQUEST,
                                    "invalid request: empty batch"))
            responses = [r for r in (self._one(one, caller)
                                     for one in request) if r is not None]
            return _dump(responses) if responses else None
        response = self._one(request, caller)
        return None if response is None else _dump(response)

    def _one(self, request, caller):
        if not isinstance(request, dict) or request.get("jsonrpc") != "2.0" \
                or not isinstance(request.get("method"), str) \
                or not _valid_id(request.get("id")) \
                or not isinstance(request.get("params", []), (list, dict)):
            request_id = request.get("id") if isinstance(request, dict) and \
                _valid_id(request.get("id")) else None
            return _error(request_id, INVALID_REQUEST,
                          "invalid request: a JSON-RPC 2.0 request is an "
                          "object with jsonrpc '2.0', a string method, "
                          "optional params (array or object) and optional "
                          "id (string, number or null)")
        notification = "id" not in request
        request_id = request.get("id")
        method, params = request["method"], request.get("params")
        started = self.audit.start()
        try:
            result = self.api.call(method, params)
        except VdsmError as exc:
            self.audit.verb(started, method, params, caller, error=exc)
            if notification:
                return None
            return _error(request_id, exc.code, exc.message, exc.data)
        except Exception:
            log.exception("internal error answering %s", request["method"])
            self.audit.verb(started, method, params, caller,
                            error=GeneralException("internal error"))
            if notification:
                return None
            return _error(request_id, INTERNAL_ERROR, "internal error")
        self.audit.verb(started, method, params, caller, result)
        if notification:
            return None
        return {"jsonrpc": "2.0", "id": request_id, "result": result}


def _valid_id(value):
    return value is None or (isinstance(value, (str, int, float)) and
                             not isinstance(value, bool))


def _error(request_id, code, message, data=None):
    error = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def _dump(response):
    return json.dumps(response).encode()
