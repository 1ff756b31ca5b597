"""A hostile caller against the real defaults (docs/security.md): who can
reach the service, and what a caller can make the host do.

Every case runs against a real `vmjobs serve` process. Another local user
is created (useradd) and the client run as that user (setpriv): the kernel
must refuse it. Every path and domain XML case must be answered -32602,
and the test checks on disk that nothing was created, changed or removed.
"""

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

from conftest import files_of
from serve import ROOT, TEST_URI, ServeProcess, wait_job_ended
from test_server_tls import make_ca, make_cert
from vmjobs.client import Client, RemoteError
from waits import retry_after

INTRUDER = "vmjobs-intruder"
WAIT = 60
DEFAULT_SOCKET = "/run/vmjobs/vmjobs.sock"


# -- who can reach the service ------------------------------------------------

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
    server = ServeProcess("--state-dir", str(tmp_path / "states"),
                          "--image-dir", str(tmp_path / "images"),
                          tmp_path=tmp_path, default_listen=True)
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
    # Not the host's /etc/vmjobs nor its lock in /run/vmjobs (as
    # ServeProcess): a refusal must not depend on them.
    with tempfile.TemporaryDirectory() as private:
        result = subprocess.run(
            [sys.executable, "-m", "vmjobs", "serve", "--log-file", "-",
             "--config", os.devnull, "--uri", TEST_URI,
             "--lock-file", f"{private}/lock",
             *args], capture_output=True, text=True, timeout=WAIT, cwd=ROOT)
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


def test_a_tls_file_that_cannot_be_read_is_named_at_start(tmp_path):
    """Each TLS setting whose file cannot be loaded is named with its
    path (it was a bare '[Errno 2] No such file or directory')."""
    make_ca(tmp_path, "ca")
    make_cert(tmp_path, "server", "ca", server=True)
    config = tmp_path / "vmjobs.conf"
    config.write_text(f"[rpc]\ntls_cert = {tmp_path}/gone.pem\n"
                      f"tls_key = {tmp_path}/server.key\n"
                      f"tls_ca = {tmp_path}/ca.pem\n")
    err = serve_refused("--config", str(config), "--listen", "127.0.0.1:0")
    assert f"rpc.tls_cert = {tmp_path}/gone.pem" in err, err
    config.write_text(f"[rpc]\ntls_cert = {tmp_path}/server.pem\n"
                      f"tls_key = {tmp_path}/server.key\n"
                      f"tls_ca = {tmp_path}/server.key\n")
    err = serve_refused("--config", str(config), "--listen", "127.0.0.1:0")
    assert f"rpc.tls_ca = {tmp_path}/server.key" in err, err


# -- plain TCP on loopback (--insecure): Content-Type, Host -------------------

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
        # As a client would: on 503 (every slot running a verb), wait
        # Retry-After and try again.
        def attempt():
            status, answer = raw_request(server.address, (
                f"POST / HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(method_body(method))}\r\n").encode(),
                method_body(method))
            return None if status == 503 else (status, answer)
        answered = retry_after(attempt, WAIT)
        assert answered is not None, f"{method}: 503 for {WAIT} s"
        status, answer = answered
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
    "localhost.evil.example", "10.0.0.1", "[::ffff:10.0.0.1]:80",
    "[::1]evil.example", None])
def test_rebinding_host_gets_403(plain, host):
    host_header = "" if host is None else f"Host: {host}\r\n"
    body = create_request(str(uuid.uuid4()))
    status, _ = raw_request(plain.address, (
        f"POST / HTTP/1.1\r\n{host_header}Content-Type: application/json"
        f"\r\nContent-Length: {len(body)}\r\n").encode(), body)
    assert status == 403
    for path in ("/", "/metrics"):   # the metrics too (issue 13)
        status, _ = raw_request(plain.address, f"GET {path} HTTP/1.1\r\n"
                                f"{host_header}".encode())
        assert status == 403, path
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


@pytest.mark.parametrize("fields,status", [
    # Two lengths, two hosts, a chunked body: how one request is read as
    # another; a folded line, a space before the colon: what the email
    # parser took and HTTP forbids.
    ("Content-Length: {n}\r\nContent-Length: 0\r\nHost: localhost\r\n",
     400),
    ("Content-Length: {n}\r\nHost: localhost\r\nHost: evil.example\r\n",
     400),
    ("Content-Length: {n}\r\nTransfer-Encoding: chunked\r\n"
     "Host: localhost\r\n", 501),
    ("Content-Length: {n}\r\nHost: localhost\r\nX-A: a\r\n b\r\n", 400),
    ("Content-Length : {n}\r\nHost: localhost\r\n", 400),
    # The same request, kept to the rules (the positive control).
    ("Content-Length: {n}\r\nHost: localhost\r\nX-A: a, b\r\n", 200),
])
def test_a_head_that_breaks_http_is_refused_before_anything_runs(
        plain, fields, status):
    body = method_body("Host.getVMList")
    head = ("POST / HTTP/1.1\r\nContent-Type: application/json\r\n" +
            fields.format(n=len(body))).encode()
    got, answer = raw_request(plain.address, head, body)
    assert got == status, answer
    nothing_ran(plain_call(plain))


@pytest.mark.parametrize("request_line,status", [
    ("GET /healthz", 400), ("GET /healthz HTTP/2.0", 505),
    ("GET http://evil.example/healthz HTTP/1.1", 400),
    ("GET /healthz HTTP/1.1", 200)])
def test_request_lines_beyond_http_1_are_refused(plain, request_line,
                                                 status):
    got, answer = raw_request(plain.address, (
        f"{request_line}\r\nHost: localhost\r\n").encode())
    assert got == status, answer



def read_answer(sock, buffered):
    """One answer read off a keep-alive connection (its head, then
    Content-Length bytes): (status, body, what was read past it)."""
    while b"\r\n\r\n" not in buffered:
        chunk = sock.recv(65536)
        assert chunk, buffered
        buffered += chunk
    head, _, rest = buffered.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head.split(b" ", 2)[1]), rest[:length], rest[length:]


@pytest.mark.parametrize("method,path", [("GET", "/healthz"),
                                         ("GET", "/metrics"),
                                         ("PUT", "/")])
def test_a_body_on_a_request_that_takes_none_is_never_a_request(
        plain, method, path):
    """A GET (or PUT...) with a body that is a whole POST: the body is
    read and dropped, never run as the next request on the connection
    (it was: a contract audit's smuggled VM.create ran). The connection
    then serves its next request (the control: keep-alive goes on)."""
    smuggled = create_request(str(uuid.uuid4()))
    smuggled = (f"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                f"application/json\r\nContent-Length: {len(smuggled)}"
                f"\r\n\r\n").encode() + smuggled
    ping = method_body("Host.ping")
    host, port = plain.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=WAIT) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n"
                  f"Content-Length: {len(smuggled)}\r\n\r\n".encode() +
                  smuggled)
        status, _, rest = read_answer(s, b"")
        assert status == (405 if method == "PUT" else 200)
        s.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                  b"application/json\r\nContent-Length: %d\r\n\r\n%s" %
                  (len(ping), ping))
        status, body, rest = read_answer(s, rest)
        assert (status, json.loads(body)["result"]) == (200, True)
        assert rest == b""
    nothing_ran(plain_call(plain))


# -- TCP with mutual TLS ------------------------------------------------------

def test_tls_client_without_certificate_is_refused_before_a_request(
        tmp_path):
    make_ca(tmp_path, "ca")
    make_cert(tmp_path, "server", "ca", server=True)
    make_cert(tmp_path, "engine", "ca")
    config = (f"[rpc]\ntls_cert = {tmp_path}/server.pem\n"
              f"tls_key = {tmp_path}/server.key\n"
              f"tls_ca = {tmp_path}/ca.pem\nrequest_timeout = 2\n")
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
        # A handshake trickled a byte at a time is cut at the deadline.
        connected, stop, cut = threading.Barrier(2), threading.Event(), []
        slow = threading.Thread(target=trickle, args=(
            server.address, connected, stop, cut, TLS_START))
        slow.start()
        connected.wait(WAIT)
        slow.join(WAIT)
        stop.set()
        assert cut == [True]
        with Client(server.address, cert=str(tmp_path / "engine.pem"),
                    key=str(tmp_path / "engine.key"),
                    ca=str(tmp_path / "ca.pem")) as client:
            nothing_ran(client.call)
    finally:
        status, _, err = server.stop()
    assert status == 0, err


# -- what a caller may name on the host ---------------------------------------

class Host:
    """A served host with a state dir, an image dir and, outside both, a
    victim dir whose files a caller must not reach."""

    def __init__(self, tmp):
        self.states = tmp / "states"
        self.images = tmp / "images"
        self.victim = tmp / "victim"
        for d in (self.states, self.images, self.victim):
            d.mkdir()
        (self.victim / "shadow").write_text("root:secret:19000::::::\n")
        (self.images / "disk.img").write_bytes(b"\0" * 4096)
        self.server = ServeProcess(
            "--listen", f"unix:{tmp}/vmjobs.sock", "--state-dir",
            str(self.states), "--image-dir", str(self.images), tmp_path=tmp)
        self.client = Client(self.server.address)

    def call(self, method, *params):
        return self.client.call(method, list(params))

    def refused(self, param, method, *params):
        """The call is answered -32602 naming `param`."""
        with pytest.raises(RemoteError) as err:
            self.call(method, *params)
        assert (err.value.code, err.value.data) == (-32602,
                                                    {"param": param}), err
        return err.value.message

    def wait_job(self, job_id):
        return wait_job_ended(self.server, job_id)

    def up_vm(self):
        vm_id = str(uuid.uuid4())
        job = self.call("VM.create", vm_id, {"vmId": vm_id, "vmName":
                                             f"h-{vm_id[:8]}", "memSize": 64})
        assert self.wait_job(job["jobId"]) == "done"
        return vm_id

    def snapshot(self):
        """Every file of the three dirs (conftest.files_of)."""
        return files_of(self.states, self.images, self.victim)

    def close(self):
        self.client.close()
        status, out, err = self.server.stop()
        assert status == 0, err
        assert "staged=0" in out


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    served = Host(tmp_path_factory.mktemp("host"))
    yield served
    served.close()


@pytest.fixture(scope="module")
def state_file(host):
    """A genuine state file, of a VM hibernated into the state dir."""
    vm_id = host.up_vm()
    path = host.states / "genuine.state"
    job = host.call("VM.hibernate", vm_id, str(path))
    assert host.wait_job(job["jobId"]) == "done"
    return vm_id, path


HANDLES = {
    "outside": "{victim}/ld.so.preload",
    "dot-dot": "{states}/../victim/ld.so.preload",
    "relative": "states/x.state",
    "newline": "{states}/x\n2026-11-26 INFO forged line",
    "carriage-return": "{states}/x\rforged",
    "nul": "{states}/x\0y",
    "next-line": "{states}/x\u0085forged",   # C1: a control character too
    "line-separator": "{states}/x\u2028forged",
    "trailing-slash": "{states}/x/",
    "double-slash": "{states}//x",
    "dot-component": "{states}/./x",
    "trailing-dot": "{states}/x/.",
    "proc-fd": "/proc/self/fd/0",
    "proc-root": "/proc/self/root{states}/x",
    "state-dir-itself": "{states}",
    "symlink-dangling": "{states}/link-dangling",
    "symlink-to-victim": "{states}/link-victim",
    "symlinked-dir": "{states}/linkdir/x",
    "surrogate": "{states}/x\ud800",
}


def symlinks(host):
    for name, target in (("link-dangling", host.victim / "ld.so.preload"),
                         ("link-victim", host.victim / "shadow"),
                         ("linkdir", host.victim)):
        if not (host.states / name).is_symlink():
            os.symlink(target, host.states / name)


@pytest.mark.parametrize("handle", HANDLES.values(), ids=HANDLES.keys())
def test_hibernate_to_a_forbidden_path_is_refused(host, handle):
    symlinks(host)
    vm_id = host.up_vm()
    before = host.snapshot()
    handle = handle.format(states=host.states, victim=host.victim)
    host.refused("hibernationVolHandle", "VM.hibernate", vm_id, handle)
    assert host.snapshot() == before
    assert not (host.victim / "ld.so.preload").exists()
    assert host.call("VM.getStats", vm_id)["status"] == "Up"
    assert host.call("VM.destroy", vm_id) is True


def test_hibernate_to_an_accepted_path(host):
    """The control: a plain name in the state dir, letters beyond ASCII
    (U+00E9, just past the C1 controls) included."""
    vm_id = host.up_vm()
    path = host.states / "x-\u00e9t\u00e9.state"
    job = host.call("VM.hibernate", vm_id, str(path))
    assert host.wait_job(job["jobId"]) == "done"
    assert path.exists()
    assert vm_id not in host.call("Host.getVMList")


def forge_state_file(genuine, path, edit):
    """A state file of libvirt's test driver (magic, length, domain XML)
    with its domain XML changed by `edit`."""
    data = genuine.read_bytes()
    magic, xml = data[:15], data[19:]
    xml = edit(xml.decode()).encode()
    path.write_bytes(magic + struct.pack("<i", len(xml)) + xml)
    return path


FORGED = {
    "hostdev": lambda x: x.replace(
        "</devices>", "<hostdev mode='subsystem' type='pci' managed='yes'>"
        "<source><address domain='0' bus='0' slot='2' function='0'/>"
        "</source></hostdev></devices>"),
    # (The test driver drops a qemu: namespace from a state file's XML:
    # test_real_restore_recovery forges that one on the real daemon.)
    "disk-outside": lambda x: x.replace(
        "</devices>", "<disk type='file' device='disk'><source file="
        "'{victim}/shadow'/><target dev='vda'/></disk></devices>"),
}


@pytest.fixture
def forbidden_restores(host, state_file):
    """name -> a restoreState path that must be refused."""
    symlinks(host)
    _, genuine = state_file
    outside = host.victim / "copy.state"
    shutil.copy(genuine, outside)
    if not (host.states / "link.state").is_symlink():
        os.symlink(genuine, host.states / "link.state")
    if not (host.states / "fifo").exists():
        os.mkfifo(host.states / "fifo")
    paths = {
        "outside": str(outside), "relative": "states/genuine.state",
        "dot-dot": f"{host.states}/../victim/copy.state",
        "symlink": str(host.states / "link.state"),
        "fifo": str(host.states / "fifo"),
        "newline": f"{genuine}\nforged",
    }
    for name, edit in FORGED.items():
        paths[f"forged-{name}"] = str(forge_state_file(
            genuine, host.states / f"forged-{name}.state",
            lambda x, edit=edit: edit(x).replace("{victim}",
                                                 str(host.victim))))
    return paths


RESTORES = ["outside", "relative", "dot-dot", "symlink", "fifo", "newline",
            *(f"forged-{name}" for name in FORGED)]


@pytest.mark.parametrize("case", RESTORES)
def test_restore_from_a_forbidden_file_is_refused(host, state_file,
                                                  forbidden_restores, case):
    vm_id, _ = state_file
    before = host.snapshot()
    message = host.refused("restoreState", "VM.create", vm_id, {
        "vmId": vm_id, "restoreState": forbidden_restores[case]})
    assert host.snapshot() == before
    assert vm_id not in host.call("Host.getVMList")
    assert host.call("Host.getStats")["staged"] == 0
    if case.startswith("forged-"):
        assert "domain XML" in message or "refused" in message


def test_the_genuine_state_file_is_restored(host, state_file):
    """The control: the same verb, on a file it may read."""
    vm_id, path = state_file
    copy = host.states / "genuine-copy.state"
    shutil.copy(path, copy)
    job = host.call("VM.create", vm_id, {"vmId": vm_id,
                                         "restoreState": str(copy)})
    assert host.wait_job(job["jobId"]) == "done"
    assert host.call("VM.destroy", vm_id) is True


def domain(vm_id, devices="", os_extra="", head="", tail=""):
    return (f"<domain type='test' {head}><name>x-{vm_id[:8]}</name>"
            f"<uuid>{vm_id}</uuid><memory unit='MiB'>64</memory>"
            f"<os><type>hvm</type>{os_extra}</os>"
            f"<devices>{devices}</devices>{tail}</domain>")


XML_CASES = {
    "qemu-commandline": dict(
        head="xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'",
        tail="<qemu:commandline><qemu:arg value='-evil'/>"
             "</qemu:commandline>"),
    "qemu-override": dict(
        head="xmlns:q='http://libvirt.org/schemas/domain/qemu/1.0'",
        tail="<q:override><q:device alias='x'/></q:override>"),
    "foreign-namespace": dict(
        head="xmlns:lxc='http://libvirt.org/schemas/domain/lxc/1.0'",
        tail="<lxc:namespace><lxc:sharenet type='netns' value='red'/>"
             "</lxc:namespace>"),
    "hostdev-pci": dict(devices=(
        "<hostdev mode='subsystem' type='pci' managed='yes'><source>"
        "<address domain='0' bus='0' slot='2' function='0'/></source>"
        "</hostdev>")),
    "hostdev-usb": dict(devices=(
        "<hostdev mode='subsystem' type='usb'><source><vendor id='0x1'/>"
        "<product id='0x2'/></source></hostdev>")),
    "hostdev-scsi": dict(devices=(
        "<hostdev mode='subsystem' type='scsi'><source><adapter "
        "name='scsi_host0'/><address bus='0' target='0' unit='0'/></source>"
        "</hostdev>")),
    "interface-hostdev": dict(devices=(
        "<interface type='hostdev'><source><address type='pci' domain='0' "
        "bus='0' slot='2' function='0'/></source></interface>")),
    "disk-nvme": dict(devices=(
        "<disk type='nvme' device='disk'><source type='pci' managed='yes' "
        "namespace='1'><address domain='0' bus='1' slot='0' function='0'/>"
        "</source><target dev='vde'/></disk>")),
    "disk-lun": dict(devices=(
        "<disk type='block' device='lun'><source dev='{images}/disk.img'/>"
        "<target dev='sda' bus='scsi'/></disk>")),
    "interface-script": dict(devices=(
        "<interface type='ethernet'><script path='{victim}/evil.sh'/>"
        "</interface>")),
    "interface-script-in-images": dict(devices=(
        "<interface type='ethernet'><script path='{images}/disk.img'/>"
        "</interface>")),
    "disk-outside": dict(devices=(
        "<disk type='file' device='disk'><source file='{victim}/shadow'/>"
        "<target dev='vda'/></disk>")),
    "disk-block-device": dict(devices=(
        "<disk type='block' device='disk'><source dev='/dev/sda'/>"
        "<target dev='vda'/></disk>")),
    "disk-dot-dot": dict(devices=(
        "<disk type='file' device='disk'><source file='{images}/../victim/"
        "shadow'/><target dev='vda'/></disk>")),
    "disk-symlink-out": dict(devices=(
        "<disk type='file' device='disk'><source file='{images}/"
        "link-out'/><target dev='vda'/></disk>")),
    "disk-relative": dict(devices=(
        "<disk type='file' device='disk'><source file='disk.img'/>"
        "<target dev='vda'/></disk>")),
    "backing-store": dict(devices=(
        "<disk type='file' device='disk'><source file='{images}/disk.img'/>"
        "<backingStore type='file'><format type='raw'/><source file="
        "'{victim}/shadow'/></backingStore><target dev='vda'/></disk>")),
    "cdrom-outside": dict(devices=(
        "<disk type='file' device='cdrom'><source file='/etc/shadow'/>"
        "<target dev='hdc'/></disk>")),
    "kernel": dict(os_extra="<kernel>{victim}/shadow</kernel>"),
    "initrd": dict(os_extra="<initrd>/boot/initrd.img</initrd>"),
    "loader": dict(os_extra="<loader>{victim}/shadow</loader>"),
    "nvram": dict(os_extra="<nvram>{victim}/nvram.fd</nvram>"),
    "serial-file": dict(devices=(
        "<serial type='file'><source path='{victim}/ld.so.preload'/>"
        "</serial>")),
    "console-dev": dict(devices=(
        "<console type='dev'><source path='/dev/tty0'/></console>")),
    "channel-socket": dict(devices=(
        "<channel type='unix'><source mode='bind' path='{victim}/s.sock'/>"
        "<target type='virtio' name='x'/></channel>")),
    "serial-log": dict(devices=(
        "<serial type='pty'><log file='{victim}/serial.log'/></serial>")),
    "filesystem": dict(devices=(
        "<filesystem type='mount'><source dir='/'/><target dir='root'/>"
        "</filesystem>")),
    "virtiofsd-binary": dict(devices=(
        "<filesystem type='mount'><driver type='virtiofs'/><binary "
        "path='{victim}/evil'/><source dir='{images}'/><target dir='t'/>"
        "</filesystem>")),
    "shmem": dict(devices=(
        "<shmem name='x'><server path='{victim}/shmem.sock'/></shmem>")),
    "vhostuser": dict(devices=(
        "<interface type='vhostuser'><source type='unix' path='{victim}/v'"
        " mode='server'/></interface>")),
    "graphics-socket": dict(devices=(
        "<graphics type='vnc' socket='{victim}/vnc.sock'/>")),
    "input-evdev": dict(devices=(
        "<input type='evdev'><source dev='/dev/input/event0'/></input>")),
    "tpm-passthrough": dict(devices=(
        "<tpm model='tpm-tis'><backend type='passthrough'><device "
        "path='/dev/tpm0'/></backend></tpm>")),
    "smartcard-host": dict(devices="<smartcard mode='host'/>"),
    "emulator-shell": dict(devices="<emulator>/bin/sh</emulator>"),
    "emulator-in-victim": dict(devices=(
        "<emulator>{victim}/qemu-system-x86_64</emulator>")),
    "seclabel-root": dict(tail=(
        "<seclabel type='static' model='dac' relabel='no'>"
        "<label>+0:+0</label></seclabel>")),
    # issue 19: libvirt's reading, labels, the host's network
    "kernel-split-text": dict(
        os_extra="<kernel>{images}/<b/>../victim/shadow</kernel>"),
    "seclabel-device": dict(devices=(
        "<disk type='file' device='disk'><source file='{images}/disk.img'>"
        "<seclabel model='dac' relabel='yes'><label>+0:+0</label>"
        "</seclabel></source><target dev='vda'/></disk>")),
    "network-disk": dict(devices=(
        "<disk type='network' device='disk'><source protocol='nbd' "
        "name='x'><host name='127.0.0.1' port='10809'/></source>"
        "<target dev='vda'/></disk>")),
    "serial-tcp": dict(devices=(
        "<serial type='tcp'><source mode='connect' host='169.254.169.254' "
        "service='80'/></serial>")),
    "interface-direct": dict(devices=(
        "<interface type='direct'><source dev='lo' mode='bridge'/>"
        "</interface>")),
    "smartcard-host-certificates": dict(devices=(
        "<smartcard mode='host-certificates'><certificate>a</certificate>"
        "<certificate>b</certificate><certificate>c</certificate>"
        "<database>{victim}</database></smartcard>")),
    "volume": dict(devices=(
        "<disk type='volume' device='disk'><source pool='default' "
        "volume='shadow'/><target dev='vda'/></disk>")),
}


@pytest.mark.parametrize("case", XML_CASES)
def test_domain_xml_that_reaches_the_host_is_refused(host, case):
    if not (host.images / "link-out").is_symlink():
        os.symlink(host.victim / "shadow", host.images / "link-out")
    parts = {key: value.format(images=host.images, victim=host.victim)
             for key, value in XML_CASES[case].items()}
    before = host.snapshot()
    stats_before = host.call("Host.getStats")
    vm_id = str(uuid.uuid4())
    xml = domain(vm_id, **parts)
    message = host.refused("xml", "VM.create", vm_id,
                           {"vmId": vm_id, "xml": xml})
    assert "domain XML refused" in message
    # An incoming migration's domain XML too.
    host.refused("xml", "VM.migrationCreate", vm_id,
                 {"vmId": vm_id, "xml": xml})
    assert host.snapshot() == before
    stats = host.call("Host.getStats")
    assert {k: stats[k] for k in ("staged", "public", "external_domains",
                                  "stopped_domains")} == \
        {k: stats_before[k] for k in ("staged", "public", "external_domains",
                                      "stopped_domains")}


def test_domain_xml_with_its_files_in_the_image_dirs_is_accepted(host):
    """The control: disks, kernel and sockets inside storage.image_dirs,
    the system's QEMU, and entropy from /dev/urandom are fine."""
    vm_id = str(uuid.uuid4())
    xml = domain(vm_id, os_extra=f"<kernel>{host.images}/vmlinuz</kernel>",
                 devices=(
                     f"<disk type='file' device='disk'><source file="
                     f"'{host.images}/disk.img'/><target dev='vda'/></disk>"
                     "<serial type='pty'><source path='/dev/pts/9'/></serial>"
                     "<rng model='virtio'><backend model='random'>"
                     "/dev/urandom</backend></rng>"))
    job = host.call("VM.create", vm_id, {"vmId": vm_id, "xml": xml})
    assert host.wait_job(job["jobId"]) == "done"
    assert host.call("VM.destroy", vm_id) is True


def test_lone_surrogate_in_a_param_is_invalid(host):
    vm_id = str(uuid.uuid4())
    answer = host.client.post(
        b'{"jsonrpc": "2.0", "id": 1, "method": "VM.create", "params": '
        b'["%s", {"vmId": "%s", "vmName": "a\\ud800b", "memSize": 64}]}' %
        (vm_id.encode(), vm_id.encode()))
    assert answer["error"]["code"] == -32602
    assert answer["error"]["data"] == {"param": "vmParams"}
    assert host.call("Host.getStats")["staged"] == 0


# -- limits under abuse -------------------------------------------------------

TRICKLERS = 64
RESETS = (ConnectionResetError, BrokenPipeError,
          http.client.RemoteDisconnected)


HTTP_START = b"POST / HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
# A TLS handshake record announcing 16 KiB, to be sent a byte at a time.
TLS_START = b"\x16\x03\x01\x40\x00"


def trickle(address, connected, stop, cut, start=HTTP_START):
    """Send a request's headers (or a TLS handshake) one byte every 0.1 s,
    far within any per-read timeout, until the server closes the
    connection."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=WAIT) as s:
        s.sendall(start)
        connected.wait(WAIT)
        while not stop.is_set():
            try:
                s.sendall(b"a")
                if s.recv(1, socket.MSG_DONTWAIT) == b"":
                    break
            except BlockingIOError:
                pass              # still open: the server waits on us
            except RESETS:
                break
            stop.wait(0.1)        # pacing the trickle, not a wait for a state
        else:
            return
        cut.append(True)


def test_slow_loris_is_cut_at_the_deadline(tmp_path):
    # The default cap (64): the tricklers fill it; the caller below takes
    # the slot of the one that has gone longest without a request.
    server = ServeProcess("--listen", "127.0.0.1:0", "--insecure",
                          "--state-dir", str(tmp_path), config=(
                              "[rpc]\nrequest_timeout = 2\n"),
                          tmp_path=tmp_path)
    connected = threading.Barrier(TRICKLERS + 1)
    stop = threading.Event()
    cut = []
    threads = [threading.Thread(target=trickle, args=(
        server.address, connected, stop, cut)) for _ in range(TRICKLERS)]
    try:
        for t in threads:
            t.start()
        connected.wait(WAIT)
        # All 64 hold a connection and keep sending: others are served.
        assert plain_call(server)("Host.getJobs") == {}
        for t in threads:
            t.join(WAIT)
        assert len(cut) == TRICKLERS
    finally:
        stop.set()
        for t in threads:
            t.join(WAIT)
        status, _, err = server.stop()
    assert status == 0, err


def ping_body():
    return method_body("Host.ping")


def burst(address, clients, requests, fresh):
    """`clients` threads at once, `requests` pings each, on one
    connection each (or a fresh one per request): {outcome: count}."""
    host, port = address.rsplit(":", 1)
    start = threading.Barrier(clients)
    outcomes = {}
    lock = threading.Lock()    # guards outcomes

    def count(outcome):
        with lock:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

    def client():
        conn = http.client.HTTPConnection(host, int(port), timeout=WAIT)
        start.wait(WAIT)
        for _ in range(requests):
            try:
                conn.request("POST", "/", ping_body(),
                             {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                count(response.status)
            except RESETS as exc:
                count(type(exc).__name__)
                conn.close()
            if fresh:
                conn.close()
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    return outcomes


def held_connection(address):
    """A connection that was served once and stays open (retrying one
    turned away while slots of earlier connections were still freed)."""
    host, port = address.rsplit(":", 1)
    for _ in range(1000):
        conn = http.client.HTTPConnection(host, int(port), timeout=WAIT)
        conn.request("POST", "/", ping_body(),
                     {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        if response.status == 200:
            return conn
        conn.close()
    raise AssertionError("never served")


def test_burst_at_the_connection_cap_gets_no_reset(tmp_path, capsys):
    server = ServeProcess("--listen", "127.0.0.1:0", "--insecure",
                          "--state-dir", str(tmp_path), tmp_path=tmp_path)
    cap = 64    # rpc.max_connections' default
    try:
        kept = burst(server.address, cap, 30, fresh=False)
        assert kept == {200: cap * 30}
        fresh = burst(server.address, cap, 30, fresh=True)
        assert sum(fresh.values()) == cap * 30
        assert set(fresh) <= {200, 503}, fresh     # never a reset
        with capsys.disabled():
            print(f"\nburst of {cap} clients x 30 pings: kept connections "
                  f"{kept}, a connection per ping {fresh}")
        held = [held_connection(server.address) for _ in range(cap)]
        host, port = server.address.rsplit(":", 1)
        # At the cap, the longest idle connection makes room (503 only
        # when every slot runs a verb: test_connection_cap.py).
        over = http.client.HTTPConnection(host, int(port), timeout=WAIT)
        over.request("POST", "/", ping_body(),
                     {"Content-Type": "application/json"})
        response = over.getresponse()
        response.read()
        over.close()
        assert response.status == 200
        # The longest idle was closed for it (a clean close, no reset).
        held[0].sock.settimeout(WAIT)
        assert held[0].sock.recv(1) == b""
        for conn in held:
            conn.close()
        held_connection(server.address).close()   # served again
    finally:
        status, _, err = server.stop()
    assert status == 0, err
