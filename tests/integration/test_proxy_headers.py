"""Forwarding headers end to end: real haproxy (option forwardfor) in front of
corral, the client on another loopback address (127.0.0.2) so that the real
client differs from the proxy; and the same headers sent straight from an
untrusted peer, which must change nothing."""

from __future__ import annotations

import json

import pytest
from websockets.sync.client import connect as ws_connect

from proxies import Haproxy, connect_from, needs_haproxy
from support import read_response

CLIENT = "127.0.0.2"  # an address of this machine: the real client, not trusted

FORWARDFOR = """
frontend fe
    mode http
    bind 127.0.0.1:{port}
    default_backend be
backend be
    mode http
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    server corral 127.0.0.1:%d
"""


def get(port: int, path: str = "/", headers: str = "", source: str = CLIENT) -> dict:
    sock = connect_from(source, port)
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: app.example\r\n{headers}\r\n".encode("latin-1"))
        status, _, body = read_response(sock)
    finally:
        sock.close()
    assert status.startswith(b"HTTP/1.1 200"), (status, body)
    return json.loads(body)


@needs_haproxy
def test_behind_haproxy_the_app_sees_the_real_client_and_scheme(server_factory):
    srv = server_factory("proxy_app:app", "--access-log")
    with Haproxy(FORWARDFOR % srv.port) as proxy:
        # The client's own X-Forwarded-For and Forwarded are left of the hop
        # haproxy appends (or overwritten): never believed.
        view = get(proxy.port, headers="X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: http\r\n")
        assert view["client"] == [CLIENT, 0]
        assert view["scheme"] == "https"
        assert view["host"] == "app.example"
        srv.wait_log(rf'\] {CLIENT}:0 - "GET / HTTP/1.1" 200')

        with ws_connect(f"ws://127.0.0.1:{proxy.port}/", sock=connect_from(CLIENT, proxy.port)) as ws:
            view = json.loads(ws.recv(timeout=10))
        assert view["client"] == [CLIENT, 0]
        assert view["scheme"] == "wss"


@needs_haproxy
def test_behind_haproxy_wsgi_environ(server_factory):
    srv = server_factory("proxy_app:wsgi", "--interface", "wsgi")
    with Haproxy(FORWARDFOR % srv.port) as proxy:
        view = get(proxy.port)
    assert (view["REMOTE_ADDR"], view["REMOTE_PORT"], view["wsgi.url_scheme"]) == (CLIENT, "0", "https")


@needs_haproxy
def test_forwarded_host_is_opt_in(server_factory):
    config = FORWARDFOR.replace("option forwardfor", "option forwardfor\n    http-request set-header X-Forwarded-Host public.example:8443")
    srv = server_factory("proxy_app:wsgi", "--interface", "wsgi", "--forwarded-host")
    with Haproxy(config % srv.port) as proxy:
        assert get(proxy.port)["HTTP_HOST"] == "public.example:8443"
    srv = server_factory("proxy_app:wsgi", "--interface", "wsgi")
    with Haproxy(config % srv.port) as proxy:
        assert get(proxy.port)["HTTP_HOST"] == "app.example"


@needs_haproxy
def test_no_proxy_headers_shows_the_proxy(server_factory):
    srv = server_factory("proxy_app:app", "--no-proxy-headers")
    with Haproxy(FORWARDFOR % srv.port) as proxy:
        view = get(proxy.port)
    assert view["client"][0] == "127.0.0.1" and view["client"][1] > 0
    assert view["scheme"] == "http"


@needs_haproxy
def test_a_proxy_not_in_forwarded_allow_ips_is_not_believed(server_factory):
    srv = server_factory("proxy_app:app", "--forwarded-allow-ips", "10.0.0.0/8")
    with Haproxy(FORWARDFOR % srv.port) as proxy:
        view = get(proxy.port)
    assert view["client"][0] == "127.0.0.1" and view["scheme"] == "http"


SPOOF = (
    "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n"
    "Forwarded: for=7.7.7.7;proto=https;host=evil.example\r\n"
)


def test_an_untrusted_peer_cannot_spoof(server_factory):
    srv = server_factory("proxy_app:app", "--forwarded-host")
    view = get(srv.port, headers=SPOOF)
    assert view["client"][0] == CLIENT and view["scheme"] == "http" and view["host"] == "app.example"
    srv = server_factory("proxy_app:wsgi", "--interface", "wsgi", "--forwarded-host")
    view = get(srv.port, headers=SPOOF)
    assert (view["REMOTE_ADDR"], view["wsgi.url_scheme"], view["HTTP_HOST"]) == (CLIENT, "http", "app.example")


def test_a_trusted_peer_forwarded_wins_and_malformed_values_are_ignored(server_factory):
    srv = server_factory("proxy_app:app", "--forwarded-allow-ips", "127.0.0.0/8")
    view = get(srv.port, headers=SPOOF)
    assert view["client"] == ["7.7.7.7", 0] and view["scheme"] == "https"
    view = get(srv.port, headers='Forwarded: for="[2001:db8::1]:4711";proto=wss\r\n')
    assert view["client"] == ["2001:db8::1", 4711] and view["scheme"] == "https"
    for bad in ("X-Forwarded-For: 1.1.1.1, %%%\r\n", "Forwarded: for=1.1.1.1;for=2.2.2.2\r\n",
                "X-Forwarded-Proto: javascript\r\n", "Forwarded: for=\"unterminated\r\n"):
        view = get(srv.port, headers=bad)  # 200, never a 500
        assert view["client"][0] == CLIENT and view["scheme"] == "http", bad


def test_a_unix_socket_peer_is_trusted(server_factory, tmp_path):
    path = str(tmp_path / "corral.sock")
    srv = server_factory("proxy_app:app", uds=path)
    sock = srv.connect()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\n\r\n")
    _, _, body = read_response(sock)
    sock.close()
    view = json.loads(body)
    assert view["client"] == ["1.2.3.4", 0] and view["scheme"] == "https"
