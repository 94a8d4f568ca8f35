"""HTTP/2 rapid reset (CVE-2023-44487) at the io layer: a stream the client
opens and resets within one read never runs the app; the streams of the
same read that stay open do, once every frame of the read is taken in."""

import asyncio

import h2.config
import h2.connection
import pytest
from hyperframe.frame import DataFrame, HeadersFrame, RstStreamFrame, SettingsFrame

from corral.config import Config
from corral.interfaces.asgi_h2 import H2Handler
from corral.io.h2 import H2Connection
from corral.io.state import ServerState
from corral.proto.h2 import PREFACE

from h2support import request_headers
from test_close import Transport


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


class App:
    def __init__(self):
        self.paths = []

    async def __call__(self, scope, receive, send):
        self.paths.append(scope["path"])
        message = await receive()
        body = message.get("body", b"")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"got " + body})


def open_conn(loop, app):
    state = ServerState(Config(app="x:y", access_log=False, http="2"), loop)
    state.h2_handler = H2Handler(app, state).new_cycle
    conn = H2Connection(state)
    transport = Transport()
    conn.connection_made(transport)
    return state, conn, transport


def encoder():
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    return client


def headers(client, stream_id, path, end_stream=True):
    frame = HeadersFrame(stream_id, client.encoder.encode(request_headers(path)))
    frame.flags.add("END_HEADERS")
    if end_stream:
        frame.flags.add("END_STREAM")
    return frame.serialize()


def run_pending(loop):
    async def passes():
        for _ in range(10):
            await asyncio.sleep(0)

    loop.run_until_complete(passes())


def answered(transport):
    """{stream id: response body} from the DATA frames the server wrote."""
    data = b"".join(transport.writes)
    bodies = {}
    while data:
        length, kind, stream_id = int.from_bytes(data[:3], "big"), data[3], int.from_bytes(data[5:9], "big")
        if kind == 0x0:
            bodies[stream_id] = bodies.get(stream_id, b"") + data[9:9 + length]
        data = data[9 + length:]
    return bodies


def test_streams_reset_in_the_same_read_never_run_the_app(loop):
    app = App()
    state, conn, transport = open_conn(loop, app)
    client = encoder()
    burst = PREFACE + SettingsFrame(0).serialize()
    for stream_id in range(1, 2 * 200, 2):  # 200 opened and reset in one read: the attack's shape
        burst += headers(client, stream_id, "/attack") + RstStreamFrame(stream_id, error_code=8).serialize()
    burst += headers(client, 401, "/kept", end_stream=False) + DataFrame(401, b"body", flags=["END_STREAM"]).serialize()
    conn.data_received(burst)
    run_pending(loop)
    assert app.paths == ["/kept"]
    assert answered(transport) == {401: b"got body"}
    assert state.in_flight == 0 and not conn.streams
    assert "close" not in transport.events  # 200 resets stay under nghttp2's rate limit
    state.stepper.close()


def test_a_stream_reset_by_a_later_read_was_started(loop):
    # Across reads the app has run: the reset reaches it as a disconnect,
    # and nghttp2's token bucket bounds how many such streams a peer opens.
    app = App()
    state, conn, transport = open_conn(loop, app)
    client = encoder()
    conn.data_received(PREFACE + SettingsFrame(0).serialize() + headers(client, 1, "/slow", end_stream=False))
    assert app.paths == ["/slow"]
    conn.data_received(RstStreamFrame(1, error_code=8).serialize())
    run_pending(loop)
    assert state.in_flight == 0 and not conn.streams
    assert answered(transport) == {}
    state.stepper.close()
