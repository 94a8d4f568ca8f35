"""Issue 19 finding 13: the PROXY protocol composes with TLS and HTTP/2.

A PROXY header, then the TLS handshake, then HTTP/1.1 or HTTP/2 by ALPN;
and a PROXY header, then the h2c preface (prior knowledge) in cleartext.
Each hand-over goes through io/switch.py: the client the header named
reaches the app on every path, and --limit-connections and the metrics
count each connection once however many phases it went through. Real
haproxy (``send-proxy-v2`` to a TLS backend, ALPN h2 and http/1.1) and raw
bytes (PROXY v1/v2 built here)."""

from __future__ import annotations

import json
import socket
import ssl
import struct

import pytest

from h2support import H2Client
from proxies import Haproxy, connect_from, needs_haproxy
from support import read_response, wait_until
from test_metrics import metrics_port, scrape, total
from test_tls import Certs

NAMED = ["203.0.113.7", 4242]  # the client the PROXY headers name
V1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 4242 443\r\n"
V2 = (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", 12)
      + bytes([203, 0, 113, 7, 127, 0, 0, 1]) + struct.pack("!HH", 4242, 443))


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Certs(tmp_path_factory.mktemp("proxy-paths"))


def alpn(certs, protocol: str) -> ssl.SSLContext:
    context = certs.client_context()
    context.set_alpn_protocols([protocol])
    return context


def h2_scope(port: int, header: bytes, context=None) -> dict:
    with H2Client(port, context=context, before=header) as client:
        stream = client.request("/scope")
        headers, body, _ = client.response(stream)
    assert headers[b":status"] == b"200", (headers, body)
    return json.loads(body)


def h1_scope(port: int, header: bytes, context=None) -> dict:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(header)
    if context is not None:
        sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
        assert sock.selected_alpn_protocol() == "http/1.1"
    with sock:
        sock.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, _, body = read_response(sock)
    assert status.startswith(b"HTTP/1.1 200"), (status, body)
    return json.loads(body)


@pytest.mark.parametrize("http", ["auto", "2"])
def test_proxy_header_then_the_h2c_preface(server_factory, http):
    # Was: served as HTTP/1.1 only; the preface after the header got 505.
    srv = server_factory("basic:app", "--proxy-protocol", "auto", "--http", http)
    for header in (V1, V2):
        view = h2_scope(srv.port, header)
        assert (view["http_version"], view["client"], view["scheme"]) == ("2", NAMED, "http")
    if http == "auto":  # and HTTP/1.1 behind the header still
        view = h1_scope(srv.port, V2)
        assert (view["http_version"], view["client"]) == ("1.1", NAMED)


def test_proxy_header_then_tls_then_alpn(server_factory, certs):
    # Was: refused at startup (exit 2).
    srv = server_factory("basic:app", "--proxy-protocol", "v2", *certs.args())
    view = h2_scope(srv.port, V2, alpn(certs, "h2"))
    assert (view["http_version"], view["client"], view["scheme"]) == ("2", NAMED, "https")
    assert view["extensions"]["tls"]["tls_version"] == 0x0304
    view = h1_scope(srv.port, V2, alpn(certs, "http/1.1"))
    assert (view["http_version"], view["client"], view["scheme"]) == ("1.1", NAMED, "https")
    assert view["extensions"]["tls"]["tls_version"] == 0x0304  # corral's own TLS: the header carried none
    assert view["extensions"]["tls"]["server_cert"] == certs.leaf_pem


def client_hello(certs) -> bytes:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = certs.client_context().wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_counts_stay_exact_over_every_path(server_factory, certs):
    limit = 3
    srv = server_factory("basic:app", "--proxy-protocol", "v2", *certs.args("--timeout-handshake", "1"),
                         "--limit-connections", str(limit), "--metrics-bind", "127.0.0.1:0")
    port = metrics_port(srv)
    hello = client_hello(certs)
    served = 0
    for _ in range(8):
        assert h2_scope(srv.port, V2, alpn(certs, "h2"))["client"] == NAMED
        assert h1_scope(srv.port, V2, alpn(certs, "http/1.1"))["client"] == NAMED
        served += 2
    # Connections that end in front of HTTP: a bad header, a failed
    # handshake, a client gone after the header, a handshake that expires.
    for data in (b"GET / HTTP/1.1\r\n\r\n", V2 + b"\x16\x03\x01\x00\x05hello", V2, V2 + hello):
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            sock.sendall(data)
            if data == V2:
                continue  # the client leaves
            sock.settimeout(10)
            try:
                while sock.recv(65536):
                    pass
            except ConnectionResetError:
                pass
    srv.wait_log(r"TLS handshake not completed in 1\.0s; closed")
    sent = served + 4
    samples = wait_until(lambda: (s := scrape(port)) and total(s, "corral_connections_closed_total") == sent and s,
                         message=f"{sent} connections closed")
    assert total(samples, "corral_connections_accepted_total") == sent
    assert total(samples, "corral_connections_open") == 0
    assert total(samples, "corral_connections_closed_total", reason="bad_request") == 2
    assert total(samples, "corral_connections_closed_total", reason="handshake_timeout") == 1
    # --limit-connections: the gate closes at the limit-th open connection, not before.
    mark = srv.mark()
    held = []
    for index in range(limit):
        sock = alpn(certs, "http/1.1").wrap_socket(_with_header(srv.port), server_hostname="127.0.0.1")
        sock.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = read_response(sock)
        assert status.startswith(b"HTTP/1.1 200") and json.loads(body)["client"] == NAMED
        held.append(sock)
        if index < limit - 1:
            assert not [line for line in srv.lines[mark:] if "connection limit reached" in line]
    srv.wait_log(rf"connection limit reached \({limit} connections\)", start=mark)
    for sock in held:
        sock.close()
    srv.wait_log(r"accepting again", start=mark)
    assert h1_scope(srv.port, V2, alpn(certs, "http/1.1"))["client"] == NAMED


def _with_header(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(V2)
    return sock


# haproxy in HTTP mode opens its own TLS connection to corral, PROXY v2 first.
TO_TLS_BACKEND = """
frontend fe
    mode http
    bind 127.0.0.1:{port}
    default_backend be
backend be
    mode http
    server corral 127.0.0.1:%d send-proxy-v2 ssl verify none alpn %s
"""


@needs_haproxy
@pytest.mark.parametrize("protocol, version", [("h2", "2"), ("http/1.1", "1.1")])
def test_haproxy_send_proxy_v2_to_a_tls_backend(server_factory, certs, protocol, version):
    srv = server_factory("basic:app", "--proxy-protocol", "v2", *certs.args())
    with Haproxy(TO_TLS_BACKEND % (srv.port, protocol)) as proxy:
        for _ in range(3):
            sock = connect_from("127.0.0.2", proxy.port)
            client_port = sock.getsockname()[1]
            with sock:
                sock.sendall(b"GET /scope HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n")
                status, _, body = read_response(sock)
            assert status.startswith(b"HTTP/1.1 200"), (status, body)
            view = json.loads(body)
            assert (view["http_version"], view["client"], view["scheme"]) == (version, ["127.0.0.2", client_port], "https")
            assert view["extensions"]["tls"]["tls_version"] in (0x0303, 0x0304)


# haproxy in TCP mode passes the client's TLS through; corral ends it behind the PROXY v2 header.
TLS_PASSTHROUGH = """
frontend fe
    mode tcp
    bind 127.0.0.1:{port}
    default_backend be
backend be
    mode tcp
    server corral 127.0.0.1:%d send-proxy-v2
"""


@needs_haproxy
def test_haproxy_passing_tls_through_with_send_proxy_v2(server_factory, certs):
    srv = server_factory("basic:app", "--proxy-protocol", "v2", *certs.args())
    with Haproxy(TLS_PASSTHROUGH % srv.port) as proxy:
        with H2Client(proxy.port, context=alpn(certs, "h2")) as client:
            port = client.sock.getsockname()[1]
            headers, body, _ = client.response(client.request("/scope"))
        view = json.loads(body)
        assert (view["http_version"], view["client"], view["scheme"]) == ("2", ["127.0.0.1", port], "https")
        raw = connect_from("127.0.0.2", proxy.port)
        port = raw.getsockname()[1]
        with alpn(certs, "http/1.1").wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status, _, body = read_response(sock)
        view = json.loads(body)
        assert (view["http_version"], view["client"], view["scheme"]) == ("1.1", ["127.0.0.2", port], "https")
        assert view["extensions"]["tls"]["server_cert"] == certs.leaf_pem
