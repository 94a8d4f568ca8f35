"""Property tests of corral.proto.h1 (hypothesis): the same bytes, however
they are cut, give the same events; a request re-serialised from what the
parser reported is the request that was sent.

The examples are seeded and bounded in `make test`; `make fuzz` runs many
more at random (tests/proto/h1_strategies.py).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from corral.proto.h1 import ProtocolError, RequestParser
from h1_strategies import Spec, fuzz, requests, splits


class Events:
    """A sink recording events; body pieces are joined per request (llhttp
    cuts them where the reads were cut)."""

    def __init__(self) -> None:
        self.events: list = []
        self.pieces: list[bytes] = []  # the body pieces of the last request, as reported

    def on_request(self, request) -> None:
        self.events.append(["request", request.method, request.target, request.http_version,
                            list(request.headers), request.keep_alive, request.upgrade, b""])
        self.pieces = []

    def on_body(self, request, chunk: bytes) -> None:
        assert chunk and self.events[-1][0] == "request"
        self.events[-1][-1] += chunk
        self.pieces.append(chunk)

    def on_request_complete(self, request) -> None:
        self.events.append(["complete"])


def outcome(pieces: list[bytes]) -> tuple[list, object]:
    """The events and the error (status, or None) of feeding ``pieces``."""
    sink = Events()
    parser = RequestParser(sink)
    error = None
    try:
        for piece in pieces:
            parser.feed(piece)
    except ProtocolError as exc:
        error = exc.status
        if exc.detail.startswith(("Method ", "Invalid method")):
            # Whether an unknown method is a token (501) or garbage (400) is
            # known only when its request starts a read (_invalid_method).
            error = "method"
        elif exc.detail == "HTTP/0.9 is not supported":
            # 505 when a read ends after an HTTP/0.9 line, 400 when llhttp
            # refuses what follows it in the same read (RequestParser._http09).
            error = 400
    return sink.events, error


pipelines = st.lists(requests(keep_alive=True), min_size=1, max_size=4).flatmap(
    lambda specs: st.tuples(st.just(specs), splits(b"".join(spec.encode() for spec in specs)))
)


@fuzz(200)
@given(pipelines)
def test_any_split_of_pipelined_requests_gives_the_same_events(case):
    specs, pieces = case
    whole = outcome([b"".join(pieces)])
    assert outcome(pieces) == whole
    assert outcome([bytes([byte]) for byte in b"".join(pieces)]) == whole
    events, error = whole
    assert error is None
    assert [e[1:3] + [e[-1]] for e in events if e[0] == "request"] == [
        [spec.method, spec.target, spec.body] for spec in specs
    ]
    assert [e[0] for e in events] == ["request", "complete"] * len(specs)


@st.composite
def damaged(draw) -> list[bytes]:
    """Pipelined requests with bytes inserted, deleted or replaced, then cut."""
    data = bytearray(b"".join(spec.encode() for spec in draw(st.lists(requests(), min_size=1, max_size=3))))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        junk = draw(st.sampled_from([b"\r", b"\n", b"\r\n", b" ", b"\t", b"\x00", b":", b"0", b"#", b"\xff", b";"])
                    | st.binary(min_size=1, max_size=3))
        if kind == "insert":
            data[at:at] = junk
        elif kind == "delete":
            del data[at:at + len(junk)]
        else:
            data[at:at + len(junk)] = junk
    data = bytes(data)
    return draw(splits(data))


@fuzz(300)
@given(damaged())
def test_any_split_of_damaged_input_gives_the_same_outcome(pieces):
    whole = outcome([b"".join(pieces)])
    assert outcome(pieces) == whole
    assert outcome([bytes([byte]) for byte in b"".join(pieces)]) == whole


def reserialise(event: list, pieces: list[bytes]) -> bytes:
    """A request head (and body) written back from what the parser reported."""
    _, method, target, version, headers, _, _, body = event
    head = b"%s %s HTTP/%s\r\n" % (method.encode(), target, version.encode())
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers) + b"\r\n"
    if (b"transfer-encoding", b"chunked") in headers:
        return head + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    return head + body


@fuzz(200)
@given(requests())
def test_a_parsed_request_reserialises_to_the_same_bytes(spec: Spec):
    # Names in lower case: the parser reports them so (values keep their case).
    spec.headers = [(name.lower(), value) for name, value in spec.headers]
    data = spec.encode()
    sink = Events()
    RequestParser(sink).feed(data)
    assert [e[0] for e in sink.events] == ["request", "complete"]
    event = sink.events[0]
    assert (event[3], event[5]) == (spec.version, spec.keep_alive)
    assert reserialise(event, sink.pieces) == data
