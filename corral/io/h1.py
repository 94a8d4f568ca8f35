"""The HTTP/1.1 connection: bytes from the transport -> parser -> request handler.

One ``H1Connection`` per accepted socket. It owns the transport, the parser,
the queue of pipelined requests and flow control in both directions. It runs
one request at a time through the worker's handler (ASGI or WSGI), whose
coroutine is stepped by the ``Stepper`` so that a request that never waits
costs no Task.

Timeouts are not timers: the worker's tick calls ``ServerState.sweep`` which
looks at each connection's timestamps (``idle_since``, ``linger_since``).

Closing after a response is a lingering half-close whenever more input may
still arrive: shut the write side once the buffer has flushed, keep reading
(and discarding) until the client closes or ``LINGER_SECONDS`` pass. A
client whose unread bytes would otherwise make the kernel send a reset still
gets the response it was sent. As in nginx, there is no lingering when none
can arrive: the client asked to close (``Connection: close``, or HTTP/1.0
without keep-alive, after which it sends nothing more, RFC 9112 section 9.6),
its request was read whole and nothing followed it: the transport closes
once the response is flushed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from time import perf_counter

from ..proto.h1 import CONTINUE, LAST_CHUNK, ProtocolError, Request, RequestParser, encode_chunk, error_response, plan_response
from .contract import SHED, WAIT, LINGER_SECONDS, busy_response, settle_closing, write_timed_out  # noqa: F401 (LINGER_SECONDS: tests)
from .metrics import FIRST, bucket
from .transport import address, half_close, peer_name

log = logging.getLogger("corral.error")

# Bytes of request body buffered for the app before reading pauses.
BODY_HIGH_WATER = 256 * 1024
# Pipelined requests queued behind the current one before reading pauses.
PIPELINE_HIGH_WATER = 16
# A response body this long is written beside its head, not joined to it.
_LARGE_BODY = 64 * 1024
# A file sent through the transport (TLS, chunked) is read this much at a time.
FILE_CHUNK = 256 * 1024
# RFC 9113 section 3.4: what an HTTP/2 client with prior knowledge sends first.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class H1Connection(asyncio.Protocol):
    __slots__ = (
        "flow_windows",
        "state",
        "loop",
        "transport",
        "parser",
        "queue",
        "cycle",
        "client",
        "server",
        "scheme",
        "tls",
        "reading_paused",
        "write_paused",
        "drain_waiter",
        "closing",
        "linger_since",
        "idle_since",
        "head_since",
        "body_since",
        "write_since",
        "write_left",
        "waiting_since",
        "pending_error",
        "upgrade",
        "eof",
        "proxy",
        "close_reason",
        "sniff",
    )

    def __init__(self, state) -> None:
        self.state = state
        self.loop = state.loop
        self.flow_windows = False  # backpressure is the transport's (write_paused, drain)
        self.transport = None
        self.parser = RequestParser(
            self,
            limit_request_line=state.config.limit_request_line,
            limit_header_size=state.config.limit_header_size,
            limit_request_body=state.config.limit_request_body,
            h2c=state.h2c,
        )
        self.queue: deque[Request] = deque()
        self.cycle = None  # the request being handled
        self.client = None
        self.server = None
        self.scheme = "http"
        self.tls = None  # the ASGI tls extension (io/tls.py sets both)
        self.reading_paused = False
        self.write_paused = False
        self.drain_waiter: asyncio.Future | None = None
        self.closing = False
        self.linger_since = 0.0
        self.idle_since = state.now  # between requests (keep-alive timeout)
        self.head_since = 0.0  # a request head has begun (header timeout)
        self.body_since = 0.0  # last request body bytes (body timeout)
        self.write_since = 0.0  # writing paused, and no progress since (write timeout)
        self.write_left = 0  # bytes buffered at write_since (the sweep compares)
        self.waiting_since = 0.0  # queued for a concurrency slot
        self.pending_error: ProtocolError | None = None
        self.upgrade = None  # set by a protocol that takes over the connection
        self.eof = False  # the client shut its write side
        self.proxy = None  # proto.proxy.ProxyInfo, set by io/proxy.py when a PROXY header named the client
        self.close_reason = "normal"  # for metrics: io/metrics.py CLOSE_REASONS
        # Cleartext --http auto: b"" until the first bytes tell HTTP/1.1 from
        # the HTTP/2 preface (_sniff), the preface's first bytes while they
        # cannot tell yet, then None.
        self.sniff = b"" if state.h2c_prior_knowledge is not None else None

    @property
    def wire(self):
        """The transport the requests came on (ServerState.admit)."""
        return self.transport

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.state.connection_opened(self)
        self.client = address(transport.get_extra_info("peername"))
        self.server = address(transport.get_extra_info("sockname"))

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # lingering: discard
        if self.sniff is not None:
            data = self._sniff(data)
            if data is None:
                return
        try:
            offset = self.parser.feed(data)
        except ProtocolError as exc:
            self._protocol_error(exc)
            return
        if offset is not None:
            self.state.upgrade(self, data[offset:])
            return
        if self.parser.in_head and not self.head_since:
            self.head_since = self.state.now
            self.idle_since = 0.0
        if self.cycle is None and self.queue and not self.waiting_since:
            self.run_queue()

    def _sniff(self, data):
        """Cleartext ``--http auto``: the first bytes tell the HTTP/2
        preface (h2c with prior knowledge: the connection becomes HTTP/2)
        from HTTP/1.1. Returns the bytes to parse as HTTP/1.1, or None."""
        buffered = self.sniff
        if not buffered and data[:1] != b"P":  # cannot be the preface: HTTP/1.1, no copy
            self.sniff = None
            return data
        data = buffered + bytes(data)
        if len(data) < len(PREFACE) and PREFACE.startswith(data):
            self.sniff = data  # not enough to tell yet
            return None
        self.sniff = None
        if data.startswith(PREFACE):
            self.state.h2c_prior_knowledge(self.state, self, data)
            return None
        return data

    def eof_received(self):
        if self.closing:
            self.close()
            return False
        # The client shut its write side (allowed after whole requests, RFC
        # 9112 section 9.6): every request received whole is still answered,
        # in order, then the connection closes. A request cut short never runs.
        self.eof = True
        queue = self.queue
        if queue and not queue[-1].complete:
            queue.pop()
        cycle = self.cycle
        if cycle is None and not queue:
            self.close()
            return False
        if queue:
            queue[-1].keep_alive = False  # the last answer says Connection: close
        if cycle is not None:
            if not cycle.request.complete:
                # The body can never arrive now: the app sees http.disconnect.
                cycle.disconnected()
            else:
                # An app waiting in receive() past the body (long poll) learns
                # that the client is gone; its response is still sent.
                cycle.client_eof()
        return True

    def connection_lost(self, exc) -> None:
        self.closing = True
        self.sniff = None
        self.parser.detach()  # no cycle left: freed without the garbage collector
        self.state.connection_closed(self)
        cycle = self.cycle
        if cycle is not None:
            cycle.disconnected()
        self._wake_writer()

    def pause_writing(self) -> None:
        self.write_paused = True
        self.write_since = self.state.now
        self.write_left = self.transport.get_write_buffer_size()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.write_since = 0.0
        self._wake_writer()

    # -- parser sink --------------------------------------------------------

    def on_request(self, request: Request) -> None:
        self.idle_since = 0.0
        self.head_since = 0.0
        self.body_since = self.state.now
        if request.forwarded:
            self._forwarded(request)
        self.queue.append(request)
        if len(self.queue) > PIPELINE_HIGH_WATER:
            self.pause_reading()

    def _forwarded(self, request: Request) -> None:
        """A request with forwarding fields: who it is from, if the peer is trusted."""
        forwarding = self.state.forwarding
        identity = None if forwarding is None else forwarding.resolve(request.headers, self.client, self.scheme)
        request.forwarded = identity
        if identity is not None and identity.host is not None:  # --forwarded-host
            headers = request.headers
            for index, (name, _) in enumerate(headers):
                if name == b"host":
                    headers[index] = (b"host", identity.host)
                    break

    def on_body(self, request: Request, chunk: bytes) -> None:
        self.body_since = self.state.now
        request.body.append(chunk)
        request.buffered += len(chunk)
        if request.buffered > BODY_HIGH_WATER:
            self.pause_reading()
        cycle = self.cycle
        if cycle is not None and cycle.request is request:
            cycle.body_arrived()

    def on_request_complete(self, request: Request) -> None:
        request.complete = True
        cycle = self.cycle
        if cycle is not None and cycle.request is request:
            cycle.body_arrived()

    # -- running requests ---------------------------------------------------

    def run_queue(self, behind: bool = False) -> None:
        """Start queued requests one at a time, for as long as they finish
        without waiting; with none left to run, settle the connection.
        ``behind``: the next request waited behind this connection's own
        previous response (pipelined), not in the server's queue."""
        state = self.state
        queue = self.queue
        while self.cycle is None and queue and not self.closing:
            if state.in_flight >= state.limit_concurrency:
                verdict = state.admit(self, behind)
                if verdict == WAIT:
                    return  # waits for a slot (ServerState.request_done restarts it)
                if verdict == SHED:
                    continue  # answered 503: on to the next request
            state.in_flight += 1
            self.cycle = cycle = state.handler(self, queue.popleft())
            cycle.start()
        if self.cycle is None and not self.closing:
            self._settle()
        if self.reading_paused:
            current = self.cycle
            if current is None or current.request.buffered <= BODY_HIGH_WATER:
                self.body_consumed()

    def cycle_done(self, cycle, keep_alive: bool) -> None:
        """Called by the handler when a response is complete (or failed)."""
        self.cycle = None
        state = self.state
        state.in_flight -= 1
        state.requests += 1
        metrics = state.metrics
        if metrics is not None:  # --metrics-bind: inlined, as io/metrics.py explains
            elapsed = perf_counter() - cycle.started  # the cycle read the clock as it started
            try:
                row = metrics.rows[cycle.request.method]
            except KeyError:
                row = metrics.other
            # No head: the server answered 500 for the app, or the client was gone.
            latencies = row[cycle.status if cycle.head is not None else 0 if cycle.gone else 500]
            latencies[0 if elapsed <= FIRST else bucket(elapsed)].append(elapsed)
        if state.waiting or state.requests == state.max_requests:
            state.request_done()
        if self.closing:
            return
        queue = self.queue
        error = self.pending_error
        if error is not None and (not keep_alive or not queue):
            # The requests received whole before the bad bytes are answered;
            # now the error, unless this response was cut short.
            if keep_alive or cycle.head is None:
                self._send_error(error)
            else:
                self.close()
            return
        if not keep_alive or not cycle.request.complete or state.draining:
            request = cycle.request
            # The client said it sends nothing more, and nothing came: no lingering.
            parser = self.parser
            self.close(request.keep_alive or not request.complete or queue or parser.in_head or parser.data_after_close)
        elif queue:
            # Inside a synchronous step, run_queue's loop starts the next one;
            # from a task, it must not nest a step inside the running task.
            if not state.stepper.stepping:
                self.loop.call_soon(self.run_queue, True)
        else:
            self._settle()

    def _settle(self) -> None:
        """Nothing queued and nothing running: answer the pending protocol
        error, close after the client's FIN, or wait for the next request."""
        if self.pending_error is not None:
            self._send_error(self.pending_error)
        elif self.eof:
            self.close()
        else:
            if not self.parser.in_head:
                self.idle_since = self.state.now
            if self.reading_paused:
                self.resume_reading()

    # -- the exchange: what a cycle sends through (interfaces/asgi.py) ------------

    def send_head(self, cycle, plan, body: bytes, more: bool) -> None:
        """The head as ``plan`` frames it and the first body bytes: one write."""
        head = plan.render(len(body), self.state.extra_headers)
        if not plan.body_allowed:
            self.transport.write(head)
            return
        if plan.chunked:
            if body:
                body = encode_chunk(body)
            if not more and not cycle.trailers:  # trailers: send_trailers ends the body
                body += LAST_CHUNK
        if len(body) < _LARGE_BODY:
            self.transport.write(head + body)
        else:
            self.transport.writelines((head, body))

    def send_body(self, cycle, body: bytes, more: bool) -> None:
        if cycle.head.chunked:
            data = encode_chunk(body) if body else b""
            if not more and not cycle.trailers:
                data += LAST_CHUNK
            if data:
                self.transport.write(data)
        elif body:
            self.transport.write(body)

    def send_trailers(self, cycle, fields) -> None:
        """The last chunk with the trailer fields (a chunked response; the
        cycle passes no fields when the client did not send ``TE: trailers``)."""
        if not cycle.head.chunked or not cycle.head.body_allowed:
            return  # Content-Length framing, or no body (HEAD): no place for trailers
        self.transport.write(b"0\r\n" + b"".join(b"%s: %s\r\n" % field for field in fields) + b"\r\n")

    def send_early_hint(self, cycle, links) -> None:
        """``103 Early Hints`` (RFC 8297) before the final response; not to
        HTTP/1.0 clients, which do not know 1xx responses."""
        if cycle.request.http_version == "1.1":
            self.transport.write(b"HTTP/1.1 103 Early Hints\r\n" + b"".join(b"link: %s\r\n" % link for link in links) + b"\r\n")

    async def send_file(self, cycle, fd: int, offset: int, count: int) -> int:
        """``count`` bytes of the open file ``fd`` from ``offset``, as
        response body after ``send_head``. Plain TCP (and UNIX sockets):
        ``os.sendfile``, the kernel copies; TLS, or a chunked body: read and
        written through the transport. Returns the bytes sent: fewer when
        the file ended sooner (truncated meanwhile), and the cycle cuts the
        response."""
        plan = cycle.head
        if not plan.body_allowed or count <= 0:
            return 0
        if self.tls is None and not plan.chunked:
            return await self._sendfile(cycle, fd, offset, count)
        sent = 0
        while sent < count:
            if self.closing:
                raise ConnectionResetError("client disconnected")
            data = os.pread(fd, min(count - sent, FILE_CHUNK), offset + sent)
            if not data:
                break  # the file is shorter than it was
            sent += len(data)
            self.transport.write(encode_chunk(data) if plan.chunked else data)
            if self.write_paused:
                await self.drain()
        return sent

    async def _sendfile(self, cycle, fd: int, offset: int, count: int) -> int:
        """os.sendfile to the socket once the transport's own buffer (the
        head) has gone out; while the socket is full, wait for it on a
        duplicate of its descriptor (the loop watches the original for the
        transport). --timeout-write counts from the last progress."""
        transport = self.transport
        out = transport.get_extra_info("socket").fileno()
        watch = -1
        sent = 0
        try:
            while sent < count:
                if self.closing:
                    raise ConnectionResetError("client disconnected")
                if not transport.get_write_buffer_size():
                    try:
                        n = os.sendfile(out, fd, offset + sent, count - sent)
                    except BlockingIOError:
                        n = -1
                    except (BrokenPipeError, ConnectionResetError):  # the client is gone
                        self.abort()
                        cycle.disconnected()
                        raise ConnectionResetError("client disconnected") from None
                    if n == 0:
                        break  # the file is shorter than it was
                    if n > 0:
                        sent += n
                        self.write_since = 0.0
                        continue
                if watch < 0:
                    watch = os.dup(out)
                if not self.write_since:
                    self.write_since = self.state.now
                    self.write_left = 0
                await self._writable(watch)
        finally:
            self.write_since = 0.0
            if watch >= 0:
                os.close(watch)
        return sent

    async def _writable(self, watch: int) -> None:
        loop = self.loop
        waiter = self.drain_waiter = loop.create_future()  # connection_lost wakes it too
        loop.add_writer(watch, self._wake_writer)
        try:
            await waiter
        finally:
            loop.remove_writer(watch)

    def send_continue(self, cycle) -> None:
        self.transport.write(CONTINUE)

    def send_error(self, cycle, status: int) -> None:
        self.transport.write(error_response(status, "", self.state.extra_headers))

    def cut(self, cycle) -> None:
        """A response that cannot complete: ``cycle_done(cycle, False)``
        closes the connection, which is how HTTP/1.1 shows it cut."""

    def body_taken(self, request, size: int) -> None:
        """The app took the buffered body: read more unless the pipeline is full."""
        if self.reading_paused and len(self.queue) <= PIPELINE_HIGH_WATER and self.pending_error is None:
            self.resume_reading()

    # -- flow control ---------------------------------------------------------

    def pause_reading(self) -> None:
        if not self.reading_paused and not self.closing:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused:
            self.reading_paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    def body_consumed(self) -> None:
        """The app took the buffered body: read more unless the pipeline is full."""
        if self.reading_paused and len(self.queue) <= PIPELINE_HIGH_WATER and self.pending_error is None:
            self.resume_reading()

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark."""
        if self.closing:
            raise ConnectionResetError("client disconnected")
        waiter = self.drain_waiter
        if waiter is None:
            waiter = self.drain_waiter = self.loop.create_future()
        await waiter
        if self.closing and self.transport.is_closing():
            raise ConnectionResetError("client disconnected")

    def _wake_writer(self) -> None:
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- the connection contract (io/contract.py) ----------------------------

    @property
    def phase(self) -> str:
        if self.closing:
            return "closing"
        if self.idle_since:
            return "idle"
        if self.head_since:
            return "head"
        if self.waiting_since:
            return "queued"
        cycle = self.cycle
        if cycle is not None and not cycle.request.complete and not self.reading_paused:
            return "body"
        return "app"

    def tick(self, now: float, timeouts) -> None:
        """Once a second, from ``ServerState.sweep``: the deadline of this
        connection's phase (a slot's queue time is the state's: it expires
        every waiter, HTTP/1.1 or HTTP/2, in one place)."""
        if self.closing:
            settle_closing(self, now, timeouts.write)
        elif write_timed_out(self, now, timeouts.write):
            return
        elif self.idle_since:
            if now - self.idle_since >= timeouts.idle:
                self.close_idle()
        elif self.head_since:
            if now - self.head_since >= timeouts.header:
                self.close_reason = "header_timeout"
                self.timed_out(408, "Request header timeout")
        elif self.waiting_since:
            return
        else:
            cycle = self.cycle
            if (cycle is not None and not cycle.request.complete and not self.reading_paused
                    and now - self.body_since >= timeouts.body):
                self.close_reason = "body_timeout"
                self.timed_out(408, "Request body timeout")

    def give_up(self) -> None:
        """--limit-concurrency-queue ran out: 503 for the next request; the
        ones behind it wait their own turn (or run, if a slot is free)."""
        self.reject_busy()
        self.loop.call_soon(self.run_queue, True)

    # -- closing -----------------------------------------------------------

    def close(self, linger=True) -> None:
        """Lingering half-close: flush, shut the write side, drain input.
        ``linger=False``: no more input can come; close once flushed."""
        if self.closing:
            return
        self.closing = True
        self.linger_since = self.state.now
        transport = self.transport
        self.write_left = transport.get_write_buffer_size()
        if self.eof or not linger:
            transport.close()  # the client already shut its side, or sends nothing more
            return
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()
        half_close(transport)

    def close_idle(self) -> None:
        """Close a keep-alive connection that sits between requests."""
        if self.cycle is None and not self.queue and not self.parser.in_head:
            self.close_reason = "shutdown" if self.state.draining else "keepalive_timeout"
            self.close()

    def abort(self) -> None:
        if self.state.draining and self.close_reason == "normal":
            self.close_reason = "shutdown"
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    def answer(self, cycle, status: int, headers, body: bytes) -> None:
        """The exchange verb ``io/health.py`` answers with: a whole response
        at once (one write), then the cycle is done."""
        request = cycle.request
        state = self.state
        keep_alive = request.keep_alive and request.complete and not state.draining
        plan = plan_response(status, headers, request.method == "HEAD", request.http_version == "1.1", keep_alive, True)
        cycle.head = plan
        cycle.status = status
        head = plan.render(len(body), state.extra_headers)
        self.transport.write(head + body if plan.body_allowed else head)
        self.cycle_done(cycle, plan.keep_alive)

    def reject_busy(self) -> None:
        """--limit-concurrency, the overload control: answer the next queued request 503 at once."""
        request = self.queue.popleft()
        keep_alive = request.keep_alive and request.complete and not self.state.draining
        self.transport.write(busy_response(self.state.extra_headers, keep_alive))
        if not keep_alive:
            self.close_reason = "limit"
            self.close()

    def timed_out(self, status: int, detail: str) -> None:
        """A sweep found a timeout: answer ``status`` if nothing was sent yet, close."""
        log.info("%s: %d %s", peer_name(self.client), status, detail)
        self.state.counters["timeouts"] += 1
        cycle = self.cycle
        if cycle is not None:
            cycle.disconnected()
            if cycle.head is None:
                self.transport.write(error_response(status, detail, self.state.extra_headers))
        elif status:
            self.transport.write(error_response(status, detail, self.state.extra_headers))
        self.close()

    def _protocol_error(self, exc: ProtocolError) -> None:
        self.pause_reading()
        queue = self.queue
        if queue and not queue[-1].complete:
            queue.pop()  # the error is in its body: it never runs
        cycle = self.cycle
        if cycle is None and not queue:
            self._send_error(exc)
            return
        # Answer the requests received whole first (cycle_done), then the error.
        self.pending_error = exc
        if cycle is None:
            self.run_queue()
        elif not cycle.request.complete:
            cycle.disconnected()  # the body the app is reading is broken

    def _send_error(self, exc: ProtocolError) -> None:
        log.info("%s: %d %s", peer_name(self.client), exc.status, exc.detail)
        self.state.counters["bad_requests"] += 1
        self.close_reason = "bad_request"
        self.transport.write(error_response(exc.status, exc.detail, self.state.extra_headers))
        self.close()
