"""TLS end to end: certificates from ``trustme``, real clients (httpx, curl,
the ``websockets`` client, raw ``ssl`` sockets) against real corral processes."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import httpx
import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from websockets.sync.client import connect as ws_connect

from support import ROOT, APPS, Server


class Certs:
    """A CA and a server certificate for 127.0.0.1, written to files."""

    def __init__(self, directory, name: str = "a") -> None:
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.cert = directory / f"{name}-cert.pem"
        self.key = directory / f"{name}-key.pem"
        self.ca_file = directory / f"{name}-ca.pem"
        cert.cert_chain_pems[0].write_to_path(str(self.cert))
        cert.private_key_pem.write_to_path(str(self.key))
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.leaf_pem = cert.cert_chain_pems[0].bytes().decode()

    def args(self, *extra: str) -> tuple[str, ...]:
        return ("--ssl-certfile", str(self.cert), "--ssl-keyfile", str(self.key), *extra)

    def client_context(self, **kwargs) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        for key, value in kwargs.items():
            setattr(context, key, value)
        return context


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def server(certs):
    with Server("basic:app", *certs.args()) as srv:
        yield srv


def url(server, path: str = "/") -> str:
    return f"https://127.0.0.1:{server.port}{path}"


def test_https_scope_has_scheme_and_tls_extension(server, certs):
    with httpx.Client(verify=certs.client_context()) as client:
        scope = client.get(url(server, "/scope")).json()
    assert scope["scheme"] == "https"
    assert scope["http_version"] == "1.1"
    tls = scope["extensions"]["tls"]
    assert tls["tls_version"] == 0x0304  # both sides allow TLS 1.3
    assert tls["cipher_suite"] in (0x1301, 0x1302, 0x1303)
    assert tls["server_cert"] == certs.leaf_pem
    assert tls["client_cert_chain"] == [] and tls["client_cert_name"] is None
    assert server.wait_log(r"serving https://127\.0\.0\.1:\d+")


def test_tls12_client_and_keep_alive(server, certs):
    context = certs.client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
    with httpx.Client(verify=context) as client:
        responses = [client.get(url(server, "/scope")) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    ports = {r.json()["client"][1] for r in responses}
    assert len(ports) == 1  # one kept-alive connection
    tls = responses[0].json()["extensions"]["tls"]
    assert tls["tls_version"] == 0x0303
    assert isinstance(tls["cipher_suite"], int) and tls["cipher_suite"] > 0


def test_request_body_over_tls(server, certs):
    data = bytes(range(256)) * 4096  # 1 MiB: several TLS records, flow control
    with httpx.Client(verify=certs.client_context()) as client:
        response = client.post(url(server, "/echo"), content=data)
    assert response.status_code == 200 and response.content == data


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl(server, certs):
    out = subprocess.run(
        ["curl", "-sS", "--cacert", str(certs.ca_file), "--http1.1", "-w", " %{http_version} %{scheme}",
         url(server, "/stream")],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "one,two,three 1.1 HTTPS"


def test_plain_http_to_a_tls_port_gets_400_as_from_nginx(server, certs):
    # Issue 20: was closed without a word.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):  # then the close, without a reset
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"connection: close" in head
    assert body == b"The plain HTTP request was sent to HTTPS port\n"
    server.wait_log(r"127\.0\.0\.1:\d+: plain HTTP sent to the TLS port; answered 400")
    # The port still speaks TLS.
    assert httpx.get(url(server, "/pid"), verify=certs.client_context()).status_code == 200


def test_min_version_13_refuses_a_tls12_client(certs):
    with Server("basic:app", *certs.args("--ssl-min-version", "1.3")) as srv:
        context = certs.client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
        with pytest.raises(httpx.ConnectError):
            httpx.get(url(srv, "/pid"), verify=context)
        assert httpx.get(url(srv, "/pid"), verify=certs.client_context()).status_code == 200


def test_ciphers_option_limits_tls12(certs):
    with Server("basic:app", *certs.args("--ssl-ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256")) as srv:
        context = certs.client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
        scope = httpx.get(url(srv, "/scope"), verify=context).json()
    assert scope["extensions"]["tls"]["cipher_suite"] == 0xC02B


# -- mTLS ---------------------------------------------------------------------


def test_mtls_required(certs, tmp_path):
    client_cert = certs.ca.issue_cert("client@example.com", common_name="client one")
    pem = tmp_path / "client.pem"
    client_cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    args = certs.args("--ssl-ca-certs", str(certs.ca_file), "--ssl-cert-reqs", "required")
    with Server("basic:app", *args) as srv:
        context = certs.client_context()
        context.load_cert_chain(str(pem))
        scope = httpx.get(url(srv, "/scope"), verify=context).json()
        tls = scope["extensions"]["tls"]
        assert tls["client_cert_chain"][0] == client_cert.cert_chain_pems[0].bytes().decode()
        assert "CN=client one" in tls["client_cert_name"]
        # Without a certificate: refused (the handshake fails), never served.
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            httpx.get(url(srv, "/scope"), verify=certs.client_context())
        # A certificate from another CA: refused too.
        other = trustme.CA().issue_cert("intruder")
        other_pem = tmp_path / "other.pem"
        other.private_key_and_cert_chain_pem.write_to_path(str(other_pem))
        context = certs.client_context()
        context.load_cert_chain(str(other_pem))
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            httpx.get(url(srv, "/scope"), verify=context)


def test_mtls_optional_serves_clients_without_a_certificate(certs):
    args = certs.args("--ssl-ca-certs", str(certs.ca_file), "--ssl-cert-reqs", "optional")
    with Server("basic:app", *args) as srv:
        scope = httpx.get(url(srv, "/scope"), verify=certs.client_context()).json()
    assert scope["extensions"]["tls"]["client_cert_chain"] == []


# -- WSGI and WebSocket -----------------------------------------------------------


def test_wsgi_environ_over_tls(certs):
    with Server("wsgi_app:app", *certs.args()) as srv:
        environ = httpx.get(url(srv, "/environ"), verify=certs.client_context()).json()
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["HTTPS"] == "on"


def test_wss_scope(certs):
    with Server("ws:app", *certs.args()) as srv:
        with ws_connect(f"wss://127.0.0.1:{srv.port}/scope", ssl=certs.client_context()) as ws:
            scope = json.loads(ws.recv(timeout=10))
    assert scope["scheme"] == "wss"
    assert scope["extensions"]["tls"]["tls_version"] == 0x0304
    assert "websocket.http.response" in scope["extensions"]


# -- validation in the master ---------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "corral", "basic:app", "--app-dir", str(APPS), "--port", "0", *args],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
    )


def test_bad_tls_options_exit_2_with_one_line(certs, tmp_path):
    encrypted = tmp_path / "encrypted-key.pem"
    key = serialization.load_pem_private_key(certs.key.read_bytes(), password=None)
    encrypted.write_bytes(key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"right"),
    ))
    other_key = tmp_path / "other-key.pem"
    trustme.CA().issue_cert("127.0.0.1").private_key_pem.write_to_path(str(other_key))
    cases = {
        "missing cert": (("--ssl-certfile", str(tmp_path / "nope.pem")), "--ssl-certfile: cannot read"),
        "key not matching": (("--ssl-certfile", str(certs.cert), "--ssl-keyfile", str(other_key)), "cannot load"),
        # Issue 20: was "not a matching PEM certificate and key ([SSL] PEM lib ...)".
        "cert without its key": (("--ssl-certfile", str(certs.cert)),
                                 f"--ssl-certfile {certs.cert} holds no private key: give its key with --ssl-keyfile"),
        "keyfile without a key": (("--ssl-certfile", str(certs.cert), "--ssl-keyfile", str(certs.ca_file)),
                                  f"--ssl-keyfile {certs.ca_file} holds no private key"),
        "no password": (("--ssl-certfile", str(certs.cert), "--ssl-keyfile", str(encrypted)), "give --ssl-keyfile-password"),
        "wrong password": (certs.args("--ssl-keyfile-password", "wrong")[:2]
                           + ("--ssl-keyfile", str(encrypted), "--ssl-keyfile-password", "wrong"), "wrong --ssl-keyfile-password"),
        "required without CA": (certs.args("--ssl-cert-reqs", "required"), "needs --ssl-ca-certs"),
        "bad ciphers": (certs.args("--ssl-ciphers", "NO-SUCH-CIPHER"), "--ssl-ciphers"),
        "key without cert": (("--ssl-keyfile", str(certs.key)), "needs --ssl-certfile"),
        "bad version": (certs.args("--ssl-min-version", "1.0"), "--ssl-min-version"),
    }
    for name, (args, expected) in cases.items():
        out = run_cli(*args)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2, (name, out.stderr)
        assert len(lines) == 1 and lines[0].startswith("corral: error:") and expected in lines[0], (name, lines)


def test_encrypted_key_with_password_serves(certs, tmp_path):
    encrypted = tmp_path / "encrypted-key.pem"
    key = serialization.load_pem_private_key(certs.key.read_bytes(), password=None)
    encrypted.write_bytes(key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret"),
    ))
    args = ("--ssl-certfile", str(certs.cert), "--ssl-keyfile", str(encrypted), "--ssl-keyfile-password", "s3cret")
    with Server("basic:app", *args) as srv:
        assert httpx.get(url(srv, "/pid"), verify=certs.client_context()).status_code == 200


# -- handshake bound ----------------------------------------------------------------


def test_handshake_timeout_closes_and_counts_toward_limit_connections(certs):
    args = certs.args("--timeout-handshake", "2", "--limit-connections", "1")
    with Server("basic:app", *args) as srv:
        silent = socket.create_connection(("127.0.0.1", srv.port), timeout=15)  # never says hello
        srv.wait_log(r"connection limit reached \(1 connections\)")
        result = {}

        def fetch():
            try:
                result["status"] = httpx.get(url(srv, "/pid"), verify=certs.client_context(), timeout=20).status_code
            except Exception as exc:  # noqa: BLE001
                result["error"] = repr(exc)
            result["at"] = time.monotonic()

        thread = threading.Thread(target=fetch)
        thread.start()
        # The silent client holds the only slot: the real one is not served yet.
        thread.join(0.5)
        assert "at" not in result
        assert silent.recv(1) == b""  # closed by the server at the handshake deadline
        closed_at = time.monotonic()
        silent.close()
        thread.join(20)
        assert result.get("status") == 200, result
        srv.wait_log(r"TLS handshake not completed in 2\.0s; closed")
        assert result["at"] >= closed_at - 0.5


# -- certificate rotation -----------------------------------------------------------


def test_hup_reloads_rotated_certificates_with_zero_loss(certs, tmp_path):
    cert = tmp_path / "live-cert.pem"
    key = tmp_path / "live-key.pem"
    shutil.copy(certs.cert, cert)
    shutil.copy(certs.key, key)
    new = Certs(tmp_path, "b")
    both = tmp_path / "both-ca.pem"
    both.write_bytes(certs.ca_file.read_bytes() + new.ca_file.read_bytes())
    trust_both = ssl.create_default_context(cafile=str(both))
    with Server("basic:app", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key), workers=2) as srv:
        stop = threading.Event()
        failures: list[str] = []
        ok = [0]

        def load():
            while not stop.is_set():
                try:
                    with httpx.Client(verify=trust_both, timeout=10) as client:
                        for _ in range(5):
                            if client.get(url(srv, "/pid")).status_code != 200:
                                failures.append("status")
                            ok[0] += 1
                except Exception as exc:  # noqa: BLE001 - every failure counts
                    failures.append(repr(exc))

        threads = [threading.Thread(target=load) for _ in range(3)]
        for thread in threads:
            thread.start()
        try:
            # Rotate: the new files replace the old ones, then HUP.
            shutil.copy(new.cert, cert)
            shutil.copy(new.key, key)
            mark = srv.mark()
            srv.signal(signal.SIGHUP)
            srv.wait_log(r"master: worker \d+ ready", count=2, start=mark, timeout=30)
            srv.wait_log(r"master: worker \d+ exited \(code 0\)", count=2, start=mark, timeout=30)
        finally:
            stop.set()
            for thread in threads:
                thread.join(20)
        assert not failures, failures[:5]
        assert ok[0] > 0
        # Only the new certificate is served now.
        assert httpx.get(url(srv, "/pid"), verify=new.client_context()).status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(url(srv, "/pid"), verify=certs.client_context())
