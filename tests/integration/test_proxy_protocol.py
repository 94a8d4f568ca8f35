"""PROXY protocol end to end: real haproxy with send-proxy (v1) and
send-proxy-v2 (behind a TLS frontend, with its TLS TLVs) in front of corral;
the client connects from 127.0.0.2 so that the real client differs from the
proxy. And what happens without haproxy: a missing header, a header from a
peer that is not allowed, a header that never arrives."""

from __future__ import annotations

import json
import ssl

import pytest
from websockets.sync.client import connect as ws_connect

from proxies import Haproxy, connect_from, needs_haproxy
from support import read_response, wait_until

CLIENT = "127.0.0.2"

SEND_PROXY = """
frontend fe
    mode tcp
    bind 127.0.0.1:{port}
    default_backend be
backend be
    mode tcp
    server corral 127.0.0.1:%d send-proxy
"""

# TLS ends at haproxy; corral gets the client, the TLS details and a unique ID in the v2 header.
SEND_PROXY_V2_TLS = """
frontend fe
    mode tcp
    bind 127.0.0.1:{port} ssl crt {dir}/server.pem
    unique-id-format req-%%ci
    default_backend be
backend be
    mode tcp
    server corral 127.0.0.1:%d send-proxy-v2 proxy-v2-options ssl,ssl-cipher,authority,unique-id,crc32c
"""


def request(sock, path: str = "/", headers: str = "") -> dict:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: app.example\r\n{headers}\r\n".encode("latin-1"))
    status, _, body = read_response(sock)
    assert status.startswith(b"HTTP/1.1 200"), (status, body)
    return json.loads(body)


@pytest.fixture(scope="module")
def tls():
    trustme = pytest.importorskip("trustme", reason="trustme is in the test extra: pip install -e '.[test]'")
    ca = trustme.CA()
    cert = ca.issue_cert("app.example")
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return cert, client


def start_tls_haproxy(corral_port: int, tls) -> Haproxy:
    cert, _ = tls
    pem = cert.private_key_and_cert_chain_pem.bytes()
    return Haproxy(SEND_PROXY_V2_TLS % corral_port, files={"server.pem": pem})


@needs_haproxy
def test_send_proxy_v1_http_websocket_and_wsgi(server_factory):
    srv = server_factory("proxy_app:app", "--proxy-protocol", "v1", "--access-log")
    with Haproxy(SEND_PROXY % srv.port) as proxy:
        sock = connect_from(CLIENT, proxy.port)
        port = sock.getsockname()[1]
        # Keep-alive: both requests on one connection, one header.
        for _ in range(2):
            view = request(sock, headers="X-Forwarded-For: 6.6.6.6\r\n")  # 127.0.0.2 is not trusted: ignored
            assert view["client"] == [CLIENT, port] and view["scheme"] == "http"
        sock.close()
        srv.wait_log(rf'\] {CLIENT}:{port} - "GET / HTTP/1.1" 200', count=2)

        sock = connect_from(CLIENT, proxy.port)
        port = sock.getsockname()[1]
        with ws_connect(f"ws://127.0.0.1:{proxy.port}/", sock=sock) as ws:
            view = json.loads(ws.recv(timeout=10))
        assert view["client"] == [CLIENT, port] and view["scheme"] == "ws"

    srv = server_factory("proxy_app:wsgi", "--interface", "wsgi", "--proxy-protocol", "v1")
    with Haproxy(SEND_PROXY % srv.port) as proxy:
        sock = connect_from(CLIENT, proxy.port)
        view = request(sock)
        assert (view["REMOTE_ADDR"], view["REMOTE_PORT"], view["wsgi.url_scheme"]) == (CLIENT, str(sock.getsockname()[1]), "http")
        sock.close()


@needs_haproxy
def test_send_proxy_v2_behind_tls_http_websocket_and_wsgi(server_factory, tls):
    _, context = tls
    srv = server_factory("proxy_app:app", "--proxy-protocol", "v2")
    with start_tls_haproxy(srv.port, tls) as proxy:
        raw = connect_from(CLIENT, proxy.port)
        port = raw.getsockname()[1]
        sock = context.wrap_socket(raw, server_hostname="app.example")
        view = request(sock)
        sock.close()
        assert view["client"] == [CLIENT, port] and view["scheme"] == "https"
        assert view["tls"]["tls_version"] == {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}[view["proxy"]["tls_version"]]
        assert view["tls"]["cipher_suite"] is not None and view["tls"]["client_cert_chain"] == []
        assert view["proxy"]["sni"] == "app.example"
        assert view["proxy"]["unique_id"] == ("req-" + CLIENT).encode().hex()

        raw = connect_from(CLIENT, proxy.port)
        port = raw.getsockname()[1]
        with ws_connect(f"wss://app.example:{proxy.port}/", sock=raw, server_hostname="app.example", ssl=context) as ws:
            view = json.loads(ws.recv(timeout=10))
        assert view["client"] == [CLIENT, port] and view["scheme"] == "wss" and view["tls"]["tls_version"]

    srv = server_factory("proxy_app:wsgi", "--interface", "wsgi", "--proxy-protocol", "auto")
    with start_tls_haproxy(srv.port, tls) as proxy:
        sock = context.wrap_socket(connect_from(CLIENT, proxy.port), server_hostname="app.example")
        view = request(sock)
        sock.close()
    assert (view["REMOTE_ADDR"], view["wsgi.url_scheme"], view["HTTPS"]) == (CLIENT, "https", "on")
    assert view["SSL_PROTOCOL"].startswith("TLSv1.") and view["SSL_CIPHER"] and view["SSL_TLS_SNI"] == "app.example"
    assert view["corral.proxy_unique_id"] == ("req-" + CLIENT).encode().hex()


def closed_without_answer(sock) -> bool:
    sock.settimeout(10)
    return sock.recv(100) == b""


def test_an_allowed_peer_must_send_the_header(server_factory):
    srv = server_factory("proxy_app:app", "--proxy-protocol", "v2")
    sock = srv.connect()  # from 127.0.0.1: allowed
    sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert closed_without_answer(sock)
    srv.wait_log(r"127\.0\.0\.1:\d+: no PROXY header \(v2 expected\); closing the connection")
    sock = srv.connect()
    sock.sendall(b"PROXY TCP4 192.0.2.1 127.0.0.1 1 2\r\n")
    assert closed_without_answer(sock)
    srv.wait_log(r"PROXY v1 header where v2 is expected; closing the connection")


def test_auto_mode_takes_a_header_or_none(server_factory):
    srv = server_factory("proxy_app:app", "--proxy-protocol", "auto")
    sock = srv.connect()
    assert request(sock)["client"][0] == "127.0.0.1"
    sock.close()
    sock = srv.connect()
    sock.sendall(b"PROXY TCP6 2001:db8::7 ::1 4711 80\r\n")
    assert request(sock)["client"] == ["2001:db8::7", 4711]
    sock.close()
    sock = srv.connect()
    sock.sendall(b"PROXY TCP4 1.2.3 127.0.0.1 1 2\r\n")
    assert closed_without_answer(sock)
    srv.wait_log(r"PROXY v1 header with a bad TCP4 address")


def test_a_peer_not_allowed_is_served_plain_and_cannot_send_a_header(server_factory):
    srv = server_factory("proxy_app:app", "--proxy-protocol", "v1")  # allowed: 127.0.0.1, ::1
    sock = connect_from(CLIENT, srv.port)
    view = request(sock)
    assert view["client"] == [CLIENT, sock.getsockname()[1]]
    sock.close()
    sock = connect_from(CLIENT, srv.port)
    sock.sendall(b"PROXY TCP4 6.6.6.6 127.0.0.1 1 2\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert closed_without_answer(sock)
    srv.wait_log(rf"{CLIENT}:\d+: PROXY header from a peer not in --proxy-allow-from; closing the connection")


def test_the_header_must_arrive_in_time(server_factory):
    srv = server_factory("proxy_app:app", "--proxy-protocol", "v1", "--timeout-header", "1")
    sock = srv.connect()
    sock.sendall(b"PROXY TCP4 1.2.3.4")  # and nothing more
    assert closed_without_answer(sock)
    srv.wait_log(r"no PROXY header within --timeout-header; closing the connection")


def test_a_unix_socket_peer_is_allowed(server_factory, tmp_path):
    srv = server_factory("proxy_app:app", "--proxy-protocol", "v1", uds=str(tmp_path / "s"))
    sock = srv.connect()
    sock.sendall(b"PROXY TCP4 192.0.2.1 192.0.2.2 1000 80\r\n")
    assert request(sock)["client"] == ["192.0.2.1", 1000]
    sock.close()
