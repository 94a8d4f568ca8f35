"""The HTTP/2 connection: bytes from the transport -> H2Engine -> one cycle per stream.

``H2Connection`` owns the transport and the engine (``proto/h2.py``). Each
request stream becomes an ``H2Stream`` (the request: method, path, headers,
buffered body) and runs through the worker's HTTP/2 handler
(``interfaces/asgi_h2.py``), stepped like HTTP/1.1 requests (no Task unless
the app waits). The apps of the streams opened by one read start after
every frame of that read is taken in, so a stream the client resets in the
same read (rapid reset, CVE-2023-44487) never runs the app. Frames queued
during one ``data_received`` go out in one write; frames queued later (an
app that waited) are flushed once per loop pass.

Flow control: a stream's receive window reopens only when the app takes its
body (``consumed``); an app's ``send`` waits while the stream's queued body
is over ``STREAM_HIGH_WATER`` (the peer's window is closed) or the transport
is paused. A peer that opens no window for ``--timeout-write`` is closed.

The connection sits in ``state.connections`` like an HTTP/1.1 one (the
sweep's keep-alive and write timeouts, the drain's wait, the accept gate)
and in ``state.h2``, whose ``sweep`` starts the graceful GOAWAY when the
worker drains (RFC 9113 6.8: a GOAWAY with stream 2^31-1 and a PING; on
the PING's answer, or a second later, the GOAWAY with the last stream id;
close once every accepted stream is answered).

Cleartext connections with ``--http auto`` start as HTTP/1.1: a client
whose first bytes are the HTTP/2 preface gets HTTP/2 (h2c with prior
knowledge, ``prior_knowledge``), anyone else stays on HTTP/1.1. The
HTTP/1.1 connection looks at the first bytes itself (no protocol object in
front of it, no ``set_protocol`` for HTTP/1.1).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import re
from http import HTTPStatus
from time import perf_counter
from urllib.parse import unquote_to_bytes

from ..proto import h2 as proto
from .contract import ADMIT, BUSY, LINGER_SECONDS, RETRY_AFTER, settle_closing, write_timed_out
from .switch import switch
from .transport import address, peer_name

log = logging.getLogger("corral.error")

# Response body bytes queued in the engine for one stream before send() waits.
STREAM_HIGH_WATER = 64 * 1024
# Receive windows advertised (the app's reads reopen them).
STREAM_WINDOW = 256 * 1024
CONNECTION_WINDOW = 1024 * 1024
GOAWAY_GRACE = 1.0  # seconds between the two GOAWAYs when the PING is not answered
_PING = b"corral\x00\x01"
_TEXT = ((b"content-type", b"text/plain; charset=utf-8"),)  # the server's own short answers


class H2Stream:
    """One request: what the app's scope and receive() are made of. While it
    waits for a concurrency slot it is a waiter of ``state.waiting``
    (io/contract.py): ``run_queue``, ``give_up``, ``closing``."""

    __slots__ = ("conn", "stream_id", "method", "target", "path", "raw_path", "query_string", "headers", "body",
                 "buffered", "received", "complete", "cycle", "http_version", "keep_alive", "forwarded",
                 "body_since", "waiting_since", "expect_continue", "reset", "cut", "tunnel")

    def __init__(self, conn, stream_id: int, method: str, target: bytes, headers: list) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.method = method
        self.target = target
        raw_path, _, query = target.partition(b"?")
        self.raw_path = raw_path
        self.query_string = query
        self.path = unquote_to_bytes(raw_path).decode("utf-8", "surrogateescape")
        self.headers = headers
        self.body: list[bytes] = []
        self.buffered = 0
        self.received = 0
        self.complete = False
        self.cycle = None  # None while it waits for a slot
        self.http_version = "2"
        self.keep_alive = True
        self.forwarded = None  # proto.forwarded.Identity from a trusted proxy (--proxy-headers)
        self.body_since = 0.0  # last body bytes (--timeout-body)
        self.waiting_since = 0.0  # queued for a concurrency slot
        self.expect_continue = False  # no 100 Continue over HTTP/2: the body is flow-controlled
        self.reset = False  # a RST_STREAM is queued (reset_after_response)
        self.cut = False  # the response cannot complete: no END_STREAM, the reset tells
        self.tunnel = None  # H2Tunnel: the stream carries a WebSocket (RFC 8441)

    # -- a waiter for a concurrency slot (state.waiting) ------------------------

    @property
    def closing(self) -> bool:
        conn = self.conn
        return conn.closing or conn.streams.get(self.stream_id) is not self

    @property
    def wire(self):
        """The connection's transport (ServerState.admit)."""
        return self.conn.transport

    def run_queue(self, behind: bool = True) -> None:
        if not self.closing:
            self.conn.start_stream(self, behind)

    def give_up(self) -> None:
        if not self.closing:
            self.reject_busy()

    def reject_busy(self) -> None:
        conn = self.conn
        del conn.streams[self.stream_id]
        conn.answer_server(self, 503, BUSY, [(b"retry-after", RETRY_AFTER)])
        conn.settle()


class H2Connection(asyncio.Protocol):
    __slots__ = (
        "flow_windows", "state", "loop", "transport", "engine", "streams", "client", "server", "scheme", "tls",
        "closing", "linger_since", "idle_since", "head_since", "body_since", "write_since", "write_left",
        "waiting_since", "cycle", "reading_paused", "write_paused", "in_receive", "flush_scheduled",
        "writers", "drain_phase", "notice_at", "last_stream_id", "proxy", "eof", "close_reason", "starting",
        "resets", "scan", "scan_skip", "scan_part", "blocked", "lingering",
    )

    def __init__(self, state) -> None:
        self.flow_windows = True  # backpressure per stream (writable, wait_writable); response trailers
        self.state = state
        self.loop = state.loop
        self.transport = None
        self.engine = None
        self.streams: dict[int, H2Stream] = {}
        self.client = None
        self.server = None
        self.scheme = "http"
        self.tls = None
        self.proxy = None
        self.closing = False
        self.linger_since = 0.0
        self.idle_since = state.now
        self.head_since = 0.0
        self.body_since = 0.0
        self.write_since = 0.0
        self.write_left = 0
        self.waiting_since = 0.0
        self.cycle = None  # HTTP/1.1's slot; streams have their own
        self.reading_paused = False
        self.write_paused = False
        self.in_receive = False
        self.flush_scheduled = False
        self.writers: dict[int, asyncio.Future] = {}  # streams whose send() waits
        self.drain_phase = 0  # 1: first GOAWAY + PING sent, 2: final GOAWAY sent
        self.notice_at = 0.0
        self.last_stream_id = 0
        self.eof = False
        self.close_reason = "normal"  # for metrics (io/metrics.py CLOSE_REASONS)
        self.starting = None  # cycles to start once data_received has read every frame (rapid reset)
        # (stream id, error code): RST_STREAM once the stream's response has
        # left the engine, never before (reset_after_response).
        self.resets: list[tuple[int, int]] = []
        self.lingering: dict[int, float] = {}  # answered streams whose body is read and dropped, since
        # --timeout-header: the frame headers are followed (9 bytes each) to
        # know when a header block is open (HEADERS without END_HEADERS).
        self.scan = bool(state.config.timeout_header)
        self.scan_skip = len(proto.PREFACE)  # bytes before the next frame header
        self.scan_part = b""  # a frame header split across reads
        self.blocked: set = set()  # tunnels whose protocol waits for the window (pause_writing)

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        state = self.state
        state.connection_opened(self)
        state.counters["h2_connections"] += 1
        self.client = address(transport.get_extra_info("peername"))
        self.server = address(transport.get_extra_info("sockname"))
        if self.engine is None:
            self.make_engine()
        self.flush()

    def make_engine(self, upgrade: tuple[bytes, bool] | None = None) -> None:
        """``upgrade``: (HTTP2-Settings payload, HEAD?) after Upgrade: h2c;
        ValueError if the payload is malformed."""
        config = self.state.config
        self.engine = proto.H2Engine(
            max_concurrent_streams=config.h2_max_concurrent_streams,
            max_header_list_size=config.limit_header_size,
            stream_window=STREAM_WINDOW,
            connection_window=CONNECTION_WINDOW,
            upgrade=upgrade,
            connect_protocol=self.state.upgrade_handler is not None,
        )

    def data_received(self, data) -> None:
        if self.closing:
            return
        self.in_receive = True
        self.starting = starting = []
        if self.scan:
            self._scan(data)
        try:
            events = self.engine.receive(data)
            for event in events:
                kind = type(event)
                if kind is proto.RequestReceived:
                    self._request(event.stream_id, event.headers, event.end_stream)
                elif kind is proto.DataReceived:
                    self._data(event.stream_id, event.data, event.end_stream)
                elif kind is proto.StreamReset or kind is proto.StreamClosed:
                    self._stream_gone(event.stream_id)
                elif kind is proto.TrailersReceived:
                    self._data(event.stream_id, b"", True)
                elif kind is proto.WindowUpdated:
                    self.write_since = self.state.now if self.write_since else 0.0
                    self._wake_writers()
                    if self.blocked:
                        self._wake_tunnels()
                elif kind is proto.PingAcknowledged:
                    if self.drain_phase == 1:
                        self._final_goaway()
            for cycle in starting:
                cycle.start()  # or, reset by a later frame of the same read, ended without the app
        finally:
            self.in_receive = False
            self.starting = None
        self.flush()
        if self.write_since and not self.writers and not self.write_paused and not self.engine.queued():
            self.write_since = 0.0  # everything queued went out

    def _scan(self, data) -> None:
        """Follow the frame headers to know whether a header block is open
        (--timeout-header): a HEADERS or PUSH_PROMISE without END_HEADERS
        opens one, the CONTINUATION with END_HEADERS closes it. One step per
        frame; a frame header split across reads is joined (rare)."""
        part = self.scan_part
        if part:
            data = part + bytes(data)
        i = self.scan_skip
        n = len(data)
        while i + 9 <= n:
            if data[i + 3] in _HEADER_BLOCK_FRAMES:
                if data[i + 4] & 0x4:  # END_HEADERS
                    self.head_since = 0.0
                elif not self.head_since:
                    self.head_since = self.state.now or 1e-9
            i += 9 + ((data[i] << 16) | (data[i + 1] << 8) | data[i + 2])
        if i >= n:
            self.scan_skip = i - n
            self.scan_part = b""
        else:
            self.scan_skip = 0
            self.scan_part = bytes(data[i:])

    def eof_received(self):
        self.eof = True
        for stream in list(self.streams.values()):
            if not stream.complete:
                self._stream_gone(stream.stream_id)
        if not self.streams:
            self.close()
            return False
        return True  # answer the streams received whole, then close

    def connection_lost(self, exc) -> None:
        self.closing = True
        state = self.state
        state.connection_closed(self)
        for stream_id in list(self.streams):
            self._stream_gone(stream_id)
        self._wake_writers()

    def pause_writing(self) -> None:
        self.write_paused = True
        self.write_since = self.state.now

    def resume_writing(self) -> None:
        self.write_paused = False
        self.write_since = 0.0
        self._wake_writers()
        if self.blocked:
            self._wake_tunnels()

    # -- frames out ------------------------------------------------------------

    def flush(self) -> None:
        self.flush_scheduled = False
        engine = self.engine
        data = engine.data_to_send()
        if self.resets:
            data += self._reset_answered()
        if data and not self.closing:
            self.transport.write(data)
        if not engine.open and not self.closing:
            self.close()

    def _reset_answered(self) -> bytes:
        """RST_STREAM(NO_ERROR) for the streams whose response has left the
        engine whole: the client stops sending a body nobody reads."""
        engine = self.engine
        waiting = []
        for entry in self.resets:
            if engine.queued(entry[0]):
                waiting.append(entry)  # its body waits for the window: later
            else:
                engine.reset(*entry)
        self.resets = waiting
        return engine.data_to_send()

    def reset_after_response(self, stream_id: int, code: int = proto.NO_ERROR) -> None:
        """RST_STREAM once what the stream queued has gone out: a cut
        response shows as cut. NO_ERROR, the answer given before the request
        ended (RFC 9113 8.1), lingers first: the rest of the body is read and
        dropped for LINGER_SECONDS, so a client that uploads on gets to the
        end, and one that is still sending then is told to stop (some
        clients, curl before 8.11 among them, drop a response followed by
        that reset)."""
        if code == proto.NO_ERROR:
            self.lingering[stream_id] = self.state.now
        else:
            self.resets.append((stream_id, code))
            self.frames_queued()

    def frames_queued(self) -> None:
        """The cycle queued frames: written at the end of data_received, or once per loop pass."""
        if not self.in_receive and not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    # -- streams -------------------------------------------------------------------

    def _request(self, stream_id: int, fields, end_stream: bool) -> None:
        state = self.state
        method = target = authority = protocol = None
        headers = []
        forwarded = False
        for name, value in fields:
            if name in _FORWARDING:
                forwarded = True
                headers.append((name, value))
            elif name[:1] == b":":
                if name == b":method":
                    method = value
                elif name == b":path":
                    target = value
                elif name == b":authority":
                    authority = value
                elif name == b":protocol":
                    protocol = value
            elif name != b"host" or authority is None:
                # RFC 9113 8.3.1: :authority stands for Host; a Host field beside
                # it never reaches the app as a second, different host. (nghttp2
                # refuses pseudo-header fields after regular ones: :authority
                # is known by the time a Host field comes.)
                headers.append((name, value))
        if authority is not None:
            headers.insert(0, (b"host", authority))
        if method is None or (target is None and method != b"CONNECT"):
            self.engine.reset(stream_id, proto.PROTOCOL_ERROR)
            return
        self.last_stream_id = stream_id
        if method == b"CONNECT":
            if protocol != b"websocket" or target is None or state.upgrade_handler is None:
                self._refuse(stream_id, end_stream, 501, "CONNECT is not supported")
                return
        elif protocol is not None:
            self.engine.reset(stream_id, proto.PROTOCOL_ERROR)  # :protocol only with CONNECT (RFC 8441 4)
            return
        if target[:1] != b"/" and not (target == b"*" and method == b"OPTIONS") or _BAD_TARGET(target):
            # The same request targets HTTP/1.1 refuses (proto/h1.py): no fragment, no spaces or controls.
            self._refuse(stream_id, end_stream, 400, "Invalid :path")
            return
        stream = H2Stream(self, stream_id, method.decode("latin-1"), target, headers)
        stream.complete = end_stream
        stream.body_since = state.now
        if forwarded and state.forwarding is not None:
            # The same identity as over HTTP/1.1 (io/h1.py _forwarded).
            identity = stream.forwarded = state.forwarding.resolve(headers, self.client, self.scheme)
            if identity is not None and identity.host is not None:  # --forwarded-host
                for index, (name, _) in enumerate(headers):
                    if name == b"host":
                        headers[index] = (b"host", identity.host)
                        break
        self.idle_since = 0.0
        self.streams[stream_id] = stream
        if protocol is not None:  # a WebSocket (io/ws.py): the stream becomes its transport
            state.upgrade_handler.over_h2(self, stream)
            return
        self.start_stream(stream)

    def start_stream(self, stream: H2Stream, behind: bool = False) -> None:
        """Give the stream a slot and its cycle; its app starts once the
        current read is taken in (rapid reset), or now. Over
        --limit-concurrency it waits for a slot (``run_queue`` comes back
        here) or is answered 503 (``reject_busy``)."""
        state = self.state
        if state.in_flight >= state.limit_concurrency and state.admit(stream, behind) != ADMIT:
            return  # waits for a slot (run_queue comes back here), or answered 503
        state.in_flight += 1
        stream.cycle = cycle = state.h2_handler(self, stream)
        if self.starting is not None:
            self.starting.append(cycle)
        else:
            cycle.start()
            self.frames_queued()

    def _refuse(self, stream_id: int, end_stream: bool, status: int, detail: str) -> None:
        """A request refused before any app sees it (logged, counted)."""
        log.info("%s: %d %s (HTTP/2 stream %d)", peer_name(self.client), status, detail, stream_id)
        self.state.counters["bad_requests"] += 1
        self._answer(stream_id, status, detail.encode("latin-1") + b"\n", _TEXT, end_stream)

    def upgraded_request(self, request) -> None:
        """Stream 1 after ``Upgrade: h2c``: the HTTP/1.1 request, received whole."""
        headers = [(name, value) for name, value in request.headers if name not in _H2C_HOP_BY_HOP]
        path = request.raw_path + b"?" + request.query_string if request.query_string else request.raw_path
        fields = [(b":method", request.method.encode("latin-1")), (b":path", path), *headers]
        self._request(1, fields, True)

    def _answer(self, stream_id: int, status: int, body: bytes, headers=_TEXT, complete: bool = True,
                head_request: bool = False) -> None:
        """A whole short answer from the server itself (no app: 400, 413,
        503, the health check, 500 for an app): one HEADERS and one DATA,
        with Date and Server as every response; a request still sending its
        body lingers, then is reset (``reset_after_response``)."""
        fields = [(b":status", b"%d" % status), *headers, (b"content-length", b"%d" % len(body)),
                  *_extra_fields(self.state.extra_headers)]
        engine = self.engine
        if head_request or not body:
            engine.send_head(stream_id, fields, True)
        else:
            engine.send_head(stream_id, fields, False)
            engine.send_body(stream_id, body, True)
        if not complete:
            self.reset_after_response(stream_id, proto.NO_ERROR)
        self.frames_queued()

    def answer_server(self, stream: H2Stream, status: int, body: bytes, extra=()) -> None:
        """``_answer`` for a stream the server answers in the app's place
        (503 busy): counted in the metrics like a request."""
        self._answer(stream.stream_id, status, body, (*_TEXT, *extra), stream.complete, stream.method == "HEAD")
        metrics = self.state.metrics
        if metrics is not None:
            metrics.record(stream.method, status, 0.0)

    def answer(self, cycle, status: int, headers, body: bytes) -> None:
        """The exchange verb ``io/health.py`` answers with: the whole
        response at once, then the stream is done."""
        stream = cycle.request
        if not cycle.finished:  # else answered by the server meanwhile (413 in the same read)
            self._answer(stream.stream_id, status, body, headers, True, stream.method == "HEAD")
            if not stream.complete:
                self._reset_stream(stream, proto.NO_ERROR)
            metrics = self.state.metrics
            if metrics is not None:
                metrics.record(stream.method, status, perf_counter() - cycle.started)
        self.stream_done(stream)

    def _data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            self.engine.consumed(stream_id, len(data))  # nobody reads it: keep the windows open
            if end_stream and self.lingering:
                self.lingering.pop(stream_id, None)  # the client got to the end: no reset needed
            return
        if stream.tunnel is not None:
            stream.tunnel.received(data, end_stream)
            return
        size = len(data)
        if size:
            stream.body_since = self.state.now
            stream.body.append(data)
            stream.buffered += size
            stream.received += size
            limit = self.state.config.limit_request_body
            if limit and stream.received > limit:
                if stream.cycle is None:  # still waiting for a slot
                    self.state.stop_waiting(stream)
                    del self.streams[stream_id]
                    self._refuse(stream_id, False, 413, "Request body too large")
                    self.settle()
                elif not stream.cycle.finished:
                    self._server_ends(stream, 413, "Request body too large", "bad_requests")
                return
        if end_stream:
            stream.complete = True
        cycle = stream.cycle
        if cycle is not None:
            cycle.body_arrived()

    # -- the exchange: what a cycle sends through (interfaces/asgi.py) ------------

    def send_head(self, cycle, plan, body: bytes, more: bool) -> None:
        """The head as HTTP/2 fields (``plan`` checked and framed it as for
        HTTP/1.1; connection-specific fields dropped, names lowered) and the
        first body bytes."""
        stream = cycle.request
        fields = _PLAN_FIELDS.get(plan)  # plans are cached per (status, headers): so are their fields
        if fields is None:
            fields = _plan_fields(plan, cycle.status, cycle.headers)
        fields = fields.copy()
        if plan.add_length:
            fields.append((b"content-length", b"%d" % len(body)))
        extra = _extra_fields(self.state.extra_headers)
        drop = getattr(plan, "drop", None)  # the app set Date or Server itself
        fields.extend(extra if drop is None else [field for field in extra if field[0] + b":" not in drop])
        end = not more and not cycle.trailers and not stream.cut
        engine = self.engine
        if body and plan.body_allowed:
            engine.send_head(stream.stream_id, fields, False)
            engine.send_body(stream.stream_id, body, end)
        else:
            engine.send_head(stream.stream_id, fields, end)
        self.frames_queued()

    def send_body(self, cycle, body: bytes, more: bool) -> None:
        stream = cycle.request
        end = not more and not cycle.trailers and not stream.cut
        if body or end:
            self.engine.send_body(stream.stream_id, body, end)
            self.frames_queued()

    def send_trailers(self, cycle, fields) -> None:
        stream_id = cycle.request.stream_id
        if fields:
            self.engine.send_trailers(stream_id, fields)
        else:
            self.engine.send_body(stream_id, b"", True)
        self.frames_queued()

    def send_early_hint(self, cycle, links) -> None:
        """``103 Early Hints`` (RFC 8297): a 1xx HEADERS before the response."""
        fields = [(b":status", b"103")]
        fields.extend((b"link", link) for link in links)
        self.engine.send_informational(cycle.request.stream_id, fields)
        self.frames_queued()

    async def send_file(self, cycle, fd: int, offset: int, count: int) -> int:
        """``count`` bytes of the open file ``fd`` from ``offset`` as DATA
        frames after ``send_head``, read as the stream's window opens (no
        more than ``STREAM_HIGH_WATER`` queued ahead of the peer). Returns
        the bytes sent: fewer when the file ended sooner (truncated
        meanwhile), and the cycle cuts the response."""
        if not cycle.head.body_allowed or count <= 0:
            return 0
        stream = cycle.request
        stream_id = stream.stream_id
        engine = self.engine
        sent = 0
        while sent < count:
            if cycle.gone or self.closing:
                raise ConnectionResetError("client disconnected")
            if not self.writable(stream):
                await self.wait_writable(stream)
                continue
            data = os.pread(fd, min(count - sent, STREAM_HIGH_WATER), offset + sent)
            if not data:
                break  # the file is shorter than it was
            sent += len(data)
            engine.send_body(stream_id, data, False)
            self.frames_queued()
        return sent

    def send_continue(self, cycle) -> None:  # H2Stream.expect_continue is never set
        pass

    def send_error(self, cycle, status: int) -> None:
        stream = cycle.request
        self._answer(stream.stream_id, status, HTTPStatus(status).phrase.encode() + b"\n", _TEXT, True,
                     stream.method == "HEAD")

    def cut(self, cycle) -> None:
        """A response that cannot complete: no END_STREAM; RST_STREAM
        (INTERNAL_ERROR) once what was queued has gone out."""
        stream = cycle.request
        stream.cut = True
        self._reset_stream(stream, proto.INTERNAL_ERROR)

    def body_taken(self, stream: H2Stream, size: int) -> None:
        """The app took ``size`` bytes of the stream's body: let the client send more."""
        self.engine.consumed(stream.stream_id, size)
        self.frames_queued()

    def cycle_done(self, cycle, keep_alive: bool) -> None:
        """The stream's response is over (or given up): a body nobody read
        gives its window back and the client is told to stop sending it
        (after the response: RFC 9113 8.1); counted; the slot freed."""
        stream = cycle.request
        if stream.buffered:
            self.body_taken(stream, stream.buffered)
            stream.buffered = 0
            stream.body.clear()
        if not stream.complete and not cycle.gone:
            self._reset_stream(stream, proto.NO_ERROR)
        metrics = self.state.metrics
        if metrics is not None:  # no head: the server answered 500 for the app, or the client was gone
            status = cycle.status if cycle.head is not None else 0 if cycle.gone else 500
            metrics.record(stream.method, status, perf_counter() - cycle.started)
        self.stream_done(stream)

    def _reset_stream(self, stream: H2Stream, code: int) -> None:
        if not stream.reset:
            stream.reset = True
            self.reset_after_response(stream.stream_id, code)

    def _server_ends(self, stream: H2Stream, status: int, detail: str, counter: str) -> None:
        """--limit-request-body (413), --timeout-body (408): the server
        answers if the app has not, else the stream is reset; the app sees a
        disconnect."""
        cycle = stream.cycle
        log.info("%s: %d %s (HTTP/2 stream %d)", peer_name(self.client), status, detail, stream.stream_id)
        self.state.counters[counter] += 1
        if cycle.head is None:
            cycle.head = _SERVER_ANSWERED
            cycle.status = status
            self._answer(stream.stream_id, status, detail.encode("latin-1") + b"\n")
            self._reset_stream(stream, proto.NO_ERROR)
        else:
            self._reset_stream(stream, proto.CANCEL)
        cycle.finished = True
        cycle.disconnected()

    def _stream_gone(self, stream_id: int) -> None:
        """RST_STREAM from the client, or the stream closed before its response ended."""
        if self.lingering:
            self.lingering.pop(stream_id, None)
        stream = self.streams.get(stream_id)
        if stream is not None:
            if stream.cycle is not None:
                stream.cycle.disconnected()
            elif stream.tunnel is not None:
                stream.tunnel.lost()
            else:  # gone while waiting for a slot
                self.state.stop_waiting(stream)
                del self.streams[stream_id]
                self.settle()
        waiter = self.writers.pop(stream_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def stream_done(self, stream: H2Stream) -> None:
        """Called by the cycle once its response is complete (or given up)."""
        if self.streams.pop(stream.stream_id, None) is None:
            return
        state = self.state
        state.in_flight -= 1
        state.requests += 1
        if state.waiting or state.requests == state.max_requests:
            state.request_done()
        if self.engine.queued(stream.stream_id) and not self.write_since:
            self.write_since = state.now  # its body waits for the peer's window: --timeout-write
        self.settle()

    def settle(self) -> None:
        """A stream left: with none open, the connection is idle (or closes)."""
        if not self.streams and not self.closing:
            self.idle_since = self.state.now
            if self.drain_phase == 2 or self.eof:
                self.frames_queued()
                self.loop.call_soon(self._close_when_flushed)

    # -- the app's writes ----------------------------------------------------------

    def writable(self, stream: H2Stream) -> bool:
        return not self.write_paused and self.engine.queued(stream.stream_id) <= STREAM_HIGH_WATER

    async def wait_writable(self, stream: H2Stream) -> None:
        """Wait until the peer opened its window (or the transport drained)."""
        if self.closing:
            raise ConnectionResetError("client disconnected")
        if not self.write_since:
            self.write_since = self.state.now
        waiter = self.loop.create_future()
        self.writers[stream.stream_id] = waiter
        await waiter
        if self.closing:
            raise ConnectionResetError("client disconnected")

    def _wake_writers(self) -> None:
        writers = self.writers
        if not writers:
            return
        engine = self.engine
        for stream_id, waiter in list(writers.items()):
            if self.closing or (not self.write_paused and engine.queued(stream_id) <= STREAM_HIGH_WATER):
                del writers[stream_id]
                if not waiter.done():
                    waiter.set_result(None)
        if not writers and not self.write_paused:
            self.write_since = 0.0

    def _end_lingering(self, now: float) -> None:
        engine = self.engine
        for stream_id, since in list(self.lingering.items()):
            if now - since >= LINGER_SECONDS and not engine.queued(stream_id):
                del self.lingering[stream_id]
                engine.reset(stream_id, proto.NO_ERROR)
        self.flush()

    def _wake_tunnels(self) -> None:
        for tunnel in list(self.blocked):
            tunnel.check_writable()

    # -- closing and draining ---------------------------------------------------------

    @property
    def phase(self) -> str:
        if self.closing:
            return "closing"
        if self.head_since:
            return "head"
        return "idle" if self.idle_since else "app"

    def tick(self, now: float, timeouts) -> None:
        """Once a second (io/contract.py): the connection's deadlines (a
        write that makes no progress, an unfinished header block, idle),
        each stream's body deadline, and the graceful GOAWAY when the worker
        drains."""
        if self.closing:
            settle_closing(self, now, timeouts.write)
            return
        if write_timed_out(self, now, timeouts.write):
            return
        if self.head_since and now - self.head_since >= timeouts.header:
            log.info("%s: 408 Request header timeout (HTTP/2 header block unfinished)", peer_name(self.client))
            self.state.counters["timeouts"] += 1
            self.close_reason = "header_timeout"
            self.engine.goaway(self.last_stream_id)
            self.flush()
            self.close()
            return
        if self.idle_since:
            if now - self.idle_since >= timeouts.idle:
                self.close_idle()
                if self.closing:
                    return
        elif timeouts.body < _INF:
            for stream in list(self.streams.values()):
                cycle = stream.cycle
                if (cycle is not None and not stream.complete and not cycle.finished and stream.buffered < STREAM_WINDOW
                        and now - stream.body_since >= timeouts.body):
                    self._server_ends(stream, 408, "Request body timeout", "timeouts")
        if self.lingering:
            self._end_lingering(now)
        if self.state.draining:
            if self.drain_phase == 0:
                self.drain_phase = 1
                self.notice_at = now
                self.engine.shutdown_notice()
                self.engine.ping(_PING)
                self.flush()
            elif self.drain_phase == 1 and now - self.notice_at >= GOAWAY_GRACE:
                self._final_goaway()
                self.flush()

    def _final_goaway(self) -> None:
        self.drain_phase = 2
        self.close_reason = "shutdown"
        self.engine.goaway(self.last_stream_id)
        self.frames_queued()
        if not self.streams:
            self.loop.call_soon(self._close_when_flushed)

    def _close_when_flushed(self) -> None:
        if self.engine.queued() and not self.closing:
            self.loop.call_later(0.05, self._close_when_flushed)  # bodies still wait for the window
            return
        if not self.streams and not self.closing:
            self.flush()
            self.close()

    def close_idle(self) -> None:
        """Keep-alive timeout, or draining: GOAWAY, then close (no stream is open)."""
        if self.streams or self.closing or self.engine.queued():
            return
        self.close_reason = "shutdown" if self.state.draining else "keepalive_timeout"
        if self.drain_phase < 2:
            self.drain_phase = 2
            self.engine.goaway(self.last_stream_id)
        self.flush()
        self.close()

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        self.linger_since = self.state.now
        self.transport.close()  # after the buffered frames

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()



_INF = float("inf")
_SERVER_ANSWERED = True  # a cycle's head when the server answered for the app (413, 408)
# Connection-specific fields are not sent over HTTP/2 (RFC 9113 8.2.2).
_CONNECTION_SPECIFIC = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                                  b"upgrade", b"te"))
_extra = [None, []]  # state.extra_headers (Date, Server) last seen, as HTTP/2 fields
_PLAN_FIELDS: dict = {}  # proto.h1.ResponsePlan -> its HTTP/2 fields (status and the app's headers)


def _plan_fields(plan, status: int, headers) -> list:
    """The app's checked headers as HTTP/2 fields: names lowered,
    connection-specific ones dropped (RFC 9113 8.2.2), no Content-Length on
    a 204. Kept per plan object (plan_response caches those): only a plan
    built for unhashable headers, which is never reused, is built again."""
    fields = [(b":status", b"%d" % status)]
    for name, value in headers:
        name = name.lower()
        if name in _CONNECTION_SPECIFIC or (name == b"content-length" and status == 204):
            continue
        fields.append((name, value))
    if len(_PLAN_FIELDS) >= 1024:
        _PLAN_FIELDS.clear()
    _PLAN_FIELDS[plan] = fields
    return fields


def _extra_fields(src: bytes) -> list:
    """Date and Server as HTTP/2 fields, rebuilt when the cached bytes change (once a second)."""
    if src is not _extra[0]:
        fields = []
        for line in src.split(b"\r\n"):
            if line:
                name, _, value = line.partition(b": ")
                fields.append((name, value))
        _extra[0], _extra[1] = src, fields
    return _extra[1]


# HEADERS, PUSH_PROMISE, CONTINUATION: the frames of a header block.
_HEADER_BLOCK_FRAMES = frozenset((0x1, 0x5, 0x9))
# A :path HTTP/1.1 would refuse: a fragment, white space, controls (RFC 9113 8.3.1, RFC 3986).
_BAD_TARGET = re.compile(rb"[#\x00-\x20\x7f]").search
_FORWARDING = frozenset((b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"))
_H2C_HOP_BY_HOP = frozenset((b"connection", b"upgrade", b"http2-settings", b"keep-alive", b"te", b"proxy-connection"))
_SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"


def upgrade_h2c(state, h1, rest: bytes) -> None:
    """``state.h2c_upgrade``: an HTTP/1.1 request with ``Upgrade: h2c`` (and
    no body; proto/h1.py takes no other) switches the connection to HTTP/2,
    and its answer comes as stream 1 (RFC 7540 3.2, deprecated by RFC 9113
    but still sent by some clients).

    Served over HTTP/1.1 instead, with ``Connection: close`` (the parser
    cannot resume after an upgrade): behind other pipelined requests, while
    draining, or with a missing or malformed ``HTTP2-Settings``."""
    queue = h1.queue
    request = queue[-1]
    settings = [value for name, value in request.headers if name == b"http2-settings"]
    payload = None
    if len(settings) == 1 and h1.cycle is None and len(queue) == 1 and not state.draining:
        try:
            value = settings[0].strip()
            payload = base64.b64decode(value + b"=" * (-len(value) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            payload = None
    if payload is not None:
        conn = H2Connection(state)
        try:
            conn.make_engine((payload, request.method == "HEAD"))
        except ValueError:
            log.info("%s: Upgrade: h2c with malformed HTTP2-Settings; served as HTTP/1.1", peer_name(h1.client))
        else:
            queue.pop()
            h1.closing = True
            h1.parser.detach()
            transport = h1.transport
            transport.write(_SWITCHING)
            conn.in_receive = True  # one write for SETTINGS, the answer and whatever ``rest`` brings
            switch(h1, conn, transport)  # counted once, as the HTTP/2 connection from now on (io/switch.py)
            conn.upgraded_request(request)
            conn.in_receive = False
            if rest:
                conn.data_received(rest)
            else:
                conn.flush()
            return
    request.upgrade = None
    request.keep_alive = False
    h1.run_queue()


def prior_knowledge(state, h1, data: bytes) -> None:
    """``state.h2c_prior_knowledge``: cleartext, ``--http auto``, the first
    bytes on an HTTP/1.1 connection (``H1Connection._sniff``) are the HTTP/2
    preface (h2c with prior knowledge). The HTTP/1.1 connection, counted and
    timed from the accept, is closed without a word (counted once: as the
    HTTP/2 connection from now on, with the client a PROXY header named) and
    HTTP/2 takes the transport (``io/switch.py``)."""
    h1.closing = True
    h1.parser.detach()
    switch(h1, H2Connection(state), h1.transport, data)


class H2Tunnel:
    """One HTTP/2 stream as the byte transport of a protocol carried over it
    (RFC 8441: a WebSocket, ``io/ws.py``), with the asyncio transport's
    verbs: DATA both ways, END_STREAM as the half-close (``write_eof``,
    ``close``), RST_STREAM as ``abort``. Flow control: the client's window
    reopens as the protocol reads (``pause_reading`` holds it shut); the
    protocol's writes pause while more than ``STREAM_HIGH_WATER`` bytes wait
    for the client's window.

    The stream sits in ``conn.streams`` (the connection is not idle while
    it is open, and drains after it) but not in the worker's in-flight
    requests: like a WebSocket over HTTP/1.1 it is in ``state.upgraded``."""

    __slots__ = ("conn", "stream", "protocol", "paused", "unacked", "write_paused", "ended", "remote_ended", "done")

    def __init__(self, conn: H2Connection, stream: H2Stream) -> None:
        self.conn = conn
        self.stream = stream
        self.protocol = None
        self.paused = False
        self.unacked = 0  # bytes read while paused: their window reopens on resume
        self.write_paused = False
        self.ended = False  # our END_STREAM (or reset) is queued
        self.remote_ended = False  # the client's END_STREAM came
        self.done = False  # connection_lost was called
        stream.tunnel = self

    # -- the HTTP/2 side -----------------------------------------------------------

    def respond(self, status: int, fields) -> None:
        """The answer to the CONNECT: 200 opens the tunnel."""
        conn = self.conn
        conn.engine.send_head(self.stream.stream_id, [(b":status", b"%d" % status), *fields,
                                                      *_extra_fields(conn.state.extra_headers)], False)
        conn.frames_queued()

    def refuse(self, status: int, detail: str = "") -> None:
        """A short answer in the protocol's place (403, 500, 503); the stream ends."""
        if not self.ended:
            self.ended = True
            conn = self.conn
            body = (detail or "Refused").encode("latin-1") + b"\n"
            conn._answer(self.stream.stream_id, status, body, _TEXT, self.remote_ended)
            conn.loop.call_soon(self.lost)

    def received(self, data: bytes, end_stream: bool) -> None:
        size = len(data)
        protocol = self.protocol
        if size and not self.done:
            if self.paused:
                self.unacked += size
            else:
                self.conn.body_taken(self.stream, size)
            protocol.data_received(data)
        if end_stream and not self.remote_ended:
            self.remote_ended = True
            if self.ended:  # both ends are shut: the stream is over
                self.lost()
            elif not self.done and not protocol.eof_received():
                self.close()

    def lost(self) -> None:
        """The stream is over (both ends, a reset, or the connection)."""
        if self.done:
            return
        self.done = True
        conn = self.conn
        conn.blocked.discard(self)
        stream_id = self.stream.stream_id
        if conn.streams.get(stream_id) is self.stream:
            del conn.streams[stream_id]
            conn.settle()
        self.protocol.connection_lost(None)

    def check_writable(self) -> None:
        if self.write_paused and (self.done or self.get_write_buffer_size() <= STREAM_HIGH_WATER):
            self.write_paused = False
            self.conn.blocked.discard(self)
            if not self.done:
                self.protocol.resume_writing()

    # -- the transport verbs the protocol uses ----------------------------------------

    def get_extra_info(self, name, default=None):
        return self.conn.transport.get_extra_info(name, default)

    def write(self, data) -> None:
        if self.ended or self.done:
            return
        conn = self.conn
        conn.engine.send_body(self.stream.stream_id, bytes(data), False)
        conn.frames_queued()
        if not self.write_paused and (conn.write_paused or self.get_write_buffer_size() > STREAM_HIGH_WATER):
            self.write_paused = True
            conn.blocked.add(self)
            self.protocol.pause_writing()

    def writelines(self, parts) -> None:
        self.write(b"".join(parts))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if not self.ended and not self.done:
            self.ended = True
            conn = self.conn
            conn.engine.send_body(self.stream.stream_id, b"", True)
            conn.frames_queued()
            if self.remote_ended:
                conn.loop.call_soon(self.lost)

    def close(self) -> None:
        self.write_eof()

    def abort(self) -> None:
        if not self.done:
            conn = self.conn
            self.ended = True
            conn.engine.reset(self.stream.stream_id, proto.CANCEL)
            conn.frames_queued()
            self.lost()

    def is_closing(self) -> bool:
        return self.ended or self.done

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        if self.paused:
            self.paused = False
            if self.unacked and not self.done:
                self.conn.body_taken(self.stream, self.unacked)
            self.unacked = 0

    def get_write_buffer_size(self) -> int:
        return self.conn.engine.queued(self.stream.stream_id)
