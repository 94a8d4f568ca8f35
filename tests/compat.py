"""Helpers of the framework compatibility suite (tests/integration/test_compat_*.py).

Each module starts one corral (module-scoped) with the framework's app from
tests/apps/compat_*.py under the defaults, talks to it over HTTP/1.1 and
over HTTP/2 in cleartext (h2c, prior knowledge, as httpx does it), and
compares what corral answered with what the framework's own test client
answers for the same request: the framework is the oracle.
"""

from __future__ import annotations

import importlib
import os
import re
import sys

import httpx
import pytest

from support import APPS

PROTOCOLS = ("http/1.1", "h2c")

# The response headers compared with the oracle's. Those a server sets
# (date, server, connection, transfer-encoding) are not the app's answer;
# content-length is compared where the oracle has one and corral has one
# (HTTP/2 may omit it for a streamed body, as HTTP/1.1 chunks it).
COMPARED = ("content-type", "location", "set-cookie", "cache-control", "allow", "www-authenticate", "etag",
            "content-disposition", "vary")


def client(server, protocol: str, **kwargs) -> httpx.Client:
    """An httpx client of ``server`` speaking ``protocol`` only."""
    if protocol == "h2c":
        return httpx.Client(base_url=server.url, http1=False, http2=True, **kwargs)
    return httpx.Client(base_url=server.url, **kwargs)


def check_version(response: httpx.Response, protocol: str) -> None:
    assert response.http_version == ("HTTP/2" if protocol == "h2c" else "HTTP/1.1")


def same_answer(ours: httpx.Response, oracle, protocol: str, *, headers=(), body: bool = True) -> None:
    """corral's response ``ours`` says what the framework's test client
    answered (``oracle``, an httpx.Response or compatible): the status, the
    body, the app's headers (``COMPARED`` plus ``headers``), content-length
    where both have one."""
    check_version(ours, protocol)
    assert ours.status_code == oracle.status_code, (ours.text[:300], oracle.text[:300])
    if body:
        assert ours.content == oracle.content
    for name in (*COMPARED, *headers):
        if name == "allow":  # Starlette builds it from a set: its order is the process's hash seed's
            assert sorted(ours.headers.get("allow", "").split(", ")) == sorted(oracle.headers.get("allow", "").split(", "))
            continue
        assert ours.headers.get_list(name) == oracle.headers.get_list(name), name
    if "content-length" in ours.headers and "content-length" in oracle.headers:
        assert ours.headers["content-length"] == oracle.headers["content-length"]


def no_errors(server, start: int) -> None:
    """No ERROR line and no traceback in the server's log since ``start``."""
    bad = [line for line in server.lines[start:] if "[ERROR]" in line or line.startswith("Traceback")
           or "Exception in ASGI application" in line or re.match(r"^\s+\| ", line)]
    assert not bad, "\n".join(server.lines[start:])


class WebSocketClosed(Exception):
    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code, self.reason = code, reason


class WebSocketRefused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class H2WebSocket:
    """A WebSocket over HTTP/2 in cleartext (RFC 8441: h2c with prior
    knowledge, an extended CONNECT, the frames as the stream's DATA), with
    the calls of websockets' sync client the suite uses: ``send``, ``recv``,
    ``close``, a context manager. The frames are small: one per message."""

    def __init__(self, server, path: str, headers=(), timeout: float = 10.0) -> None:
        import h2.config
        import h2.connection

        self.sock = server.connect(timeout)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.h2.initiate_connection()
        self._flush()
        self.buf = b""
        self.ended = False
        self.status = None
        while self.h2.remote_settings.get(8) != 1:  # SETTINGS_ENABLE_CONNECT_PROTOCOL
            assert self._pump(), "closed before the server's SETTINGS"
        self.stream_id = self.h2.get_next_available_stream_id()
        authority = f"127.0.0.1:{server.port}".encode()
        self.h2.send_headers(self.stream_id, [
            (b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"http"), (b":path", path.encode()),
            (b":authority", authority), (b"sec-websocket-version", b"13"),
            *[(name.lower().encode(), value.encode()) for name, value in headers]])
        self._flush()
        while self.status is None:
            assert self._pump(), "closed during the handshake"
        if self.status != 200:
            self.sock.close()
            raise WebSocketRefused(self.status)

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def _pump(self) -> bool:
        import h2.events

        data = self.sock.recv(65536)
        if not data:
            self.ended = True
            return False
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == self.stream_id:
                self.status = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                self.buf += event.data
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                self.ended = True
        self._flush()
        return True

    def _fill(self, size: int) -> None:
        while len(self.buf) < size:
            if self.ended or not self._pump():
                raise WebSocketClosed(None, "the stream ended")

    def send(self, message) -> None:
        data, opcode = (message.encode(), 0x1) if isinstance(message, str) else (bytes(message), 0x2)
        self._send_frame(opcode, data)

    def _send_frame(self, opcode: int, data: bytes) -> None:
        mask = os.urandom(4)
        size = len(data)
        head = bytes((0x80 | opcode,)) + (bytes((0x80 | size,)) if size < 126 else
                                         bytes((0x80 | 126,)) + size.to_bytes(2, "big") if size < 65536 else
                                         bytes((0x80 | 127,)) + size.to_bytes(8, "big"))
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(data))
        self.h2.send_data(self.stream_id, head + mask + masked)
        self._flush()

    def recv(self, timeout: float = 10.0):
        self.sock.settimeout(timeout)
        while True:
            self._fill(2)
            b0, b1 = self.buf[0], self.buf[1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                self._fill(4)
                length, head = int.from_bytes(self.buf[2:4], "big"), 4
            elif length == 127:
                self._fill(10)
                length, head = int.from_bytes(self.buf[2:10], "big"), 10
            self._fill(head + length)
            payload, self.buf = self.buf[head:head + length], self.buf[head + length:]
            opcode = b0 & 0x0F
            if opcode == 0x1:
                return payload.decode()
            if opcode == 0x2:
                return payload
            if opcode == 0x8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                raise WebSocketClosed(code, payload[2:].decode())
            if opcode == 0x9:  # ping
                self._send_frame(0xA, payload)

    def close(self, code: int = 1000) -> None:
        if not self.ended:
            try:
                self._send_frame(0x8, code.to_bytes(2, "big"))
                self.h2.end_stream(self.stream_id)
                self._flush()
            except Exception:  # noqa: BLE001 - the server may have ended the stream already
                pass
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class H1WebSocket:
    """websockets' sync client with the same errors as ``H2WebSocket``."""

    def __init__(self, server, path: str, headers=(), timeout: float = 10.0) -> None:
        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import connect

        headers = dict(headers)
        origin = headers.pop("origin", None)
        try:
            self.opened = connect(f"ws://127.0.0.1:{server.port}{path}", origin=origin, additional_headers=headers,
                                  open_timeout=timeout)
            self.ws = self.opened.__enter__()  # newer websockets: connect() is used as a context manager
        except InvalidStatus as exc:
            raise WebSocketRefused(exc.response.status_code) from None

    def send(self, message) -> None:
        self.ws.send(message)

    def recv(self, timeout: float = 10.0):
        from websockets.exceptions import ConnectionClosed

        try:
            return self.ws.recv(timeout=timeout)
        except ConnectionClosed as exc:
            raise WebSocketClosed(exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else "") from None

    def close(self, code: int = 1000) -> None:
        self.ws.close(code)
        self.opened.__exit__(None, None, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def websocket(server, transport: str, path: str, headers=()):
    """A WebSocket to ``server``: over an HTTP/1.1 upgrade ("ws") or an
    HTTP/2 stream in cleartext ("ws-h2c", RFC 8441)."""
    return (H2WebSocket if transport == "ws-h2c" else H1WebSocket)(server, path, headers)


WS_TRANSPORTS = ("ws", "ws-h2c")
ws_transport = pytest.mark.parametrize("transport", WS_TRANSPORTS)


def import_app(module: str):
    """Import tests/apps/``module`` in the test process (for the oracle)."""
    sys.path.insert(0, str(APPS))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(APPS))


protocol = pytest.mark.parametrize("protocol", PROTOCOLS)

# Starlette >= 1.x asks for httpx2 under its TestClient; the oracle works with httpx.
QUIET_TESTCLIENT = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")
