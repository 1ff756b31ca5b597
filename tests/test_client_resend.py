"""vmjobs.client sends a request again, once, on a new connection when the
server closed its kept connection (to make room at its cap, or idle past
its deadline): the server closes a kept connection only before it read a
request, so nothing ran twice. The positive control: the kept connection
really was closed before the call."""

import http.client
import json
import select

from serve import ServeProcess
from vmjobs.client import Client, RemoteError
from waits import retry_after

WAIT = 60
PING = json.dumps({"jsonrpc": "2.0", "id": 1,
                   "method": "Host.ping"}).encode()


def ping(conn):
    conn.request("POST", "/", PING, {"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    return response.status


def test_a_closed_kept_connection_is_replaced(tmp_path):
    server = ServeProcess("--listen", "127.0.0.1:0", "--insecure",
                          "--state-dir", str(tmp_path),
                          config="[rpc]\nmax_connections = 2\n",
                          tmp_path=tmp_path)
    host, port = server.address.rsplit(":", 1)
    try:
        # The client's kept connection, answered before another one: the
        # longest idle.
        with Client(server.address, timeout=WAIT) as kept:
            assert kept.call("Host.ping") is True
            other = http.client.HTTPConnection(host, int(port),
                                               timeout=WAIT)
            assert ping(other) == 200
            sock = kept._connection.sock
            # A third caller is served, closing the kept one (the longest
            # idle; 503 only while every slot runs a verb).
            def third_ping():
                third = http.client.HTTPConnection(host, int(port),
                                                   timeout=WAIT)
                status = ping(third)
                third.close()
                return None if status == 503 else status
            assert retry_after(third_ping, WAIT) == 200
            readable, _, _ = select.select([sock], [], [], WAIT)
            assert readable and sock.recv(1) == b""   # it was closed
            # Sent again on a new connection (which takes a slot the same
            # way; a 503 would still show the resend was answered).
            def resend():
                try:
                    return kept.call("Host.ping")
                except RemoteError as exc:
                    assert exc.code == 503
                    return None
            assert retry_after(resend, WAIT) is True
            assert kept.call("Host.ping") is True      # and kept
        other.close()
    finally:
        status, _, err = server.stop()
    assert status == 0, err
