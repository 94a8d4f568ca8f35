"""WebSocket connections: HTTP/1.1 upgrade -> frames -> the ASGI session.

How a connection gets here: ``H1Connection`` parses a GET with
``Upgrade: websocket`` and calls ``ServerState.upgrade``, which calls
``WebSocketUpgrade`` (``state.upgrade_handler``). It validates the handshake
(a bad one is answered over HTTP, 400 or 426, and closed), then moves the
transport to a new ``WSConnection`` (``transport.set_protocol``): the
H1Connection leaves ``state.connections``, the WSConnection joins
``state.upgraded``. The ASGI session (``interfaces/asgi_ws.py``) starts at
once; until the app accepts, the socket still speaks HTTP (101, 403, the
app's denial response or 500), and bytes the client sends early are kept.

Once accepted, ``proto.ws.Parser`` turns bytes into messages for the session
and protocol errors into a Close frame (1002/1007/1009). Pings are answered
here, the peer's Close is echoed here; the app sees ``websocket.disconnect``.

Phases: HANDSHAKE -> OPEN -> CLOSING (our Close sent, or an HTTP answer
being flushed) -> CLOSED (transport gone). The server closes TCP first:
after a complete close handshake at once, after failing the connection by
half-closing and reading until the peer goes.

Writes: frames are queued per connection and written in one
``transport.write`` at the end of the event-loop pass (or at
``FLUSH_SIZE``): an app that sends many messages without waiting (a
broadcast) costs one syscall per connection, not one per message. Close
frames flush at once.

Flow control: the app's ``send`` waits while the transport is paused for
writing; reading pauses while the session holds more unread messages than
its high-water mark (``asgi_ws.RECV_HIGH_*``).

No timers: the worker's tick calls ``ServerState.sweep_upgraded`` (set to
``WebSocketUpgrade.sweep``), which pings connections silent for
``--ws-ping-interval``, closes those whose ping goes unanswered for
``--ws-ping-timeout`` (1011), and aborts those whose close handshake or
lingering close has passed its deadline.

Shutdown: ``going_away()`` sends 1001 and waits for the peer's Close and the
app to finish (the worker bounds the wait); ``abort()`` cuts the rest.
"""

from __future__ import annotations

import asyncio
import logging

from ..proto.h1 import error_response
from ..proto.ws import (
    OP_PONG,
    HandshakeError,
    Parser,
    ProtocolError,
    accept_fields,
    accept_response,
    check_request,
    encode_close,
    encode_frame,
    encode_message,
)
from .h2 import H2Tunnel
from .transport import half_close, peer_name

log = logging.getLogger("corral.error")

# Longest wait for the peer's Close after ours, or for the peer to go after
# an HTTP answer / a failed connection.
CLOSE_TIMEOUT = 5.0
# Bytes a client may send before the app accepts; reading pauses beyond.
EARLY_LIMIT = 64 * 1024
# Frames written in one pass of the event loop are coalesced into one
# transport write (one syscall) at the end of the pass, or at this size.
FLUSH_SIZE = 64 * 1024

HANDSHAKE, OPEN, CLOSING, CLOSED = range(4)


class WebSocketUpgrade:
    """``state.upgrade_handler``: takes over connections that ask for a WebSocket."""

    def __init__(self, state, handler) -> None:
        self.state = state
        self.handler = handler  # builds the ASGI session (interfaces/asgi_ws.py)
        self.dirty: list = []  # connections with frames not yet written
        state.sweep_upgraded = self.sweep

    def schedule_flush(self, ws) -> None:
        dirty = self.dirty
        if not dirty:
            self.state.loop.call_soon(self.flush_all)
        dirty.append(ws)

    def flush_all(self) -> None:
        dirty, self.dirty = self.dirty, []
        for ws in dirty:
            try:
                ws.flush()
            except Exception:
                # One broken connection must not leave the others unflushed.
                log.exception("%s: WebSocket write failed; closing", peer_name(ws.client))
                ws.abort()

    def __call__(self, conn, rest: bytes) -> None:
        state = self.state
        queue = conn.queue
        if conn.cycle is not None or len(queue) != 1:
            # Requests pipelined ahead of the upgrade: answer everything over
            # HTTP/1.1 and close, as a server without WebSocket support would.
            log.info("%s: WebSocket upgrade pipelined behind other requests; served as HTTP", peer_name(conn.client))
            queue[-1].keep_alive = False
            conn.run_queue()
            return
        request = queue.pop()
        transport = conn.transport
        if state.draining:
            self._refuse(conn, 503, "Server shutting down")
            return
        try:
            if request.http_version != "1.1":
                raise HandshakeError(400, "WebSocket upgrade needs HTTP/1.1")
            handshake = check_request(request.headers, deflate=state.config.ws_per_message_deflate)
        except HandshakeError as exc:
            self._refuse(conn, exc.status, exc.detail, exc.headers)
            return
        ws = WSConnection(state, self, transport, conn, request, handshake, rest)
        conn.upgrade = ws
        conn.closing = True  # the H1Connection is done with this transport
        transport.set_protocol(ws)
        state.upgraded.add(ws)
        conn.close_reason = "upgraded"
        state.connection_closed(conn)  # leaves state.connections
        state.counters["websockets"] += 1
        ws.cycle = cycle = self.handler(ws, request, handshake)
        cycle.start()

    def over_h2(self, conn, stream) -> None:
        """RFC 8441: an HTTP/2 stream opened by ``CONNECT`` with ``:protocol
        websocket`` (``io/h2.py``) carries the WebSocket: the same
        ``WSConnection`` and ASGI session, on an ``H2Tunnel`` for a transport.
        The handshake has no key and is answered ``200``."""
        state = self.state
        tunnel = H2Tunnel(conn, stream)
        if state.draining:
            log.info("%s: 503 Server shutting down (WebSocket over HTTP/2)", peer_name(conn.client))
            tunnel.refuse(503, "Server shutting down")
            return
        try:
            handshake = check_request(stream.headers, deflate=state.config.ws_per_message_deflate, extended_connect=True)
        except HandshakeError as exc:
            log.info("%s: %d %s (WebSocket over HTTP/2)", peer_name(conn.client), exc.status, exc.detail)
            state.counters["bad_requests"] += 1
            tunnel.refuse(exc.status, exc.detail)
            return
        ws = WSConnection(state, self, tunnel, conn, stream, handshake, b"")
        ws.tunnel = tunnel
        tunnel.protocol = ws
        state.upgraded.add(ws)
        if state.gate is not None:  # one more open WebSocket for --limit-connections
            state.gate.opened(len(state.connections) + len(state.upgraded) + len(state.handshakes))
        state.counters["websockets"] += 1
        ws.cycle = cycle = self.handler(ws, stream, handshake)
        cycle.start()

    def _refuse(self, conn, status: int, detail: str, headers: bytes = b"") -> None:
        state = self.state
        log.info("%s: %d %s", peer_name(conn.client), status, detail)
        state.counters["bad_requests"] += 1
        conn.close_reason = "bad_request"
        conn.transport.write(error_response(status, detail, state.extra_headers + headers))
        conn.close()

    def sweep(self) -> None:
        """Keepalive pings and close deadlines, once a second from the tick."""
        state = self.state
        if not state.upgraded:
            return
        now = state.now
        config = state.config
        interval = config.ws_ping_interval
        timeout = config.ws_ping_timeout
        for ws in list(state.upgraded):
            phase = ws.phase
            if phase == OPEN:
                if ws.pending_error is not None:
                    if now >= ws.deadline:
                        ws.fail_pending()
                elif ws.ping_sent:
                    if timeout and now - ws.ping_sent >= timeout and not ws.reading_paused:
                        ws.keepalive_expired()
                elif interval and now - ws.last_seen >= interval:
                    ws.ping(now)
            elif phase == CLOSING:
                if now >= ws.deadline:
                    ws.abort()


class WSConnection(asyncio.Protocol):
    __slots__ = (
        "state",
        "upgrader",
        "loop",
        "transport",
        "out",
        "out_size",
        "client",
        "server",
        "scheme",
        "proxy",
        "tls",
        "handshake",
        "parser",
        "compressor",
        "cycle",
        "phase",
        "early",
        "reading_paused",
        "write_paused",
        "drain_waiter",
        "last_seen",
        "ping_sent",
        "deadline",
        "close_sent",
        "pending_error",
        "lost_waiter",
        "pong_owed",
        "ping_paused",
        "tunnel",
    )

    def __init__(self, state, upgrader, transport, conn, request, handshake, rest: bytes) -> None:
        self.state = state
        self.upgrader = upgrader
        self.loop = state.loop
        self.transport = transport
        self.out: list[bytes] | None = None  # frames not yet written (see flush)
        self.out_size = 0
        identity = request.forwarded  # proto.forwarded.Identity from a trusted proxy
        self.client = identity.client if identity else conn.client
        self.server = conn.server
        self.proxy = conn.proxy  # proto.proxy.ProxyInfo or None
        self.scheme = "wss" if (identity.scheme if identity else conn.scheme) == "https" else "ws"
        self.tls = conn.tls  # the ASGI tls extension of our own TLS, or None
        self.handshake = handshake  # until accepted
        self.parser: Parser | None = None
        self.compressor = None
        self.cycle = None  # the ASGI session, set by WebSocketUpgrade
        self.phase = HANDSHAKE
        self.early: list[bytes] | None = [rest] if rest else None
        self.reading_paused = False
        self.write_paused = False
        self.drain_waiter: asyncio.Future | None = None
        self.last_seen = state.now
        self.ping_sent = 0.0
        self.deadline = 0.0
        self.close_sent: int | None = None  # the code of the Close we sent
        self.pending_error: ProtocolError | None = None  # fails once the app read what came before
        self.lost_waiter: asyncio.Future | None = None
        self.pong_owed: bytes | None = None  # the latest ping's payload, while writing is paused
        self.ping_paused = False  # reading paused by a ping we could not answer
        self.tunnel = None  # io/h2.py H2Tunnel when the WebSocket runs over an HTTP/2 stream (RFC 8441)

    def __repr__(self) -> str:
        return f"<WSConnection {peer_name(self.client)} phase={self.phase}>"

    # -- asyncio.Protocol ----------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.last_seen = self.state.now
        self.ping_sent = 0.0  # the peer is alive
        parser = self.parser
        if parser is not None:
            try:
                parser.feed(data)
            except ProtocolError as exc:
                if self.cycle.queue:
                    # Let the app see the messages that came before the bad
                    # frame (and answer them) first; the session calls
                    # fail_pending() when its queue is empty.
                    self.pending_error = exc
                    self.deadline = self.state.now + CLOSE_TIMEOUT
                    self.pause_reading()
                else:
                    self.fail(exc.code, exc.reason)
        elif self.phase == HANDSHAKE:
            early = self.early
            if early is None:
                early = self.early = []
            early.append(data)
            if sum(map(len, early)) > EARLY_LIMIT:
                self.pause_reading()

    def eof_received(self):
        if self.phase != CLOSED:
            self._disconnected(1006, "")
        return False  # close our side too

    def connection_lost(self, exc) -> None:
        self.phase = CLOSED
        self.parser = None
        state = self.state
        state.upgraded.discard(self)
        if state.gate is not None:
            state.gate.closed(len(state.connections) + len(state.upgraded))
        self._disconnected(self.close_sent or 1006, "")
        self._wake_writer()
        waiter = self.lost_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        owed = self.pong_owed
        if owed is not None:
            self.pong_owed = None
            if self.phase == OPEN:
                self.write(encode_frame(OP_PONG, owed))
        if self.ping_paused:
            self.ping_paused = False
            self.resume_reading()
        self._wake_writer()

    # -- parser sink ---------------------------------------------------------

    def on_message(self, data) -> None:
        if self.phase == OPEN:
            metrics = self.state.metrics
            if metrics is not None:
                metrics.ws_messages_in += 1
            self.cycle.message(data)
        # CLOSING: our Close is sent; data until the peer's Close is dropped.

    def on_ping(self, payload: bytes) -> None:
        if self.phase != OPEN:
            return
        if self.write_paused:
            # The client is not reading what we send. Pongs wait, and only the
            # latest is owed (RFC 6455 section 5.5.3); stop reading until the
            # client catches up, so it is slowed instead of filling our memory.
            self.pong_owed = payload
            if not self.reading_paused:
                self.ping_paused = True
                self.pause_reading()
        else:
            self.write(encode_frame(OP_PONG, payload))

    def on_pong(self, payload: bytes) -> None:
        pass  # any input counts as liveness (data_received)

    def on_close(self, code: int, reason: str) -> None:
        if self.phase == OPEN:
            # The peer starts the close handshake: echo its Close, then close.
            self.close_sent = code if code != 1005 else None
            self.write(encode_close(self.close_sent, reason))
        self.flush()
        self.phase = CLOSING
        self.deadline = self.state.now + CLOSE_TIMEOUT
        self.transport.close()
        self._disconnected(code, reason)

    # -- called by the ASGI session -----------------------------------------

    def accept(self, subprotocol, headers) -> None:
        """Send the 101 (raises ValueError for a bad subprotocol or header)."""
        handshake = self.handshake
        if self.tunnel is not None:  # HTTP/2: 200 on the stream (RFC 8441 5)
            self.tunnel.respond(200, accept_fields(handshake, subprotocol, headers))
        else:
            self.transport.write(accept_response(handshake, subprotocol, headers, self.state.extra_headers))
        self.phase = OPEN
        self.handshake = None
        deflate = handshake.deflate
        if deflate is not None:
            self.compressor = deflate.compressor()
        self.parser = Parser(self, max_size=self.state.config.ws_max_size, deflate=deflate)
        early = self.early
        if early is not None:
            self.early = None
            if self.reading_paused:
                self.resume_reading()
            self.data_received(b"".join(early))

    def send_message(self, data) -> None:
        metrics = self.state.metrics
        if metrics is not None:
            metrics.ws_messages_out += 1
        self.write(encode_message(data, self.compressor))

    def write(self, frame: bytes) -> None:
        """Queue a frame; written with the others at the end of this loop pass."""
        out = self.out
        if out is None:
            self.out = [frame]
            self.out_size = len(frame)
            self.upgrader.schedule_flush(self)
        else:
            out.append(frame)
            self.out_size += len(frame)
        if self.out_size >= FLUSH_SIZE:
            self.flush()

    def flush(self) -> None:
        out = self.out
        if out is not None:
            self.out = None
            if self.phase != CLOSED and not self.transport.is_closing():
                self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake (app close, shutdown)."""
        if self.phase != OPEN:
            return
        self.close_sent = code
        self.write(encode_close(code, reason))
        self.flush()
        self.phase = CLOSING
        self.deadline = self.state.now + CLOSE_TIMEOUT

    def fail(self, code: int, reason: str) -> None:
        """Protocol error: send our Close, half-close, drain until the peer goes."""
        log.info("%s: WebSocket closed with %d: %s", peer_name(self.client), code, reason)
        if self.phase == OPEN:
            self.close_sent = code
            self.write(encode_close(code, reason))
        self.flush()
        self.phase = CLOSING
        self.deadline = self.state.now + CLOSE_TIMEOUT
        self._write_eof()
        self._disconnected(code, reason)

    def fail_pending(self) -> None:
        exc = self.pending_error
        if exc is not None:
            self.pending_error = None
            self.fail(exc.code, exc.reason)

    def refuse(self, status: int, detail: str = "") -> None:
        """Answer the handshake with a short error (403, 500, 503) and close."""
        if self.tunnel is None:
            self.http_response(error_response(status, detail, self.state.extra_headers), True)
        elif self.phase == HANDSHAKE:
            self.tunnel.refuse(status, detail)
            self.phase = CLOSING
            self.handshake = None
            self.early = None
            self.deadline = self.state.now + CLOSE_TIMEOUT

    def http_response(self, data: bytes, done: bool) -> None:
        """Write (part of) an HTTP answer to the handshake; ``done`` closes."""
        if self.phase != HANDSHAKE:
            return
        if self.tunnel is not None:  # the scope does not offer websocket.http.response over HTTP/2
            raise RuntimeError("ASGI: the WebSocket denial response is not offered over HTTP/2")
        self.transport.write(data)
        if done:
            self.phase = CLOSING
            self.handshake = None
            self.early = None
            self.deadline = self.state.now + CLOSE_TIMEOUT
            if self.reading_paused:
                self.resume_reading()
            self._write_eof()

    def keepalive_expired(self) -> None:
        log.info("%s: WebSocket ping unanswered for %.0fs; closing", peer_name(self.client), self.state.now - self.ping_sent)
        self.state.counters["timeouts"] += 1
        self.close_sent = 1011
        self.write(encode_close(1011, "keepalive ping timeout"))
        self.flush()
        self.phase = CLOSING
        self.deadline = self.state.now + CLOSE_TIMEOUT
        self._disconnected(1011, "keepalive ping timeout")
        # No close handshake with a peer that does not answer: close now. If
        # the Close frame is still queued behind unread data, cut instead.
        if self.transport.get_write_buffer_size():
            self.transport.abort()
        else:
            self.transport.close()

    def ping(self, now: float) -> None:
        self.ping_sent = now or 1e-9
        self.write(b"\x89\x00")

    def pause_reading(self) -> None:
        if not self.reading_paused and self.phase != CLOSED and not self.transport.is_closing():
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused:
            self.reading_paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark."""
        waiter = self.drain_waiter
        if waiter is None:
            waiter = self.drain_waiter = self.loop.create_future()
        await waiter

    def _wake_writer(self) -> None:
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- shutdown ------------------------------------------------------------

    async def going_away(self) -> None:
        """Close with 1001 Going Away and wait for the peer's Close and the
        app to finish; the caller bounds the wait."""
        phase = self.phase
        if phase == HANDSHAKE:
            self.refuse(503, "Server shutting down")
            self._disconnected(1001, "")
        elif phase == OPEN:
            self.close(1001, "server shutting down")
            self._disconnected(1001, "server shutting down")
        if self.phase != CLOSED:
            waiter = self.lost_waiter
            if waiter is None:
                waiter = self.lost_waiter = self.loop.create_future()
            await waiter
        cycle = self.cycle
        if cycle is not None:
            await cycle.wait_finished()

    def abort(self) -> None:
        if self.phase != CLOSED:
            self.transport.abort()

    # -- helpers ------------------------------------------------------------

    def _disconnected(self, code: int, reason: str) -> None:
        cycle = self.cycle
        if cycle is not None:
            cycle.disconnected(code, reason)

    def _write_eof(self) -> None:
        transport = self.transport
        if self.reading_paused:
            self.resume_reading()
        half_close(transport)
