"""The io tier for HTTP/2: a real ``H2Connection`` on one end of a
``socket.socketpair()``, a real uvloop loop in this process, and a real
HTTP/2 client (the ``h2`` library's state machine) on the other end.

The test plays the client and the worker's clock (``later``: ``state.now``
moves on and the sweep runs), as ``conftest.Pair`` does for HTTP/1.1.
"""

from __future__ import annotations

import socket

import h2.config
import h2.connection
import h2.events

from corral.config import Config
from corral.interfaces.asgi_h2 import H2Handler
from corral.interfaces.asgi_ws import WebSocketHandler
from corral.io.h2 import H2Connection
from corral.io.health import HealthCheck
from corral.io.state import ServerState
from corral.io.ws import WebSocketUpgrade

from driver import run_until, spin
from h2support import request_headers

WAIT = 3.0


class Stream:
    def __init__(self) -> None:
        self.status = None
        self.headers: list = []
        self.body = b""
        self.ended = False
        self.reset = None  # the error code of an RST_STREAM from the server
        self.trailers: list = []

    def __repr__(self) -> str:
        return f"<Stream {self.status} ended={self.ended} reset={self.reset} body={self.body[:40]!r}>"

    def header(self, name: bytes):
        values = [v for n, v in self.headers if n == name]
        return values[0] if values else None


class H2Pair:
    def __init__(self, loop, app, *, websocket: bool = False, **config) -> None:
        """``websocket``: WebSocket support, so SETTINGS_ENABLE_CONNECT_PROTOCOL
        is advertised and extended CONNECTs are served (RFC 8441)."""
        config.setdefault("access_log", False)
        config.setdefault("http", "2")
        self.loop = loop
        self.state = state = ServerState(Config(app="x:y", **config), loop)
        cycle = H2Handler(app, state).new_cycle
        if state.config.health_path:
            cycle = HealthCheck(state.config.health_path, cycle, False)
        state.h2_handler = cycle
        if websocket:
            state.upgrade_handler = WebSocketUpgrade(state, WebSocketHandler(app, state))
        self.conns = []
        self.client = self.connect()

    def connect(self) -> "H2Client":
        server_side, sock = socket.socketpair()
        sock.setblocking(False)
        made = []

        def factory():
            conn = H2Connection(self.state)
            made.append(conn)
            return conn

        self.loop.run_until_complete(self.loop.connect_accepted_socket(factory, server_side))
        self.conns.append(made[0])
        return H2Client(self, sock, made[0])

    @property
    def conn(self) -> H2Connection:
        return self.client.conn

    def run_until(self, condition, timeout: float = WAIT, what: str = "condition") -> None:
        run_until(self.loop, condition, self.client.read, timeout, what, lambda: f"streams {self.client.streams!r}")

    def spin(self, passes: int = 20) -> None:
        spin(self.loop, passes)
        self.client.read()

    def later(self, seconds: float) -> None:
        """The worker's clock ``seconds`` later, and one sweep."""
        self.state.now += seconds
        self.state.sweep()
        self.spin(5)

    def finished(self, stream_id: int) -> Stream:
        streams = self.client.streams
        self.run_until(lambda: stream_id in streams and (streams[stream_id].ended or streams[stream_id].reset is not None),
                       what=f"stream {stream_id} to end")
        return streams[stream_id]

    def close(self) -> None:
        for conn in list(self.state.connections):
            conn.abort()
        self.client.eof = True
        self.client.sock.close()
        self.spin(5)
        self.state.stepper.close()


class H2Client:
    def __init__(self, pair: H2Pair, sock: socket.socket, conn) -> None:
        self.pair = pair
        self.sock = sock
        self.conn = conn
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_inbound_headers=False, validate_outbound_headers=False,
            normalize_outbound_headers=False))
        self.h2.initiate_connection()
        self.streams: dict[int, Stream] = {}
        self.events: list = []
        self.eof = False
        self.flush()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            try:
                self.sock.sendall(data)
            except OSError:
                pass

    def request(self, path="/", method="GET", body: bytes | None = None, extra=(), end=True, headers=None) -> int:
        stream_id = self.h2.get_next_available_stream_id()
        fields = headers if headers is not None else request_headers(path, method, extra=extra)
        self.h2.send_headers(stream_id, fields, end_stream=end and not body)
        if body:
            self.h2.send_data(stream_id, body, end_stream=end)
        self.flush()
        return stream_id

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> None:
        while not self.eof:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            except ConnectionResetError:
                self.eof = "reset"
                return
            if not data:
                self.eof = True
                return
            try:
                events = self.h2.receive_data(data)
            except Exception as exc:  # the server broke the protocol: the test says so
                self.events.append(exc)
                self.eof = "protocol error"
                return
            for event in events:
                self.events.append(event)
                stream_id = getattr(event, "stream_id", None)
                if stream_id is None:
                    continue
                stream = self.streams.setdefault(stream_id, Stream())
                if isinstance(event, h2.events.ResponseReceived):
                    stream.headers = list(event.headers)
                    stream.status = int(stream.header(b":status"))
                elif isinstance(event, h2.events.DataReceived):
                    stream.body += event.data
                    self.h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
                elif isinstance(event, h2.events.TrailersReceived):
                    stream.trailers = list(event.headers)
                elif isinstance(event, h2.events.StreamEnded):
                    stream.ended = True
                elif isinstance(event, h2.events.StreamReset):
                    stream.reset = event.error_code
            self.flush()
