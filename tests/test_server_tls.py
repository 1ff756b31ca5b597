"""Mutual TLS: with tls_cert, tls_key and tls_ca configured, a client must
present a certificate signed by tls_ca; any other is refused during the
handshake, before a request is read. Certificates are made by the test
with the openssl command."""

import socket
import ssl
import subprocess

import pytest

from serve import ServeProcess
from vmjobs.client import Client


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out",
            f"{name}.pem", cwd=d)


def make_cert(d, name, ca, server=False):
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
    ext = d / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n" if server else
                   "extendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem",
            "-CAkey", f"{ca}.key", "-CAcreateserial", "-days", "2",
            "-extfile", ext.name, "-out", f"{name}.pem", cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_ca(d, "rogue-ca")
    make_cert(d, "server", "ca", server=True)
    make_cert(d, "engine", "ca")
    make_cert(d, "intruder", "rogue-ca")
    return d


@pytest.fixture(scope="module")
def server(pki, tmp_path_factory):
    config = (f"[rpc]\ntls_cert = {pki}/server.pem\n"
              f"tls_key = {pki}/server.key\ntls_ca = {pki}/ca.pem\n")
    process = ServeProcess("--listen", "127.0.0.1:0", config=config,
                           tmp_path=tmp_path_factory.mktemp("tls"))
    yield process
    status, _, err = process.stop()
    assert status == 0, err


def test_client_signed_by_the_ca_is_served(server, pki):
    with Client(server.address, cert=str(pki / "engine.pem"),
                key=str(pki / "engine.key"), ca=str(pki / "ca.pem")) as c:
        assert c.call("Host.ping") is True


@pytest.mark.parametrize("cert", [None, "intruder"])
def test_other_clients_are_refused_in_the_handshake(server, pki, cert):
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    context.check_hostname = False
    if cert is not None:
        context.load_cert_chain(str(pki / f"{cert}.pem"),
                                str(pki / f"{cert}.key"))
    host, port = server.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError,
                            BrokenPipeError)):
            with context.wrap_socket(raw) as tls:
                # TLS 1.3 reports the refusal at the first read.
                tls.sendall(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
                tls.recv(100)


def test_plain_http_is_refused(server):
    host, port = server.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as raw:
        raw.sendall(b'POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}')
        try:
            answer = raw.recv(100)
        except ConnectionResetError:
            answer = b""
        assert b"HTTP" not in answer
