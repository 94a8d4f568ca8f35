"""ASGI 3 (spec 2.4) ``http`` scope: one ``HTTPCycle`` per request, over
HTTP/1.1 and HTTP/2 alike.

The connection (``io/h1.py``, or ``io/h2.py`` for each stream) hands each
request to ``ASGIHandler``, which builds the scope and returns a cycle;
``cycle.start()`` steps the app. The cycle holds the HTTP semantics, once
for every protocol: the response is checked and framed by
``proto.h1.plan_response`` (field names and values, one framing,
Content-Length against the body sent, 204/304/HEAD), a body longer than its
Content-Length is an error of the app and a shorter one cuts the response,
an app that fails before answering gets a 500, one that fails after is cut,
a client gone is a disconnect, the access log line is written here.

What is protocol-specific is the *exchange*, the verbs the connection
implements (io/README.md): ``send_head(cycle, plan, body, more)``,
``send_body(cycle, body, more)``, ``send_trailers(cycle, fields)``,
``send_continue(cycle)``, ``send_error(cycle, status)``, ``cut(cycle)``,
``send_file(cycle, fd, offset, count)`` (pathsend, zerocopysend),
``send_early_hint(cycle, links)``,
``body_taken(request, size)``, ``cycle_done(cycle, keep_alive)``, and
backpressure (``write_paused``/``drain()``, or per-stream windows where
``flow_windows``: ``writable``/``wait_writable``). Over HTTP/1.1 a response
given as one body message goes out in a single ``transport.write``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from functools import partial
from time import perf_counter
from urllib.parse import quote

from ..proto.h1 import InvalidResponse, plan_response

log = logging.getLogger("corral.error")

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
# Offered in every http scope, over every protocol (the connection's verbs
# carry them): response trailers (HTTP/1.1: chunked, to a client that sent
# TE: trailers), 103 Early Hints, and a file sent by the server (sendfile).
_EXTENSIONS = {
    "http.response.trailers": {},
    "http.response.early_hint": {},
    "http.response.pathsend": {},
    "http.response.zerocopysend": {},
}
_BAD_LINK = frozenset(b"\r\n\x00")


def _regular_size(fd: int, name) -> int:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"ASGI: {name!r} is not a regular file")
    return info.st_size


def _accepts_trailers(headers) -> bool:
    """The request's TE field lists ``trailers``."""
    for name, value in headers:
        if name == b"te" and b"trailers" in value.lower():
            return True
    return False

# What frameworks raise once they learn that the client has gone (the OSError
# that send() raises after a disconnect, ASGI 2.4, re-raised as their own):
# Starlette's and Litestar's ClientDisconnect, Werkzeug's and Quart's
# ClientDisconnected, Django's RequestAborted, a WebSocketDisconnect.
_DISCONNECT_NAMES = frozenset({"ClientDisconnect", "ClientDisconnected", "RequestAborted", "WebSocketDisconnect"})


def is_disconnect(exc: BaseException) -> bool:
    """``exc`` says only that the client went away: an OSError, a
    cancellation, a framework's "client disconnected", or an exception group
    (anyio's task groups) made of nothing else. Any other exception is a
    defect of the app, logged as an error even when the client has gone.
    Called on the error path only."""
    if isinstance(exc, (OSError, asyncio.CancelledError)):
        return True
    group = getattr(exc, "exceptions", None)  # BaseExceptionGroup (or the exceptiongroup backport)
    if type(group) is tuple and group:
        return all(isinstance(inner, BaseException) and is_disconnect(inner) for inner in group)
    return any(cls.__name__ in _DISCONNECT_NAMES for cls in type(exc).__mro__)


class ASGIHandler:
    """What every request of a worker shares: the app, root_path, the access log.

    ``new_cycle(conn, request)`` (the connection's ``state.handler``) builds
    the cycle for one request; it is a ``partial`` so that building a cycle
    costs one Python frame, not two.
    """

    def __init__(self, app, state) -> None:
        self.app = app
        self.state = state
        config = state.config
        self.root_path = config.root_path
        # ASGI: path and raw_path include root_path (as SCRIPT_NAME + PATH_INFO
        # in WSGI); a proxy in front stripped the prefix from the request.
        self.raw_root_path = quote(config.root_path).encode("ascii")
        self.access = state.access  # io/access.py, None when off
        self.timed = state.cycles_timed()  # one clock read for the access log and io/h1.py cycle_done
        self.new_cycle = partial(HTTPCycle, self)


class HTTPCycle:
    __slots__ = (
        "handler",
        "conn",
        "request",
        "scope",
        "status",
        "headers",
        "head",
        "finished",
        "body_done",
        "gone",
        "waiter",
        "continue_sent",
        "bytes_sent",
        "keep_alive",
        "started",
        "trailers",
        "held_trailers",
        "body_sent",
    )

    def __init__(self, handler, conn, request) -> None:
        self.handler = handler
        self.conn = conn
        self.request = request  # proto.h1.Request, or io.h2.H2Stream: the same fields
        root_path = handler.root_path
        if root_path:
            path = root_path + request.path
            raw_path = handler.raw_root_path + request.raw_path
        else:
            path = request.path
            raw_path = request.raw_path
        self.scope = scope = {
            "type": "http",
            "asgi": ASGI_VERSION,
            "http_version": request.http_version,
            "server": conn.server,
            "client": conn.client,
            "scheme": conn.scheme,
            "method": request.method,
            "root_path": root_path,
            "path": path,
            "raw_path": raw_path,
            "query_string": request.query_string,
            "headers": request.headers,
            "state": handler.state.lifespan_state.copy(),
            "extensions": _EXTENSIONS.copy(),  # what every http scope offers, a dict made for this scope
        }
        if request.forwarded:  # proto.forwarded.Identity from a trusted proxy
            scope["client"], scope["scheme"] = request.forwarded[:2]
        if conn.proxy is not None:  # a PROXY header: its TLS details (tls extension)
            scope["extensions"].update(conn.proxy.asgi_extensions())
        elif conn.tls is not None:  # our own TLS (io/tls.py)
            scope["extensions"]["tls"] = conn.tls
        self.trailers = False  # did http.response.start announce trailers?
        self.held_trailers = None  # fields of trailer messages with more_trailers
        self.status = None  # set by http.response.start
        self.headers = None
        self.head = None  # ResponsePlan once the head is sent
        self.finished = False  # response complete
        self.body_done = False  # the app has seen more_body=False
        self.gone = False  # client disconnected
        self.waiter = None
        self.continue_sent = False
        self.bytes_sent = 0  # response body bytes
        self.keep_alive = False
        self.started = perf_counter() if handler.timed else 0.0
        self.body_sent = False  # the response body is complete (trailers may follow)

    def start(self) -> None:
        """Run the app for this request (stepped without a Task until it waits)."""
        if self.gone:  # an HTTP/2 stream reset in the read that opened it: no app, no answer
            self.finished = True
            self.conn.cycle_done(self, False)
            return
        handler = self.handler
        try:
            # What escapes here is the call itself raising before a coroutine
            # exists (a factory passed without --factory, a wrong signature):
            # stepper.run reports everything the coroutine raises. A 500 too.
            handler.state.stepper.run(handler.app(self.scope, self.receive, self.send), self)
        except Exception as exc:  # noqa: BLE001 - the app's: anything
            if not self.finished:
                self._failed(exc)

    def app_returned(self) -> None:
        if self.finished:
            self.conn.cycle_done(self, self.keep_alive)
            access = self.handler.access
            if access is not None:
                access.record(self.request, self.scope["client"], self.status, self.bytes_sent, self.started)
        elif self.gone or self.conn.eof:
            # The client left (or shut its side, which receive() reports as
            # http.disconnect) and the app, told so, stopped: not an error.
            log.debug("client went away during %s %s", self.request.method, self.request.path)
            if self.head is None:
                self._answer_500()
            else:
                self._cut()
        elif self.status is None:
            log.error("ASGI app returned without starting a response: %s %s", self.request.method, self.request.path)
            self._answer_500()
        elif self.head is None:
            # Started but nothing sent: a 500 can still be sent.
            log.error("ASGI app returned without sending a response body: %s %s", self.request.method, self.request.path)
            self._answer_500()
        else:
            log.error("ASGI app returned without completing the response: %s %s", self.request.method, self.request.path)
            self._cut()

    def app_raised(self, exc: BaseException) -> None:
        self._failed(exc)

    # -- receive ---------------------------------------------------------

    async def receive(self):
        request = self.request
        if self.finished or self.gone:
            return {"type": "http.disconnect"}
        if self.body_done:
            # Nothing more to read: wait for the client to go or the response to end.
            if not self.conn.eof:
                await self._wait()
            return {"type": "http.disconnect"}
        if request.expect_continue and not self.continue_sent:
            self.continue_sent = True
            # Never once the final response has begun.
            if self.head is None and not request.body and not request.complete:
                self.conn.send_continue(self)
        while not request.body and not request.complete:
            await self._wait()
            if self.gone or self.finished:
                return {"type": "http.disconnect"}
        body = request.body
        if not body:
            self.body_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        data = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        size, request.buffered = request.buffered, 0
        self.conn.body_taken(request, size)
        more = not request.complete
        if not more:
            self.body_done = True
        return {"type": "http.request", "body": data, "more_body": more}

    async def _wait(self) -> None:
        waiter = self.waiter
        if waiter is None:
            waiter = self.waiter = self.conn.loop.create_future()
        try:
            await waiter
        finally:
            self.waiter = None

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def body_arrived(self) -> None:
        if not self.body_done:
            self._wake()

    def disconnected(self) -> None:
        self.gone = True
        self._wake()

    def client_eof(self) -> None:
        """The client shut its side after a whole request: a receive() past
        the body returns http.disconnect (the app is listening for it); the
        response can still be sent to a client that only half-closed."""
        self._wake()

    # -- send --------------------------------------------------------------

    async def send(self, message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            body = message.get("body", b"")
            if type(body) is not bytes:
                if not isinstance(body, (bytes, bytearray, memoryview)):
                    raise TypeError(f"ASGI: http.response.body 'body' must be bytes, got {type(body).__name__}")
                body = bytes(body)
            more = message.get("more_body", False)
            conn = self.conn
            if self.head is not None:
                self._send_more(body, more)
            else:
                # The first body message: plan the response (inline: one
                # Python frame less per response), send head and body at once.
                if self.status is None:
                    raise RuntimeError("ASGI: http.response.body sent before http.response.start")
                if self.gone:
                    raise ConnectionResetError("client disconnected")
                request = self.request
                version = request.http_version
                head_request = request.method == "HEAD"
                try:
                    plan = plan_response(
                        self.status,
                        self.headers,
                        head_request,
                        version == "1.1" or version == "2",
                        # A body not read to the end by now means closing afterwards.
                        request.keep_alive and request.complete and not self.handler.state.draining,
                        not more and (not head_request or len(body) > 0) and not self.trailers,
                    )
                except InvalidResponse as exc:
                    self.status = None
                    raise RuntimeError(f"ASGI: invalid http.response.start: {exc}") from None
                self.keep_alive = plan.keep_alive
                self.head = plan
                if plan.body_allowed:
                    self.bytes_sent = sent = len(body)
                    length = plan.content_length
                    if length is not None and sent != length:
                        if sent > length:
                            self.head = None
                            raise RuntimeError("ASGI: response body longer than its Content-Length")
                        if not more:
                            self._short_body(length)
                if not more:
                    self.body_sent = True
                    if not self.trailers:
                        self.finished = True
                        if self.waiter is not None:
                            self._wake()  # a pending receive() gets http.disconnect
                conn.send_head(self, plan, body, more)
            if conn.flow_windows:  # HTTP/2: the stream's window, and the transport
                if more and not conn.writable(self.request):
                    await conn.wait_writable(self.request)
                    if self.gone:
                        raise ConnectionResetError("client disconnected")
            elif conn.write_paused:
                await conn.drain()
        elif kind == "http.response.start":
            if self.status is not None:
                raise RuntimeError("ASGI: http.response.start sent twice")
            status = message["status"]
            if type(status) is not int or not 200 <= status <= 999:
                raise TypeError(f"ASGI: http.response.start 'status' must be an int in 200..999, got {status!r}")
            self.status = status
            self.headers = message.get("headers", ())
            if message.get("trailers", False):
                self.trailers = True
        elif kind == "http.response.trailers":
            if not self.trailers or not self.body_sent or self.finished:
                raise RuntimeError("ASGI: http.response.trailers needs trailers=True and the whole body sent first")
            if self.gone:
                raise ConnectionResetError("client disconnected")
            fields = [(bytes(k).lower(), bytes(v)) for k, v in message.get("headers", ())]
            held = self.held_trailers
            if message.get("more_trailers", False):
                self.held_trailers = fields if held is None else held + fields  # sent with the last
                return
            if held is not None:
                fields = held + fields
            if not self.conn.flow_windows and not _accepts_trailers(self.request.headers):
                fields = []  # HTTP/1.1: only to a client that said TE: trailers (RFC 9110 6.5.1)
            self.finished = True
            self.conn.send_trailers(self, fields)
            self._wake()
        elif kind == "http.response.pathsend":
            await self._pathsend(message)
        elif kind == "http.response.zerocopysend":
            await self._zerocopysend(message)
        elif kind == "http.response.early_hint":
            links = message.get("links", ())
            if self.head is not None:
                raise RuntimeError("ASGI: http.response.early_hint after the response began")
            links = [bytes(link) for link in links]
            if any(_BAD_LINK.intersection(link) for link in links):
                raise ValueError("ASGI: http.response.early_hint links must not contain CR, LF or NUL")
            if links and not self.gone:
                self.conn.send_early_hint(self, links)
        else:
            raise RuntimeError(f"ASGI: unexpected message type {kind!r} for an http scope")

    # -- files: the pathsend and zerocopysend extensions ---------------------

    async def _pathsend(self, message) -> None:
        """``{"type": "http.response.pathsend", "path": str}``: the whole
        file as the rest of the response body (the response ends)."""
        path = message.get("path")
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"ASGI: http.response.pathsend 'path' must be a str, got {type(path).__name__}")
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = _regular_size(fd, path)
            await self.send_file(fd, 0, size, False)
        finally:
            os.close(fd)

    async def _zerocopysend(self, message) -> None:
        """``{"type": "http.response.zerocopysend", "file": file, "offset":
        int, "count": int, "more_body": bool}`` (asgiref's spec): without an
        offset the file is read from (and advanced past) its current
        position; without a count, to its end."""
        file = message.get("file")
        try:
            fd = file.fileno()
        except (AttributeError, ValueError, OSError):
            raise TypeError("ASGI: http.response.zerocopysend 'file' must be an open file object") from None
        size = _regular_size(fd, getattr(file, "name", fd))
        offset = message.get("offset")
        advance = offset is None
        if advance:
            offset = os.lseek(fd, 0, os.SEEK_CUR)
        count = message.get("count")
        if count is None:
            count = max(size - offset, 0)
        if type(offset) is not int or type(count) is not int or offset < 0 or count < 0:
            raise TypeError("ASGI: http.response.zerocopysend 'offset' and 'count' must be ints >= 0")
        sent = await self.send_file(fd, offset, count, message.get("more_body", False))
        if advance:
            os.lseek(fd, offset + sent, os.SEEK_SET)

    async def send_file(self, fd: int, offset: int, count: int, more: bool) -> int:
        """``count`` bytes of a file as response body, through the
        connection's ``send_file`` verb (sendfile on plain TCP). The head
        goes first if it has not (with Content-Length: ``count`` when the
        app gave none and the body ends here). A file shorter than promised
        (truncated meanwhile) cuts the response."""
        conn = self.conn
        plan = self.head
        if plan is None:
            if self.status is None:
                raise RuntimeError("ASGI: a file sent before http.response.start")
            if self.gone:
                raise ConnectionResetError("client disconnected")
            request = self.request
            version = request.http_version
            head_request = request.method == "HEAD"
            args = (head_request, version == "1.1" or version == "2",
                    request.keep_alive and request.complete and not self.handler.state.draining, False)
            try:
                plan = plan_response(self.status, self.headers, *args)
                if plan.content_length is None and not more and not self.trailers:
                    self.headers = [*self.headers, (b"content-length", b"%d" % count)]
                    plan = plan_response(self.status, self.headers, *args)
            except InvalidResponse as exc:
                self.status = None
                raise RuntimeError(f"ASGI: invalid http.response.start: {exc}") from None
            self.keep_alive = plan.keep_alive
            self.head = plan
            conn.send_head(self, plan, b"", True)
        elif self.body_sent:
            raise RuntimeError("ASGI: a file sent after the response completed")
        elif self.gone:
            raise ConnectionResetError("client disconnected")
        sent = 0
        if plan.body_allowed and count:
            length = plan.content_length
            if length is not None and self.bytes_sent + count > length:
                raise RuntimeError("ASGI: response body longer than its Content-Length")
            sent = await conn.send_file(self, fd, offset, count)
            self.bytes_sent += sent
            if sent < count:
                raise RuntimeError(f"file shorter than the {count} bytes to send (truncated meanwhile?): the response is cut")
        self._send_more(b"", more)
        if more:  # the backpressure of any body message
            if conn.flow_windows:
                if not conn.writable(self.request):
                    await conn.wait_writable(self.request)
            elif conn.write_paused:
                await conn.drain()
        return sent

    def _send_more(self, body: bytes, more: bool) -> None:
        if self.body_sent:
            raise RuntimeError("ASGI: http.response.body sent after the response completed")
        if self.gone:
            raise ConnectionResetError("client disconnected")
        plan = self.head
        if not plan.body_allowed:
            body = b""
        elif body:
            self.bytes_sent += len(body)
            if plan.content_length is not None and self.bytes_sent > plan.content_length:
                raise RuntimeError("ASGI: response body longer than its Content-Length")
        if not more:
            self.body_sent = True
            if plan.content_length is not None and plan.body_allowed and self.bytes_sent < plan.content_length:
                self._short_body(plan.content_length)
            if not self.trailers:
                self.finished = True
                if self.waiter is not None:
                    self._wake()  # a pending receive() gets http.disconnect
        self.conn.send_body(self, body, more)

    def _short_body(self, content_length: int) -> None:
        """The body ended before its Content-Length: the client must see the
        response cut (HTTP/1.1: the close; HTTP/2: the stream reset)."""
        self.keep_alive = False
        request = self.request
        log.error(
            "ASGI app sent %d of %d body bytes (Content-Length) for %s %s; the response is cut",
            self.bytes_sent, content_length, request.method, request.path,
        )
        self.conn.cut(self)

    # -- endings -----------------------------------------------------------

    def _failed(self, exc: BaseException) -> None:
        request = self.request
        if (self.gone or self.conn.eof) and is_disconnect(exc):
            # A client leaving is not an error (uvicorn and hypercorn make send()
            # a no-op instead; ASGI 2.4 has it raise, so the app stops).
            log.debug("client went away during %s %s (%s)", request.method, request.path, type(exc).__name__)
        else:
            log.error("Exception in ASGI application (%s %s)", request.method, request.path, exc_info=exc)
        if self.head is None and not self.gone:
            self._answer_500()
        else:
            self._cut()

    def _cut(self) -> None:
        """The response began and cannot complete: the client sees it cut."""
        self.finished = True
        if not self.gone:
            self.conn.cut(self)
        self.conn.cycle_done(self, False)
        access = self.handler.access
        if access is not None and self.status is not None:
            access.record(self.request, self.scope["client"], self.status, self.bytes_sent, self.started)

    def _answer_500(self) -> None:
        conn = self.conn
        self.finished = True
        if not self.gone:
            conn.send_error(self, 500)
        conn.cycle_done(self, False)
        access = self.handler.access
        if access is not None and not self.gone:
            access.record(self.request, self.scope["client"], 500, 0, self.started)
