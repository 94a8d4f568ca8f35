"""Property tests of corral.proto.ws (hypothesis): client frames, however the
reads cut them, give the same events; a message encoded by corral and masked
as a client would parses back to the same message, compressed or not.

Seeded and bounded in `make test`; `make fuzz` runs many more at random.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from corral.proto import ws
from h1_strategies import fuzz, splits


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


def outcome(pieces, deflate=None) -> tuple[list, int | None]:
    sink = Sink()
    parser = ws.Parser(sink, max_size=1 << 16, deflate=deflate)
    try:
        for piece in pieces:
            parser.feed(piece)
    except ws.ProtocolError as exc:
        return sink.events, exc.code
    return sink.events, None


def masked(frame: bytes, mask: bytes) -> bytes:
    """A server frame (unmasked, corral's encoders) as a client sends it."""
    b1 = frame[1]
    start = 2 + {126: 2, 127: 8}.get(b1 & 0x7F, 0)
    return frame[:1] + bytes((b1 | 0x80,)) + frame[2:start] + mask + ws.apply_mask(frame[start:], mask)


def client_frame(opcode: int, payload: bytes, fin: bool, mask: bytes) -> bytes:
    b0 = (0x80 if fin else 0) | opcode
    return masked(ws._header(b0, len(payload)) + payload, mask)


messages = st.one_of(st.text(max_size=300), st.binary(max_size=300))
control = st.tuples(st.sampled_from([ws.OP_PING, ws.OP_PONG]), st.binary(max_size=125))
masks = st.binary(min_size=4, max_size=4)


@st.composite
def conversations(draw):
    """Messages cut into fragments with control frames between them, then a
    Close; the bytes, and the events they must give."""
    data = b""
    expected = []
    for message in draw(st.lists(messages, max_size=5)):
        payload = message.encode("utf-8") if isinstance(message, str) else message
        cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=3)))
        parts = [payload[a:b] for a, b in zip([0] + cuts, cuts + [len(payload)])]
        for index, part in enumerate(parts):
            opcode = (ws.OP_TEXT if isinstance(message, str) else ws.OP_BINARY) if index == 0 else ws.OP_CONT
            last = index == len(parts) - 1
            data += client_frame(opcode, part, last, draw(masks))
            if last:
                expected.append(("message", message))
            if draw(st.booleans()):
                op, body = draw(control)
                data += client_frame(op, body, True, draw(masks))
                expected.append(("ping" if op == ws.OP_PING else "pong", body))
    data += masked(ws.encode_close(1000, "bye"), draw(masks))
    expected.append(("close", 1000, "bye"))
    return data, expected


@fuzz(200)
@given(conversations().flatmap(lambda c: st.tuples(st.just(c), splits(c[0]))))
def test_any_split_of_client_frames_gives_the_same_events(case):
    (data, expected), pieces = case
    assert outcome([data]) == (expected, None)
    assert outcome(pieces) == (expected, None)


@fuzz(300)
@given(st.binary(max_size=200).flatmap(lambda data: st.tuples(st.just(data), splits(data))))
def test_any_split_of_any_bytes_gives_the_same_outcome(case):
    data, pieces = case
    whole = outcome([data])
    assert outcome(pieces) == whole
    assert outcome([bytes([byte]) for byte in data]) == whole


@fuzz(150)
@given(st.lists(messages, min_size=1, max_size=5), masks, st.booleans())
def test_encoded_messages_parse_back_the_same(batch, mask, compress):
    deflate = ws.negotiate_deflate([b"permessage-deflate"]) if compress else None
    compressor = deflate.compressor() if compress else None
    data = b"".join(masked(ws.encode_message(message, compressor), mask) for message in batch)
    assert outcome([data], deflate) == ([("message", message) for message in batch], None)
