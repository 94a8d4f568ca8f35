"""``--health-path``: answered by the connection itself, without calling the app.

``HealthCheck`` wraps the worker's request handler only when the option is
set (so the normal request path pays nothing when it is off, and one call
and one comparison when it is on). A request for the path gets ``200 ok``
while the worker serves and ``503 stopping`` during the shutdown delay and
the drain (the worker's ``state.draining``). No Task, no app call; it is not
counted as a request of the app (``--max-requests``) and is access-logged
only at debug level. ``--metrics-bind`` counts it, with its status, in
``corral_requests_total`` and the latency histogram, as the server's answer.
"""

from __future__ import annotations

import logging

from time import perf_counter

from .contract import ServerAnswer


access_log = logging.getLogger("corral.access")

_HEADERS = ((b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store"))


class HealthCheck:
    __slots__ = ("path", "handler", "log")

    def __init__(self, path: str, handler, access: bool) -> None:
        self.path = path.encode("latin-1")
        self.handler = handler  # the app's (ASGI or WSGI) cycle factory
        self.log = access and access_log.isEnabledFor(logging.DEBUG)

    def __call__(self, conn, request):
        if request.raw_path == self.path:
            return HealthCycle(self, conn, request)
        return self.handler(conn, request)


class HealthCycle(ServerAnswer):
    """The cycle interface the connections drive (start, request, head, and
    the notifications), for a response given at once through the
    connection's ``answer`` (HTTP/1.1 and HTTP/2 alike)."""

    __slots__ = ("check", "conn", "request", "head", "status", "started", "finished")

    def __init__(self, check: HealthCheck, conn, request) -> None:
        self.check = check
        self.conn = conn
        self.request = request
        self.head = None
        self.status = 0  # what --metrics-bind counts (io/h1.py cycle_done)
        self.finished = False  # HTTP/2: the server answered the stream meanwhile (413 in the same read)
        self.started = perf_counter() if conn.state.metrics is not None else 0.0

    def start(self) -> None:
        conn = self.conn
        state = conn.state
        request = self.request
        status, body = (503, b"stopping\n") if state.draining else (200, b"ok\n")
        if self.check.log:
            client = request.forwarded.client if request.forwarded else conn.client  # behind a proxy: the real one
            access_log.debug(
                '%s - "%s %s HTTP/%s" %d (health)',
                f"{client[0]}:{client[1]}" if client else "-",
                request.method,
                request.target.decode("latin-1"),
                request.http_version,
                status,
            )
        state.requests -= 1  # not a request of the app: the connection counts it back
        conn.answer(self, status, _HEADERS, body)  # HTTP/1.1 or HTTP/2 (the exchange verb)

