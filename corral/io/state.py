"""What every connection of one worker shares: config, clock, counters, sweep.

There is no timer per connection or per request. The worker calls ``tick``
once a second (on the second, so the cached ``Date`` is exact); it refreshes
the clock and the ``Date``/``Server`` header bytes and sweeps connections for
expired timeouts.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from email.utils import formatdate

from .h1 import LINGER_SECONDS
from .stepper import Stepper

log = logging.getLogger("corral.error")


class ServerState:
    def __init__(self, config, loop) -> None:
        self.config = config
        self.loop = loop
        self.stepper = Stepper(loop)
        self.handler = None  # per-request handler (interfaces/asgi.py or wsgi.py)
        self.upgrade_handler = None  # takes over upgraded connections (WebSocket)
        self.lifespan_state: dict = {}
        self.connections: set = set()  # HTTP/1.1 connections (H1Connection)
        # Connections taken over by another protocol (WebSocket). Each has
        # ``async going_away()``: close with 1001 and wait, bounded by the caller.
        self.upgraded: set = set()
        self.counters: Counter = Counter()
        self.draining = False
        self.on_all_closed = None  # called when draining and the last connection closes
        self.on_max_requests = None  # called once when --limit-max-requests is reached
        self.max_requests = 0
        self.now = loop.time()
        self.extra_headers = b""
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
        """Close connections whose idle or linger time has run out."""
        now = self.now
        if idle_timeout is None:
            idle_timeout = self.config.timeout_keep_alive
        for conn in list(self.connections):
            if conn.closing:
                if now - conn.linger_since >= LINGER_SECONDS and conn.transport is not None:
                    conn.transport.close()
            elif conn.idle_since and now - conn.idle_since >= idle_timeout:
                conn.close_idle()

    # -- connection bookkeeping --------------------------------------------

    def connection_opened(self, conn) -> None:
        self.connections.add(conn)
        self.counters["connections"] += 1

    def connection_closed(self, conn) -> None:
        self.connections.discard(conn)
        if self.draining and not self.connections and self.on_all_closed is not None:
            self.on_all_closed()

    def request_done(self, conn) -> None:
        counters = self.counters
        counters["requests"] += 1
        if self.max_requests and counters["requests"] == self.max_requests and self.on_max_requests:
            self.on_max_requests()

    def upgrade(self, conn, rest: bytes) -> None:
        handler = self.upgrade_handler
        if handler is None:
            # No WebSocket support: answer the upgrade request as plain HTTP,
            # then close (the parser cannot resume after an upgrade).
            for request in conn.queue:
                request.keep_alive = False
            conn.run_queue()
            return
        handler(conn, rest)

    def in_flight(self) -> int:
        return sum(1 for conn in self.connections if conn.cycle is not None)
