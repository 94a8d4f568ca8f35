"""Fuzz target: corral.proto.ws.Parser (see fuzz/README.md).

    .venv/bin/python fuzz/ws.py -max_total_time=300 [corpus dir]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from corral.proto import ws  # noqa: E402

MASK = b"\x01\x02\x03\x04"


def _client(frame: bytes) -> bytes:
    start = 2 + {126: 2, 127: 8}.get(frame[1] & 0x7F, 0)
    return frame[:1] + bytes((frame[1] | 0x80,)) + frame[2:start] + MASK + ws.apply_mask(frame[start:], MASK)


SEEDS = [
    b"\x00" + _client(ws.encode_message("hello")) + _client(ws.encode_frame(ws.OP_PING, b"p")),
    b"\x00" + _client(ws.encode_message(b"\x00" * 300)) + _client(ws.encode_close(1000, "bye")),
    b"\x00" + _client(b"\x01\x03abc") + _client(b"\x8a\x00") + _client(b"\x80\x02de"),
    b"\x01" + _client(ws.encode_message("compressed " * 20, ws.negotiate_deflate([b"permessage-deflate"]).compressor())),
]


class Sink:
    def __init__(self) -> None:
        self.events: list = []

    def on_message(self, data) -> None:
        assert type(data) in (str, bytes)
        self.events.append(("message", data))

    def on_ping(self, payload) -> None:
        assert len(payload) <= 125
        self.events.append(("ping", payload))

    def on_pong(self, payload) -> None:
        assert len(payload) <= 125
        self.events.append(("pong", payload))

    def on_close(self, code, reason) -> None:
        self.events.append(("close", code, reason))


def outcome(pieces, compressed: bool) -> tuple:
    sink = Sink()
    deflate = ws.negotiate_deflate([b"permessage-deflate"]) if compressed else None
    parser = ws.Parser(sink, max_size=4096, deflate=deflate)
    try:
        for piece in pieces:
            parser.feed(piece)
    except ws.ProtocolError as exc:
        assert exc.code in (1002, 1007, 1009), exc.code
        return sink.events, exc.code
    return sink.events, None


def check(data: bytes) -> None:
    """The first byte chooses compression; the rest is client frames, fed
    whole, cut where the input says, and byte by byte."""
    if not data:
        return
    compressed = bool(data[0] & 1)
    frames = data[1:]
    whole = outcome([frames], compressed)
    cuts = sorted({byte * len(frames) // 256 for byte in frames[:4]} - {0, len(frames)})
    pieces = [frames[a:b] for a, b in zip([0] + cuts, cuts + [len(frames)])]
    assert outcome(pieces, compressed) == whole
    if len(frames) <= 512:
        assert outcome([frames[i:i + 1] for i in range(len(frames))], compressed) == whole


def main() -> None:
    import atheris

    corpus = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
    for directory in corpus:
        os.makedirs(directory, exist_ok=True)
        for index, seed in enumerate(SEEDS):
            with open(os.path.join(directory, f"seed-{index}"), "wb") as out:
                out.write(seed)
    atheris.instrument_all()
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
