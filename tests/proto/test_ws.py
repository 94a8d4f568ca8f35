"""corral.proto.ws without sockets, grouped by RFC section.

RFC 6455 (The WebSocket Protocol) and RFC 7692 (permessage-deflate). Each
parser case is fed whole, one byte at a time, and followed by trailing data,
as h11's tests do. The classes follow the Autobahn|Testsuite categories:
framing (1, 2), pings (2), reserved bits (3), opcodes (4), fragmentation
(5), UTF-8 (6), close (7), limits (9), compression (12, 13).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import zlib

import pytest

from corral.proto import ws
from corral.proto.ws import HandshakeError, Parser, ProtocolError

MASK = b"\x37\xfa\x21\x3d"


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bytes | None = MASK,
          length: int | None = None) -> bytes:
    """A client frame, masked unless ``mask`` is None."""
    b0 = (0x80 if fin else 0) | rsv | opcode
    n = len(payload) if length is None else length
    masked = 0x80 if mask is not None else 0
    if n < 126:
        head = bytes((b0, masked | n))
    elif n < 65536:
        head = bytes((b0, masked | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, masked | 127)) + n.to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + ws._py_apply_mask(payload, mask)


class Sink:
    def __init__(self) -> None:
        self.events: list = []

    def on_message(self, data) -> None:
        self.events.append(("message", data))

    def on_ping(self, payload) -> None:
        self.events.append(("ping", payload))

    def on_pong(self, payload) -> None:
        self.events.append(("pong", payload))

    def on_close(self, code, reason) -> None:
        self.events.append(("close", code, reason))


MODES = ["whole", "bytewise", "trailing"]


def feed(data: bytes, mode: str = "whole", **kwargs):
    """Feed ``data`` and return (events, ProtocolError or None)."""
    sink = Sink()
    parser = Parser(sink, **kwargs)
    try:
        if mode == "whole":
            parser.feed(data)
        elif mode == "bytewise":
            for index in range(len(data)):
                parser.feed(data[index : index + 1])
        else:  # the frames, then the start of another frame in the same read
            parser.feed(data + b"\x81")
    except ProtocolError as exc:
        return sink.events, exc
    return sink.events, None


def expect_error(data: bytes, code: int, mode: str = "whole", **kwargs):
    events, error = feed(data, mode, **kwargs)
    assert error is not None, f"no error; events: {events}"
    assert error.code == code, (error.code, error.reason)
    return events


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


# -- RFC 6455 §4: opening handshake -----------------------------------------


def handshake_headers(**overrides):
    headers = {
        b"host": b"example.com",
        b"upgrade": b"websocket",
        b"connection": b"Upgrade",
        b"sec-websocket-key": b"dGhlIHNhbXBsZSBub25jZQ==",
        b"sec-websocket-version": b"13",
    }
    for name, value in overrides.items():
        key = name.replace("_", "-").encode()
        if value is None:
            headers.pop(key, None)
        else:
            headers[key] = value
    return list(headers.items())


class TestOpeningHandshake_RFC6455_4_2:
    def test_accept_key_example_from_rfc(self):
        # RFC 6455 §1.3
        assert ws.accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

    def test_valid_request(self):
        handshake = ws.check_request(handshake_headers())
        assert handshake.key == b"dGhlIHNhbXBsZSBub25jZQ=="
        assert handshake.subprotocols == []
        assert handshake.deflate is None

    @pytest.mark.parametrize("value", [b"keep-alive, Upgrade", b"UPGRADE", b"upgrade ,keep-alive"])
    def test_connection_header_is_a_token_list(self, value):
        handshake = ws.check_request(handshake_headers(connection=value))
        assert handshake.key == b"dGhlIHNhbXBsZSBub25jZQ=="

    def test_connection_token_must_be_whole(self):
        with pytest.raises(HandshakeError) as info:
            ws.check_request(handshake_headers(connection=b"keep-alive, upgraded"))
        assert (info.value.status, info.value.detail) == (400, "WebSocket upgrade needs 'Connection: Upgrade'")

    @pytest.mark.parametrize(
        "overrides, status, detail",
        [
            ({"connection": None}, 400, "Connection: Upgrade"),
            ({"connection": b"keep-alive"}, 400, "Connection: Upgrade"),
            ({"sec_websocket_key": None}, 400, "Missing Sec-WebSocket-Key"),
            ({"sec_websocket_key": b"not base64!"}, 400, "Invalid Sec-WebSocket-Key"),
            ({"sec_websocket_key": base64.b64encode(b"x" * 15)}, 400, "Invalid Sec-WebSocket-Key"),
            ({"sec_websocket_version": None}, 400, "Missing Sec-WebSocket-Version"),
            ({"sec_websocket_version": b"8"}, 426, "Unsupported WebSocket version"),
        ],
    )
    def test_bad_requests(self, overrides, status, detail):
        with pytest.raises(HandshakeError) as info:
            ws.check_request(handshake_headers(**overrides))
        assert info.value.status == status
        assert detail in info.value.detail

    def test_426_names_the_supported_version(self):
        with pytest.raises(HandshakeError) as info:
            ws.check_request(handshake_headers(sec_websocket_version=b"7"))
        assert info.value.headers == b"sec-websocket-version: 13\r\n"

    def test_duplicate_key(self):
        headers = handshake_headers() + [(b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ==")]
        with pytest.raises(HandshakeError) as info:
            ws.check_request(headers)
        assert info.value.status == 400

    def test_subprotocols_from_several_headers(self):
        headers = handshake_headers() + [(b"sec-websocket-protocol", b"chat, superchat"), (b"sec-websocket-protocol", b"v2")]
        assert ws.check_request(headers).subprotocols == ["chat", "superchat", "v2"]

    def test_accept_response_bytes(self):
        handshake = ws.check_request(handshake_headers() + [(b"sec-websocket-protocol", b"chat")])
        data = ws.accept_response(handshake, "chat", [(b"x-one", b"1")], b"server: corral\r\n")
        assert data == (
            b"HTTP/1.1 101 Switching Protocols\r\n"
            b"upgrade: websocket\r\n"
            b"connection: Upgrade\r\n"
            b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            b"sec-websocket-protocol: chat\r\n"
            b"x-one: 1\r\n"
            b"server: corral\r\n"
            b"\r\n"
        )

    @pytest.mark.parametrize(
        "subprotocol, headers, message",
        [
            ("nope", [], "was not offered"),
            (None, [(b"x-evil", b"a\r\nset-cookie: x")], "CR, LF or NUL"),
            (None, [(b"bad name", b"x")], "invalid header name"),
            (None, [(b"sec-websocket-protocol", b"chat")], "set by the server"),
            (None, [("x-str", b"x")], "must be bytes"),
        ],
    )
    def test_accept_response_refuses_bad_input(self, subprotocol, headers, message):
        handshake = ws.check_request(handshake_headers() + [(b"sec-websocket-protocol", b"chat")])
        with pytest.raises(ValueError, match=message):
            ws.accept_response(handshake, subprotocol, headers)


# -- RFC 6455 §5.2: base framing (Autobahn 1.x, 9.x) ---------------------------


class TestBaseFraming_RFC6455_5_2:
    @pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 100_000])
    def test_payload_lengths_7_16_64_bit(self, size, mode):
        if mode == "bytewise" and size > 1000:
            pytest.skip("covered by the smaller sizes")
        payload = os.urandom(size)
        events, error = feed(frame(ws.OP_BINARY, payload), mode)
        assert error is None
        assert events == [("message", payload)]

    def test_text_message(self, mode):
        events, error = feed(frame(ws.OP_TEXT, "héllo ☃".encode()), mode)
        assert error is None
        assert events == [("message", "héllo ☃")]

    def test_many_frames_in_one_read(self):
        data = b"".join(frame(ws.OP_TEXT, b"%d" % i) for i in range(100))
        events, error = feed(data)
        assert error is None
        assert events == [("message", str(i)) for i in range(100)]

    def test_64_bit_length_with_top_bit_set(self, mode):
        data = bytes((0x82, 0xFF)) + (1 << 63).to_bytes(8, "big") + MASK
        expect_error(data, 1002, mode)

    def test_large_frame_is_buffered_as_chunks(self):
        payload = os.urandom(300_000)
        data = frame(ws.OP_BINARY, payload)
        sink = Sink()
        parser = Parser(sink)
        for start in range(0, len(data), 65536):
            parser.feed(data[start : start + 65536])
            if start + 65536 < len(data):
                assert parser.buffered == start + 65536
        assert sink.events == [("message", payload)]
        assert parser.buffered == 0


# -- RFC 6455 §5.3: masking ------------------------------------------------------


class TestMasking_RFC6455_5_3:
    def test_unmasked_client_frame_is_a_protocol_error(self, mode):
        expect_error(frame(ws.OP_TEXT, b"hi", mask=None), 1002, mode)

    @pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 1000, 65537])
    def test_python_mask_matches_c_mask(self, size):
        data = os.urandom(size)
        mask = os.urandom(4)
        expected = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        assert ws._py_apply_mask(data, mask) == expected
        assert ws.apply_mask(data, mask) == expected

    def test_server_frames_are_not_masked(self):
        assert ws.encode_frame(ws.OP_PING, b"x") == b"\x89\x01x"
        assert ws.encode_message("hi") == b"\x81\x02hi"


# -- RFC 6455 §5.2: reserved bits and opcodes (Autobahn 3.x, 4.x) ----------------


class TestReservedBitsAndOpcodes_RFC6455_5_2:
    @pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10, 0x70])
    @pytest.mark.parametrize("opcode", [ws.OP_TEXT, ws.OP_BINARY, ws.OP_PING])
    def test_reserved_bits_without_extension(self, rsv, opcode, mode):
        expect_error(frame(opcode, b"x", rsv=rsv), 1002, mode)

    @pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
    def test_reserved_opcodes(self, opcode, mode):
        expect_error(frame(opcode, b"x"), 1002, mode)

    def test_messages_before_a_bad_frame_are_delivered(self):
        events = expect_error(frame(ws.OP_TEXT, b"first") + frame(5, b"") + frame(ws.OP_PING), 1002)
        assert events == [("message", "first")]

    def test_nothing_is_parsed_after_an_error(self):
        sink = Sink()
        parser = Parser(sink)
        with pytest.raises(ProtocolError):
            parser.feed(frame(7))
        parser.feed(frame(ws.OP_TEXT, b"late"))
        assert sink.events == []


# -- RFC 6455 §5.4: fragmentation (Autobahn 5.x) -----------------------------------


class TestFragmentation_RFC6455_5_4:
    def test_fragments_are_joined(self, mode):
        data = frame(ws.OP_TEXT, b"frag", fin=False) + frame(ws.OP_CONT, b"men", fin=False) + frame(ws.OP_CONT, b"ted")
        events, error = feed(data, mode)
        assert error is None
        assert events == [("message", "fragmented")]

    def test_binary_fragments(self, mode):
        data = frame(ws.OP_BINARY, b"\x00", fin=False) + frame(ws.OP_CONT, b"", fin=False) + frame(ws.OP_CONT, b"\xff")
        events, error = feed(data, mode)
        assert error is None
        assert events == [("message", b"\x00\xff")]

    def test_control_frames_between_fragments(self, mode):
        data = (
            frame(ws.OP_TEXT, b"a", fin=False)
            + frame(ws.OP_PING, b"p1")
            + frame(ws.OP_CONT, b"b", fin=False)
            + frame(ws.OP_PONG, b"p2")
            + frame(ws.OP_CONT, b"c")
        )
        events, error = feed(data, mode)
        assert error is None
        assert events == [("ping", b"p1"), ("pong", b"p2"), ("message", "abc")]

    def test_continuation_without_a_message(self, mode):
        expect_error(frame(ws.OP_CONT, b"x"), 1002, mode)

    def test_final_continuation_without_a_message(self, mode):
        expect_error(frame(ws.OP_CONT, b"x", fin=False), 1002, mode)

    def test_new_message_inside_a_fragmented_one(self, mode):
        data = frame(ws.OP_TEXT, b"a", fin=False) + frame(ws.OP_TEXT, b"b")
        expect_error(data, 1002, mode)

    def test_close_inside_a_fragmented_message(self, mode):
        data = frame(ws.OP_TEXT, b"a", fin=False) + frame(ws.OP_CLOSE, b"\x03\xe8")
        events, error = feed(data, mode)
        assert error is None
        assert events == [("close", 1000, "")]


# -- RFC 6455 §5.5: control frames, ping/pong (Autobahn 2.x) -----------------------


class TestControlFrames_RFC6455_5_5:
    @pytest.mark.parametrize("payload", [b"", b"ping", b"\xff" * 125])
    def test_ping_and_pong(self, payload, mode):
        events, error = feed(frame(ws.OP_PING, payload) + frame(ws.OP_PONG, payload), mode)
        assert error is None
        assert events == [("ping", payload), ("pong", payload)]

    def test_control_frame_longer_than_125_bytes(self, mode):
        expect_error(frame(ws.OP_PING, b"x" * 126), 1002, mode)

    def test_fragmented_control_frame(self, mode):
        expect_error(frame(ws.OP_PING, b"x", fin=False), 1002, mode)


# -- RFC 6455 §5.5.1, §7.4: close (Autobahn 7.x) ------------------------------------


class TestClose_RFC6455_7:
    def test_close_without_code_is_1005(self, mode):
        events, error = feed(frame(ws.OP_CLOSE), mode)
        assert error is None
        assert events == [("close", 1005, "")]

    def test_close_with_code_and_reason(self, mode):
        events, error = feed(frame(ws.OP_CLOSE, b"\x0f\xa0" + "ciao ☃".encode()), mode)
        assert error is None
        assert events == [("close", 4000, "ciao ☃")]

    def test_one_byte_close_payload(self, mode):
        expect_error(frame(ws.OP_CLOSE, b"\x03"), 1002, mode)

    @pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999])
    def test_valid_codes(self, code):
        events, error = feed(frame(ws.OP_CLOSE, code.to_bytes(2, "big")))
        assert error is None
        assert events == [("close", code, "")]

    @pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535])
    def test_invalid_codes(self, code, mode):
        expect_error(frame(ws.OP_CLOSE, code.to_bytes(2, "big")), 1002, mode)

    def test_invalid_utf8_reason(self, mode):
        expect_error(frame(ws.OP_CLOSE, b"\x03\xe8\xff"), 1007, mode)

    def test_nothing_after_close(self):
        events, error = feed(frame(ws.OP_CLOSE, b"\x03\xe8") + frame(ws.OP_TEXT, b"after") + frame(7))
        assert error is None
        assert events == [("close", 1000, "")]

    def test_encode_close(self):
        assert ws.encode_close(1000) == b"\x88\x02\x03\xe8"
        assert ws.encode_close(None) == b"\x88\x00"
        assert ws.encode_close(1001, "bye") == b"\x88\x05\x03\xe9bye"

    def test_encode_close_truncates_long_reasons_on_a_character_boundary(self):
        data = ws.encode_close(1000, "☃" * 100)
        assert len(data) - 2 <= 125
        code, reason = ws.parse_close(data[2:])
        assert code == 1000 and reason == "☃" * 41


# -- RFC 6455 §8.1: UTF-8 (Autobahn 6.x) ----------------------------------------------

INVALID_UTF8 = [
    b"\xff",  # never valid
    b"\xc0\xaf",  # overlong "/"
    b"\xe0\x80\xaf",  # overlong
    b"\xed\xa0\x80",  # UTF-16 surrogate
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\x80",  # lone continuation byte
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",  # Autobahn 6.3.1
]


class TestUTF8_RFC6455_8_1:
    @pytest.mark.parametrize("payload", INVALID_UTF8)
    def test_invalid_text_message(self, payload, mode):
        expect_error(frame(ws.OP_TEXT, payload), 1007, mode)

    @pytest.mark.parametrize("payload", INVALID_UTF8)
    def test_invalid_text_in_fragments(self, payload, mode):
        data = frame(ws.OP_TEXT, b"ok", fin=False) + frame(ws.OP_CONT, payload, fin=False) + frame(ws.OP_CONT, b"")
        expect_error(data, 1007, mode)

    def test_code_point_split_across_fragments(self, mode):
        snowman = "☃".encode()
        data = frame(ws.OP_TEXT, snowman[:1], fin=False) + frame(ws.OP_CONT, snowman[1:2], fin=False) + frame(ws.OP_CONT, snowman[2:])
        events, error = feed(data, mode)
        assert error is None
        assert events == [("message", "☃")]

    def test_invalid_utf8_fails_at_the_fragment_not_the_end(self):
        sink = Sink()
        parser = Parser(sink)
        parser.feed(frame(ws.OP_TEXT, b"ok", fin=False))
        with pytest.raises(ProtocolError) as info:
            parser.feed(frame(ws.OP_CONT, b"\xff", fin=False))
        assert info.value.code == 1007

    def test_truncated_code_point_at_the_end(self, mode):
        expect_error(frame(ws.OP_TEXT, b"a", fin=False) + frame(ws.OP_CONT, "☃".encode()[:2]), 1007, mode)

    def test_binary_is_not_validated(self, mode):
        events, error = feed(frame(ws.OP_BINARY, b"\xff\xfe"), mode)
        assert error is None and events == [("message", b"\xff\xfe")]


# -- RFC 6455 §10.4: limits (Autobahn 9.x; corral's --ws-max-size) ----------------------


class TestLimits_RFC6455_10_4:
    def test_message_at_the_limit(self, mode):
        events, error = feed(frame(ws.OP_BINARY, b"x" * 100), mode, max_size=100)
        assert error is None and events == [("message", b"x" * 100)]

    def test_message_over_the_limit(self, mode):
        expect_error(frame(ws.OP_BINARY, b"x" * 101), 1009, mode, max_size=100)

    def test_fails_on_the_header_before_the_payload_arrives(self):
        parser = Parser(Sink(), max_size=1000)
        with pytest.raises(ProtocolError) as info:
            parser.feed(frame(ws.OP_BINARY, length=1 << 40)[:14])
        assert info.value.code == 1009

    def test_fragments_add_up(self, mode):
        data = frame(ws.OP_TEXT, b"x" * 60, fin=False) + frame(ws.OP_CONT, b"x" * 41)
        expect_error(data, 1009, mode, max_size=100)


# -- RFC 7692: permessage-deflate (Autobahn 12.x, 13.x) ------------------------------------


def client_compressor(wbits=15):
    return zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -wbits)


def compress(compressor, data: bytes) -> bytes:
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(ws.EMPTY_BLOCK)
    return out[:-4]


def negotiated(offer: bytes = b"permessage-deflate; client_max_window_bits"):
    return ws.negotiate_deflate([offer])


class TestNegotiation_RFC7692_7_1:
    @pytest.mark.parametrize(
        "offer, response",
        [
            (b"permessage-deflate", b"permessage-deflate; server_max_window_bits=12"),
            (b"permessage-deflate; client_max_window_bits", b"permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"),
            (b"permessage-deflate; client_max_window_bits=10", b"permessage-deflate; server_max_window_bits=12; client_max_window_bits=10"),
            (b"permessage-deflate; client_max_window_bits=15", b"permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"),
            (b"permessage-deflate; server_max_window_bits=10", b"permessage-deflate; server_max_window_bits=10"),
            (b"permessage-deflate; server_max_window_bits=\"9\"", b"permessage-deflate; server_max_window_bits=9"),
            (b"permessage-deflate; server_no_context_takeover", b"permessage-deflate; server_no_context_takeover; server_max_window_bits=12"),
            (b"permessage-deflate; client_no_context_takeover", b"permessage-deflate; client_no_context_takeover; server_max_window_bits=12"),
            # The first offer we can honour wins (RFC 7692 §5.1).
            (b"x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=8, permessage-deflate", b"permessage-deflate; server_max_window_bits=12"),
            (b"permessage-deflate; foo=1, permessage-deflate; client_max_window_bits=9", b"permessage-deflate; server_max_window_bits=12; client_max_window_bits=9"),
        ],
    )
    def test_accepted_offers(self, offer, response):
        assert ws.negotiate_deflate([offer]).response == response

    @pytest.mark.parametrize(
        "offer",
        [
            b"x-webkit-deflate-frame",
            b"permessage-deflate; server_max_window_bits=8",  # zlib cannot
            b"permessage-deflate; server_max_window_bits=16",
            b"permessage-deflate; server_max_window_bits",
            b"permessage-deflate; client_max_window_bits=7",
            b"permessage-deflate; server_no_context_takeover=1",
            b"permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            b"permessage-deflate; unknown",
        ],
    )
    def test_declined_offers(self, offer):
        assert ws.negotiate_deflate([offer]) is None

    def test_disabled(self):
        headers = handshake_headers(sec_websocket_extensions=b"permessage-deflate")
        assert ws.check_request(headers, deflate=False).deflate is None
        assert ws.check_request(headers, deflate=True).deflate is not None

    def test_response_header(self):
        handshake = ws.check_request(handshake_headers(sec_websocket_extensions=b"permessage-deflate"))
        assert b"sec-websocket-extensions: permessage-deflate; server_max_window_bits=12\r\n" in ws.accept_response(handshake)


class TestCompression_RFC7692_7_2:
    def test_compressed_messages_with_context_takeover(self, mode):
        client = client_compressor(12)
        messages = [b"hello hello hello" * 10, b"hello hello hello" * 10, b"other"]
        data = b"".join(frame(ws.OP_BINARY, compress(client, m), rsv=0x40) for m in messages)
        events, error = feed(data, mode, deflate=negotiated())
        assert error is None
        assert events == [("message", m) for m in messages]

    def test_compressed_fragmented_text(self, mode):
        client = client_compressor(12)
        body = compress(client, "snow ☃ snow ☃".encode() * 20)
        data = frame(ws.OP_TEXT, body[:10], rsv=0x40, fin=False) + frame(ws.OP_PING, b"p") + frame(ws.OP_CONT, body[10:])
        events, error = feed(data, mode, deflate=negotiated())
        assert error is None
        assert events == [("ping", b"p"), ("message", "snow ☃ snow ☃" * 20)]

    def test_uncompressed_message_between_compressed_ones(self, mode):
        client = client_compressor(12)
        data = frame(ws.OP_TEXT, compress(client, b"one"), rsv=0x40) + frame(ws.OP_TEXT, b"two") + frame(ws.OP_TEXT, compress(client, b"one"), rsv=0x40)
        events, error = feed(data, mode, deflate=negotiated())
        assert error is None
        assert events == [("message", "one"), ("message", "two"), ("message", "one")]

    def test_rsv1_on_a_continuation_frame(self, mode):
        client = client_compressor(12)
        data = frame(ws.OP_TEXT, compress(client, b"a"), rsv=0x40, fin=False) + frame(ws.OP_CONT, b"", rsv=0x40)
        expect_error(data, 1002, mode, deflate=negotiated())

    def test_rsv1_on_a_control_frame(self, mode):
        expect_error(frame(ws.OP_PING, b"", rsv=0x40), 1002, mode, deflate=negotiated())

    def test_invalid_utf8_after_inflating(self, mode):
        client = client_compressor(12)
        expect_error(frame(ws.OP_TEXT, compress(client, b"ok\xff"), rsv=0x40), 1007, mode, deflate=negotiated())

    def test_corrupt_compressed_data(self, mode):
        expect_error(frame(ws.OP_BINARY, b"\xff\xff\xff\xff\xff", rsv=0x40), 1002, mode, deflate=negotiated())

    def test_decompression_bomb_stops_at_the_limit(self):
        client = client_compressor(12)
        bomb = compress(client, b"\x00" * 10_000_000)
        assert len(bomb) < 20_000
        expect_error(frame(ws.OP_BINARY, bomb, rsv=0x40), 1009, max_size=1_000_000, deflate=negotiated())

    def test_client_no_context_takeover_drops_the_inflater(self):
        deflate = negotiated(b"permessage-deflate; client_no_context_takeover")
        sink = Sink()
        parser = Parser(sink, deflate=deflate)
        for _ in range(2):
            client = client_compressor()  # a fresh context per message
            parser.feed(frame(ws.OP_TEXT, compress(client, b"same"), rsv=0x40))
            assert parser._inflater is None
        assert sink.events == [("message", "same")] * 2

    def test_zlib_state_is_allocated_lazily(self):
        deflate = negotiated()
        parser = Parser(Sink(), deflate=deflate)
        compressor = deflate.compressor()
        assert parser._inflater is None and compressor._zobj is None
        compressor.compress(b"x")
        assert compressor._zobj is not None

    @pytest.mark.parametrize("offer, context", [(b"permessage-deflate", True), (b"permessage-deflate; server_no_context_takeover", False)])
    def test_server_messages_inflate_on_the_client(self, offer, context):
        deflate = ws.negotiate_deflate([offer])
        compressor = deflate.compressor()
        inflater = zlib.decompressobj(-deflate.server_window_bits)
        sizes = []
        for text in ["repeat me " * 20] * 3:
            data = ws.encode_message(text, compressor)
            assert data[0] == 0xC1  # FIN + RSV1 + text
            length = data[1]
            assert length < 126
            payload = data[2:]
            if not context:
                inflater = zlib.decompressobj(-deflate.server_window_bits)
            assert inflater.decompress(payload + ws.EMPTY_BLOCK).decode() == text
            sizes.append(length)
        # With context takeover the repeats cost a few bytes; without, the same.
        assert (sizes[1] < sizes[0]) is context


def test_proto_imports_no_io():
    code = (
        "import sys, corral.proto.ws; "
        "bad = [m for m in sys.modules if m == 'asyncio' or m.startswith(('corral.io', 'corral.worker', 'corral.supervisor'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
