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
``body_taken(request, size)``, ``cycle_done(cycle, keep_alive)``, and
backpressure (``write_paused``/``drain()``, or per-stream windows where
``flow_windows``: ``writable``/``wait_writable``). Over HTTP/1.1 a response
given as one body message goes out in a single ``transport.write``.
"""

from __future__ import annotations

import logging
from functools import partial
from time import perf_counter
from urllib.parse import quote

from ..proto.h1 import InvalidResponse, plan_response

log = logging.getLogger("corral.error")

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
_TRAILERS = "http.response.trailers"


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
        }
        if request.forwarded:  # proto.forwarded.Identity from a trusted proxy
            scope["client"], scope["scheme"] = request.forwarded[:2]
        if conn.proxy is not None:  # a PROXY header: its TLS details (tls extension)
            scope["extensions"] = conn.proxy.asgi_extensions()
        elif conn.tls is not None:  # our own TLS (io/tls.py)
            scope["extensions"] = {"tls": conn.tls}
        if conn.flow_windows:  # HTTP/2: response trailers, the protocol has them
            extensions = scope.get("extensions")
            if extensions is None:
                scope["extensions"] = {_TRAILERS: {}}
            else:
                extensions[_TRAILERS] = {}  # a dict made for this scope
            self.trailers = False
        else:
            self.trailers = None  # not offered: http.response.start's "trailers" is not read
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
        elif self.status is None:
            if not self.gone:
                log.error("ASGI app returned without starting a response: %s %s", self.request.method, self.request.path)
            self._answer_500()
        elif self.head is None:
            # Started but nothing sent: a 500 can still be sent.
            if not self.gone:
                log.error("ASGI app returned without sending a response body: %s %s", self.request.method, self.request.path)
            self._answer_500()
        else:
            if not self.gone:
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
                        not more and (not head_request or len(body) > 0),
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
            if self.trailers is not None:  # offered (HTTP/2): did the app announce trailers?
                self.trailers = bool(message.get("trailers", False))
        elif kind == "http.response.trailers":
            if not self.trailers or not self.body_sent or self.finished:  # None: not offered
                raise RuntimeError("ASGI: http.response.trailers needs trailers=True and the whole body sent first")
            if self.gone:
                raise ConnectionResetError("client disconnected")
            fields = [(bytes(k).lower(), bytes(v)) for k, v in message.get("headers", ())]
            self.conn.send_trailers(self, fields)
            if not message.get("more_trailers", False):
                self.finished = True
                self._wake()
        else:
            raise RuntimeError(f"ASGI: unexpected message type {kind!r} for an http scope")

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
        if self.gone and isinstance(exc, (ConnectionError, OSError)):
            log.debug("client went away during %s %s", request.method, request.path)
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
