"""WebSocket connections over a socketpair: the upgrade from a real
H1Connection, pings against a full write buffer, batched flushes, scopes
(issue 9: finding a, losses 5 and 6)."""

import base64
import os

from corral.io import ws as io_ws
from corral.proto.ws import _py_apply_mask

MASK = b"\x37\xfa\x21\x3d"


def frame(opcode: int, payload: bytes = b"") -> bytes:
    """A masked client frame (payload < 126 bytes)."""
    assert len(payload) < 126
    return bytes((0x80 | opcode, 0x80 | len(payload))) + MASK + _py_apply_mask(payload, MASK)


def upgrade(path: str = "/ws") -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        b"GET %s HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path.encode(), key)
    )


class EchoApp:
    """Accepts, echoes every text message; records scopes."""

    def __init__(self) -> None:
        self.scopes = []

    async def __call__(self, scope, receive, send):
        self.scopes.append(scope)
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": scope["path"].encode()})
            return
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text")})


def open_ws(pair, app, client=None, **config):
    p = pair(app, **config)
    p.client.reading = False  # the tests read the raw frames themselves
    p.send(upgrade())
    p.run_until(lambda: p.state.upgraded and next(iter(p.state.upgraded)).phase == io_ws.OPEN, what="the 101")
    return p, next(iter(p.state.upgraded))


def read_until(p, sock, condition, what="data") -> bytes:
    """Run the loop, reading ``sock``, until ``condition(data)`` holds."""
    data = b""

    def done():
        nonlocal data
        data += recv_all(sock)
        return condition(data)

    p.run_until(done, what=what)
    return data


def recv_all(sock) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


# -- finding a: pongs respect the write buffer ------------------------------


def test_pings_from_a_client_that_never_reads_do_not_grow_the_buffer(pair):
    p, ws = open_ws(pair, EchoApp())
    ping = frame(0x9, b"p" * 125)
    batch = ping * 64  # 8 KB
    sent = 0
    stalled = 0
    while sent < 4_000_000 and stalled < 50:
        try:
            p.client.sock.send(batch)
            sent += len(batch)
            stalled = 0
        except BlockingIOError:
            stalled += 1  # the server stopped reading: the client is slowed
        p.spin(2)
        assert ws.transport.get_write_buffer_size() < 256 * 1024
    assert stalled == 50, "the server kept reading pings it could not answer"
    assert ws.reading_paused
    # The client reads: the owed pong goes out, reading resumes, the pings
    # the client had queued are read and answered; the last answer is a pong.
    pong = b"\x8a\x7d" + b"p" * 125
    received = read_until(
        p, p.client.sock, lambda data: not ws.reading_paused and data.endswith(pong) and not ws.transport.get_write_buffer_size(),
        what="reading to resume and the pongs to flush",
    )
    assert received.startswith(b"HTTP/1.1 101 ")


def test_a_ping_is_answered_with_a_pong_at_once(pair):
    p, ws = open_ws(pair, EchoApp())
    received = recv_all(p.client.sock)
    assert received.startswith(b"HTTP/1.1 101 ")
    p.send(frame(0x9, b"hello"))
    assert read_until(p, p.client.sock, lambda data: len(data) >= 7) == b"\x8a\x05hello"


# -- loss 5: one failing flush leaves the others pending --------------------


class BrokenTransport:
    """Delegates to a real transport, but its writes fail."""

    def __init__(self, real) -> None:
        self.real = real

    def write(self, data):
        raise OSError("broken pipe (simulated)")

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_a_failing_flush_does_not_stop_the_batch(pair):
    app = EchoApp()
    p, first = open_ws(pair, app)
    second_client = p.connect()
    second_client.reading = False
    second_client.send(upgrade())
    p.run_until(lambda: len(p.state.upgraded) == 2 and all(w.phase == io_ws.OPEN for w in p.state.upgraded))
    second = next(w for w in p.state.upgraded if w is not first)
    recv_all(second_client.sock)
    first.transport = BrokenTransport(first.transport)
    first.send_message("to the first")  # dirty first: flushed first, and fails
    second.send_message("to the second")
    assert read_until(p, second_client.sock, lambda data: len(data) >= 15) == b"\x81\x0dto the second"
    assert first.phase == io_ws.CLOSED or first.transport.real.is_closing()  # the broken one is cut


# -- loss 6: root_path in the websocket scope, as in the http scope ---------


def test_root_path_is_in_both_scopes_path(pair):
    app = EchoApp()
    p = pair(app, root_path="/api")
    p.send(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    p.responses_count(1)
    p.client.reading = False
    p.send(upgrade("/ws?q=1"))
    p.run_until(lambda: len(app.scopes) == 2)
    http, websocket = app.scopes
    assert (http["root_path"], http["path"], http["raw_path"]) == ("/api", "/api/x", b"/api/x")
    assert (websocket["root_path"], websocket["path"], websocket["raw_path"]) == ("/api", "/api/ws", b"/api/ws")
    assert websocket["query_string"] == b"q=1"
