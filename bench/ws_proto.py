#!/usr/bin/env python3
"""Frame protocol cost, in process: corral.proto.ws against websockets' sans-I/O core.

Why corral has its own RFC 6455 layer instead of ``websockets.protocol``:
this measures both doing the same work, without sockets or an event loop.

* parse: N masked client frames arrive in 64 KiB reads; each side turns
  them into messages (``Parser.feed`` + sink / ``receive_data`` +
  ``events_received``);
* send: N text messages become frame bytes (``encode_message`` /
  ``send_text`` + ``data_to_send``);

each with and without permessage-deflate (server window 12 bits, memLevel 5
on both sides). Prints microseconds per message and the ratio.

    .venv/bin/python bench/ws_proto.py [--messages 100000] [--size 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from corral.proto import ws  # noqa: E402


def client_frames(count: int, payload: bytes, deflate: bool) -> bytes:
    frames = []
    compressor = zlib.compressobj(6, zlib.DEFLATED, -12, 5) if deflate else None
    for _ in range(count):
        data = payload
        b0 = 0x81
        if compressor is not None:
            data = (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
            b0 |= 0x40
        mask = os.urandom(4)
        n = len(data)
        head = bytes((b0, 0x80 | n)) if n < 126 else bytes((b0, 0x80 | 126)) + n.to_bytes(2, "big")
        frames.append(head + mask + ws.apply_mask(data, mask))
    return b"".join(frames)


def chunks(data: bytes, size: int = 65536) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


class CountSink:
    def __init__(self) -> None:
        self.count = 0

    def on_message(self, data) -> None:
        self.count += 1

    def on_ping(self, payload) -> None:
        pass

    on_pong = on_ping

    def on_close(self, code, reason) -> None:
        pass


def corral_parse(reads: list[bytes], count: int, deflate: bool) -> float:
    negotiated = ws.negotiate_deflate([b"permessage-deflate; client_max_window_bits"]) if deflate else None
    sink = CountSink()
    parser = ws.Parser(sink, deflate=negotiated)
    started = time.perf_counter()
    for data in reads:
        parser.feed(data)
    elapsed = time.perf_counter() - started
    assert sink.count == count, sink.count
    return elapsed


def websockets_protocol(deflate: bool):
    from websockets.extensions.permessage_deflate import PerMessageDeflate
    from websockets.protocol import Protocol, Side

    protocol = Protocol(Side.SERVER, max_size=16 * 1024 * 1024)
    if deflate:
        protocol.extensions = [PerMessageDeflate(False, False, 12, 12, {"memLevel": 5})]
    return protocol


def websockets_parse(reads: list[bytes], count: int, deflate: bool) -> float:
    protocol = websockets_protocol(deflate)
    received = 0
    started = time.perf_counter()
    for data in reads:
        protocol.receive_data(data)
        received += len(protocol.events_received())
    elapsed = time.perf_counter() - started
    assert received == count, received
    return elapsed


def corral_send(text: str, count: int, deflate: bool) -> float:
    compressor = ws.negotiate_deflate([b"permessage-deflate"]).compressor() if deflate else None
    started = time.perf_counter()
    for _ in range(count):
        ws.encode_message(text, compressor)
    return time.perf_counter() - started


def websockets_send(text: str, count: int, deflate: bool) -> float:
    protocol = websockets_protocol(deflate)
    started = time.perf_counter()
    for _ in range(count):
        protocol.send_text(text.encode())
        protocol.data_to_send()
    return time.perf_counter() - started


def best(fn, *args, repeat: int = 3) -> float:
    return min(fn(*args) for _ in range(repeat))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=64, help="bytes per message (default 64)")
    args = parser.parse_args(argv)
    text = ("corral websocket " * (args.size // 17 + 1))[: args.size]
    n = args.messages
    print(f"{n} messages of {args.size} bytes; microseconds per message, best of 3")
    print(f"{'':22} {'corral':>8} {'websockets':>11} {'ratio':>6}")
    for deflate in (False, True):
        label = "deflate" if deflate else "plain"
        reads = chunks(client_frames(n, text.encode(), deflate))
        ours = best(corral_parse, reads, n, deflate) / n * 1e6
        theirs = best(websockets_parse, reads, n, deflate) / n * 1e6
        print(f"{'parse ' + label:22} {ours:8.2f} {theirs:11.2f} {theirs / ours:5.1f}x")
        ours = best(corral_send, text, n, deflate) / n * 1e6
        theirs = best(websockets_send, text, n, deflate) / n * 1e6
        print(f"{'send ' + label:22} {ours:8.2f} {theirs:11.2f} {theirs / ours:5.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
