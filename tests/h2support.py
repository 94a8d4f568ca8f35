"""A raw HTTP/2 client for tests: the ``h2`` library for the state it can
keep, ``hyperframe`` for frames it would refuse to send."""

from __future__ import annotations

import socket
from collections import namedtuple
import ssl
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import Frame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GoAway = namedtuple("GoAway", "last_stream_id error_code")
Reset = namedtuple("Reset", "stream_id error_code")


def request_headers(path: str = "/", method: str = "GET", authority: str = "localhost", scheme: str = "http", extra=()):
    return [(b":method", method.encode()), (b":path", path.encode()), (b":scheme", scheme.encode()),
            (b":authority", authority.encode()), *extra]


class H2Client:
    def __init__(self, port: int, *, context: ssl.SSLContext | None = None, settings=None, timeout: float = 10.0,
                 preface: bool = True, before: bytes = b"") -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if before:  # a PROXY protocol header, in front of TLS and the preface
            sock.sendall(before)
        if context is not None:
            sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
        self.sock = sock
        config = h2.config.H2Configuration(client_side=True, header_encoding=None, validate_outbound_headers=False,
                                           normalize_outbound_headers=False, validate_inbound_headers=False)
        self.conn = h2.connection.H2Connection(config)
        self.events: list = []
        self.closed = False
        self.raw = b""
        self.hold = False  # True: do not acknowledge received DATA (keep the window closed)
        if preface:
            if settings:
                self.conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)
            self.conn.initiate_connection()
            self.flush()

    # -- sending -------------------------------------------------------------------

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except OSError:  # the server closed: reading will tell
                pass

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, frame: Frame) -> None:
        self.sock.sendall(frame.serialize())

    def request(self, path: str = "/", method: str = "GET", body: bytes | None = None, extra=(), end: bool = True) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, request_headers(path, method, extra=extra), end_stream=end and not body)
        if body:
            self.conn.send_data(stream_id, body, end_stream=end)
        self.flush()
        return stream_id

    # -- receiving -------------------------------------------------------------------

    def read(self, timeout: float = 5.0) -> bool:
        """Read once; False when the server closed (or reset) the connection."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return False
        self.raw += data
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.events.append(exc)
            return True
        self.events.extend(events)
        if not self.hold:
            for event in events:
                if isinstance(event, h2.events.DataReceived) and event.flow_controlled_length:
                    try:
                        self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    except h2.exceptions.ProtocolError:
                        pass
        self.flush()
        return True

    def wait(self, predicate, timeout: float = 10.0):
        """Read until ``predicate(self.events)`` is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            found = predicate(self.events)
            if found:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; events: {self.events[-20:]}")
            try:
                if not self.read(min(left, 1.0)):
                    found = predicate(self.events)
                    if found:
                        return found
                    raise AssertionError(f"connection closed; events: {self.events[-20:]}")
            except socket.timeout:
                continue

    def wait_closed(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.closed:
            if time.monotonic() > deadline:
                raise AssertionError(f"still open; events: {self.events[-20:]}")
            try:
                self.read(1.0)
            except socket.timeout:
                continue

    def response(self, stream_id: int, timeout: float = 10.0):
        """(headers dict, body, trailers dict) of a stream, once it ended."""
        self.wait(lambda events: any(isinstance(e, h2.events.StreamEnded) and e.stream_id == stream_id for e in events)
                  or any(isinstance(e, h2.events.StreamReset) and e.stream_id == stream_id for e in events), timeout)
        headers, body, trailers = {}, b"", {}
        for event in self.events:
            if getattr(event, "stream_id", None) != stream_id:
                continue
            if isinstance(event, h2.events.ResponseReceived):
                headers = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
            elif isinstance(event, h2.events.TrailersReceived):
                trailers = dict(event.headers)
            elif isinstance(event, h2.events.StreamReset):
                raise AssertionError(f"stream {stream_id} reset with {event.error_code!r}")
        self.flush()
        return headers, body, trailers

    def frames(self) -> list:
        """Every frame the server sent, parsed from the raw bytes (independent
        of the client library's state): (type, flags, stream_id, payload)."""
        out = []
        data = self.raw
        offset = 0
        while offset + 9 <= len(data):
            length = int.from_bytes(data[offset:offset + 3], "big")
            if offset + 9 + length > len(data):
                break
            kind, flags = data[offset + 3], data[offset + 4]
            stream_id = int.from_bytes(data[offset + 5:offset + 9], "big") & 0x7FFFFFFF
            out.append((kind, flags, stream_id, data[offset + 9:offset + 9 + length]))
            offset += 9 + length
        return out

    def goaways(self) -> list:
        """GOAWAY frames as (last_stream_id, error_code)."""
        return [GoAway(int.from_bytes(p[:4], "big") & 0x7FFFFFFF, int.from_bytes(p[4:8], "big"))
                for kind, _, _, p in self.frames() if kind == 0x7]

    def resets(self, stream_id: int | None = None) -> list:
        """RST_STREAM frames as (stream_id, error_code)."""
        return [Reset(sid, int.from_bytes(p[:4], "big")) for kind, _, sid, p in self.frames()
                if kind == 0x3 and (stream_id is None or sid == stream_id)]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def terminated_or_closed(client: H2Client, timeout: float = 10.0):
    """Wait for a GOAWAY or the close; the GOAWAY event or None."""
    try:
        client.wait(lambda events: client.goaways(), timeout)
        client.wait_closed(timeout)
    except AssertionError:
        if not client.closed:
            raise
    goaways = client.goaways()
    return goaways[-1] if goaways else None


class ThroughGoaway:
    """Feeds an ``h2`` client connection one frame at a time, so that a
    GOAWAY, which the library takes as the end of everything, still lets the
    streams below its last stream id finish (RFC 9113 6.8: what a draining
    server's first GOAWAY promises, and what the tests check)."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.pending = b""

    def receive(self, data: bytes) -> list:
        from h2.connection import ConnectionState

        self.pending += data
        events = []
        while len(self.pending) >= 9:
            end = 9 + int.from_bytes(self.pending[:3], "big")
            if len(self.pending) < end:
                break
            frame, self.pending = self.pending[:end], self.pending[end:]
            events += self.conn.receive_data(frame)
            if frame[3] == 0x7:  # GOAWAY
                self.conn.state_machine.state = ConnectionState.CLIENT_OPEN
        return events
