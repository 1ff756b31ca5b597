"""A hostile caller against the real defaults (README, Security): who can
reach the service, and what a caller can make the host do.

Every case runs against a real `vmjobs serve` process. Another local user
is created (useradd) and the client run as that user (setpriv): the kernel
must refuse it. Every path and domain XML case must be answered -32602,
and the test checks on disk that nothing was created, changed or removed.
"""

import hashlib
import http.client
import json
import os
import pwd
import shutil
import socket
import ssl
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import uuid

import pytest

from vmjobs.client import Client, RemoteError

from serve import ROOT, ServeProcess
from test_server_tls import make_ca, make_cert

INTRUDER = "vmjobs-intruder"
WAIT = 60
DEFAULT_SOCKET = "/run/vmjobs/vmjobs.sock"


# -- who can reach the service -------------------------------------------------

@pytest.fixture(scope="module")
def intruder():
    """An unprivileged local user (created if missing)."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the hostile-caller tests run as root on CI")
        pytest.skip("needs root: creates a user and runs a client as it")
    try:
        return pwd.getpwnam(INTRUDER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", INTRUDER],
                       check=True, capture_output=True)
        return pwd.getpwnam(INTRUDER)


CONNECT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
    print("connected")
except OSError as exc:
    print(type(exc).__name__)
"""


def connect_as(user, path):
    """What connecting to the Unix socket `path` as `user` gives."""
    result = subprocess.run(
        ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
         "--clear-groups", "/usr/bin/python3", "-c", CONNECT, path],
        capture_output=True, text=True, timeout=WAIT)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def public_dir():
    """A directory every user may traverse (pytest's own tmp is 0700,
    which would refuse the intruder for the wrong reason)."""
    path = tempfile.mkdtemp(prefix="vmjobs-hostile-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_another_local_user_is_refused_by_the_kernel(intruder, public_dir,
                                                     tmp_path):
    sock = f"{public_dir}/run/vmjobs.sock"
    server = ServeProcess("--listen", f"unix:{sock}", "--state-dir",
                          str(tmp_path), tmp_path=tmp_path)
    try:
        assert mode(os.path.dirname(sock)) == 0o700   # created by serve
        assert mode(sock) == 0o600
        assert os.stat(sock).st_uid == 0
        assert connect_as(intruder, sock) == "PermissionError"
        # The socket's own mode refuses too, with its directory opened up.
        os.chmod(os.path.dirname(sock), 0o755)
        assert connect_as(intruder, sock) == "PermissionError"
        with Client(server.address) as client:       # root is served
            assert client.call("Host.ping") is True
        # The control: a socket the intruder may use, it reaches.
        control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        control.bind(f"{public_dir}/control.sock")
        os.chmod(f"{public_dir}/control.sock", 0o666)
        control.listen(1)
        assert connect_as(intruder, f"{public_dir}/control.sock") == \
            "connected"
        control.close()
    finally:
        status, _, err = server.stop()
    assert status == 0, err


def test_the_default_listener(intruder, tmp_path):
    """With no --listen: /run/vmjobs/vmjobs.sock, 0600 in a 0700
    directory, refused to another user."""
    server = ServeProcess("--state-dir", str(tmp_path), "--image-dir",
                          str(tmp_path), tmp_path=tmp_path)
    try:
        assert server.address == f"unix:{DEFAULT_SOCKET}"
        assert mode(os.path.dirname(DEFAULT_SOCKET)) == 0o700
        assert mode(DEFAULT_SOCKET) == 0o600
        assert connect_as(intruder, DEFAULT_SOCKET) == "PermissionError"
        with Client() as client:             # the CLI's default too
            assert client.call("Host.ping") is True
    finally:
        status, _, err = server.stop()
    assert status == 0, err
    assert not os.path.exists(DEFAULT_SOCKET)


def serve_refused(*args):
    result = subprocess.run(
        [sys.executable, "-m", "vmjobs", "serve", "--log-file", "-", *args],
        capture_output=True, text=True, timeout=WAIT, cwd=ROOT)
    assert result.returncode == 2, result
    assert "serving" not in result.stdout
    return result.stderr


def test_insecure_listeners_are_refused_at_start(tmp_path):
    assert "mutual TLS" in serve_refused("--listen", "127.0.0.1:0")
    assert "loopback" in serve_refused("--listen", "0.0.0.0:0",
                                       "--insecure")
    # A regular file where the socket would go: refused, left as it was.
    victim = tmp_path / "victim"
    victim.write_text("precious")
    assert "not a socket" in serve_refused("--listen", f"unix:{victim}",
                                           "--state-dir", str(tmp_path))
    assert victim.read_text() == "precious"


# -- plain TCP on loopback (--insecure): Content-Type, Host ------------------------

@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plain")
    process = ServeProcess("--listen", "127.0.0.1:0", "--insecure",
                           "--state-dir", str(tmp), tmp_path=tmp)
    yield process
    status, out, err = process.stop()
    assert status == 0, err
    assert "staged=0" in out


def raw_request(address, head, body=b""):
    """Send a raw HTTP request (Connection: close); the status line's
    code and the whole answer."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=WAIT) as s:
        s.sendall(head + b"Connection: close\r\n\r\n" + body)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer


def create_request(vm_id):
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "VM.create",
                       "params": [vm_id, {"vmId": vm_id, "vmName": "hostile",
                                          "memSize": 64}]}).encode()


def nothing_ran(client_call):
    assert client_call("Host.getJobs") == {}
    assert client_call("Host.getVMList") == []


def plain_call(server):
    host, port = server.address.rsplit(":", 1)

    def call(method):
        status, answer = raw_request(server.address, (
            f"POST / HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(method_body(method))}\r\n").encode(),
            method_body(method))
        assert status == 200, answer
        return json.loads(answer.split(b"\r\n\r\n", 1)[1])["result"]
    return call


def method_body(method):
    return json.dumps({"jsonrpc": "2.0", "id": 1,
                       "method": method}).encode()


@pytest.mark.parametrize("content_type", [
    "text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
    None, "application/jsonp", "application/json-patch+json"])
def test_post_that_is_not_json_gets_415(plain, content_type):
    body = create_request(str(uuid.uuid4()))
    head = (f"POST / HTTP/1.1\r\nHost: localhost\r\n"
            f"Content-Length: {len(body)}\r\n").encode()
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n".encode()
    status, _ = raw_request(plain.address, head, body)
    assert status == 415
    nothing_ran(plain_call(plain))


def test_json_with_a_charset_is_served(plain):
    body = method_body("Host.ping")
    status, answer = raw_request(plain.address, (
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
        "Application/JSON; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n").encode(), body)
    assert status == 200 and answer.endswith(b'"result": true}')


@pytest.mark.parametrize("host", [
    "evil.example.com", "evil.example.com:54321", "127.0.0.1.nip.io",
    "localhost.evil.example", "10.0.0.1", "[::ffff:10.0.0.1]:80", None])
def test_rebinding_host_gets_403(plain, host):
    host_header = "" if host is None else f"Host: {host}\r\n"
    body = create_request(str(uuid.uuid4()))
    status, _ = raw_request(plain.address, (
        f"POST / HTTP/1.1\r\n{host_header}Content-Type: application/json"
        f"\r\nContent-Length: {len(body)}\r\n").encode(), body)
    assert status == 403
    status, _ = raw_request(plain.address,
                            f"GET / HTTP/1.1\r\n{host_header}".encode())
    assert status == 403
    nothing_ran(plain_call(plain))


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1:1", "[::1]:2",
                                  "LOCALHOST.", "127.1.2.3"])
def test_loopback_host_is_served(plain, host):
    body = method_body("Host.ping")
    status, _ = raw_request(plain.address, (
        f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
        f"application/json\r\nContent-Length: {len(body)}\r\n").encode(),
        body)
    assert status == 200


@pytest.mark.parametrize("length", ["²", "١٢", "+5", "-1", "0x10", " "])
def test_content_length_that_is_not_ascii_digits_gets_400(plain, length):
    status, _ = raw_request(plain.address, (
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
        f"application/json\r\nContent-Length: {length}\r\n").encode("utf-8"),
        b"{}")
    assert status == 400
    nothing_ran(plain_call(plain))


# -- TCP with mutual TLS -----------------------------------------------------------

def test_tls_client_without_certificate_is_refused_before_a_request(
        tmp_path):
    make_ca(tmp_path, "ca")
    make_cert(tmp_path, "server", "ca", server=True)
    make_cert(tmp_path, "engine", "ca")
    config = (f"[rpc]\ntls_cert = {tmp_path}/server.pem\n"
              f"tls_key = {tmp_path}/server.key\n"
              f"tls_ca = {tmp_path}/ca.pem\n")
    server = ServeProcess("--listen", "127.0.0.1:0", "--state-dir",
                          str(tmp_path), config=config, tmp_path=tmp_path)
    try:
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        context.check_hostname = False
        host, port = server.address.rsplit(":", 1)
        body = create_request(str(uuid.uuid4()))
        with socket.create_connection((host, int(port)), timeout=WAIT) as s:
            with pytest.raises((ssl.SSLError, ConnectionResetError,
                                BrokenPipeError)):
                with context.wrap_socket(s) as tls:
                    tls.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\n"
                                b"Content-Type: application/json\r\n"
                                b"Content-Length: %d\r\n\r\n%s" %
                                (len(body), body))
                    tls.recv(100)
        with Client(server.address, cert=str(tmp_path / "engine.pem"),
                    key=str(tmp_path / "engine.key"),
                    ca=str(tmp_path / "ca.pem")) as client:
            nothing_ran(client.call)
    finally:
        status, _, err = server.stop()
    assert status == 0, err
