"""JSON-RPC 2.0 (https://www.jsonrpc.org/specification) over the verbs:
request bytes in, response bytes (or nothing, for notifications) out.
Knows nothing of the transport.

Verb failures answer with VDSM's codes (VdsmError.code); the protocol's own
failures with the standard ones.

Bounds: a request holds at most strictjson.MAX_VALUES JSON values (more:
-32700, counted before it is parsed); a batch at most `max_batch` calls
(more: -32600, none runs);
an answer is never built larger than `max_response_bytes`: once the calls
answered so far (plus a -32603 for each call left) would pass it, the
calls left do not run and each answers -32603 "answer too large".
And the answers held at once, across connections, are bounded too
(AnswerRoom): a client that does not read its answer holds it until
`rpc.request_timeout`, so each answer's bytes past its first FREE_BYTES
take room from a shared budget, HELD_ANSWERS answers of the largest, until
it is written; an answer that finds no room answers -32603 "answer too
large" as one past the bound does (a batch's calls past it do not run).

Each call is audited, and counted in vmjobs_refused_total if it was
answered with an error, once its answer is known: by the code it was
answered with, which is -32603 when its own answer was too large.

Requests and answers are strict JSON (RFC 8259), a request's bytes UTF-8
(strictjson.py): NaN and Infinity, which Python's parser takes, are a
parse error; a number too large for a float
(1e999, which it reads as infinity) makes an `id` invalid and a verb's
parameter malformed (params.py), as no answer could carry it."""

import json
import logging
import math

from . import strictjson
from .audit import Audit
from .budget import Budget
from .errors import InternalError, VdsmError

log = logging.getLogger("vmjobs.rpc")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INTERNAL_ERROR = -32603

MAX_BATCH = 100
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
TOO_LARGE = "answer too large"
# An answer takes no room for its first bytes: a small answer (a ping, a
# VM.create's) is always answered, whatever large ones are held; the
# connections' own share is bounded by rpc.max_connections x FREE_BYTES.
FREE_BYTES = 64 * 1024
# The room, in answers of max_response_bytes: what the answers not yet read
# may hold together (a hostile-caller audit, round 14: 64 connections that
# left their 12 MB answers unread grew a `vmjobs serve` from 46 MB to 1.8
# GB; an engine reads its answers, and holds few large ones at once).
HELD_ANSWERS = 4
# Why an answer that fit max_response_bytes was refused.
NO_ROOM = ("the service holds as much as it may of answers not yet read by "
           "their clients: retry later")


class AnswerRoom(Budget):
    """The bytes of answers held at once, each past its first FREE_BYTES:
    taken by the dispatcher as it builds an answer, given back by the
    server once the answer is written (or its client gone)."""

    @staticmethod
    def charge(size):
        """The room an answer of `size` bytes takes."""
        return max(0, size - FREE_BYTES)


class Dispatcher:
    def __init__(self, api, max_batch=MAX_BATCH,
                 max_response_bytes=MAX_RESPONSE_BYTES, room=None):
        """`room`: the AnswerRoom its answers take (None: one of its own,
        HELD_ANSWERS answers of max_response_bytes). Whoever writes an
        answer handle() returned gives its room back: answered()."""
        self.api = api
        self.room = room if room is not None else AnswerRoom(
            HELD_ANSWERS * max_response_bytes)
        self.audit = Audit()
        # vmjobs_refused_total: each call answered with an error, by the
        # code it was answered with (None: an API without metrics).
        self._metrics = getattr(api, "metrics", None)
        self.max_batch = max_batch
        self.max_response_bytes = max_response_bytes

    def handle(self, body, caller="-"):
        """Answer the request `body` (bytes) from `caller` (for the audit
        log). Returns the response bytes, or None when there is nothing to
        answer (only notifications)."""
        if strictjson.more_values_than(body):
            # Refused before it is parsed, whose objects would take 25
            # times its bytes (strictjson.MAX_VALUES).
            return _dump(_error(None, PARSE_ERROR, (
                f"parse error: more than {strictjson.MAX_VALUES} values in "
                "one request")))
        try:
            request = strictjson.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            # RecursionError: nesting deeper than the parser goes.
            return _dump(_error(None, PARSE_ERROR,
                                f"parse error: {exc or 'nested too deep'}"))
        if isinstance(request, list):
            if not request:
                return _dump(_error(None, INVALID_REQUEST,
                                    "invalid request: empty batch"))
            if len(request) > self.max_batch:
                return _dump(_error(None, INVALID_REQUEST, (
                    f"invalid request: a batch of {len(request)} calls; "
                    f"at most {self.max_batch} (rpc.max_batch)")))
            return self._batch(request, caller)
        response, call = self._one(request, caller)
        too_large = response is not None and (
            len(response) > self.max_response_bytes or
            not self.room.take(AnswerRoom.charge(len(response))))
        if too_large:
            response = _dump(_too_large(request))
            if not self.room.take(AnswerRoom.charge(len(response))):
                # Its id, echoed, is what does not fit.
                response = _no_room()
        self._done(call, too_large)
        return response

    def answered(self, response):
        """`response`, which handle() returned, is written (or will never
        be): the room it took is given back."""
        if response is not None:
            self.room.give(AnswerRoom.charge(len(response)))

    def _batch(self, requests, caller):
        """The batch's answer, within max_response_bytes: a call runs only
        if what is answered so far, its own -32603 and one for each call
        after it still fit; once an answer does not fit (it becomes its
        -32603), the calls after it do not run either."""
        # What each call answers if it does not run (None: nothing, it is
        # a notification), and the room they take, commas included.
        fallback = [_dump(_too_large(one)) if _answered(one) else None
                    for one in requests]
        reserve = sum(len(f) + 1 for f in fallback if f is not None)
        # The AnswerRoom taken so far: what the answers so far and the
        # fallbacks after them take, at least. First the fallbacks' own
        # (their ids, echoed, may be long): without it, no call runs.
        taken = AnswerRoom.charge(2 + reserve)
        if not self.room.take(taken):
            for _ in filter(None, fallback):
                self._count_refused(INTERNAL_ERROR)
            return _no_room()
        size = 2                              # the brackets
        full = False
        answers = []
        for one, too_large in zip(requests, fallback, strict=True):
            room = self.max_response_bytes - size
            if too_large is not None:
                reserve -= len(too_large) + 1  # now counted as its own
                full = full or len(too_large) + 1 + reserve > room
            if full:
                answer = too_large             # not run
                if answer is not None:
                    self._count_refused(INTERNAL_ERROR)
            else:
                answer, call = self._one(one, caller)
                replaced = answer is not None and too_large is not None \
                    and len(answer) + 1 + reserve > room
                if answer is not None and not replaced:
                    more = AnswerRoom.charge(
                        size + len(answer) + 1 + reserve) - taken
                    if more > 0 and self.room.take(more):
                        taken += more
                    else:
                        replaced = more > 0 and too_large is not None
                if replaced:
                    answer, full = too_large, True
                self._done(call, replaced)
            if answer is not None:
                answers.append(answer)
                size += len(answer) + 1
        if not answers:
            self.room.give(taken)
            return None
        response = b"[" + b",".join(answers) + b"]"
        # Taken counted a comma too many: keep what answered() gives back.
        self.room.give(taken - AnswerRoom.charge(len(response)))
        return response

    def _one(self, request, caller):
        """Run one call: (its answer as bytes, or None for a notification;
        the call, for _done, or None if the request is no call)."""
        if not isinstance(request, dict) or not _well_formed(request):
            request_id = request.get("id") if isinstance(request, dict) and \
                _valid_id(request.get("id")) else None
            return _dump(_error(request_id, INVALID_REQUEST,
                                "invalid request: a JSON-RPC 2.0 request "
                                "is an object with jsonrpc '2.0', a string "
                                "method, optional params (array or object) "
                                "and optional id (string, number or "
                                "null)")), None
        notification = "id" not in request
        request_id = request.get("id")
        method, params = request["method"], request.get("params")
        call = _Call(self.audit.start(), method, params, caller)
        # The API's uncounted entry (API.answer): a refusal is counted
        # here, once, by the code answered. (A stand-in API may have only
        # call().)
        run = getattr(self.api, "answer", None) or self.api.call
        try:
            call.result = run(method, params)
        except VdsmError as exc:
            call.error = _let_go(exc)
        except Exception as exc:
            log.exception("internal error answering %s", request["method"])
            call.error = InternalError("internal error")
            _let_go(exc)
        if notification:
            return None, call
        if call.error is not None:
            return _dump(_error(request_id, call.error.code,
                                call.error.message, call.error.data)), call
        try:
            return _dump({"jsonrpc": "2.0", "id": request_id,
                          "result": call.result}), call
        except (ValueError, TypeError):
            # A result JSON cannot carry (NaN...): a bug, answered -32603.
            log.exception("an answer is not JSON: answering -32603")
            call.result = None
            call.error = InternalError("internal error: the answer is not "
                                       "JSON")
            return _dump(_error(request_id, INTERNAL_ERROR,
                                call.error.message)), call

    def _done(self, call, too_large):
        """Audit `call` (None: the request was no call) and count it in
        vmjobs_refused_total if it was answered with an error, by the code
        it was answered with: `too_large` says its own answer was replaced
        by -32603 "answer too large"."""
        if call is None:
            return
        if too_large:
            call.result, call.error = None, InternalError(TOO_LARGE)
        self.audit.verb(call.started, call.method, call.params, call.caller,
                        call.result, error=call.error)
        if call.error is not None:
            self._count_refused(call.error.code)

    def _count_refused(self, code):
        if self._metrics is not None:
            self._metrics.refused(code)


class _Call:
    """One call of a verb, kept until its answer is known: what its audit
    line and the refusal count say of it."""

    def __init__(self, started, method, params, caller):
        self.started, self.method = started, method
        self.params, self.caller = params, caller
        self.result = None
        self.error = None     # the VdsmError it is answered with, if any


def _let_go(exc):
    """`exc`, and each exception it was raised from or during, without its
    traceback. A verb that refuses raises inside an `except` block (`raise
    InvalidParams(...) from None`), whose frame keeps the exception it
    caught, whose traceback keeps that frame: a cycle that keeps the
    request's parsed values (its domain XML, the allowlist's tree of it)
    in memory until the collector runs, which large strings never prompt.
    A hostile-caller audit, round 14: 23 MiB kept for each refused 4 MiB
    VM.create, 64 of them 1 GB of a `vmjobs serve`."""
    seen = set()
    chained = exc
    while chained is not None and id(chained) not in seen:
        seen.add(id(chained))
        chained.__traceback__ = None
        chained = chained.__cause__ or chained.__context__
    return exc


def _valid_id(value):
    if isinstance(value, float):
        return math.isfinite(value)       # 1e999: read as infinity
    return value is None or (isinstance(value, (str, int)) and
                             not isinstance(value, bool))


def _answered(request):
    """Would this batch member get an answer (it is no notification)?"""
    return not isinstance(request, dict) or "id" in request or \
        not _well_formed(request)


def _well_formed(request):
    return request.get("jsonrpc") == "2.0" and \
        isinstance(request.get("method"), str) and \
        _valid_id(request.get("id")) and \
        isinstance(request.get("params", []), (list, dict))


def _too_large(request):
    request_id = request.get("id") if isinstance(request, dict) and \
        _valid_id(request.get("id")) else None
    return _error(request_id, INTERNAL_ERROR, TOO_LARGE)


def _no_room():
    """The answer when not even its calls' -32603 fit the AnswerRoom: one
    -32603 whose id is null, as its ids are what does not fit."""
    return _dump(_error(None, INTERNAL_ERROR, TOO_LARGE, {"reason": NO_ROOM}))


def _error(request_id, code, message, data=None):
    error = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def _dump(response):
    return json.dumps(response, allow_nan=False).encode()
