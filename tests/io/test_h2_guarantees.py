"""HTTP/2 streams keep the guarantees HTTP/1.1 requests have (issue 19's
sweep: findings 1-8 and 15), at the io layer: a real ``H2Connection`` over a
socketpair, a real HTTP/2 client, the test's own clock."""

from __future__ import annotations

import asyncio
import logging

import pytest

def respond(status=200, headers=(), body=b"ok", read=False, parts=None):
    """An app that answers without reading the body (unless ``read``)."""

    async def app(scope, receive, send):
        if read:
            more = True
            while more:
                message = await receive()
                more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": status, "headers": list(headers)})
        for part, more in parts or [(body, False)]:
            await send({"type": "http.response.body", "body": part, "more_body": more})

    return app


# -- 1. an early response is heard, then the stream is reset ----------------------


def test_response_before_the_body_is_read_reaches_the_client_then_reset(h2pair):
    pair = h2pair(respond(body=b"early"))
    client = pair.client
    stream_id = client.request("/upload", "POST", body=b"x" * 1000, end=False)  # more body would follow
    stream = pair.finished(stream_id)
    assert stream.status == 200 and stream.body == b"early" and stream.ended
    assert pair.state.in_flight == 0
    # The rest of the body is read and dropped for a while (a client that
    # uploads on gets to its end); one still sending then is told to stop.
    client.h2.send_data(stream_id, b"y" * 1000)
    client.flush()
    pair.later(1)
    assert stream.reset is None
    pair.later(2)
    pair.run_until(lambda: stream.reset is not None, what="the reset after the response")
    assert stream.reset == 0  # NO_ERROR: stop sending, the answer is whole (RFC 9113 8.1)


def test_early_response_then_the_whole_body_needs_no_reset(h2pair):
    pair = h2pair(respond(body=b"early"))
    client = pair.client
    stream_id = client.request("/upload", "POST", body=b"x" * 1000, end=False)
    assert pair.finished(stream_id).body == b"early"
    client.h2.send_data(stream_id, b"y" * 1000, end_stream=True)
    client.flush()
    pair.spin()
    pair.later(3)
    assert client.streams[stream_id].reset is None and not pair.conn.lingering


def test_body_limit_413_reaches_the_client(h2pair):
    pair = h2pair(respond(read=True), limit_request_body=100)
    stream_id = pair.client.request("/upload", "POST", body=b"x" * 1000, end=False)
    stream = pair.finished(stream_id)
    assert stream.status == 413 and stream.ended
    assert pair.state.counters["bad_requests"] == 1


# -- 2. response framing ----------------------------------------------------------------


def test_body_longer_than_content_length_is_500_not_a_protocol_error(h2pair, caplog):
    pair = h2pair(respond(headers=[(b"content-length", b"2")], body=b"toolong"))
    with caplog.at_level(logging.ERROR, "corral.error"):
        stream = pair.finished(pair.client.request())
    assert stream.status == 500 and stream.body == b"Internal Server Error\n"  # as over HTTP/1.1
    assert stream.header(b"date") is not None and stream.header(b"server") == b"corral"
    assert "longer than its Content-Length" in caplog.text
    assert not pair.client.eof  # the connection goes on


def test_body_longer_than_content_length_in_a_later_part_resets_the_stream(h2pair):
    pair = h2pair(respond(headers=[(b"content-length", b"4")], parts=[(b"abc", True), (b"def", False)]))
    stream = pair.finished(pair.client.request())
    assert stream.status == 200 and stream.reset == 0x2 and not stream.ended  # INTERNAL_ERROR: cut, never whole
    assert not pair.client.eof


def test_body_shorter_than_content_length_resets_the_stream(h2pair, caplog):
    pair = h2pair(respond(headers=[(b"content-length", b"10")], parts=[(b"abc", True), (b"", False)]))
    with caplog.at_level(logging.ERROR, "corral.error"):
        stream = pair.finished(pair.client.request())
    assert stream.status == 200 and stream.reset == 0x2 and not stream.ended
    assert "sent 3 of 10 body bytes" in caplog.text


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses_send_no_body(h2pair, status):
    pair = h2pair(respond(status=status, body=b"not allowed"))
    stream = pair.finished(pair.client.request())
    assert stream.status == status and stream.body == b"" and stream.ended and stream.reset is None
    assert stream.header(b"content-length") is None


def test_head_sends_no_body(h2pair):
    pair = h2pair(respond(body=b"hello"))
    stream = pair.finished(pair.client.request(method="HEAD"))
    assert stream.status == 200 and stream.body == b"" and stream.ended


# -- 3. invalid response headers ---------------------------------------------------------


@pytest.mark.parametrize("name, value", [
    (b"x-bad", b"a\r\nb"),
    (b"x-bad", b"a\x00b"),
    (b"bad name", b"v"),
    (b":status", b"200"),
    (b"x-\xff", b"v"),
])
def test_invalid_response_headers_are_500_and_logged(h2pair, caplog, name, value):
    pair = h2pair(respond(headers=[(name, value)]))
    with caplog.at_level(logging.ERROR, "corral.error"):
        stream = pair.finished(pair.client.request())
    assert stream.status == 500
    assert "invalid http.response.start" in caplog.text


def test_uppercase_names_are_lowered_and_connection_fields_dropped(h2pair):
    headers = [(b"X-Custom", b"1"), (b"Connection", b"close"), (b"TE", b"trailers"), (b"Keep-Alive", b"5"),
               (b"Transfer-Encoding", b"chunked"), (b"Upgrade", b"h2c"), (b"Proxy-Connection", b"x")]
    pair = h2pair(respond(headers=headers))
    stream = pair.finished(pair.client.request())
    names = [n for n, _ in stream.headers]
    assert stream.status == 200 and b"x-custom" in names
    for dropped in (b"connection", b"te", b"keep-alive", b"transfer-encoding", b"upgrade", b"proxy-connection"):
        assert dropped not in names


# -- 4. --timeout-body ------------------------------------------------------------------


def test_stalled_body_times_out_with_408_and_frees_the_slot(h2pair):
    pair = h2pair(respond(read=True), timeout_body=5, limit_concurrency=1)
    stream_id = pair.client.request("/upload", "POST", body=b"x" * 1024, end=False)
    pair.run_until(lambda: pair.state.in_flight == 1, what="the app to start")
    pair.later(4)
    assert pair.client.streams.get(stream_id) is None  # not yet
    pair.later(2)
    stream = pair.finished(stream_id)
    assert stream.status == 408 and stream.ended
    pair.run_until(lambda: pair.state.in_flight == 0, what="the slot to be freed")
    assert pair.state.counters["timeouts"] == 1
    assert not pair.client.eof  # other streams may go on


def test_body_timeout_restarts_with_each_data_frame(h2pair):
    pair = h2pair(respond(read=True), timeout_body=5)
    client = pair.client
    stream_id = client.request("/upload", "POST", body=b"x", end=False)
    for _ in range(3):
        pair.later(4)
        client.h2.send_data(stream_id, b"y")
        client.flush()
        pair.spin()
    client.h2.end_stream(stream_id)
    client.flush()
    stream = pair.finished(stream_id)
    assert stream.status == 200


# -- 5. --timeout-header on an unfinished header block -------------------------------


def test_unfinished_header_block_times_out(h2pair):
    from hyperframe.frame import HeadersFrame

    pair = h2pair(respond(), timeout_header=3, timeout_keep_alive=100)
    client = pair.client
    open_id = client.request("/slow", "POST", body=b"x", end=False)  # another stream stays open
    pair.spin()
    block = client.h2.encoder.encode([(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http"),
                                      (b":authority", b"x")])
    frame = HeadersFrame(open_id + 2, block[:3])  # no END_HEADERS: CONTINUATION must follow
    client.send_raw(frame.serialize())
    pair.spin()
    pair.later(2)
    assert not client.eof
    pair.later(2)
    pair.run_until(lambda: client.eof, what="the connection to close")
    assert pair.state.counters["timeouts"] == 1


def test_complete_header_blocks_do_not_time_out(h2pair):
    pair = h2pair(respond(), timeout_header=3, timeout_keep_alive=100)
    for _ in range(3):
        pair.finished(pair.client.request())
        pair.later(2)
    assert not pair.client.eof


# -- 6. --limit-concurrency-queue --------------------------------------------------------


def gate_app():
    gate = asyncio.Event()

    async def app(scope, receive, send):
        if scope["path"] == "/hold":
            await gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    return app, gate


def test_stream_over_the_limit_waits_for_a_slot(h2pair):
    app, gate = gate_app()
    pair = h2pair(app, limit_concurrency=1, limit_concurrency_queue=5)
    client = pair.client
    held = client.request("/hold")
    waiting = client.request("/next", "POST", body=b"body")
    pair.spin()
    assert waiting not in client.streams  # waits: no 503
    gate.set()
    assert pair.finished(held).status == 200
    stream = pair.finished(waiting)
    assert stream.status == 200 and stream.body == b"/next"
    assert pair.state.counters["rejected_busy"] == 0


def test_waiting_stream_gets_503_when_the_queue_time_runs_out(h2pair):
    app, gate = gate_app()
    pair = h2pair(app, limit_concurrency=1, limit_concurrency_queue=2)
    client = pair.client
    held = client.request("/hold")
    waiting = client.request("/next")
    pair.spin()
    pair.later(3)
    stream = pair.finished(waiting)
    assert stream.status == 503 and stream.header(b"retry-after") == b"1"
    assert pair.state.counters["rejected_busy"] == 1
    gate.set()
    assert pair.finished(held).status == 200
    assert pair.state.in_flight == 0 and not pair.state.waiting


def test_waiting_stream_reset_by_the_client_leaves_the_queue(h2pair):
    app, gate = gate_app()
    pair = h2pair(app, limit_concurrency=1, limit_concurrency_queue=5)
    client = pair.client
    held = client.request("/hold")
    waiting = client.request("/next")
    pair.spin()
    client.h2.reset_stream(waiting, 8)
    client.flush()
    pair.spin()
    assert not pair.state.waiting
    gate.set()
    assert pair.finished(held).status == 200
    pair.spin()
    assert pair.state.in_flight == 0


# -- 7. --health-path over HTTP/2 ----------------------------------------------------


def test_health_path_is_answered_without_the_app(h2pair):
    calls = []

    async def app(scope, receive, send):
        calls.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"app"})

    pair = h2pair(app, health_path="/healthz")
    stream = pair.finished(pair.client.request("/healthz"))
    assert stream.status == 200 and stream.body == b"ok\n"
    pair.state.draining = True
    stream = pair.finished(pair.client.request("/healthz"))
    assert stream.status == 503 and stream.body == b"stopping\n"
    assert calls == []
    assert pair.state.in_flight == 0 and pair.state.requests == 0  # not requests of the app


# -- 8. :authority and Host; fragments -----------------------------------------------


def echo_headers():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["headers"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app, seen


def test_authority_wins_over_a_different_host(h2pair):
    app, seen = echo_headers()
    pair = h2pair(app)
    fields = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http"), (b":authority", b"good.example"),
              (b"host", b"evil.example")]
    assert pair.finished(pair.client.request(headers=fields)).status == 200
    hosts = [v for n, v in seen[0] if n == b"host"]
    assert hosts == [b"good.example"]


def test_host_alone_is_kept(h2pair):
    app, seen = echo_headers()
    pair = h2pair(app)
    fields = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http"), (b"host", b"only.example")]
    assert pair.finished(pair.client.request(headers=fields)).status == 200
    assert [v for n, v in seen[0] if n == b"host"] == [b"only.example"]


def test_fragment_in_path_is_400(h2pair):
    app, seen = echo_headers()
    pair = h2pair(app)
    fields = [(b":method", b"GET"), (b":path", b"/a#frag"), (b":scheme", b"http"), (b":authority", b"x")]
    stream = pair.finished(pair.client.request(headers=fields))
    assert stream.status == 400 and stream.body == b"Invalid :path\n" and seen == []
    assert pair.state.counters["bad_requests"] == 1


@pytest.mark.parametrize("path", [b"/a b", b"no-slash"])
def test_malformed_path_is_a_stream_error(h2pair, path):
    # nghttp2 checks these itself (RFC 9113 8.1.1: malformed, PROTOCOL_ERROR); the app never sees them.
    app, seen = echo_headers()
    pair = h2pair(app)
    fields = [(b":method", b"GET"), (b":path", path), (b":scheme", b"http"), (b":authority", b"x")]
    stream = pair.finished(pair.client.request(headers=fields))
    assert stream.status is None and stream.reset == 0x1 and seen == []


# -- 15. a protocol switch is not a close ------------------------------------------------


@pytest.mark.parametrize("how", ["upgrade", "prior knowledge"])
def test_h2c_switch_counts_one_connection_opened_and_closed(pair, how):
    import h2.config
    import h2.connection

    from corral.interfaces.asgi_h2 import H2Handler
    from corral.io.h2 import prior_knowledge, upgrade_h2c
    from corral.io.metrics import WorkerMetrics

    p = pair(respond(), http="auto")
    state = p.state
    state.metrics = WorkerMetrics()
    state.h2c, state.h2c_upgrade, state.h2c_prior_knowledge = True, upgrade_h2c, prior_knowledge
    state.h2_handler = H2Handler(respond(), state).new_cycle
    client = p.connect()  # made after h2c is on: it sniffs for the preface
    client.responses.feed = lambda data: None  # HTTP/2 frames follow: keep the raw bytes only
    h2client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    if how == "upgrade":
        settings = h2client.initiate_upgrade_connection()  # the HTTP2-Settings value, base64url
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                    b"HTTP2-Settings: " + settings + b"\r\n\r\n")
        p.run_until(lambda: b"101 Switching Protocols" in client.received, what="the 101")
        client.send(h2client.data_to_send())
    else:
        h2client.initiate_connection()
        client.send(h2client.data_to_send())
    p.run_until(lambda: state.counters["h2_connections"] == 1, what="the HTTP/2 connection")
    client.sock.close()
    client.reading = False
    p.run_until(lambda: state.connections == {p.conn}, what="the connection to close")  # p.conn: the first, still open
    assert state.counters["connections"] == 2
    assert sum(state.metrics.closed.values()) == 1


# -- attacks on the new paths ------------------------------------------------------------


def test_header_block_scan_survives_any_split(loop):
    """The frame walk behind --timeout-header (H2Connection._scan) against
    the frames as sent, cut into reads at random places (hypothesis)."""
    from hypothesis import given, settings, strategies as st
    from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame, PingFrame

    from corral.config import Config
    from corral.io.h2 import H2Connection
    from corral.io.state import ServerState
    from corral.proto.h2 import PREFACE

    # Each frame, and whether a header block is open once it is read.
    frames = [
        (HeadersFrame(1, b"\x82\x86\x84", flags=["END_HEADERS"]), False),
        (DataFrame(1, b"x" * 300), False),
        (HeadersFrame(3, b"\x82"), True),
        (ContinuationFrame(3, b"\x86"), True),
        (PingFrame(0, b"12345678"), True),
        (ContinuationFrame(3, b"\x84", flags=["END_HEADERS"]), False),
        (HeadersFrame(5, b"\x82"), True),
    ]
    wire = PREFACE + b"".join(frame.serialize() for frame, _ in frames)
    ends = []
    offset = len(PREFACE)
    for frame, _ in frames:
        offset += len(frame.serialize())
        ends.append(offset)

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=40))
    def check(cuts):
        conn = H2Connection(ServerState(Config(app="x:y", access_log=False, http="2"), loop))
        conn.state.now = 100.0
        steps = iter(cuts)
        position = 0
        for end, (_, block_open) in zip(ends, frames):
            while position < end:
                step = min(next(steps, 7), end - position)
                conn._scan(wire[position:position + step])
                position += step
            assert bool(conn.head_since) == block_open, (end, cuts)

    check()


def test_waiting_streams_leave_the_queue_when_the_connection_goes(h2pair):
    app, gate = gate_app()
    pair = h2pair(app, limit_concurrency=1, limit_concurrency_queue=5)
    client = pair.client
    held = client.request("/hold")
    other = pair.connect()
    for _ in range(5):
        other.request("/next")
    pair.spin()
    assert len(pair.state.waiting) == 5
    other.eof = True
    other.sock.close()
    pair.run_until(lambda: not pair.state.waiting, what="the queue to empty")
    gate.set()
    assert pair.finished(held).status == 200
    pair.run_until(lambda: pair.state.in_flight == 0, what="nothing in flight")


def test_protocol_pseudo_header_without_connect_is_a_stream_error(h2pair):
    pair = h2pair(respond())
    fields = [(b":method", b"GET"), (b":protocol", b"websocket"), (b":path", b"/"), (b":scheme", b"http"),
              (b":authority", b"x")]
    stream = pair.finished(pair.client.request(headers=fields))
    assert stream.status is None and stream.reset == 0x1 and not pair.client.eof


def test_connect_without_websocket_support_is_501(h2pair):
    pair = h2pair(respond())  # no upgrade handler: SETTINGS_ENABLE_CONNECT_PROTOCOL is not sent
    fields = [(b":method", b"CONNECT"), (b":authority", b"example.com:443")]
    stream = pair.finished(pair.client.request(headers=fields))
    assert stream.status == 501 and not pair.client.eof
