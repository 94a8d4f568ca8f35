"""The io tier: a real ``H1Connection`` (and, after an upgrade, a real
``WSConnection``) on one end of a ``socket.socketpair()``, driven by a real
uvloop loop in this process; the test is the client on the other end.

No subprocess, no sleeps: the test steps the loop until a condition holds
(bytes arrived, the peer closed) and plays the worker's clock by setting
``state.now`` and calling ``state.sweep()``.
"""

from __future__ import annotations

import asyncio
import socket

import httptools
import pytest

from corral.config import Config
from corral.interfaces.asgi import ASGIHandler
from corral.interfaces.asgi_ws import WebSocketHandler
from corral.io.h1 import H1Connection
from corral.io.state import ServerState
from corral.io.ws import WebSocketUpgrade
from driver import run_until, spin

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

WAIT = 3.0  # longest wait for a condition; a passing test never waits this long


class Response:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.body = b""

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:40]!r}>"


class Responses:
    """Parses the bytes the server wrote into responses (httptools)."""

    def __init__(self) -> None:
        self.done: list[Response] = []
        self._current: Response | None = None
        self._parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self._current = Response()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._current.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self._current.status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self._current.body += body

    def on_message_complete(self) -> None:
        self.done.append(self._current)

    def feed(self, data: bytes) -> None:
        self._parser.feed_data(data)


class Client:
    """The client end of one socketpair, with what it has received so far."""

    def __init__(self, sock: socket.socket, conn) -> None:
        self.sock = sock
        self.conn = conn  # the server side (H1Connection)
        self.responses = Responses()
        self.received = b""
        self.eof: bool | str = False
        self.reading = True  # False: a client that does not read (run_until leaves it alone)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def shut_wr(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def read(self) -> None:
        while self.reading and not self.eof:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            except ConnectionResetError:
                self.eof = "reset"
                return
            if not data:
                self.eof = True
                return
            self.received += data
            self.responses.feed(data)


class Pair:
    """Server-side connections of one worker state, and the client sockets facing them."""

    def __init__(self, loop, app, **config) -> None:
        config.setdefault("access_log", False)
        self.loop = loop
        self.state = state = ServerState(Config(app="x:y", **config), loop)
        state.handler = ASGIHandler(app, state).new_cycle
        state.upgrade_handler = WebSocketUpgrade(state, WebSocketHandler(app, state))
        self.clients: list[Client] = []

    def connect(self) -> Client:
        """A new connection to the same worker state."""
        server_side, sock = socket.socketpair()
        sock.setblocking(False)
        made = []

        def factory():
            conn = H1Connection(self.state)
            made.append(conn)
            return conn

        self.loop.run_until_complete(self.loop.connect_accepted_socket(factory, server_side))
        client = Client(sock, made[0])
        self.clients.append(client)
        return client

    def open(self) -> "Pair":
        self.client = self.connect()
        self.conn = self.client.conn
        return self

    # -- the first client, for short tests --------------------------------

    def send(self, data: bytes) -> None:
        self.client.send(data)

    def shut_wr(self) -> None:
        self.client.shut_wr()

    @property
    def responses(self) -> Responses:
        return self.client.responses

    # -- driving the loop ----------------------------------------------------

    def run_until(self, condition, timeout: float = WAIT, what: str = "condition") -> None:
        """Run the loop until ``condition()`` holds (every client reads as we go)."""

        def read():
            for client in self.clients:
                client.read()

        run_until(self.loop, condition, read, timeout, what,
                  lambda: f"clients received {[c.received[-300:] for c in self.clients]!r}")

    def spin(self, passes: int = 20) -> None:
        """Let the loop run a few passes (to assert that nothing more happens)."""
        spin(self.loop, passes)
        for client in self.clients:
            client.read()

    def responses_count(self, n: int, client: Client | None = None) -> list[Response]:
        client = client or self.client
        self.run_until(lambda: len(client.responses.done) >= n, what=f"{n} responses")
        return client.responses.done

    def until_closed(self, client: Client | None = None) -> list[Response]:
        client = client or self.client
        self.run_until(lambda: client.eof, what="the server to close")
        return client.responses.done

    def later(self, seconds: float) -> None:
        """Play the worker's clock: ``seconds`` later, one sweep."""
        self.state.now += seconds
        self.state.sweep()

    def close(self) -> None:
        for conn in list(self.state.connections):
            conn.abort()
        for ws in list(self.state.upgraded):
            ws.abort()
        for client in self.clients:
            client.eof = True
            client.sock.close()
        self.spin(5)
        self.state.stepper.close()


@pytest.fixture
def loop():
    loop = uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()
    yield loop
    # Cancel what the apps left waiting so the loop closes quietly.
    for task in asyncio.all_tasks(loop):
        task.cancel()
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()


@pytest.fixture
def pair(loop):
    """``pair(app, **config)``: an open Pair; closed after the test."""
    pairs = []

    def make(app, **config):
        p = Pair(loop, app, **config).open()
        pairs.append(p)
        return p

    yield make
    for p in pairs:
        p.close()


@pytest.fixture
def h2pair(loop):
    """``h2pair(app, **config)``: an ``h2io.H2Pair`` (HTTP/2 over a socketpair); closed after the test."""
    from h2io import H2Pair

    pairs = []

    def make(app, **config):
        made = H2Pair(loop, app, **config)
        pairs.append(made)
        return made

    yield make
    for made in pairs:
        made.close()
