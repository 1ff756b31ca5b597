"""The answers the service holds at once, across connections, are bounded
(rpc.AnswerRoom): a client that does not read its answer holds it until
rpc.request_timeout, and 64 of them held 64 answers of up to
rpc.max_response_bytes (a hostile-caller audit, round 14: a `vmjobs serve`
from 46 MB to 1.8 GB). Each test beside its control: a small answer, and a
large one once the room is given back, are answered."""

import json
import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import WAIT, new_id, vm_params, wait_job
from test_rpc_batch_bounds import call
from vmjobs.config import Config
from vmjobs.rpc import (
    FREE_BYTES,
    HELD_ANSWERS,
    NO_ROOM,
    TOO_LARGE,
    AnswerRoom,
    Dispatcher,
)
from vmjobs.server import Server

BOUND = 1024 * 1024          # rpc.max_response_bytes in these tests
CALLS = 20


def _request(body):
    return (b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
            b"application/json\r\nContent-Length: " +
            str(len(body)).encode() + b"\r\n\r\n" + body)


def _pings(id_length, calls=CALLS):
    """A batch of pings whose answer echoes ids of `id_length` each."""
    return json.dumps([{"jsonrpc": "2.0", "id": f"{n:04}" + "x" * id_length,
                        "method": "Host.ping"}
                       for n in range(calls)]).encode()


def _head_and_start(sock):
    """The answer's status line and headers, and what of its body came."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "closed before its answer"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int([line.split(b":")[1] for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length")][0])
    return length, body


def _read_answer(sock):
    length, body = _head_and_start(sock)
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return json.loads(body)


def test_unread_answers_hold_at_most_the_room(make_api, tmp_path):
    """Eight connections ask for answers of about 900 KB each and read
    nothing: as many as the room (4 x the bound) holds are written, the
    others answer -32603 "answer too large" with no call run; a ping is
    answered meanwhile (its answer takes no room), and once the readers
    read, the room is given back and the same large request is answered
    in full. Before: all eight were written, 7 MB held, no bound."""
    # A Unix socket: the kernel takes about 200 KB of an unread answer
    # (loopback TCP took all of one of 900 KB).
    path = str(tmp_path / "vmjobs.sock")
    server = Server(make_api(), Config(listen=f"unix:{path}",
                                       max_response_bytes=BOUND))
    server.start()
    room = server._server.dispatcher.room
    assert room.total == HELD_ANSWERS * BOUND

    def connect():
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(WAIT)
        s.connect(path)
        return s

    body = _pings(45000)             # an answer of about 900 KB
    held = []
    try:
        lengths = []
        for _ in range(8):
            s = connect()
            held.append(s)
            s.sendall(_request(body))
            lengths.append(_head_and_start(s)[0])
        written = [n for n in lengths if n > BOUND // 2]
        refused = [n for n in lengths if n <= BOUND // 2]
        # As many as the room holds, each past its FREE_BYTES.
        assert written and len(written) == \
            room.total // AnswerRoom.charge(written[0]), lengths
        assert len(refused) == 8 - len(written)
        assert room.held == sum(AnswerRoom.charge(n) for n in written)
        assert room.held <= room.total
        # A refused one: a small answer saying why, its calls not run.
        s = connect()
        with s:
            s.sendall(_request(body))
            answer = _read_answer(s)
            assert answer == {"jsonrpc": "2.0", "id": None, "error": {
                "code": -32603, "message": TOO_LARGE,
                "data": {"reason": NO_ROOM}}}
            # The control: a small answer is answered whatever is held.
            s.sendall(_request(_pings(10, calls=1)))
            assert _read_answer(s)[0]["result"] is True
        for s in held:
            s.close()
        held = []
        assert room.wait_held(0, WAIT)
        # The control: with the room given back, the large answer comes.
        s = connect()
        with s:
            s.sendall(_request(body))
            answers = _read_answer(s)
            assert [a["result"] for a in answers] == [True] * CALLS
        assert room.wait_held(0, WAIT)
    finally:
        for s in held:
            s.close()
        server.stop()


def test_a_batch_runs_its_calls_while_they_fit_the_room(api):
    """In process: with room for about two Host.getAllVmStats answers
    beyond FREE_BYTES, a batch of six runs its calls while their answers
    fit and the rest answer -32603 "answer too large" without running, as
    they do past rpc.max_response_bytes; the answer holds what it took,
    and answered() gives it all back. The control: the same batch with
    the default room runs every call."""
    for _ in range(4):      # each with 30 KB of the params it keeps
        vm_id = new_id()
        job_id = api.VM.create(vm_id, vm_params(
            vm_id, note="x" * 30_000))["jobId"]
        assert wait_job(api, job_id)["status"] == "done"
    stats = json.dumps(call("Host.getAllVmStats")).encode()
    one = len(Dispatcher(api).handle(stats))
    assert one > FREE_BYTES
    calls = []
    answer = api.answer

    def counted(method, params):
        calls.append(method)
        return answer(method, params)

    api.answer = counted
    requests = json.dumps([call("Host.getAllVmStats", request_id=n)
                           for n in range(6)]).encode()
    room = AnswerRoom(2 * one)
    dispatcher = Dispatcher(api, room=room)
    raw = dispatcher.handle(requests)
    answers = json.loads(raw)
    ran = [a for a in answers if "result" in a]
    # FREE_BYTES, then two answers' room; the one that did not fit ran.
    assert len(ran) == (FREE_BYTES + 2 * one) // one, len(raw)
    assert len(calls) == len(ran) + 1
    assert [a["error"]["message"] for a in answers[len(ran):]] == \
        [TOO_LARGE] * (6 - len(ran))
    assert [a["id"] for a in answers] == list(range(6))
    assert room.held == AnswerRoom.charge(len(raw)) > 0
    dispatcher.answered(raw)
    assert room.held == 0
    calls.clear()
    answers = json.loads(Dispatcher(api).handle(requests))    # the control
    assert all("result" in a for a in answers)
    assert len(calls) == 6


_CALL = st.fixed_dictionaries(
    {"jsonrpc": st.just("2.0"), "method": st.just("Host.ping")},
    optional={"id": st.integers(0, 80_000).map(lambda n: "i" * n)})


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_CALL, min_size=1, max_size=8) | _CALL,
       st.sampled_from([0, 1000, 50_000, 200_000]),
       st.sampled_from([2000, 100_000, 1_000_000]))
def test_what_an_answer_holds_is_its_charge(api, request, total, bound):
    """Whatever the request (a batch or a call, ids echoed of any length,
    notifications), the room held once handle() returns is exactly what
    answered() gives back for its answer, never past the room, and the
    answer is JSON."""
    room = AnswerRoom(total)
    dispatcher = Dispatcher(api, max_response_bytes=bound, room=room)
    raw = dispatcher.handle(json.dumps(request).encode())
    if raw is not None:
        json.loads(raw)
        assert room.held == AnswerRoom.charge(len(raw)) <= total
        dispatcher.answered(raw)
    assert room.held == 0
