"""What corral.proto.h1 and h11 each make of the first request in some bytes,
in one comparable form:

    ("request", method, target, headers, body)   # a whole request
    ("error", status)                             # refused
    ("incomplete",)                               # needs more bytes

``headers`` are (lower-cased name, value) pairs in order.
"""

from __future__ import annotations

import h11

from corral.proto.h1 import ProtocolError, RequestParser


class FirstRequest:
    """A parser sink that keeps the first request and its body."""

    def __init__(self) -> None:
        self.request = None
        self.body: list[bytes] = []
        self.complete = False

    def on_request(self, request) -> None:
        if self.request is None:
            self.request = request

    def on_body(self, request, chunk: bytes) -> None:
        if request is self.request:
            self.body.append(chunk)

    def on_request_complete(self, request) -> None:
        if request is self.request:
            self.complete = True


def corral_view(pieces: list[bytes]) -> tuple:
    sink = FirstRequest()
    parser = RequestParser(sink)
    try:
        for piece in pieces:
            parser.feed(piece)
            if sink.complete:
                break
    except ProtocolError as exc:
        if not sink.complete:
            return ("error", exc.status)
    if not sink.complete:
        return ("incomplete",)
    request = sink.request
    return ("request", request.method, request.target, list(request.headers), b"".join(sink.body))


def h11_view(data: bytes) -> tuple:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    request = None
    body = []
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return ("incomplete",)
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
    except h11.RemoteProtocolError as exc:
        return ("error", exc.error_status_hint)
    headers = [(bytes(name), bytes(value)) for name, value in request.headers.raw_items()]
    headers = [(name.lower(), value) for name, value in headers]
    return ("request", request.method.decode("ascii"), bytes(request.target), headers, b"".join(body))
