"""ASGI 3 (spec 2.4) ``websocket`` scope: one ``WebSocketCycle`` per connection.

``WebSocketUpgrade`` (``io/ws.py``) calls ``WebSocketHandler`` with the
upgraded connection, the request and the validated handshake; it builds the
scope and a cycle; ``start()`` runs the app on the worker's Stepper (a WebSocket
session is long-lived, so it soon becomes a Task).

The cycle turns ASGI messages into calls on the connection and the
connection's events into ASGI messages:

* receive: ``websocket.connect`` first; then one ``websocket.receive`` per
  message the client sent (queued; reading pauses above ``RECV_HIGH_*``);
  then ``websocket.disconnect`` with the close code and reason.
* send: ``websocket.accept`` (101, with ``subprotocol`` and ``headers``),
  ``websocket.send``, ``websocket.close`` (403 before accept), and the
  denial response extension ``websocket.http.response.start`` / ``.body``
  (framed by ``proto.h1.plan_response`` and held to its Content-Length, as
  every HTTP/1.1 response is).
  ``websocket.send`` waits while the client is slow to read; on a
  connection that is gone it raises ``ClientDisconnected`` (an OSError).

When the app returns without answering the handshake the client gets 500;
when it raises after accepting, the connection closes with 1011; when it
returns after accepting without closing, with 1000.
"""

from __future__ import annotations

import logging
from collections import deque
from urllib.parse import quote
from time import perf_counter

from ..proto.h1 import LAST_CHUNK, InvalidResponse, encode_chunk, encode_head, error_response
from ..proto.ws import valid_close_code
from .asgi import is_disconnect

log = logging.getLogger("corral.error")

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
_CONNECT = {"type": "websocket.connect"}

# Unread messages held for the app before reading from the client pauses;
# it resumes once the app is down to the low-water marks.
RECV_HIGH_MESSAGES = 16
RECV_HIGH_BYTES = 1024 * 1024
RECV_LOW_MESSAGES = 4
RECV_LOW_BYTES = 256 * 1024

CONNECTING, ACCEPTED, RESPONSE, CLOSED = range(4)


class ClientDisconnected(ConnectionResetError):
    """``send()`` on a WebSocket that is closed or gone (ASGI spec 2.4)."""


class WebSocketHandler:
    """Builds a cycle per WebSocket; shared by every connection of a worker."""

    def __init__(self, app, state) -> None:
        self.app = app
        self.state = state
        config = state.config
        self.root_path = config.root_path
        # As in the http scope (and uvicorn): path and raw_path include root_path.
        self.raw_root_path = quote(config.root_path).encode("ascii")
        self.access = state.access  # io/access.py, None when off

    def __call__(self, conn, request, handshake):
        root_path = self.root_path
        if root_path:
            path = root_path + request.path
            raw_path = self.raw_root_path + request.raw_path
        else:
            path = request.path
            raw_path = request.raw_path
        scope = {
            "type": "websocket",
            "asgi": ASGI_VERSION,
            "http_version": request.http_version,
            "scheme": conn.scheme,
            "server": conn.server,
            "client": conn.client,
            "root_path": root_path,
            "path": path,
            "raw_path": raw_path,
            "query_string": request.query_string,
            "headers": request.headers,
            "subprotocols": handshake.subprotocols,
            "state": self.state.lifespan_state.copy(),
            # The denial response is HTTP/1.1's (over HTTP/2 a refusal is 403 or 500).
            "extensions": {} if request.http_version == "2" else {"websocket.http.response": {}},
        }
        if conn.proxy is not None:  # a PROXY header: its TLS details (tls extension)
            scope["extensions"].update(conn.proxy.asgi_extensions())
        elif conn.tls is not None:  # our own TLS (io/tls.py)
            scope["extensions"]["tls"] = conn.tls
        return WebSocketCycle(self, conn, request, scope)


class WebSocketCycle:
    __slots__ = (
        "handler",
        "conn",
        "request",
        "scope",
        "phase",
        "connect_sent",
        "queue",
        "queued",
        "waiter",
        "gone",
        "code",
        "reason",
        "finished",
        "exit_waiter",
        "status",
        "headers",
        "head",
        "bytes_sent",
    )

    def __init__(self, handler, conn, request, scope) -> None:
        self.handler = handler
        self.conn = conn
        self.request = request  # until the handshake is answered
        self.scope = scope
        self.phase = CONNECTING
        self.connect_sent = False
        self.queue: deque | None = None  # messages the app has not read
        self.queued = 0  # their size
        self.waiter = None
        self.gone = False  # closed or lost: the app gets websocket.disconnect
        self.code = 1006
        self.reason = ""
        self.finished = False  # the app returned
        self.exit_waiter = None
        self.status = None  # denial response
        self.headers = None
        self.head = None
        self.bytes_sent = 0  # denial response body bytes

    def start(self) -> None:
        """Run the app (stepped without a Task until it first waits)."""
        handler = self.handler
        try:  # the call raising before a coroutine exists: as if the coroutine raised (interfaces/asgi.py)
            handler.state.stepper.run(handler.app(self.scope, self.receive, self.send), self)
        except Exception as exc:  # noqa: BLE001 - the app's: anything
            if not self.finished:
                self.app_raised(exc)

    def app_returned(self) -> None:
        self._returned()
        self._finish()

    def app_raised(self, exc: BaseException) -> None:
        self._failed(exc)
        self._finish()

    def _finish(self) -> None:
        self.finished = True
        self.request = None
        waiter = self.exit_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_finished(self) -> None:
        if not self.finished:
            waiter = self.exit_waiter
            if waiter is None:
                waiter = self.exit_waiter = self.conn.loop.create_future()
            await waiter

    # -- receive ---------------------------------------------------------

    async def receive(self):
        if not self.connect_sent:
            self.connect_sent = True
            return _CONNECT
        while True:
            queue = self.queue
            if queue:
                data = queue.popleft()
                self.queued -= len(data)
                conn = self.conn
                if conn.reading_paused and len(queue) <= RECV_LOW_MESSAGES and self.queued <= RECV_LOW_BYTES:
                    conn.resume_reading()
                if type(data) is str:
                    return {"type": "websocket.receive", "text": data}
                return {"type": "websocket.receive", "bytes": data}
            conn = self.conn
            if conn.pending_error is not None:
                conn.fail_pending()  # the app has read all that came before a bad frame
            if self.gone:
                return {"type": "websocket.disconnect", "code": self.code, "reason": self.reason}
            waiter = self.waiter = self.conn.loop.create_future()
            try:
                await waiter
            finally:
                self.waiter = None

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- events from the connection ------------------------------------------

    def message(self, data) -> None:
        queue = self.queue
        if queue is None:
            queue = self.queue = deque()
        queue.append(data)
        self.queued += len(data)
        if len(queue) >= RECV_HIGH_MESSAGES or self.queued >= RECV_HIGH_BYTES:
            self.conn.pause_reading()
        self._wake()

    def disconnected(self, code: int, reason: str) -> None:
        if self.gone:
            return
        self.gone = True
        self.code = code
        self.reason = reason
        self._wake()

    # -- send --------------------------------------------------------------

    async def send(self, message) -> None:
        kind = message["type"]
        conn = self.conn
        if kind == "websocket.send":
            if self.gone:
                raise ClientDisconnected("WebSocket closed")
            if self.phase != ACCEPTED:
                raise RuntimeError(f"ASGI: websocket.send {_WHEN[self.phase]}")
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
                if type(data) is not str:
                    raise TypeError("ASGI: websocket.send needs 'bytes' or 'text'" if data is None else "ASGI: websocket.send 'text' must be a str")
            elif type(data) is not bytes:
                if not isinstance(data, (bytearray, memoryview)):
                    raise TypeError(f"ASGI: websocket.send 'bytes' must be bytes, got {type(data).__name__}")
                data = bytes(data)
            conn.send_message(data)
            if conn.write_paused:
                await conn.drain()
                if self.gone:
                    raise ClientDisconnected("WebSocket closed while the client was not reading")
        elif kind == "websocket.accept":
            if self.phase != CONNECTING:
                raise RuntimeError(f"ASGI: websocket.accept {_WHEN[self.phase]}")
            if self.gone:
                raise ClientDisconnected("client disconnected during the handshake")
            try:
                conn.accept(message.get("subprotocol"), message.get("headers") or ())
            except ValueError as exc:
                raise RuntimeError(f"ASGI: invalid websocket.accept: {exc}") from None
            self.phase = ACCEPTED
            self._log_access(101)
            self.request = None
        elif kind == "websocket.close":
            phase = self.phase
            if phase == CONNECTING:
                self.phase = CLOSED
                if not self.gone:
                    conn.refuse(403)
                    self._log_access(403)
                    self.gone = True
                    self.code = 1006
            elif phase == ACCEPTED:
                code = message.get("code")
                if code is None:
                    code = 1000
                elif type(code) is not int or not valid_close_code(code):
                    raise ValueError(f"ASGI: websocket.close 'code' {code!r} is not a code a server may send")
                reason = message.get("reason") or ""
                self.phase = CLOSED
                if not self.gone:
                    conn.close(code, reason)
            elif phase == RESPONSE:
                raise RuntimeError("ASGI: websocket.close during a denial response")
        elif kind == "websocket.http.response.start":
            if self.phase != CONNECTING:
                raise RuntimeError(f"ASGI: websocket.http.response.start {_WHEN[self.phase]}")
            if self.gone:
                raise ClientDisconnected("client disconnected during the handshake")
            status = message["status"]
            if type(status) is not int or not 200 <= status <= 999:
                raise TypeError(f"ASGI: websocket.http.response.start 'status' must be an int in 200..999, got {status!r}")
            self.status = status
            self.headers = message.get("headers", ())
            self.phase = RESPONSE
        elif kind == "websocket.http.response.body":
            if self.phase != RESPONSE:
                raise RuntimeError("ASGI: websocket.http.response.body without websocket.http.response.start")
            if self.gone:
                raise ClientDisconnected("client disconnected")
            body = message.get("body", b"")
            if type(body) is not bytes:
                if not isinstance(body, (bytearray, memoryview)):
                    raise TypeError("ASGI: websocket.http.response.body 'body' must be bytes")
                body = bytes(body)
            more = message.get("more_body", False)
            self._write_response(body, more)
            if conn.write_paused:
                await conn.drain()
        else:
            raise RuntimeError(f"ASGI: unexpected message type {kind!r} for a websocket scope")

    def _write_response(self, body: bytes, more: bool) -> None:
        """The denial response, framed as every HTTP/1.1 response is: the
        plan from proto/h1.py's ``plan_response`` (``encode_head``), and the
        body held to its Content-Length as interfaces/asgi.py holds it."""
        head = self.head
        state = self.conn.state
        first = head is None
        if first:
            try:
                head = self.head = encode_head(
                    self.status,
                    self.headers,
                    request=self.request,
                    keep_alive=False,
                    body_length=None if more else len(body),
                    extra=state.extra_headers,
                )
            except InvalidResponse as exc:
                self.phase = CONNECTING
                raise RuntimeError(f"ASGI: invalid websocket.http.response.start: {exc}") from None
            data = head.data
        else:
            data = b""
        if head.body_allowed and body:
            self.bytes_sent += len(body)
            length = head.content_length
            if length is not None and self.bytes_sent > length:
                if first:  # nothing written yet: the client gets a 500
                    self.head = None
                    self.phase = CONNECTING
                raise RuntimeError("ASGI: WebSocket denial response body longer than its Content-Length")
            data += encode_chunk(body) if head.chunked else body
        if not more:
            if head.chunked and head.body_allowed:
                data += LAST_CHUNK
            elif head.content_length is not None and head.body_allowed and self.bytes_sent < head.content_length:
                # The close that follows tells the client the body is short.
                log.error(
                    "ASGI app sent %d of %d body bytes (Content-Length) of its WebSocket denial response for %s; "
                    "closing the connection", self.bytes_sent, head.content_length, self.scope["path"],
                )
            self.phase = CLOSED
            self.gone = True
            self._log_access(self.status)
        self.conn.http_response(data, not more)

    # -- endings -----------------------------------------------------------

    def _returned(self) -> None:
        phase = self.phase
        if phase == ACCEPTED:
            self.phase = CLOSED
            self.conn.close(1000)
        elif phase == CONNECTING:
            if not self.gone:
                log.error("ASGI app returned without accepting or rejecting the WebSocket: %s", self.scope["path"])
                self._answer_500()
        elif phase == RESPONSE:
            log.error("ASGI app returned without completing its denial response: %s", self.scope["path"])
            self.conn.abort()

    def _failed(self, exc: BaseException) -> None:
        if self.gone and is_disconnect(exc):  # the client left: not an error (asgi.py)
            log.debug("WebSocket client went away: %s (%s)", self.scope["path"], type(exc).__name__)
        elif isinstance(exc, Exception):
            log.error("Exception in ASGI application (WebSocket %s)", self.scope["path"], exc_info=exc)
        phase = self.phase
        self.phase = CLOSED
        if phase == ACCEPTED:
            self.conn.close(1011, "Internal Error")
        elif phase == CONNECTING:
            if not self.gone:
                self._answer_500()
        elif phase == RESPONSE:
            self.conn.abort()

    def _answer_500(self) -> None:
        self.phase = CLOSED
        self.conn.refuse(500)
        self._log_access(500)

    def _log_access(self, status: int) -> None:
        access = self.handler.access
        if access is not None:
            access.record(self.request, self.scope["client"], status, self.bytes_sent, perf_counter())


_WHEN = {
    CONNECTING: "before websocket.accept",
    ACCEPTED: "after websocket.accept",
    RESPONSE: "during a denial response",
    CLOSED: "after the WebSocket was closed",
}
