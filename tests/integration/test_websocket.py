"""WebSocket end to end: real corral processes, the ``websockets`` client and raw sockets.

The app is ``tests/apps/ws.py``; it prints what it sees to stderr, which the
tests wait on. Raw-socket tests send exact frames and read exact frames back.
"""

from __future__ import annotations

import json
import os
import select
import signal
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from corral.proto.ws import _py_apply_mask
from h2support import ThroughGoaway
from support import Reader, Server, read_response

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.fixture(scope="module")
def server():
    with Server("ws:app") as srv:
        yield srv


def ws_url(server, path):
    return f"ws://127.0.0.1:{server.port}{path}"


# -- raw-socket helpers ------------------------------------------------------


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, masked: bool = True) -> bytes:
    b0 = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    bit = 0x80 if masked else 0
    if n < 126:
        head = bytes((b0, bit | n))
    elif n < 65536:
        head = bytes((b0, bit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, bit | 127)) + n.to_bytes(8, "big")
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + _py_apply_mask(payload, mask)  # checked against a naive XOR in tests/proto


class Raw:
    """A raw WebSocket client: handshake, exact frames in and out."""

    def __init__(self, server, path="/echo", headers=b"", timeout=10.0):
        self.sock = server.connect(timeout)
        self.buf = b""
        self.path = path
        self.request = (
            b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n" + headers + b"\r\n"
        )

    def handshake(self, extra: bytes = b"") -> bytes:
        self.sock.sendall(self.request + extra)
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, f"closed during the handshake: {self.buf!r}"
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        return head

    def open(self, extra: bytes = b"") -> None:
        head = self.handshake(extra)
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert b"sec-websocket-accept: " + ACCEPT in head

    def _fill(self, size: int) -> None:
        while len(self.buf) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; {len(self.buf)} bytes buffered")
            self.buf += chunk

    def read_frame(self) -> tuple[int, bytes]:
        """(first byte, payload) of the next server frame (which must be unmasked)."""
        self._fill(2)
        b0, b1 = self.buf[0], self.buf[1]
        assert not b1 & 0x80, "server frames must not be masked"
        length, head = b1 & 0x7F, 2
        if length == 126:
            self._fill(4)
            length, head = int.from_bytes(self.buf[2:4], "big"), 4
        elif length == 127:
            self._fill(10)
            length, head = int.from_bytes(self.buf[2:10], "big"), 10
        self._fill(head + length)
        payload = self.buf[head : head + length]
        self.buf = self.buf[head + length :]
        return b0, payload

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def expect_close(self, code: int, reason: bytes | None = None) -> bytes:
        """The next frame is a Close with ``code``; then the server closes TCP."""
        b0, payload = self.read_frame()
        assert b0 == 0x88, (hex(b0), payload)
        assert int.from_bytes(payload[:2], "big") == code, payload
        if reason is not None:
            assert payload[2:] == reason
        return payload[2:]

    def expect_eof(self, timeout: float = 10.0) -> None:
        self.sock.settimeout(timeout)
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return
            if not chunk:
                return
            self.buf += chunk

    def close(self) -> None:
        self.sock.close()


class H2Raw(Raw):
    """The same raw client over HTTP/2 (RFC 8441): h2c with prior knowledge,
    an extended CONNECT, and the frames as the stream's DATA; the stream's
    end (END_STREAM or RST_STREAM) is the EOF."""

    def __init__(self, server, path="/echo", headers=b"", timeout=10.0):
        import h2.config
        import h2.connection

        self.sock = server.connect(timeout)
        self.buf = b""
        self.path = path
        self.extra = [tuple(line.lower().split(b": ", 1)) for line in headers.split(b"\r\n") if line]
        self.ended = False
        self.status = None
        self.stream_id = None
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False, normalize_outbound_headers=False))
        self.h2.initiate_connection()
        self.feed = ThroughGoaway(self.h2)
        self._flush()

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def _pump(self) -> bool:
        import h2.events

        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.ended = True
            return False
        for event in self.feed.receive(data):  # frame by frame: through a draining server's GOAWAY
            if getattr(event, "stream_id", None) != self.stream_id:
                continue
            if isinstance(event, h2.events.ResponseReceived):
                self.status = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                self.buf += event.data
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                self.ended = True
        self._flush()
        return True

    def handshake(self, extra: bytes = b"") -> bytes:
        while self.h2.remote_settings.get(8) != 1:  # SETTINGS_ENABLE_CONNECT_PROTOCOL
            assert self._pump(), "closed before the server's SETTINGS"
        self.stream_id = self.h2.get_next_available_stream_id()
        fields = [(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"http"),
                  (b":path", self.path.encode()), (b":authority", b"x"), (b"sec-websocket-version", b"13"),
                  *self.extra]
        self.h2.send_headers(self.stream_id, fields)
        if extra:
            self.h2.send_data(self.stream_id, extra)
        self._flush()
        while self.status is None:
            assert self._pump(), "closed during the handshake"
        return b"HTTP/2 %d" % self.status

    def open(self, extra: bytes = b"") -> None:
        assert self.handshake(extra) == b"HTTP/2 200"

    def _fill(self, size: int) -> None:
        while len(self.buf) < size:
            if self.ended or not self._pump():
                raise ConnectionError(f"stream ended; {len(self.buf)} bytes buffered")

    def send(self, data: bytes) -> None:
        self.h2.send_data(self.stream_id, data)
        self._flush()

    def expect_eof(self, timeout: float = 10.0) -> None:
        self.sock.settimeout(timeout)
        while not self.ended:
            self._pump()


# The RFC 6455 wire tests below run over HTTP/1.1 (an upgrade) and over
# HTTP/2 (RFC 8441: an extended CONNECT): the same WebSocket code serves both.
TRANSPORTS = pytest.mark.parametrize("Client", [Raw, H2Raw], ids=["http1", "http2"])


# -- RFC 6455 §4: opening handshake over corral ----------------------------------


def test_handshake_response(server):
    raw = Raw(server, "/echo", b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n")
    head = raw.handshake()
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 101 Switching Protocols"
    assert b"upgrade: websocket" in lines
    assert b"connection: Upgrade" in lines
    assert b"sec-websocket-accept: " + ACCEPT in lines
    assert b"sec-websocket-extensions: permessage-deflate; server_max_window_bits=12; client_max_window_bits=12" in lines
    assert b"server: corral" in lines
    assert any(line.startswith(b"date: ") for line in lines)
    raw.close()


@pytest.mark.parametrize(
    "headers, status, extra",
    [
        (b"Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n", b"400", b"Missing Sec-WebSocket-Key"),
        (b"Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: abc\r\nSec-WebSocket-Version: 13\r\n", b"400", b"Invalid Sec-WebSocket-Key"),
        (b"Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 8\r\n", b"426", b"sec-websocket-version: 13"),
    ],
)
def test_bad_handshakes_get_an_http_error(server, headers, status, extra):
    with server.connect() as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\n" + headers + b"\r\n")
        status_line, response_headers, body = read_response(sock)
        assert status_line.split()[1] == status
        assert response_headers[b"connection"] == b"close"
        assert extra in body or extra in b"\r\n".join(k + b": " + v for k, v in response_headers.items())
        assert sock.recv(100) == b""  # closed


def test_upgrade_header_without_connection_upgrade_is_plain_http(server):
    # RFC 9110 §7.8: Upgrade is only meant when Connection lists it.
    with server.connect() as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
        status_line, _, body = read_response(sock)
        assert status_line.split()[1] == b"200" and body == b"http /echo"


def test_early_data_after_the_handshake_is_kept(server):
    raw = Raw(server)
    raw.open(extra=client_frame(0x1, b"sent with the handshake"))
    assert raw.read_frame() == (0x81, b"sent with the handshake")
    raw.send(client_frame(0x8, (1000).to_bytes(2, "big")))
    raw.expect_close(1000)
    raw.expect_eof()


def test_upgrade_pipelined_behind_a_request_is_served_as_http(server):
    with server.connect() as sock:
        sock.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n" + Raw(server).request)
        reader = Reader(sock)
        first = reader.response()
        second = reader.response()
        assert first.body == b"http /first"
        assert second.code == 200 and second.body == b"http /echo"
        assert second.headers[b"connection"] == b"close"


def test_wsgi_app_answers_upgrades_over_http(server_factory):
    srv = server_factory("ws:wsgi_app", "--interface", "wsgi")
    with srv.connect() as sock:
        sock.sendall(Raw(srv).request)
        status, headers, body = read_response(sock)
        assert status.split()[1] == b"200" and body == b"wsgi"
        assert headers[b"connection"] == b"close"


# -- the ASGI websocket scope and messages ------------------------------------------


def test_scope(server):
    with connect(ws_url(server, "/scope?x=1&y=%20") + "", additional_headers={"X-Test": "yes"}) as client:
        scope = json.loads(client.recv(timeout=10))
    sock_port = scope["client"][1]
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/scope"
    assert scope["raw_path"] == "/scope"
    assert scope["query_string"] == "x=1&y=%20"
    assert scope["root_path"] == ""
    assert scope["server"] == ["127.0.0.1", server.port]
    assert scope["client"] == ["127.0.0.1", sock_port] and sock_port > 0
    assert scope["subprotocols"] == []
    assert scope["state"] == {"started": "yes"}
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert ["x-test", "yes"] in scope["headers"]
    assert ["upgrade", "websocket"] in scope["headers"]


def test_root_path_and_percent_encoded_path(server_factory):
    srv = server_factory("ws:app", "--root-path", "/api")
    with connect(ws_url(srv, "/scope%2Fx")) as client:
        scope = json.loads(client.recv(timeout=10))
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/scope/x"  # includes root_path, as the http scope's does
    assert scope["raw_path"] == "/api/scope%2Fx"


@pytest.mark.parametrize("compression", ["deflate", None])
def test_echo_text_binary_fragmented_and_large(server, compression):
    with connect(ws_url(server, "/echo"), compression=compression, max_size=None) as client:
        extensions = client.response.headers.get("sec-websocket-extensions")
        assert (extensions is not None) == (compression == "deflate")
        client.send("hello ☃")
        assert client.recv(timeout=10) == "hello ☃"
        client.send(b"\x00\xff")
        assert client.recv(timeout=10) == b"\x00\xff"
        client.send(["frag", "men", "ted"])
        assert client.recv(timeout=10) == "fragmented"
        big = os.urandom(3_000_000)
        client.send(big)
        assert client.recv(timeout=10) == big
        client.send("")
        assert client.recv(timeout=10) == ""


def test_subprotocol_and_accept_headers(server):
    with connect(ws_url(server, "/subprotocol"), subprotocols=["one", "two"]) as client:
        assert client.subprotocol == "two"
        assert client.response.headers["x-chosen"] == "two"
        assert json.loads(client.recv(timeout=10)) == ["one", "two"]


def test_close_before_accept_is_403(server):
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(server, "/reject"))
    assert info.value.response.status_code == 403


def test_denial_response_extension(server):
    raw = Raw(server, "/deny")
    head = raw.handshake()
    raw.expect_eof()
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 401 Unauthorized"
    assert b"www-authenticate: Bearer" in lines
    assert b"transfer-encoding: chunked" in lines
    assert b"connection: close" in lines
    assert raw.buf == b"3\r\nno \r\n5\r\nentry\r\n0\r\n\r\n"


@pytest.mark.parametrize("path", ["/raise-before", "/no-answer"])
def test_app_that_does_not_answer_the_handshake_gives_500(server, path):
    mark = server.mark()
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(server, path))
    assert info.value.response.status_code == 500
    expected = "boom before accept" if path == "/raise-before" else "returned without accepting or rejecting"
    server.wait_log(expected, start=mark)


def test_invalid_accept_headers_raise_in_the_app(server):
    mark = server.mark()
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(server, "/bad-accept"))
    assert info.value.response.status_code == 403
    server.wait_log(r"bad accept refused: ASGI: invalid websocket.accept: header values must not contain CR, LF or NUL", start=mark)


def test_app_raising_after_accept_closes_with_1011(server):
    with connect(ws_url(server, "/raise-after")) as client:
        client.send("go")
        with pytest.raises(ConnectionClosed) as info:
            client.recv(timeout=10)
    assert info.value.rcvd.code == 1011


def test_app_returning_after_accept_closes_with_1000(server):
    with connect(ws_url(server, "/return")) as client:
        assert client.recv(timeout=10) == "bye"
        with pytest.raises(ConnectionClosed) as info:
            client.recv(timeout=10)
    assert info.value.rcvd.code == 1000


def test_app_close_with_code_and_reason(server):
    mark = server.mark()
    with connect(ws_url(server, "/close?code=4001&reason=see+you")) as client:
        with pytest.raises(ConnectionClosed) as info:
            client.recv(timeout=10)
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "see you")
    # The app sees the client's echo of its Close.
    server.wait_log(r"close then websocket.disconnect 4001", start=mark)


def test_client_close_code_and_reason_reach_the_app(server):
    mark = server.mark()
    with connect(ws_url(server, "/echo")) as client:
        client.send("one")
        assert client.recv(timeout=10) == "one"
        client.close(4002, "later")
    server.wait_log(r"echo disconnect 4002 'later' after 1", start=mark)


def test_send_after_disconnect_raises_an_oserror(server):
    mark = server.mark()
    with connect(ws_url(server, "/send-after-close")) as client:
        client.close(1000)
    server.wait_log(r"saw websocket.disconnect 1000", start=mark)
    server.wait_log(r"send after disconnect raised ClientDisconnected", start=mark)


# -- RFC 6455 §5-§7 over the wire ------------------------------------------------------


@TRANSPORTS
def test_ping_is_answered_with_the_same_payload(server, Client):
    raw = Client(server)
    raw.open()
    raw.send(client_frame(0x9, b"are you there"))
    assert raw.read_frame() == (0x8A, b"are you there")
    raw.send(client_frame(0x1, b"a", fin=False) + client_frame(0x9, b"mid") + client_frame(0x0, b"b"))
    assert raw.read_frame() == (0x8A, b"mid")
    assert raw.read_frame() == (0x81, b"ab")
    raw.close()


@pytest.mark.parametrize(
    "frames, code",
    [
        (client_frame(0x1, b"unmasked", masked=False), 1002),
        (client_frame(0x3, b""), 1002),
        (client_frame(0x1, b"x", rsv=0x20), 1002),
        (client_frame(0x0, b"orphan"), 1002),
        (client_frame(0x9, b"x" * 126), 1002),
        (client_frame(0x1, b"\xce\xba\xed\xa0\x80"), 1007),
        (client_frame(0x8, (1005).to_bytes(2, "big")), 1002),
    ],
)
@TRANSPORTS
def test_protocol_errors_are_answered_with_a_close_code(server, Client, frames, code):
    raw = Client(server)
    raw.open()
    raw.send(frames)
    raw.expect_close(code)
    raw.expect_eof()


@TRANSPORTS
def test_message_before_a_bad_frame_is_handled_first(server, Client):
    raw = Client(server)
    raw.open()
    raw.send(client_frame(0x1, b"first") + client_frame(0x7) + client_frame(0x9))
    assert raw.read_frame() == (0x81, b"first")
    raw.expect_close(1002)
    raw.expect_eof()


def test_message_size_limit_is_1009(server_factory):
    srv = server_factory("ws:app", "--ws-max-size", "1000")
    mark = srv.mark()
    with connect(ws_url(srv, "/echo"), compression=None) as client:
        client.send(b"x" * 1000)
        assert client.recv(timeout=10) == b"x" * 1000
        client.send(b"x" * 1001)
        with pytest.raises(ConnectionClosed) as info:
            client.recv(timeout=10)
    assert info.value.rcvd.code == 1009
    srv.wait_log(r"echo disconnect 1009 .* after 1", start=mark)


def test_compressed_message_size_limit_counts_inflated_bytes(server_factory):
    srv = server_factory("ws:app", "--ws-max-size", "100000")
    with connect(ws_url(srv, "/echo"), compression="deflate", max_size=None) as client:
        client.send(b"\x00" * 100_000)  # compresses to a few hundred bytes
        assert client.recv(timeout=10) == b"\x00" * 100_000
        client.send(b"\x00" * 100_001)
        with pytest.raises(ConnectionClosed) as info:
            client.recv(timeout=10)
    assert info.value.rcvd.code == 1009


def test_per_message_deflate_can_be_turned_off(server_factory):
    srv = server_factory("ws:app", "--no-ws-per-message-deflate")
    with connect(ws_url(srv, "/echo")) as client:
        assert "sec-websocket-extensions" not in client.response.headers
        client.send("plain")
        assert client.recv(timeout=10) == "plain"


@TRANSPORTS
def test_client_close_is_echoed_and_tcp_closed_by_the_server(server, Client):
    raw = Client(server)
    raw.open()
    raw.send(client_frame(0x8, (4321).to_bytes(2, "big") + b"bye"))
    raw.expect_close(4321)
    raw.expect_eof()


@TRANSPORTS
def test_close_without_a_code_is_echoed_without_one(server, Client):
    mark = server.mark()
    raw = Client(server)
    raw.open()
    raw.send(client_frame(0x8))
    assert raw.read_frame() == (0x88, b"")
    raw.expect_eof()
    server.wait_log(r"echo disconnect 1005 '' after 0", start=mark)


@TRANSPORTS
def test_close_handshake_times_out_when_the_client_never_answers(server, Client):
    raw = Client(server, "/close?code=1000")
    raw.open()
    raw.expect_close(1000)
    started = time.monotonic()
    raw.expect_eof(timeout=15)  # the server gives up on our Close
    waited = time.monotonic() - started
    assert 3.5 <= waited <= 10, waited  # CLOSE_TIMEOUT is 5 s, swept once a second


# -- keepalive -------------------------------------------------------------------------------


def test_keepalive_pings_and_closes_an_unresponsive_client(server_factory):
    srv = server_factory("ws:app", "--ws-ping-interval", "1", "--ws-ping-timeout", "1")
    mark = srv.mark()
    raw = Raw(srv, "/wait")
    raw.open()
    raw.sock.settimeout(10)
    assert raw.read_frame() == (0x89, b"")  # a ping after ~1 s of silence
    raw.send(client_frame(0xA))  # answered: the connection stays
    assert raw.read_frame() == (0x89, b"")  # the next ping; not answered
    raw.expect_close(1011, b"keepalive ping timeout")
    raw.expect_eof()
    srv.wait_log(r"waiting disconnect 1011 'keepalive ping timeout'", start=mark)


def test_keepalive_off(server_factory):
    srv = server_factory("ws:app", "--ws-ping-interval", "0")
    raw = Raw(srv, "/wait")
    raw.open()
    # Two ticks of the worker's clock go by without a ping.
    ready, _, _ = select.select([raw.sock], [], [], 2.5)
    assert ready == []
    raw.close()


# -- backpressure --------------------------------------------------------------------------


def _last_count(server, pattern, start):
    lines = [line for line in server.lines[start:] if pattern in line]
    return int(lines[-1].rsplit(" ", 1)[1]) if lines else 0


def test_slow_reader_makes_the_app_send_wait(server):
    count, size = 400, 65536  # 26 MB: far more than the socket buffers hold
    mark = server.mark()
    raw = Raw(server, f"/flood-out?count={count}&size={size}")
    raw.open()
    server.wait_log(r"flood_out sent \d+", start=mark)
    # Wait until the app's progress stops: its sends are waiting on us.
    last, still_since = -1, time.monotonic()
    deadline = time.monotonic() + 20
    while time.monotonic() - still_since < 1.0:
        assert time.monotonic() < deadline, "the app never stopped sending"
        current = _last_count(server, "flood_out sent", mark)
        if current != last:
            last, still_since = current, time.monotonic()
        time.sleep(0.05)
    assert 0 < last < count
    assert not any("flood_out done" in line for line in server.lines[mark:])
    # Now read everything: all of it arrives, in order and whole.
    for _ in range(count):
        b0, payload = raw.read_frame()
        assert b0 == 0x82 and len(payload) == size
    server.wait_log(r"flood_out done", start=mark)
    raw.close()


def test_flooding_client_is_paused_until_the_app_reads(server):
    count, size = 600, 65536  # 39 MB
    mark = server.mark()
    raw = Raw(server, "/hold")
    raw.open()
    server.wait_log(r"hold accepted", start=mark)
    data = b"".join(client_frame(0x2, os.urandom(size)) for _ in range(count))
    raw.sock.setblocking(False)
    sent = 0
    while sent < len(data):
        try:
            sent += raw.sock.send(data[sent : sent + (1 << 20)])
        except BlockingIOError:
            _, writable, _ = select.select([], [raw.sock], [], 1.0)
            if not writable:
                break  # the server stopped reading
    assert sent < len(data) // 2, sent
    # Release the app (over HTTP, in the same worker): it reads everything.
    with server.connect() as sock:
        sock.sendall(b"GET /release HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[2] == b"http /release"
    raw.sock.setblocking(True)
    raw.sock.settimeout(20)
    raw.send(data[sent:] + client_frame(0x1, b"done"))
    assert raw.read_frame() == (0x81, f"{count + 1} {count * size}".encode())
    raw.close()


# -- shutdown ---------------------------------------------------------------------------------


def test_graceful_shutdown_closes_websockets_with_1001(server_factory):
    srv = server_factory("ws:app")
    with connect(ws_url(srv, "/wait?linger=0.2")) as client:
        srv.wait_log(r"waiting accepted")
        srv.signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as info:
            client.recv(timeout=10)
    assert info.value.rcvd.code == 1001
    assert srv.proc.wait(15) == 0
    srv.wait_log(r"waiting disconnect 1001")
    srv.wait_log(r"waiting app finished")
    srv.wait_log(r"websockets closed \(1, 0 cut at the deadline\)")
    srv.wait_log(r"lifespan shutdown ran")


def test_reload_closes_websockets_with_1001_and_new_workers_serve(server_factory):
    srv = server_factory("ws:app")
    old = srv.worker_pids()
    with connect(ws_url(srv, "/wait")) as client:
        srv.wait_log(r"waiting accepted")
        mark = srv.mark()
        srv.signal(signal.SIGHUP)
        with pytest.raises(ConnectionClosed) as info:
            client.recv(timeout=15)
    assert info.value.rcvd.code == 1001
    srv.wait_log(r"waiting disconnect 1001", start=mark)
    srv.wait_log(r"websockets closed \(1, 0 cut at the deadline\)", start=mark)
    deadline = time.monotonic() + 10
    while not (srv.worker_pids() and not (srv.worker_pids() & old)):
        assert time.monotonic() < deadline, "the old worker is still there"
        time.sleep(0.05)
    with connect(ws_url(srv, "/echo")) as client:
        client.send("after reload")
        assert client.recv(timeout=10) == "after reload"


def test_graceful_shutdown_cuts_clients_that_do_not_answer(server_factory):
    srv = server_factory("ws:app", "--timeout-graceful", "1")
    raw = Raw(srv, "/wait")
    raw.open()
    srv.wait_log(r"waiting accepted")
    srv.signal(signal.SIGTERM)
    raw.expect_close(1001)
    raw.expect_eof()  # cut at the deadline: we never sent our Close
    assert srv.proc.wait(15) == 0
    srv.wait_log(r"waiting disconnect 1001")
    srv.wait_log(r"websockets closed \(1, 1 cut at the deadline\)")


def test_shutdown_during_the_handshake_answers_503(server_factory):
    srv = server_factory("ws:app", "--timeout-graceful", "1")
    raw = Raw(srv, "/slow-accept")
    raw.sock.sendall(raw.request)
    srv.wait_log(r"slow accept waiting")
    srv.signal(signal.SIGTERM)
    raw.expect_eof()
    assert raw.buf.startswith(b"HTTP/1.1 503 ")
    assert srv.proc.wait(15) == 0
