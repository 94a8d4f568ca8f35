"""HTTP/2 conformance, frame by frame, organised by RFC 9113 (and RFC 7541)
section the way h2spec is. A raw client (``h2`` + ``hyperframe``) talks to a
real corral over h2c with prior knowledge; each test asserts the exact frame
or error code the RFC requires."""

from __future__ import annotations

import struct

import h2.errors
import h2.events
import pytest
from hyperframe.frame import (ContinuationFrame, DataFrame, HeadersFrame, PingFrame, RstStreamFrame, SettingsFrame,
                              WindowUpdateFrame)

from h2support import PREFACE, H2Client, request_headers, terminated_or_closed
from support import Server

E = h2.errors.ErrorCodes


@pytest.fixture(scope="module")
def server():
    with Server("h2_app:app", "--http", "2", "--h2-max-concurrent-streams", "4", "--limit-header-size", "8192",
                "--no-access-log") as srv:
        yield srv


@pytest.fixture
def client(server):
    with H2Client(server.port) as c:
        c.wait(lambda ev: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in ev))
        yield c


def add_flags(frame, *names) -> None:
    for name in names:
        frame.flags.add(name)


def encoded(client: H2Client, headers) -> bytes:
    return client.conn.encoder.encode(headers)


def goaway_code(client):
    event = terminated_or_closed(client)
    assert event is not None, "closed without GOAWAY"
    return event.error_code


def still_serves(server) -> None:
    with H2Client(server.port) as other:
        headers, body, _ = other.response(other.request("/pid"))
        assert headers[b":status"] == b"200"


# -- 3.4 HTTP/2 connection preface ------------------------------------------------------


class TestConnectionPreface:
    def test_server_sends_settings_first(self, client):
        settings = [e for e in client.events if isinstance(e, h2.events.RemoteSettingsChanged)][0]
        assert settings.changed_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS].new_value == 4

    def test_invalid_preface_is_a_connection_error(self, server):
        with H2Client(server.port, preface=False) as c:
            c.send_raw(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + SettingsFrame(0).serialize())
            c.conn.initiate_connection()  # so the client can parse the server's frames
            c.conn.data_to_send()
            c.wait_closed()
        still_serves(server)


# -- 4 HTTP frames ------------------------------------------------------------------------


class TestFrameFormat:
    def test_4_1_unknown_frame_type_is_ignored(self, client):
        client.send_raw(struct.pack(">I", 4)[1:] + bytes([0xEE, 0, 0, 0, 0, 0]) + b"abcd")
        headers, body, _ = client.response(client.request("/"))
        assert (headers[b":status"], body) == (b"200", b"hello")

    def test_4_1_unknown_flags_are_ignored(self, client):
        stream_id = client.conn.get_next_available_stream_id()
        frame = HeadersFrame(stream_id, encoded(client, request_headers("/")))
        frame.flags.add("END_HEADERS")
        frame.flags.add("END_STREAM")
        data = bytearray(frame.serialize())
        data[4] |= 0x20 | 0x40  # undefined HEADERS flags (0x20 is PRIORITY's: keep it off)
        data[4] &= ~0x20
        client.conn.send_headers  # the client library keeps no state for this stream: read raw
        client.send_raw(bytes(data))
        client.wait(lambda ev: b"\x88" in client.raw or len(client.raw) > 60)

    def test_4_2_frame_larger_than_max_frame_size(self, client):
        stream_id = client.request("/echo", "POST", end=False)
        frame = DataFrame(stream_id, b"x" * 16385)  # SETTINGS_MAX_FRAME_SIZE is 16384
        client.send_frame(frame)
        assert goaway_code(client) == E.FRAME_SIZE_ERROR

    def test_4_3_header_block_that_does_not_decode(self, client):
        frame = HeadersFrame(1, b"\xff\xff\xff\xff\xff")  # an index far past the tables
        add_flags(frame, "END_HEADERS", "END_STREAM")
        client.send_frame(frame)
        assert goaway_code(client) == E.COMPRESSION_ERROR


# -- 5.1 Stream states -------------------------------------------------------------------


class TestStreamStates:
    def test_5_1_data_on_an_idle_stream(self, client):
        client.send_frame(DataFrame(1, b"x"))
        assert goaway_code(client) == E.PROTOCOL_ERROR

    def test_5_1_headers_on_an_even_stream(self, client):
        frame = HeadersFrame(2, encoded(client, request_headers("/")))
        add_flags(frame, "END_HEADERS", "END_STREAM")
        client.send_frame(frame)
        assert goaway_code(client) == E.PROTOCOL_ERROR

    def test_5_1_1_a_lower_stream_id_is_never_served(self, client):
        # nghttp2 treats stream 3 as implicitly closed once 5 is open and
        # ignores its HEADERS (RFC 9113 5.1.1 allows no new stream there).
        for stream_id in (5, 3):
            frame = HeadersFrame(stream_id, encoded(client, request_headers("/")))
            add_flags(frame, "END_HEADERS", "END_STREAM")
            client.send_frame(frame)
        client.wait(lambda ev: [f for f in client.frames() if f[0] == 0x1 and f[2] == 5])
        client.send_frame(PingFrame(0, b"87654321"))
        client.wait(lambda ev: [f for f in client.frames() if f[0] == 0x6 and f[1] & 1])
        assert not [f for f in client.frames() if f[0] in (0x0, 0x1) and f[2] == 3]

    def test_5_1_data_after_end_stream(self, client):
        stream_id = client.request("/sleep?0.5")
        client.send_frame(DataFrame(stream_id, b"late"))
        client.wait(lambda ev: client.resets(stream_id) or client.goaways())
        codes = [e.error_code for e in client.resets(stream_id)] + [e.error_code for e in client.goaways()]
        assert E.STREAM_CLOSED in codes

    def test_5_1_2_over_max_concurrent_streams_is_refused(self, client, server):
        for _ in range(4):  # --h2-max-concurrent-streams 4
            client.request("/sleep?1")
        frame = HeadersFrame(9, encoded(client, request_headers("/")))
        add_flags(frame, "END_HEADERS", "END_STREAM")
        client.send_frame(frame)
        client.wait(lambda ev: client.resets(9) or client.goaways())
        codes = [e.error_code for e in client.resets(9)] + [e.error_code for e in client.goaways()]
        assert codes[0] in (E.REFUSED_STREAM, E.PROTOCOL_ERROR)

    def test_5_4_2_rst_stream_is_http_disconnect_for_that_stream_only(self, client, server):
        mark = server.mark()
        watched = client.request("/disconnect")
        other = client.request("/sleep?0.3")
        server.wait_log("waiting for disconnect", start=mark)
        client.conn.reset_stream(watched, E.CANCEL)
        client.flush()
        server.wait_log("saw http.disconnect", start=mark)
        headers, body, _ = client.response(other)
        assert body == b"slept"


# -- 6 Frame definitions ---------------------------------------------------------------------


class TestFrameDefinitions:
    def test_6_1_data_with_stream_id_zero(self, client):
        client.send_raw(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")  # DATA on stream 0
        assert goaway_code(client) == E.PROTOCOL_ERROR

    def test_6_2_headers_with_stream_id_zero(self, client):
        frame = HeadersFrame(1, encoded(client, request_headers("/")))
        add_flags(frame, "END_HEADERS", "END_STREAM")
        data = bytearray(frame.serialize())
        data[8] = 0  # stream 0
        client.send_raw(bytes(data))
        assert goaway_code(client) == E.PROTOCOL_ERROR

    def test_6_4_rst_stream_on_an_idle_stream(self, client):
        client.send_frame(RstStreamFrame(7, error_code=8))
        assert goaway_code(client) == E.PROTOCOL_ERROR

    def test_6_5_settings_ack_with_payload(self, client):
        frame = SettingsFrame(0)
        frame.flags.add("ACK")
        data = bytearray(frame.serialize())
        data[2] = 6
        client.send_raw(bytes(data) + b"\x00\x03\x00\x00\x00\x64")
        assert goaway_code(client) == E.FRAME_SIZE_ERROR

    def test_6_5_settings_length_not_a_multiple_of_6(self, client):
        client.send_raw(b"\x00\x00\x03\x04\x00\x00\x00\x00\x00" + b"\x00\x03\x00")
        assert goaway_code(client) == E.FRAME_SIZE_ERROR

    def test_6_5_2_initial_window_size_too_large(self, client):
        client.send_raw(b"\x00\x00\x06\x04\x00\x00\x00\x00\x00" + b"\x00\x04\x80\x00\x00\x00")
        assert goaway_code(client) == E.FLOW_CONTROL_ERROR

    def test_6_5_3_settings_are_acknowledged(self, client):
        client.conn.update_settings({h2.settings.SettingCodes.HEADER_TABLE_SIZE: 1024})
        client.flush()
        client.wait(lambda ev: any(isinstance(e, h2.events.SettingsAcknowledged) for e in ev))

    def test_6_7_ping_is_answered_with_the_same_payload(self, client):
        client.conn.ping(b"12345678")
        client.flush()
        acks = client.wait(lambda ev: [e for e in ev if isinstance(e, h2.events.PingAckReceived)])
        assert acks[0].ping_data == b"12345678"

    def test_6_7_ping_with_a_stream_id(self, client):
        data = bytearray(PingFrame(0, b"12345678").serialize())
        data[8] = 1
        client.send_raw(bytes(data))
        assert goaway_code(client) == E.PROTOCOL_ERROR

    def test_6_9_window_update_of_zero(self, client):
        client.send_frame(WindowUpdateFrame(0, 0) if False else WindowUpdateFrame(0, 1))
        client.send_raw(b"\x00\x00\x04\x08\x00\x00\x00\x00\x00" + b"\x00\x00\x00\x00")
        assert goaway_code(client) == E.PROTOCOL_ERROR

    def test_6_9_1_connection_window_overflow(self, client):
        client.send_frame(WindowUpdateFrame(0, 2**31 - 1))
        assert goaway_code(client) == E.FLOW_CONTROL_ERROR

    def test_6_9_2_server_respects_a_small_client_window(self, server):
        with H2Client(server.port, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000}) as c:
            c.hold = True
            stream_id = c.request("/big?100000")
            c.wait(lambda ev: sum(len(e.data) for e in ev if isinstance(e, h2.events.DataReceived)) >= 1000)
            got = sum(len(e.data) for e in c.events if isinstance(e, h2.events.DataReceived))
            assert got == 1000  # no more than the window
            c.hold = False
            c.conn.acknowledge_received_data(1000, stream_id)
            c.flush()
            headers, body, _ = c.response(stream_id, timeout=20)  # acknowledging opens the window
            assert len(body) == 100000

    def test_6_10_headers_split_into_continuation(self, client):
        block = encoded(client, request_headers("/scope", extra=[(b"x-long", b"v" * 3000)]))
        first = HeadersFrame(1, block[:1000])
        first.flags.add("END_STREAM")
        middle = ContinuationFrame(1, block[1000:2000])
        last = ContinuationFrame(1, block[2000:])
        last.flags.add("END_HEADERS")
        client.send_raw(first.serialize() + middle.serialize() + last.serialize())
        client.wait(lambda ev: [f for f in client.frames() if f[0] == 0x1 and f[2] == 1] or client.goaways())
        assert not client.goaways()

    def test_6_10_continuation_interleaved_with_another_frame(self, client):
        block = encoded(client, request_headers("/"))
        first = HeadersFrame(1, block[:5])
        first.flags.add("END_STREAM")
        client.send_raw(first.serialize() + PingFrame(0, b"12345678").serialize())
        assert goaway_code(client) == E.PROTOCOL_ERROR


# -- 8 Expressing HTTP semantics ------------------------------------------------------------------


class TestHTTPSemantics:
    def reset_code(self, client, headers):
        client.conn.send_headers(1, headers, end_stream=True)
        client.flush()
        client.wait(lambda ev: client.resets(1) or client.goaways())
        return ([e.error_code for e in client.resets(1)] + [e.error_code for e in client.goaways()])[0]

    def test_8_2_uppercase_field_name(self, client):
        assert self.reset_code(client, request_headers("/", extra=[(b"X-Upper", b"1")])) == E.PROTOCOL_ERROR

    def test_8_2_2_connection_specific_field(self, client):
        assert self.reset_code(client, request_headers("/", extra=[(b"connection", b"keep-alive")])) == E.PROTOCOL_ERROR

    def test_8_3_missing_method(self, client):
        headers = [(b":path", b"/"), (b":scheme", b"http"), (b":authority", b"x")]
        assert self.reset_code(client, headers) == E.PROTOCOL_ERROR

    def test_8_3_pseudo_field_after_regular_field(self, client):
        headers = [(b":method", b"GET"), (b":scheme", b"http"), (b"x-a", b"1"), (b":path", b"/")]
        assert self.reset_code(client, headers) == E.PROTOCOL_ERROR

    def test_8_1_request_body_and_trailers(self, client):
        stream_id = client.request("/echo", "POST", body=b"abc", end=False)
        client.conn.send_headers(stream_id, [(b"x-trailer", b"1")], end_stream=True)
        client.flush()
        headers, body, _ = client.response(stream_id)
        assert (headers[b":status"], body) == (b"200", b"abc")

    def test_8_1_response_trailers(self, client):
        headers, body, trailers = client.response(client.request("/trailers"))
        assert (headers[b":status"], body, trailers) == (b"200", b"body", {b"x-checksum": b"abc"})

    def test_8_1_content_length_mismatch(self, client):
        stream_id = client.request("/echo", "POST", body=b"abc", extra=[(b"content-length", b"10")])
        client.wait(lambda ev: client.resets(stream_id) or client.goaways())
        codes = [e.error_code for e in client.resets(stream_id)] + [e.error_code for e in client.goaways()]
        assert codes[0] == E.PROTOCOL_ERROR

    def test_header_list_over_the_limit(self, client, server):
        # --limit-header-size 8192 is advertised as SETTINGS_MAX_HEADER_LIST_SIZE (431-equivalent).
        # nghttp2 refuses the header block as it decodes it: the stream is
        # reset or the connection ends; the app never sees the request.
        mark = server.mark()
        stream_id = client.request("/scope", extra=[(b"x-big", b"v" * 9000)])
        try:
            client.wait(lambda ev: client.resets(stream_id) or client.goaways())
        except AssertionError:
            assert client.closed
        assert not [f for f in client.frames() if f[0] == 0x1 and f[2] == stream_id]  # no response
        still_serves(server)
        assert not [line for line in server.lines[mark:] if "x-big" in line]


# -- RFC 7541 HPACK -----------------------------------------------------------------------------------


class TestHPACK:
    def test_dynamic_table_is_used_across_requests(self, client):
        for _ in range(3):
            headers, body, _ = client.response(client.request("/", extra=[(b"x-repeat", b"same value")]))
            assert body == b"hello"

    def test_table_size_update_over_the_setting(self, client):
        frame = HeadersFrame(1, b"\x3f\xe1\x1f" + encoded(client, request_headers("/")))  # size update to 4096+ ...
        add_flags(frame, "END_HEADERS", "END_STREAM")
        data = bytes([0x3F, 0xE1, 0xFF, 0x03])  # dynamic table size update to 65504 (> 4096)
        frame = HeadersFrame(1, data + encoded(client, request_headers("/")))
        add_flags(frame, "END_HEADERS", "END_STREAM")
        client.send_frame(frame)
        assert goaway_code(client) == E.COMPRESSION_ERROR


def test_preface_constant():
    assert PREFACE == b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
