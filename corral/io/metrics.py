"""A worker's own counters for ``--metrics-bind``: plain lists, no locks, no I/O.

Only present when metrics are on (``ServerState.metrics``; ``None`` when
off, so the request path pays one ``is None`` test). The counting is inlined
in ``H1Connection.cycle_done``, since a method call alone costs a tenth of
the budget (3% of a hello-world request). Per request it is two clock reads
(``perf_counter`` when the request starts running and when it completes:
full resolution, since the smallest buckets are 0.5 and 1 ms), one dict
lookup, two list indexes and one ``list.append``:

    rows[method][status][bucket].append(elapsed)

``rows[method]`` is a list indexed by the status code itself (0: no answer,
the client was gone) whose entries are shared per status class, so there is
no division; each entry holds one list per latency bucket (bucket 0 after
one float compare, a slower request bisects). Appending the latency counts
the request, its bucket and its latency at once: ``fold()``, once a second,
takes ``len()`` and ``math.fsum()`` of each list in C and empties it, so an
increment and a float sum per request (each allocating an object) cost
nothing in Python. Between folds a list holds at most one second's requests.
The method class and status class labels are applied in ``fold()`` too.
Methods other than ``METHODS`` share one row (made-up methods grow nothing).
Per connection, one close reason.

Once a second, with its heartbeat, the worker sends ``snapshot()``, the
totals since it started (JSON, well under the pipe's atomic write size), to
the master (``supervisor/metrics.py``), which adds them up across workers.
Totals rather than deltas: a dropped message costs nothing, the next one
carries everything.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left

# Upper bounds (seconds) of the request latency histogram; +Inf is implied.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A latency up to FIRST lands in bucket 0 after one compare; a slower one
# bisects (a request of more than half a millisecond does not notice).
FIRST = BUCKETS[0]
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
# Status codes index a row directly: ASGI and WSGI statuses are 200..999,
# 0 stands for no answer (the client was gone).
STATUSES = 1000
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
    "handshake_timeout",
)


def bucket(elapsed: float) -> int:
    """The histogram bucket of a latency (Prometheus ``le``: bound >= elapsed)."""
    return bisect_left(BUCKETS, elapsed)


def _row() -> list:
    """One method's requests since the last fold: status code -> its status
    class's latencies, one list per bucket."""
    classes = [[[] for _ in range(len(BUCKETS) + 1)] for _ in range(10)]
    return [classes[status // 100] for status in range(STATUSES)]


class WorkerMetrics:
    __slots__ = ("rows", "other", "counts", "latency_sum", "closed", "ws_messages_in", "ws_messages_out", "loop_lag",
                 "queue_delays", "queue_delay_sum")

    def __init__(self) -> None:
        # method -> status code -> bucket -> latencies since the last fold
        self.rows: dict[str, list] = {method: _row() for method in METHODS}
        self.other = _row()  # every other method
        self.counts: dict[str, list[int]] = {}  # "GET 2xx" -> requests by bucket, folded
        self.latency_sum = 0.0
        self.closed = dict.fromkeys(CLOSE_REASONS, 0)
        self.ws_messages_in = 0
        self.ws_messages_out = 0
        self.loop_lag = 0.0  # worst lateness of the once-a-second tick since the last report
        self.queue_delays = [0] * (len(BUCKETS) + 1)  # --limit-queue-delay: by bucket, cumulative
        self.queue_delay_sum = 0.0

    def record(self, method: str, status: int, elapsed: float) -> None:
        """One request, off the HTTP/1.1 path (HTTP/2 streams): what
        ``H1Connection.cycle_done`` does inline. ``status`` 0: no answer."""
        row = self.rows.get(method, self.other)
        row[status][0 if elapsed <= FIRST else bucket(elapsed)].append(elapsed)

    def fold(self) -> None:
        """Add the requests recorded since the last fold to the totals."""
        counts = self.counts
        for method, row in (*self.rows.items(), ("other", self.other)):
            for status_class in range(10):
                for i, latencies in enumerate(row[status_class * 100]):
                    if latencies:
                        key = f"{method} {status_class}xx" if status_class else f"{method} none"
                        total = counts.get(key)
                        if total is None:
                            total = counts[key] = [0] * (len(BUCKETS) + 1)
                        total[i] += len(latencies)
                        self.latency_sum += math.fsum(latencies)
                        latencies.clear()

    def fold_queue_delays(self, overload) -> list[int]:
        """The overload control's queue delays (io/overload.py: measured while
        it watches) into this worker's histogram; the cumulative counts."""
        counts = self.queue_delays
        if overload is not None and overload.delays:
            for delay in overload.delays:
                counts[bisect_left(BUCKETS, delay)] += 1
                self.queue_delay_sum += delay
            overload.delays.clear()
        return counts

    def snapshot(self, state) -> str:
        """Totals since this worker started, as one JSON line for the master."""
        self.fold()
        requests = {key: sum(total) for key, total in self.counts.items()}
        buckets = [sum(column) for column in zip(*self.counts.values())] or [0] * (len(BUCKETS) + 1)
        counters = state.counters
        data = {
            "requests": requests,
            "buckets": buckets,
            "latency_sum": round(self.latency_sum, 6),
            "accepted": counters["connections"],
            "closed": self.closed,
            "rejected": counters["rejected_busy"],
            "shed": counters["shed_queue_delay"],
            "qdelay": self.fold_queue_delays(state.overload),
            "qdelay_sum": round(self.queue_delay_sum, 6),
            "ws": counters["websockets"],
            "ws_in": self.ws_messages_in,
            "ws_out": self.ws_messages_out,
            "ws_open": len(state.upgraded),
            "lag": round(self.loop_lag, 6),
        }
        self.loop_lag = 0.0
        return json.dumps(data, separators=(",", ":"))
