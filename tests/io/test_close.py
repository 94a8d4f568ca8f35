"""Closing after a response: lingering half-close only while input may still arrive."""

import asyncio

import pytest

from corral.config import Config
from corral.interfaces.asgi import ASGIHandler
from corral.io.h1 import H1Connection
from corral.io.state import ServerState


class Transport:
    """Records writes and how the connection was closed."""

    def __init__(self):
        self.writes = []
        self.events = []

    def write(self, data):
        self.writes.append(bytes(data))

    def writelines(self, parts):
        self.writes.append(b"".join(parts))

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def is_closing(self):
        return bool(self.events)

    def pause_reading(self):
        self.events.append("pause_reading")

    def resume_reading(self):
        self.events.append("resume_reading")

    def get_write_buffer_size(self):
        return 0

    def can_write_eof(self):
        return True

    def write_eof(self):
        self.events.append("write_eof")

    def close(self):
        self.events.append("close")

    def abort(self):
        self.events.append("abort")


async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hi"})


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def serve(loop, chunks, app=hello, draining=False):
    state = ServerState(Config(app="x:y", access_log=False), loop)
    state.handler = ASGIHandler(app, state).new_cycle
    state.draining = draining
    conn = H1Connection(state)
    transport = Transport()
    conn.connection_made(transport)

    def feed():
        for chunk in chunks:
            conn.data_received(chunk)

    loop.call_soon(feed)
    loop.call_soon(loop.stop)
    loop.run_forever()
    state.stepper.close()
    return transport


def test_connection_close_request_closes_without_lingering(loop):
    transport = serve(loop, [b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"])
    assert transport.writes[-1].endswith(b"\r\n\r\nhi")
    assert b"connection: close\r\n" in transport.writes[-1]
    assert transport.events == ["close"]


def test_http10_without_keep_alive_closes_without_lingering(loop):
    transport = serve(loop, [b"GET / HTTP/1.0\r\n\r\n"])
    assert transport.writes[-1].endswith(b"hi")
    assert transport.events == ["close"]


def test_server_side_close_lingers(loop):
    # The client may send its next request at any moment: half-close, drain.
    transport = serve(loop, [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"], draining=True)
    assert transport.writes[-1].endswith(b"hi")
    assert transport.events == ["write_eof"]


def test_bytes_after_a_close_request_linger(loop):
    transport = serve(loop, [b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /"])
    assert transport.events[-1] == "write_eof" and "close" not in transport.events


def test_unread_body_of_a_close_request_lingers(loop):
    # The app answers before its body arrived whole: the rest may still come.
    transport = serve(loop, [b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 10\r\n\r\nabc"])
    assert transport.writes[-1].endswith(b"hi")
    assert transport.events[-1] == "write_eof" and "close" not in transport.events
