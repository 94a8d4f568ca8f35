"""A worker's own counters for ``--metrics-bind``: plain ints, no locks, no I/O.

Only present when metrics are on (``ServerState.metrics``; ``None`` when
off, so the request path pays one ``is None`` test). Per request the
connection adds one to a dict entry keyed by (method, status class) and to
one latency bucket (``bisect`` over the bucket bounds); per connection, one
close reason. Nothing else happens per request.

Once a second, with its heartbeat, the worker sends ``snapshot()``, the
totals since it started (JSON, well under the pipe's atomic write size), to
the master (``supervisor/metrics.py``), which adds them up across workers.
Totals rather than deltas: a dropped message costs nothing, the next one
carries everything.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from time import perf_counter

# Upper bounds (seconds) of the request latency histogram; +Inf is implied.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Latencies below 0.1 s find their bucket in a table by 0.5 ms steps (every
# bound up to 0.1 is a multiple of 0.5 ms); slower ones bisect.
_STEP = 2000  # steps per second
_FAST = [bisect_left(BUCKETS, (i + 0.5) / _STEP) for i in range(int(0.1 * _STEP))]
_FAST_LEN = len(_FAST)
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"))
# Why a connection closed (H1Connection.close_reason); "normal" is the
# client closing, or a response that said Connection: close.
CLOSE_REASONS = (
    "normal",
    "keepalive_timeout",
    "header_timeout",
    "body_timeout",
    "write_timeout",
    "bad_request",
    "limit",
    "shutdown",
    "upgraded",
)

clock = perf_counter


class WorkerMetrics:
    __slots__ = ("rows", "buckets", "latency_sum", "closed", "ws_messages_in", "ws_messages_out", "loop_lag")

    def __init__(self) -> None:
        self.rows: dict = {}  # method -> [count by status class: 0 = no answer (client gone), 1..5]
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.latency_sum = 0.0
        self.closed = dict.fromkeys(CLOSE_REASONS, 0)
        self.ws_messages_in = 0
        self.ws_messages_out = 0
        self.loop_lag = 0.0  # worst lateness of the once-a-second tick since the last report

    def request_done(self, cycle, started: float) -> None:
        """A response is complete (or failed): count it and its latency."""
        elapsed = perf_counter() - started
        method = cycle.request.method
        row = self.rows.get(method)
        if row is None:
            row = self.rows[method] = [0] * 10
        if cycle.head is not None:
            row[cycle.status // 100] += 1
        else:  # the server answered 500 for the app, or the client was gone
            row[0 if cycle.gone else 5] += 1
        step = int(elapsed * _STEP)
        self.buckets[_FAST[step] if step < _FAST_LEN else bisect_left(BUCKETS, elapsed)] += 1
        self.latency_sum += elapsed

    def snapshot(self, state) -> str:
        """Totals since this worker started, as one JSON line for the master."""
        requests: dict[str, int] = {}
        for method, row in self.rows.items():
            for status, count in enumerate(row):
                if count:
                    key = (method if method in METHODS else "other") + " " + (f"{status}xx" if status else "none")
                    requests[key] = requests.get(key, 0) + count
        counters = state.counters
        data = {
            "requests": requests,
            "buckets": self.buckets,
            "latency_sum": round(self.latency_sum, 6),
            "accepted": counters["connections"],
            "closed": self.closed,
            "rejected": counters["rejected_busy"],
            "ws": counters["websockets"],
            "ws_in": self.ws_messages_in,
            "ws_out": self.ws_messages_out,
            "ws_open": len(state.upgraded),
            "lag": round(self.loop_lag, 6),
        }
        self.loop_lag = 0.0
        return json.dumps(data, separators=(",", ":"))
