"""The TLS handshake phase over a socketpair (issue 19 finding 12): every
way a handshake ends frees its --limit-connections slot exactly once and
counts the connection once, accepted and closed. A real ``TLSHandshake``
and uvloop's SSL layer on one end; the test is a TLS client on the other
(``ssl.MemoryBIO``), and plays the clock for --timeout-handshake."""

from __future__ import annotations

import logging
import socket
import ssl

import pytest

from corral.config import Config
from corral.interfaces.asgi import ASGIHandler
from corral.io.h1 import H1Connection
from corral.io.metrics import WorkerMetrics
from corral.io.state import ServerState
from corral.io.tls import TLSHandshake, TLSInfo, build_context

trustme = pytest.importorskip("trustme", reason="trustme is in the test extra: pip install -e '.[test]'")


async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


class Gate:
    """Records the counts the accept gate is told."""

    def __init__(self) -> None:
        self.counts: list[int] = []

    def opened(self, count: int) -> None:
        self.counts.append(count)

    def closed(self, count: int) -> None:
        self.counts.append(count)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls-io")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    cert.private_key_pem.write_to_path(str(directory / "key.pem"))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return directory, client


class World:
    def __init__(self, loop, certs) -> None:
        directory, self.client_context = certs
        config = Config(app="x:y", access_log=False, ssl_certfile=str(directory / "cert.pem"),
                        ssl_keyfile=str(directory / "key.pem"), timeout_handshake=5)
        self.loop = loop
        self.state = state = ServerState(config, loop)
        state.metrics = WorkerMetrics()
        state.gate = self.gate = Gate()
        state.handler = ASGIHandler(app, state).new_cycle
        self.info = TLSInfo(build_context(config), config)
        self.protocols = {None: lambda: H1Connection(state), "http/1.1": lambda: H1Connection(state)}

    def connect(self):
        server_side, sock = socket.socketpair()
        sock.setblocking(False)
        made = []

        def factory():
            made.append(TLSHandshake(self.state, self.info, self.protocols))
            return made[-1]

        self.loop.run_until_complete(self.loop.connect_accepted_socket(factory, server_side))
        return sock, made[0]

    def run_until(self, condition, pump=None, what="condition") -> None:
        import asyncio

        async def wait():
            deadline = self.loop.time() + 3
            while not condition():
                if pump is not None:
                    pump()
                assert self.loop.time() < deadline, f"timed out waiting for {what}"
                await asyncio.sleep(0.001)

        self.loop.run_until_complete(wait())

    def ended(self) -> None:
        """The handshake is over and nothing is left counted."""
        self.run_until(lambda: not self.state.handshakes and not self.state.connections, what="every slot freed")
        assert self.gate.counts[-1] == 0
        assert self.state.counters["connections"] == 1
        assert sum(self.state.metrics.closed.values()) == 1


class Client:
    """A TLS client over a MemoryBIO, pumped by hand."""

    def __init__(self, sock, context) -> None:
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        context.set_alpn_protocols(["http/1.1"])
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="127.0.0.1")
        self.done = False
        self.received = b""
        self.eof = False

    def hello(self) -> None:
        self.pump()

    def pump(self) -> None:
        try:
            while data := self.sock.recv(65536):
                self.incoming.write(data)
            else:
                self.eof = True
        except BlockingIOError:
            pass
        except ConnectionResetError:
            self.eof = True
        try:
            if not self.done:
                self.tls.do_handshake()
                self.done = True
            while data := self.tls.read(65536):
                self.received += data
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError, ssl.SSLEOFError):
            pass
        data = self.outgoing.read()
        if data:
            try:
                self.sock.sendall(data)
            except OSError:
                self.eof = True

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        self.pump()


@pytest.fixture
def world(loop, certs):
    return World(loop, certs)


def test_success_is_handed_over_then_closed_once(world):
    sock, _ = world.connect()
    client = Client(sock, world.client_context)
    world.run_until(lambda: client.done, client.pump, "the handshake")
    client.send(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    world.run_until(lambda: client.received.endswith(b"ok"), client.pump, "the response")
    assert client.received.startswith(b"HTTP/1.1 200 OK")
    sock.close()  # (uvloop waits for the client's close_notify before closing TCP)
    world.ended()
    assert world.state.metrics.closed["normal"] == 1


def test_the_client_leaves_before_its_hello(world):
    sock, _ = world.connect()
    sock.close()
    world.ended()
    assert world.state.metrics.closed["normal"] == 1


def test_the_client_leaves_after_its_hello(world):
    sock, conn = world.connect()
    Client(sock, world.client_context).hello()
    world.run_until(lambda: conn.phase == "tls", what="the handshake to start")
    sock.close()
    world.ended()
    assert world.state.metrics.closed["normal"] == 1


def test_a_bad_hello_fails_once(world):
    sock, _ = world.connect()
    sock.sendall(b"\x16\x03\x01\x00\x05hello")
    world.ended()
    assert world.state.metrics.closed["bad_request"] == 1
    sock.close()


@pytest.mark.parametrize("hello", [False, True])
def test_expiry_before_or_after_the_hello_frees_the_slot_once(world, hello, caplog):
    # The finding: after the hello, the aborted handshake came back from
    # start_tls as a dead transport, AttributeError, the slot stayed counted.
    sock, conn = world.connect()
    if hello:
        Client(sock, world.client_context).hello()
        world.run_until(lambda: conn.phase == "tls", what="the handshake to start")
    state = world.state
    with caplog.at_level(logging.INFO, "corral.error"):
        state.now += 5
        state.sweep()
        world.ended()
        state.sweep()  # a second sweep finds nothing to expire
    assert state.metrics.closed["handshake_timeout"] == 1
    assert state.counters["timeouts"] == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    sock.close()


def test_plain_http_gets_400_and_is_closed_once(world):
    sock, _ = world.connect()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    received = b""

    def read():
        nonlocal received
        try:
            received += sock.recv(65536)
        except BlockingIOError:
            pass

    world.run_until(lambda: received.endswith(b"port\n"), read, "the 400")
    assert received.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    sock.close()
    world.ended()
    assert world.state.metrics.closed["bad_request"] == 1
