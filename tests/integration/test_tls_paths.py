"""TLS paths of issue 19 and 20, end to end: handshakes that stall after the
ClientHello release their --limit-connections slot (finding 12), plain HTTP
sent to the TLS port gets nginx's 400 (issue 20)."""

from __future__ import annotations

import socket
import ssl

import httpx
import pytest

from support import Server, read_response, wait_until
from test_tls import Certs, url


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Certs(tmp_path_factory.mktemp("tls-paths"))


def client_hello(context: ssl.SSLContext) -> bytes:
    """The bytes of a real ClientHello (the handshake then never goes on)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_handshakes_that_expire_after_the_client_hello_release_their_slots(certs):
    # Issue 19 finding 12: a handshake that expired after the ClientHello
    # stayed counted (AttributeError on selected_alpn_protocol): ten of them
    # and the worker never accepted again.
    args = certs.args("--timeout-handshake", "1", "--limit-connections", "10")
    with Server("basic:app", *args) as srv:
        hello = client_hello(certs.client_context())
        for _ in range(3):  # three rounds: each must leave every slot free
            mark = srv.mark()
            stalled = [socket.create_connection(("127.0.0.1", srv.port), timeout=15) for _ in range(10)]
            for sock in stalled:
                sock.sendall(hello)
            srv.wait_log(r"connection limit reached \(10 connections\)", start=mark)
            for sock in stalled:
                sock.settimeout(15)
                try:
                    while sock.recv(65536):  # the ServerHello, then the close at the deadline
                        pass
                except ConnectionResetError:
                    pass
                sock.close()
            srv.wait_log(r"TLS handshake not completed in 1\.0s; closed", count=10, start=mark)
            response = httpx.get(url(srv, "/pid"), verify=certs.client_context(), timeout=10)
            assert response.status_code == 200
        assert not [line for line in srv.lines if "Traceback" in line or "AttributeError" in line]
