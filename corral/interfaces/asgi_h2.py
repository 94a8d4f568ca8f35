"""ASGI 3 ``http`` scope over HTTP/2: one ``H2Cycle`` per stream.

The HTTP/2 connection (``io/h2.py``) hands each request stream to
``H2Handler``, which builds the scope (``http_version`` "2") and returns a
cycle; ``cycle.start()`` steps the app as for HTTP/1.1. ``receive`` takes
the stream's buffered body and reopens its flow-control window by as much;
``send`` queues HEADERS and DATA in the engine and waits while the peer's
window is closed. A reset stream is ``http.disconnect`` for that stream
only. Response trailers: the ASGI ``http.response.trailers`` extension.

WSGI apps run here through ``WSGIOverASGI`` (a thread per call from a pool;
the body read whole first), so HTTP/2 serves them too.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from time import perf_counter
from urllib.parse import quote

from ..io.transport import peer_name
from ..proto.h1 import InvalidResponse, plan_response
from .asgi import HTTPCycle

log = logging.getLogger("corral.error")

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
# Connection-specific fields are not allowed in HTTP/2 (RFC 9113 8.2.2);
# plan_response has refused what HTTP/1.1 would not send either.
_CONNECTION_SPECIFIC = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                                  b"upgrade", b"te"))
NO_ERROR, INTERNAL_ERROR, CANCEL = 0x0, 0x2, 0x8
_ERROR_HEADERS = ((b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"0"))


class H2Handler:
    def __init__(self, app, state) -> None:
        self.app = app
        self.state = state
        config = state.config
        self.root_path = config.root_path
        self.raw_root_path = quote(config.root_path).encode("ascii")
        self.access = getattr(state, "access", None)
        self.metrics = getattr(state, "metrics", None)
        self.timed = state.cycles_timed()
        self.extensions = {"http.response.trailers": {}}
        self._extra_src = None
        self._extra: list = []
        self.new_cycle = partial(H2Cycle, self)

    def extra_headers(self) -> list:
        """Date and Server as HTTP/2 fields, rebuilt when the cached bytes change (once a second)."""
        src = self.state.extra_headers
        if src is not self._extra_src:
            self._extra_src = src
            fields = []
            for line in src.split(b"\r\n"):
                if line:
                    name, _, value = line.partition(b": ")
                    fields.append((name, value))
            self._extra = fields
        return self._extra


class H2Cycle:
    __slots__ = ("handler", "conn", "stream", "scope", "status", "headers", "trailers", "started", "finished",
                 "gone", "waiter", "bytes_sent", "body_done", "time", "plan", "reset")

    def __init__(self, handler, conn, stream) -> None:
        self.handler = handler
        self.conn = conn
        self.stream = stream
        root_path = handler.root_path
        path, raw_path = stream.path, stream.raw_path
        if root_path:
            path = root_path + path
            raw_path = handler.raw_root_path + raw_path
        extensions = dict(handler.extensions)
        if conn.tls is not None:
            extensions["tls"] = conn.tls
        self.scope = {
            "type": "http",
            "asgi": ASGI_VERSION,
            "http_version": "2",
            "server": conn.server,
            "client": conn.client,
            "scheme": conn.scheme,
            "method": stream.method,
            "root_path": root_path,
            "path": path,
            "raw_path": raw_path,
            "query_string": stream.query_string,
            "headers": stream.headers,
            "state": handler.state.lifespan_state.copy(),
            "extensions": extensions,
        }
        if stream.forwarded:  # proto.forwarded.Identity from a trusted proxy
            self.scope["client"], self.scope["scheme"] = stream.forwarded[:2]
        self.status = None
        self.headers = None
        self.trailers = False  # the app announced trailers
        self.started = False  # HEADERS queued
        self.finished = False
        self.gone = False
        self.waiter = None
        self.bytes_sent = 0
        self.body_done = False
        self.time = perf_counter() if handler.timed else 0.0
        self.plan = None  # proto.h1.ResponsePlan: the framing HTTP/1.1 would use, checked alike
        self.reset = False  # a RST_STREAM is queued for this stream

    def start(self) -> None:
        if self.gone:  # reset by the client before the app ran: no app, no response
            self.finished = True
            self._done()
            return
        handler = self.handler
        handler.state.stepper.run(handler.app(self.scope, self.receive, self.send), self)

    # -- endings -----------------------------------------------------------------

    def app_returned(self) -> None:
        if self.finished:
            self._done()
            return
        stream = self.stream
        if not self.gone:
            log.error("ASGI app returned without completing the response: %s %s", stream.method, stream.path)
        self._end_badly()

    def app_raised(self, exc: BaseException) -> None:
        stream = self.stream
        if self.gone and isinstance(exc, (ConnectionError, OSError)):
            log.debug("client went away during %s %s", stream.method, stream.path)
        else:
            log.error("Exception in ASGI application (%s %s)", stream.method, stream.path, exc_info=exc)
        self._end_badly()

    def _end_badly(self) -> None:
        conn = self.conn
        if not self.gone:
            if not self.started:
                self.status = 500
                self.headers = _ERROR_HEADERS
                self._head(b"", True, False)
            else:
                self._reset(INTERNAL_ERROR)  # the client sees a cut response
        self.finished = True
        self._done()

    def _reset(self, code: int) -> None:
        """RST_STREAM after what was queued for the stream (io/h2.py)."""
        if not self.reset:
            self.reset = True
            self.conn.reset_after_response(self.stream.stream_id, code)

    def _done(self) -> None:
        conn = self.conn
        # A body the app never read: give its window back, and stop the client sending more.
        stream = self.stream
        if stream.buffered:
            conn.consumed(stream, stream.buffered)
            stream.buffered = 0
            stream.body.clear()
        if not stream.complete and not self.gone:
            self._reset(NO_ERROR)  # the response is whole (and heard first): stop sending
        handler = self.handler
        access = handler.access
        if access is not None and self.status is not None:
            access.record(stream, self.scope["client"], self.status, self.bytes_sent, self.time)
        metrics = handler.metrics
        if metrics is not None:  # no status: the client reset the stream first
            status = self.status if self.status is not None else 0 if self.gone else 500
            metrics.record(stream.method, status, perf_counter() - self.time)
        conn.stream_done(stream)

    # -- receive --------------------------------------------------------------------

    async def receive(self):
        if self.gone or self.finished:
            return {"type": "http.disconnect"}
        stream = self.stream
        if self.body_done:
            await self._wait()
            return {"type": "http.disconnect"}
        while not stream.body and not stream.complete:
            await self._wait()
            if self.gone or self.finished:
                return {"type": "http.disconnect"}
        body = stream.body
        if not body:
            self.body_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        data = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        size, stream.buffered = stream.buffered, 0
        self.conn.consumed(stream, size)
        more = not stream.complete
        if not more:
            self.body_done = True
        return {"type": "http.request", "body": data, "more_body": more}

    # Waiting for body bytes works as over HTTP/1.1 (same waiter, body_done, conn.loop).
    _wait = HTTPCycle._wait
    _wake = HTTPCycle._wake
    body_arrived = HTTPCycle.body_arrived

    def body_too_large(self) -> None:
        """--limit-request-body: 413 if nothing was sent yet, else reset; the app sees a disconnect."""
        self._server_ends(413, "Request body too large", "bad_requests")

    def timed_out(self, status: int, detail: str) -> None:
        """--timeout-body (the connection's tick): 408 if nothing was sent yet, else reset."""
        self._server_ends(status, detail, "timeouts")

    def _server_ends(self, status: int, detail: str, counter: str) -> None:
        conn = self.conn
        stream = self.stream
        log.info("%s: %d %s (HTTP/2 stream %d)", peer_name(conn.client), status, detail, stream.stream_id)
        conn.state.counters[counter] += 1
        if not self.started:
            self.started = True
            self.status = status
            conn._answer(stream.stream_id, status, detail.encode("latin-1") + b"\n", (), True)
            self._reset(NO_ERROR)  # after the answer: stop sending the body
        else:
            self._reset(CANCEL)
        self.finished = True
        self.disconnected()

    def disconnected(self) -> None:
        self.gone = True
        self._wake()

    # -- send ----------------------------------------------------------------------------

    async def send(self, message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            if self.finished:
                raise RuntimeError("ASGI: http.response.body sent after the response completed")
            if self.gone:
                raise ConnectionResetError("client disconnected")
            body = message.get("body", b"")
            if type(body) is not bytes:
                if not isinstance(body, (bytes, bytearray, memoryview)):
                    raise TypeError(f"ASGI: http.response.body 'body' must be bytes, got {type(body).__name__}")
                body = bytes(body)
            more = message.get("more_body", False)
            end = not more and not self.trailers
            conn = self.conn
            if not self.started:
                if self.status is None:
                    raise RuntimeError("ASGI: http.response.body sent before http.response.start")
                self._head(body, end, more)
            else:
                plan = self.plan
                if not plan.body_allowed:
                    body = b""
                elif plan.content_length is not None:
                    sent = self.bytes_sent + len(body)
                    if sent > plan.content_length:
                        raise RuntimeError("ASGI: response body longer than its Content-Length")
                    if not more and sent < plan.content_length:
                        self.bytes_sent = sent
                        conn.engine.send_body(self.stream.stream_id, body, False)
                        self._short_body()
                        body = None
                if body is not None and (body or end):
                    conn.engine.send_body(self.stream.stream_id, body, end)
                    self.bytes_sent += len(body)
                    conn.frames_queued()
            if not more:
                self.body_done = True
                if not self.trailers:
                    self.finished = True
                    self._wake()
            elif not conn.writable(self.stream):
                await conn.wait_writable(self.stream)
                if self.gone:
                    raise ConnectionResetError("client disconnected")
        elif kind == "http.response.start":
            if self.status is not None:
                raise RuntimeError("ASGI: http.response.start sent twice")
            status = message["status"]
            if type(status) is not int or not 200 <= status <= 999:
                raise TypeError(f"ASGI: http.response.start 'status' must be an int in 200..999, got {status!r}")
            self.status = status
            self.headers = message.get("headers", ())
            self.trailers = bool(message.get("trailers", False))
        elif kind == "http.response.trailers":
            if not self.trailers or not self.body_done or self.finished:
                raise RuntimeError("ASGI: http.response.trailers needs trailers=True and the whole body sent first")
            if self.gone:
                raise ConnectionResetError("client disconnected")
            fields = [(bytes(k).lower(), bytes(v)) for k, v in message.get("headers", ())]
            conn = self.conn
            if fields:
                conn.engine.send_trailers(self.stream.stream_id, fields)
            else:
                conn.engine.send_body(self.stream.stream_id, b"", True)
            conn.frames_queued()
            if not message.get("more_trailers", False):
                self.finished = True
                self._wake()
        else:
            raise RuntimeError(f"ASGI: unexpected message type {kind!r} for an http scope")

    def _head(self, body: bytes, end: bool, more: bool) -> None:
        """The response head, checked and framed as HTTP/1.1 checks and
        frames it (``proto.h1.plan_response``: field names and values,
        Content-Length, 204/304/HEAD), encoded as HTTP/2 fields."""
        stream = self.stream
        status = self.status
        head_request = stream.method == "HEAD"
        try:
            plan = plan_response(status, self.headers, head_request, True, True,
                                 not more and (not head_request or len(body) > 0))
        except InvalidResponse as exc:
            raise RuntimeError(f"ASGI: invalid http.response.start: {exc}") from None
        length = plan.content_length
        if not plan.body_allowed:
            body = b""
        elif length is not None and len(body) > length:
            raise RuntimeError("ASGI: response body longer than its Content-Length")
        fields = [(b":status", b"%d" % status)]
        for name, value in self.headers:
            name = name.lower()
            if name in _CONNECTION_SPECIFIC or (name == b"content-length" and status == 204):
                continue
            fields.append((name, value))
        if plan.add_length:
            fields.append((b"content-length", b"%d" % len(body)))
        extra = self.handler.extra_headers()
        drop = getattr(plan, "drop", None)  # the app set Date or Server itself
        fields.extend(extra if drop is None else [f for f in extra if f[0] + b":" not in drop])
        self.plan = plan
        self.started = True
        conn = self.conn
        engine = conn.engine
        stream_id = stream.stream_id
        short = end and length is not None and plan.body_allowed and len(body) < length
        if body:
            engine.send_head(stream_id, fields, False)
            engine.send_body(stream_id, body, end and not short)
            self.bytes_sent += len(body)
        else:
            engine.send_head(stream_id, fields, end and not short)
        if short:
            self._short_body()
        conn.frames_queued()

    def _short_body(self) -> None:
        """The body ended before its Content-Length: the stream is reset,
        never ended, so the client cannot take the cut body as whole."""
        stream = self.stream
        log.error("ASGI app sent %d of %d body bytes (Content-Length) for %s %s; resetting the HTTP/2 stream",
                  self.bytes_sent, self.plan.content_length, stream.method, stream.path)
        self._reset(INTERNAL_ERROR)
        self.conn.frames_queued()


class WSGIOverASGI:
    """A WSGI app as an ASGI one, for HTTP/2 streams (HTTP/1.1 has its own
    native WSGI path). The body is read whole, the app runs in a thread pool,
    each piece of its iterable goes out through ``send`` (which waits on the
    peer's window)."""

    def __init__(self, app, threads: int = 16) -> None:
        self.app = app
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="corral-wsgi-h2")

    async def __call__(self, scope, receive, send) -> None:
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        environ = _environ(scope, bytes(body))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self._run, environ, send, loop)

    def _run(self, environ, send, loop) -> None:
        def call(message) -> None:
            asyncio.run_coroutine_threadsafe(send(message), loop).result()

        response: dict = {}

        def start_response(status, headers, exc_info=None):
            if exc_info is not None and response.get("sent"):
                raise exc_info[1].with_traceback(exc_info[2])
            response["start"] = {
                "type": "http.response.start",
                "status": int(status.split(" ", 1)[0]),
                "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
            }
            return write

        def flush() -> None:
            if not response.get("sent"):
                if "start" not in response:
                    raise RuntimeError("WSGI app wrote a body before calling start_response")
                response["sent"] = True
                call(response["start"])

        def write(data: bytes) -> None:
            flush()
            call({"type": "http.response.body", "body": data, "more_body": True})

        result = self.app(environ, start_response)
        try:
            if isinstance(result, (list, tuple)) and len(result) <= 1 and not response.get("sent"):
                flush()
                call({"type": "http.response.body", "body": result[0] if result else b""})
                return
            for chunk in result:
                if chunk:
                    write(chunk)
            flush()
            call({"type": "http.response.body", "body": b""})
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()


def _environ(scope, body: bytes) -> dict:
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client")
    root_path = scope.get("root_path", "")
    path = scope["path"]
    if root_path and path.startswith(root_path):
        path = path[len(root_path):]
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root_path.encode("utf-8").decode("latin-1"),
        "PATH_INFO": path.encode("utf-8", "surrogateescape").decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]) if server[1] is not None else "",
        "SERVER_PROTOCOL": "HTTP/2",
        "SERVER_SOFTWARE": "corral",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)) if body else "",
    }
    if environ["wsgi.url_scheme"] == "https":
        environ["HTTPS"] = "on"
    if client:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client[0], str(client[1])
    for name, value in scope["headers"]:
        key = name.decode("latin-1").upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = value.decode("latin-1")
            continue
        key = "HTTP_" + key
        text = value.decode("latin-1")
        if key in environ:
            text = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + text
        environ[key] = text
    return environ
