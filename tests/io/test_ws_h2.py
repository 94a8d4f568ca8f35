"""WebSocket over HTTP/2 (RFC 8441) at the io layer: an extended CONNECT
opens a stream that carries the same WebSocket frames, through the same
``WSConnection`` and ASGI session as over HTTP/1.1 (an ``H2Tunnel`` for its
transport). A real ``H2Connection`` over a socketpair, a real HTTP/2 client."""

from __future__ import annotations

import asyncio
import os
import struct

import pytest

def masked(opcode: int, payload: bytes) -> bytes:
    """A client frame (masked, RFC 6455 5.3)."""
    mask = os.urandom(4)
    length = len(payload)
    head = bytes((0x80 | opcode,))
    if length < 126:
        head += bytes((0x80 | length,))
    else:
        head += bytes((0x80 | 126,)) + struct.pack("!H", length)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Frames:
    """Server frames (unmasked) out of the stream's DATA."""

    @staticmethod
    def parse(data: bytes):
        out = []
        while len(data) >= 2:
            b0, b1 = data[0], data[1]
            length = b1 & 0x7F
            offset = 2
            if length == 126:
                length = struct.unpack("!H", data[2:4])[0]
                offset = 4
            payload = data[offset:offset + length]
            out.append((b0 & 0x0F, payload))
            data = data[offset + length:]
        return out


async def echo(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain"})
        return
    message = await receive()
    assert message["type"] == "websocket.connect"
    await send({"type": "websocket.accept", "subprotocol": "chat"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": "echo " + message["text"]})


def connect_fields(path="/ws", extra=()):
    return [(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"http"), (b":path", path.encode()),
            (b":authority", b"x"), (b"sec-websocket-version", b"13"), (b"sec-websocket-protocol", b"chat"), *extra]


@pytest.fixture
def wspair(h2pair):
    return lambda app, **config: h2pair(app, websocket=True, **config)


def test_settings_advertise_the_extended_connect(wspair):
    pair = wspair(echo)
    pair.run_until(lambda: pair.client.h2.remote_settings.get(8) == 1, what="SETTINGS_ENABLE_CONNECT_PROTOCOL")


def test_websocket_over_an_http2_stream(wspair):
    pair = wspair(echo)
    client = pair.client
    pair.run_until(lambda: client.h2.remote_settings.get(8) == 1, what="the server's SETTINGS")
    stream_id = client.request(headers=connect_fields(), end=False)
    pair.run_until(lambda: stream_id in client.streams and client.streams[stream_id].status, what="the 200")
    stream = client.streams[stream_id]
    assert stream.status == 200 and stream.header(b"sec-websocket-protocol") == b"chat"
    assert pair.state.counters["websockets"] == 1 and len(pair.state.upgraded) == 1
    assert pair.state.in_flight == 0  # a WebSocket is not a request in flight
    client.h2.send_data(stream_id, masked(0x1, b"hello"))
    client.flush()
    pair.run_until(lambda: Frames.parse(stream.body) == [(0x1, b"echo hello")], what="the echo")
    # The close handshake: ours, then the server's echo; then both ends of the stream.
    client.h2.send_data(stream_id, masked(0x8, struct.pack("!H", 1000)), end_stream=True)
    client.flush()
    pair.run_until(lambda: stream.ended, what="the server to end the stream")
    assert Frames.parse(stream.body)[-1] == (0x8, struct.pack("!H", 1000))
    pair.run_until(lambda: not pair.state.upgraded and not pair.conn.streams, what="the tunnel to be gone")
    assert not pair.client.eof  # the connection serves on
    after = pair.finished(client.request("/after"))
    assert after.status == 200 and after.body == b"plain"


def test_reset_stream_is_a_disconnect(wspair):
    seen = []

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        seen.append(await receive())

    pair = wspair(app)
    client = pair.client
    pair.run_until(lambda: client.h2.remote_settings.get(8) == 1, what="the server's SETTINGS")
    stream_id = client.request(headers=connect_fields(), end=False)
    pair.run_until(lambda: stream_id in client.streams and client.streams[stream_id].status == 200, what="the 200")
    client.h2.reset_stream(stream_id, 8)
    client.flush()
    pair.run_until(lambda: seen, what="the app to see the disconnect")
    assert seen[0] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
    pair.run_until(lambda: not pair.state.upgraded, what="the WebSocket to leave the worker's set")


def test_close_before_accept_is_403_on_the_stream(wspair):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.close"})

    pair = wspair(app)
    client = pair.client
    pair.run_until(lambda: client.h2.remote_settings.get(8) == 1, what="the server's SETTINGS")
    stream = pair.finished(client.request(headers=connect_fields(), end=False))
    assert stream.status == 403
    pair.run_until(lambda: not pair.state.upgraded, what="the refused WebSocket to be gone")


def test_drain_sends_1001_over_the_stream(wspair, loop):
    pair = wspair(echo)
    client = pair.client
    pair.run_until(lambda: client.h2.remote_settings.get(8) == 1, what="the server's SETTINGS")
    stream_id = client.request(headers=connect_fields(), end=False)
    pair.run_until(lambda: stream_id in client.streams and client.streams[stream_id].status == 200, what="the 200")
    ws = next(iter(pair.state.upgraded))
    task = loop.create_task(ws.going_away())
    stream = client.streams[stream_id]
    pair.run_until(lambda: (0x8, struct.pack("!H", 1001) + b"server shutting down") in Frames.parse(stream.body),
                   what="the 1001 Close")
    client.h2.send_data(stream_id, masked(0x8, struct.pack("!H", 1001)), end_stream=True)
    client.flush()
    pair.run_until(lambda: task.done(), what="going_away to finish")
    assert not pair.state.upgraded
