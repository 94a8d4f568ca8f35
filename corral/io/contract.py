"""The connection contract: what every connection in ``state.connections`` is
to the worker, and the rules every protocol shares, written once.

Every connection object in ``state.connections`` (``H1Connection``,
``H2Connection``, ``ProxyConnection`` while it reads a PROXY header; a TLS
handshake sits in ``state.handshakes`` with its own single deadline, and a
phase hands its transport to the next through ``io/switch.py``) has:

* ``phase``: where it is, for the sweep, the drain and the logs;
* ``tick(now, timeouts)``: called once a second by ``ServerState.sweep``.
  The connection looks at its own timestamps and acts: it goes on, closes
  (with a reason for the metrics), or aborts. Nobody else reads its fields
  to decide that;
* ``close()``, ``abort()``, ``close_idle()`` (between requests: close;
  while draining it is how idle connections leave), ``close_reason``;
* ``closing``, ``linger_since``, ``write_since``, ``write_left``: the
  shared write-side rules below work on these.

Phases (``phase``; set where the protocol moves on, read by the tick):

==============  ===========================================  ====================
phase           what the connection waits for                timeout
==============  ===========================================  ====================
``idle``        the next request (keep-alive)                ``--timeout-keep-alive``
``head``        the rest of a request head / header block    ``--timeout-header``
``body``        request body bytes the app waits for         ``--timeout-body``
``app``         the app (and, for HTTP/2, any stream)        none (``--timeout-worker``)
``queued``      a concurrency slot                           ``--limit-concurrency-queue``
``closing``     its last bytes to flush, then the close      lingering, ``--timeout-write``
==============  ===========================================  ====================

HTTP/1.1 is in one phase at a time. An HTTP/2 connection multiplexes: it
is ``idle`` with no stream open, ``head`` while a header block is
unfinished, and each stream has its own ``body``/``queued`` deadline; the
connection's tick walks them. A write that makes no progress for
``--timeout-write`` aborts the connection in every phase.

Things that wait for a concurrency slot (``state.waiting``: an HTTP/1.1
connection, or one HTTP/2 stream) have ``waiting_since``, ``closing``,
``run_queue(behind)`` (a slot may be free: try again; ``behind``: it
waited behind others, so its socket's clock does not time the server) and ``give_up()`` (the
queue time ran out: answer 503); ``ServerState`` expires them, once.

Admission: a protocol about to start a request compares ``state.in_flight``
with ``state.limit_concurrency`` (one comparison on the hot path). When it
is reached, or while the overload control watches (io/overload.py sets it to
-1), ``state.admit(waiter)`` decides, for every protocol alike: ``ADMIT``
(run it), ``WAIT`` (queued for a slot) or ``SHED`` (answered 503 with
``reject_busy()``). A waiter's ``wire`` is the transport its bytes came on.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from ..proto.h1 import error_response
from .transport import peer_name

log = logging.getLogger("corral.error")

ADMIT, WAIT, SHED = 0, 1, 2  # ServerState.admit's verdicts

# The 503 of --limit-concurrency and of the overload control, on every path
# (HTTP/1.1, HTTP/2, a WSGI thread, the accept-time sieve).
BUSY = b"Server busy, retry later\n"
RETRY_AFTER = b"1"


def busy_response(extra_headers: bytes, keep_alive: bool = False) -> bytes:
    """HTTP/1.1's 503 for a request shed as busy."""
    return error_response(503, BUSY[:-1].decode(), extra_headers + b"retry-after: " + RETRY_AFTER + b"\r\n",
                          keep_alive=keep_alive)

# Seconds a closing connection keeps reading (and discarding) before the close.
LINGER_SECONDS = 2.0


class Timeouts(NamedTuple):
    """The sweep's deadlines (seconds; ``inf`` when off)."""

    idle: float
    header: float
    body: float
    write: float


def settle_closing(conn, now: float, write_timeout: float) -> None:
    """A closing connection: wait for its buffered bytes to flush while the
    client reads (however slowly), then close; abort one that reads nothing."""
    transport = conn.transport
    if transport is None:
        return
    left = transport.get_write_buffer_size()
    if left:
        if left < conn.write_left:  # the client reads: the last response is flushing
            conn.linger_since = now
        conn.write_left = left
        if now - conn.linger_since >= max(LINGER_SECONDS, write_timeout):
            transport.abort()
    elif now - conn.linger_since >= LINGER_SECONDS:
        transport.close()


def write_timed_out(conn, now: float, write_timeout: float) -> bool:
    """--timeout-write counts time without progress: a client that reads,
    however slowly, restarts the clock. True (the connection is aborted)
    when it ran out."""
    since = conn.write_since
    if not since:
        return False
    left = conn.transport.get_write_buffer_size()
    if left < conn.write_left:
        conn.write_since = since = now
    conn.write_left = left
    if now - since < write_timeout:
        return False
    log.info("%s: closing a client that read none of its response for %.0fs", peer_name(conn.client), now - since)
    conn.state.counters["timeouts"] += 1
    conn.close_reason = "write_timeout"
    conn.abort()
    return True


class ServerAnswer:
    """Base of the cycles corral answers itself, without the app
    (``io/health.py``, ``io/static.py``): they never read the request body,
    so the connection's notifications about it are nothing to them (one
    that sends a file for a while overrides ``disconnected``)."""

    __slots__ = ()

    def disconnected(self) -> None:
        pass

    def client_eof(self) -> None:
        pass

    def body_arrived(self) -> None:
        pass

    def body_too_large(self) -> None:
        pass
