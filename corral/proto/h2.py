"""HTTP/2 (RFC 9113) frames, streams, HPACK and flow control, sans-I/O.

``H2Engine`` is corral's interface to an HTTP/2 engine: bytes in
(``receive``) give events, calls (``send_head``, ``send_body``, ``reset``,
``goaway`` ...) queue frames, ``data_to_send`` gives the bytes to write.
``io/h2.py`` uses nothing else, so the engine can be swapped here.

The engine is libnghttp2 through ``ngh2``, chosen by measurement
(``bench/h2_engine.py``, parse 10 requests and answer them, per request, one
core): the pure-Python ``h2`` library 58.6 us, ``ngh2`` 1.7 us. ``h2`` alone
would cap a worker near 17,000 requests/s before any app code runs.

nghttp2 also carries the defences against the known HTTP/2 attacks, which
the configuration below bounds: rapid reset (CVE-2023-44487: a token bucket
on RST_STREAM), CONTINUATION floods (CVE-2024-27316: at most 8 per header
block), HPACK bombs (decoded header-list size and field count bounded), ping
and SETTINGS floods (queued acknowledgements bounded), empty-frame and other
"glitch" floods (a token bucket). A peer over a bound gets GOAWAY and the
connection ends (``want_read``/``want_write`` both False once flushed).

Receive-side flow control is manual: a stream's window reopens only as the
app takes its body (``consumed``), so a slow app pushes back on the client.
"""

from __future__ import annotations

import ngh2

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Events (the engine's own types, named here so io/ does not import ngh2).
RequestReceived = ngh2.RequestReceived
DataReceived = ngh2.DataReceived
TrailersReceived = ngh2.TrailersReceived
StreamReset = ngh2.StreamReset
StreamClosed = ngh2.StreamClosed
WindowUpdated = ngh2.WindowUpdated
PingAcknowledged = ngh2.PingAcknowledged
GoAwayReceived = ngh2.GoAwayReceived
ConnectionClosed = ngh2.ConnectionClosed

NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
REFUSED_STREAM = 0x7
CANCEL = 0x8
ENHANCE_YOUR_CALM = 0xB

_MAX_STREAM_ID = 2**31 - 1


class H2Engine:
    """One server-side HTTP/2 connection's protocol state."""

    __slots__ = ("conn",)

    def __init__(self, *, max_concurrent_streams: int, max_header_list_size: int, stream_window: int,
                 connection_window: int, upgrade: tuple[bytes, bool] | None = None,
                 connect_protocol: bool = False) -> None:
        """``upgrade``: (the client's decoded HTTP2-Settings, whether the
        request was HEAD) after ``Upgrade: h2c``; the request is stream 1.
        Raises ValueError for a malformed settings payload. ``connect_protocol``:
        advertise SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441: WebSocket over
        HTTP/2 by an extended CONNECT with ``:protocol``)."""
        config = ngh2.Configuration(
            auto_window_update=False,
            max_inbound_header_list_size=max_header_list_size,
            max_inbound_header_count=1024,
            max_continuations=8,
            max_outbound_ack=100,
            stream_reset_rate_limit=(1000, 33),
            glitch_rate_limit=(1000, 330),
        )
        conn = self.conn = ngh2.Connection(ngh2.Role.SERVER, config)
        settings = {
            ngh2.Setting.MAX_CONCURRENT_STREAMS: max_concurrent_streams,
            ngh2.Setting.INITIAL_WINDOW_SIZE: stream_window,
            ngh2.Setting.MAX_HEADER_LIST_SIZE: max_header_list_size,
        }
        if connect_protocol:
            settings[ngh2.Setting.ENABLE_CONNECT_PROTOCOL] = 1
        if upgrade is None:
            conn.initiate_connection(settings)
        else:
            payload, head = upgrade
            conn.initiate_upgrade(payload, local_settings=settings, head_request=head)
        if connection_window > 65535:
            conn.set_local_window_size(connection_window)

    def receive(self, data) -> list:
        conn = self.conn
        conn.receive_data(data)
        return conn.events()

    def data_to_send(self) -> bytes:
        return self.conn.data_to_send()

    @property
    def open(self) -> bool:
        """False once the connection is over (GOAWAY both ways, or a fatal error) and flushed."""
        conn = self.conn
        return conn.want_read or conn.want_write

    def send_head(self, stream_id: int, headers, end_stream: bool) -> None:
        self.conn.send_response(stream_id, headers, end_stream=end_stream)

    def send_body(self, stream_id: int, data, end_stream: bool) -> None:
        self.conn.send_data(stream_id, data, end_stream=end_stream)

    def send_trailers(self, stream_id: int, headers) -> None:
        self.conn.send_trailers(stream_id, headers)

    def send_informational(self, stream_id: int, headers) -> None:
        """A 1xx response (103 Early Hints) before the final one."""
        self.conn.send_informational_response(stream_id, headers)

    def queued(self, stream_id: int | None = None) -> int:
        """Response body bytes waiting for the peer's flow-control window
        (of one stream, or of all)."""
        return self.conn.queued_body_size(stream_id)

    def consumed(self, stream_id: int, size: int) -> None:
        """The app took ``size`` body bytes of ``stream_id``: reopen the windows."""
        if size:
            try:
                self.conn.acknowledge_received_data(size, stream_id)
            except ngh2.NGH2Error:
                pass  # the stream is gone: nothing to reopen

    def reset(self, stream_id: int, code: int = CANCEL) -> None:
        try:
            self.conn.reset_stream(stream_id, code)
        except ngh2.NGH2Error:
            pass

    def shutdown_notice(self) -> None:
        """First GOAWAY of a graceful close (RFC 9113 6.8): last stream 2^31-1."""
        self.conn.send_shutdown_notice()

    def ping(self, opaque: bytes) -> None:
        self.conn.ping(opaque)

    def goaway(self, last_stream_id: int | None = None, code: int = NO_ERROR) -> None:
        self.conn.send_goaway(code, last_stream_id=last_stream_id)
