"""What every connection of one worker shares: config, clock, counters, sweep.

There is no timer per connection or per request. The worker calls ``tick``
once a second (on the second, so the cached ``Date`` is exact); it refreshes
the clock and the ``Date``/``Server`` header bytes and sweeps connections for
expired timeouts.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter, deque
from email.utils import formatdate

from ..proto.forwarded import Forwarding, TrustedPeers
from .access import AccessLog
from .contract import ADMIT, SHED, WAIT, Timeouts
from .stepper import Stepper

log = logging.getLogger("corral.error")
_INF = float("inf")


class ServerState:
    def __init__(self, config, loop) -> None:
        self.config = config
        self.loop = loop
        self.stepper = Stepper(loop)
        self.handler = None  # per-request handler (interfaces/asgi.py)
        self.upgrade_handler = None  # takes over upgraded connections (WebSocket)
        self.lifespan_state: dict = {}
        self.connections: set = set()  # HTTP/1.1 connections (H1Connection)
        # Connections taken over by another protocol (WebSocket). Each has
        # ``async going_away()``: close with 1001 and wait, bounded by the caller.
        self.upgraded: set = set()
        # TLS connections accepted whose handshake is not done (io/tls.py):
        # open connections for --limit-connections and for draining.
        self.handshakes: set = set()
        # HTTP/2 connections (io/h2.py), also in ``connections``: their sweep
        # starts the graceful GOAWAY when the worker drains.
        self.h2: set = set()
        self.h2_handler = None  # per-stream handler (interfaces/asgi_h2.py)
        self.h2c = False  # cleartext HTTP/2 allowed: the parser takes ``Upgrade: h2c``
        self.h2c_upgrade = None  # io/h2.py upgrade_h2c, with h2c
        # io/h2.py prior_knowledge, with h2c: an HTTP/1.1 connection whose
        # first bytes are the HTTP/2 preface becomes HTTP/2 (H1Connection._sniff)
        self.h2c_prior_knowledge = None
        self.counters: Counter = Counter()
        self.draining = False
        self.refusing = False  # fast shutdown: every request gets 503 at once
        self.in_flight = 0  # requests being handled
        self.requests = 0  # requests answered
        self.pid = os.getpid()
        # --limit-concurrency, and the value the protocols compare in_flight
        # with: the same, except while the overload control watches (-1, so
        # that every request goes through ``admit``: io/overload.py).
        self.concurrency_limit = self.limit_concurrency = config.limit_concurrency or float("inf")
        self.overload = None  # io/overload.Overload with --limit-queue-delay
        self.waiting: deque = deque()  # connections queued for a concurrency slot
        self.metrics = None  # WorkerMetrics (io/metrics.py) with --metrics-bind, else None
        self.gate = None  # accept gating (worker/accept.py): opened(n) / closed(n)
        self.on_max_requests = None  # called once when --limit-max-requests is reached
        # --limit-max-requests (limit_max_requests); -1, which the count never
        # equals, when there is none. Not 0: a health check (io/health.py)
        # leaves the count at 0 too.
        self.max_requests = -1
        self.now = loop.time()
        self.extra_headers = b""
        # Forwarding fields of trusted peers (--proxy-headers), or None.
        self.forwarding = (
            Forwarding(TrustedPeers(config.forwarded_allow_ips), config.forwarded_host) if config.proxy_headers else None
        )
        # The access log (io/access.py), None when off: ``access.record(...)``
        # is the one entry point of every request handler.
        self.access = None
        if config.access_log and logging.getLogger("corral.access").isEnabledFor(logging.INFO):
            self.access = AccessLog(loop, config.access_log_format, config.log_file, config.log_format)
        self._date_second = -1
        self.refresh()

    # -- clock and cached headers --------------------------------------------

    def refresh(self) -> None:
        self.now = self.loop.time()
        second = int(time.time())
        if second != self._date_second:
            self._date_second = second
            config = self.config
            extra = b""
            if config.date_header:
                extra += b"date: " + formatdate(second, usegmt=True).encode("ascii") + b"\r\n"
            if config.server_header:
                extra += b"server: corral\r\n"
            self.extra_headers = extra

    def tick(self) -> None:
        self.refresh()
        self.sweep()

    def sweep(self, idle_timeout: float | None = None) -> None:
        """One pass, no timers: each connection's tick applies its own
        deadlines (io/contract.py); then the concurrency queue, the
        handshakes and the WebSocket keepalive."""
        now = self.now
        config = self.config
        timeouts = Timeouts(
            config.timeout_keep_alive if idle_timeout is None else idle_timeout,
            config.timeout_header or _INF,
            config.timeout_body or _INF,
            config.timeout_write or _INF,
        )
        for conn in list(self.connections):
            try:
                conn.tick(now, timeouts)
            except Exception:
                # A bug in one connection's timeouts must not stop the others'.
                log.exception("timeout sweep failed for a connection; aborting it")
                conn.abort()
        if self.waiting:
            self._expire_waiting(now)
        if self.handshakes:
            self._sweep_handshakes(now)
        try:
            self.sweep_upgraded()
        except Exception:
            log.exception("WebSocket keepalive sweep failed")

    def _sweep_handshakes(self, now: float) -> None:
        timeout = self.config.timeout_handshake
        if timeout:
            for conn in list(self.handshakes):
                if now - conn.started >= timeout:
                    conn.expire()

    def sweep_upgraded(self) -> None:
        """WebSocket keepalive; replaced by the WebSocket layer when present."""

    # -- concurrency limit ------------------------------------------------

    def admit(self, waiter) -> int:
        """A request (an HTTP/1.1 connection's next one, or an HTTP/2 stream)
        when ``in_flight >= limit_concurrency``: over --limit-concurrency it
        waits for a slot (WAIT) or is answered 503 (SHED); while the overload
        control watches, one that waited past --limit-queue-delay is answered
        503 (SHED, io/overload.py); else it runs (ADMIT)."""
        if self.in_flight >= self.concurrency_limit:
            return WAIT if self.over_limit(waiter) else SHED
        overload = self.overload
        if overload is not None and overload.watching and overload.late(waiter.wire):
            self.counters["shed_queue_delay"] += 1
            waiter.reject_busy()
            return SHED
        return ADMIT

    def over_limit(self, conn) -> bool:
        """Over --limit-concurrency: queue ``conn`` (an HTTP/1.1 connection
        or an HTTP/2 stream) for a slot (returns True: it waits), or answer
        it 503 (``reject_busy``; returns False: the caller goes on with the
        requests behind it)."""
        if self.config.limit_concurrency_queue > 0 and not self.refusing:
            if not conn.waiting_since:
                conn.waiting_since = self.now or 1e-9
                self.waiting.append(conn)
            return True
        self.counters["rejected_busy"] += 1
        conn.reject_busy()
        return False

    def _expire_waiting(self, now: float) -> None:
        """--limit-concurrency-queue ran out for these waiters: 503 (io/contract.py)."""
        limit = self.config.limit_concurrency_queue
        for waiter in [w for w in self.waiting if now - w.waiting_since >= limit]:
            self.waiting.remove(waiter)
            waiter.waiting_since = 0.0
            self.counters["rejected_busy"] += 1
            waiter.give_up()

    def stop_waiting(self, waiter) -> None:
        """A waiter that left (closed, reset) before its slot."""
        if waiter.waiting_since:
            waiter.waiting_since = 0.0
            try:
                self.waiting.remove(waiter)
            except ValueError:
                pass

    def _next_waiting(self) -> None:
        waiting = self.waiting
        while waiting and self.in_flight < self.concurrency_limit:
            conn = waiting.popleft()
            conn.waiting_since = 0.0
            if not conn.closing:
                self.loop.call_soon(conn.run_queue)
                return

    # -- connection bookkeeping --------------------------------------------

    def connection_opened(self, conn) -> None:
        self.connections.add(conn)
        self.counters["connections"] += 1
        if self.gate is not None:
            self.gate.opened(len(self.connections) + len(self.upgraded) + len(self.handshakes))

    def connection_closed(self, conn) -> None:
        self.connections.discard(conn)
        if self.metrics is not None:
            self.metrics.closed[conn.close_reason] += 1
        if conn.waiting_since:
            self.stop_waiting(conn)
        if self.gate is not None:
            self.gate.closed(len(self.connections) + len(self.upgraded) + len(self.handshakes))

    def hand_over(self, conn) -> None:
        """``conn`` gives its transport to the next protocol (h2c upgrade,
        prior knowledge): not a close. The next one's ``connection_opened``
        counts the connection again, so it is counted once, opened and
        closed, whatever protocols it went through."""
        self.connections.discard(conn)
        if conn.waiting_since:
            self.stop_waiting(conn)
        self.counters["connections"] -= 1

    def handshake_started(self, conn) -> None:
        self.handshakes.add(conn)
        if self.gate is not None:
            self.gate.opened(len(self.connections) + len(self.upgraded) + len(self.handshakes))

    def handshake_done(self, conn) -> None:
        """The handshake ended: the connection is handed over (and counted in
        ``connections`` already) or closed."""
        self.handshakes.discard(conn)
        if self.gate is not None:
            self.gate.closed(len(self.connections) + len(self.upgraded) + len(self.handshakes))

    def cycles_timed(self) -> bool:
        """Whether a request cycle reads the clock as it starts: for an access
        log format with the request time, and for --metrics-bind (so
        ``self.metrics`` is set before the handlers ask)."""
        return (self.access is not None and self.access.timed) or self.metrics is not None

    def limit_max_requests(self, limit: int, reached) -> None:
        """--limit-max-requests: call ``reached()`` once this worker has answered
        ``limit`` requests of the app (0: never)."""
        self.max_requests = limit if limit > 0 else -1
        self.on_max_requests = reached

    def request_done(self) -> None:
        """After a request, when a connection waits for a slot or
        --limit-max-requests is reached (the counts are kept by the caller)."""
        if self.waiting:
            self._next_waiting()
        if self.requests == self.max_requests and self.on_max_requests:
            reached, self.on_max_requests = self.on_max_requests, None
            reached()  # once: health checks leave the count where it was

    def upgrade(self, conn, rest: bytes) -> None:
        if conn.queue and conn.queue[-1].upgrade == b"h2c":
            self.h2c_upgrade(self, conn, rest)
            return
        handler = self.upgrade_handler
        if handler is None:
            # No WebSocket support: answer the upgrade request as plain HTTP,
            # then close (the parser cannot resume after an upgrade).
            for request in conn.queue:
                request.keep_alive = False
            conn.run_queue()
            return
        handler(conn, rest)
