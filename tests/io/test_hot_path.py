"""The per-request hot path, without sockets: a real H1Connection and ASGI
cycle on a recording transport.

What is checked is structure, not time: one transport write per small
response, no Task for an app that does not wait, no timer handle, and one
cached response plan per distinct head (not one per body).
"""

import asyncio

import pytest

from corral.config import Config
from corral.interfaces.asgi import ASGIHandler
from corral.io.h1 import H1Connection
from corral.io.state import ServerState
from corral.proto import h1 as proto_h1

REQUEST = b"GET /p?q=1 HTTP/1.1\r\nHost: example.test\r\nUser-Agent: t\r\n\r\n"


class Transport:
    """Records writes; never closes or pauses."""

    def __init__(self):
        self.writes = []

    def write(self, data):
        self.writes.append(bytes(data))

    def writelines(self, parts):
        self.writes.append(b"".join(parts))

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def is_closing(self):
        return False

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def get_write_buffer_size(self):
        return 0


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def serve(loop, app, chunks):
    """Feed ``chunks`` to one connection from a loop callback (as a transport
    would) and return (transport, state)."""
    state = ServerState(Config(app="x:y", access_log=False), loop)
    state.handler = ASGIHandler(app, state).new_cycle
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
    return transport, state


def test_each_small_response_is_one_write_and_no_task(loop):
    seen = []

    async def app(scope, receive, send):
        seen.append((scope["path"], scope["query_string"], scope["headers"]))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"hi"})

    transport, state = serve(loop, app, [REQUEST] * 5)
    assert len(transport.writes) == 5
    assert state.stepper.tasks_created == 0
    assert state.requests == 5 and state.in_flight == 0
    assert seen[0] == ("/p", b"q=1", [(b"host", b"example.test"), (b"user-agent", b"t")])
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert body == b"hi"
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert lines[1:3] == [b"content-type: text/plain", b"content-length: 2"]
    assert lines[3].startswith(b"date: ") and lines[4] == b"server: corral"
    assert not loop._scheduled  # no timer handle was made for any request


def test_response_plans_are_cached_per_head_not_per_body(loop):
    proto_h1._plans.clear()
    count = 0

    async def app(scope, receive, send):
        nonlocal count
        count += 1
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"n=%d" % count})

    transport, _ = serve(loop, app, [REQUEST] * 20)
    assert [w.rpartition(b"\r\n\r\n")[2] for w in transport.writes] == [b"n=%d" % n for n in range(1, 21)]
    assert b"content-length: 3\r\n" in transport.writes[0] and b"content-length: 4\r\n" in transport.writes[-1]
    assert len(proto_h1._plans) == 1


def test_pipelined_requests_in_one_chunk_are_answered_in_order(loop):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    chunk = b"".join(b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % n for n in range(3))
    transport, state = serve(loop, app, [chunk])
    assert [w.rpartition(b"\r\n\r\n")[2] for w in transport.writes] == [b"/0", b"/1", b"/2"]
    assert state.stepper.tasks_created == 0
