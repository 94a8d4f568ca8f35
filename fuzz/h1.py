"""Fuzz target: corral.proto.h1.RequestParser (see fuzz/README.md).

    .venv/bin/python fuzz/h1.py -max_total_time=300 [corpus dir]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from corral.proto.h1 import ProtocolError, RequestParser  # noqa: E402

SEEDS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /a?b=c HTTP/1.0\r\nConnection: keep-alive\r\n\r\nHEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n0\r\nT: 1\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\nabcGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x80abcd",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
    b"GET http://h.example:8080/x HTTP/1.1\r\nHost: other\r\n\r\n",
    b"GET /\r\n",
    b"FOO / HTTP/1.2\r\nHost: a\r\n\r\n",
]


class Sink:
    def __init__(self) -> None:
        self.events: list = []

    def on_request(self, request) -> None:
        assert type(request.method) is str and request.method
        assert type(request.target) is bytes and request.target
        assert request.http_version in ("1.0", "1.1")
        assert all(name == name.lower() for name, _ in request.headers)
        self.events.append(["request", request.method, request.target, request.http_version,
                            list(request.headers), request.keep_alive, request.upgrade, b""])

    def on_body(self, request, chunk: bytes) -> None:
        assert type(chunk) is bytes and chunk
        assert self.events and self.events[-1][0] == "request", "a body without its request"
        self.events[-1][-1] += chunk

    def on_request_complete(self, request) -> None:
        assert self.events and self.events[-1][0] == "request", "complete without its request"
        self.events.append(["complete"])


def outcome(pieces) -> tuple:
    sink = Sink()
    parser = RequestParser(sink, limit_request_line=512, limit_header_size=2048, limit_request_body=4096)
    error = None
    upgraded = None
    offset = 0
    try:
        for piece in pieces:
            at = parser.feed(piece)
            if at is not None:
                upgraded = offset + at  # the rest is another protocol's
                break
            offset += len(piece)
    except ProtocolError as exc:
        assert 400 <= exc.status <= 505 and exc.detail
        error = exc.status
        if exc.detail.startswith(("Method ", "Invalid method")):
            # Whether an unknown method is a token (501) or garbage (400) is
            # known only when its request starts a read (_invalid_method).
            error = "method"
        elif exc.detail == "HTTP/0.9 is not supported":
            # 505 when a read ends after an HTTP/0.9 line, 400 when llhttp
            # refuses what follows it in the same read (RequestParser._http09).
            error = 400
    return sink.events, error, upgraded


def check(data: bytes) -> None:
    """Whole, cut where the input says, and byte by byte: the same outcome.
    Limits are small so that 413, 414 and 431 are reached."""
    whole = outcome([data])
    cuts = sorted({byte * len(data) // 256 for byte in data[:4]} - {0, len(data)})
    pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
    assert outcome(pieces) == whole, (pieces, whole)
    if len(data) <= 512:
        assert outcome([data[i:i + 1] for i in range(len(data))]) == whole


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
