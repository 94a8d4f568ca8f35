"""--metrics-bind, a worker's side: what ``H1Connection.cycle_done`` counts
(inlined; io/metrics.py) and what ``WorkerMetrics.snapshot`` sends.

A real connection on a socketpair; the clock (read by the cycle as it
starts, by the connection as it ends) is played by the test (the app moves
it), so every latency, and so its bucket, is exact.
"""

from __future__ import annotations

import json

import pytest

from corral.interfaces import asgi
from corral.interfaces.asgi import ASGIHandler
from corral.io import h1 as io_h1
from corral.io import health
from corral.io.health import HealthCheck
from corral.io.metrics import BUCKETS, METHODS, WorkerMetrics, bucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    for module in (io_h1, asgi, health):
        monkeypatch.setattr(module, "perf_counter", clock)
    return clock


def make_app(clock):
    """``/STATUS/SECONDS``: answers STATUS after SECONDS of the test's clock;
    ``/raise``: fails before answering (the server's 500)."""

    async def app(scope, receive, send):
        _, status, seconds = scope["path"].split("/") if scope["path"] != "/raise" else ("", "", "")
        if not status:
            raise RuntimeError("boom")
        clock.now += float(seconds)
        await send({"type": "http.response.start", "status": int(status), "headers": []})
        await send({"type": "http.response.body", "body": b"x"})

    return app


def metered(pair, app, **config):
    """A pair whose worker counts: metrics on before the handler is made, as
    in the worker (the cycles then read the clock)."""
    p = pair(app, **config)
    state = p.state
    state.metrics = WorkerMetrics()
    state.handler = ASGIHandler(app, state).new_cycle
    return p


def snapshot(p) -> dict:
    return json.loads(p.state.metrics.snapshot(p.state))


def get(method: str, target: str) -> bytes:
    return f"{method} {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def test_requests_by_method_and_status_class_with_their_latencies(pair, clock):
    p = metered(pair, make_app(clock))
    sent = [
        ("GET", "/200/0.0001"),  # bucket 0 (<= 0.5 ms)
        ("GET", "/201/0.0005"),  # bucket 0: le is inclusive
        ("GET", "/200/0.0006"),  # bucket 1 (<= 1 ms)
        ("PUT", "/200/0.003"),  # bucket 3 (<= 5 ms)
        ("POST", "/404/0.07"),  # bucket 7 (<= 100 ms)
        ("PROPFIND", "/207/0.2"),  # another method: "other"; bucket 8
        ("MKCOL", "/503/20"),  # beyond the last bound: +Inf
        ("GET", "/raise"),  # the app failed: the server's 500, no time passed
    ]
    for method, target in sent:
        p.send(get(method, target))
    p.responses_count(len(sent))
    data = snapshot(p)
    assert data["requests"] == {
        "GET 2xx": 3,
        "GET 5xx": 1,
        "PUT 2xx": 1,
        "POST 4xx": 1,
        "other 2xx": 1,
        "other 5xx": 1,
    }
    expected = [0] * (len(BUCKETS) + 1)
    for i in (0, 0, 1, 3, 7, 8, len(BUCKETS), 0):
        expected[i] += 1
    assert data["buckets"] == expected
    assert data["latency_sum"] == pytest.approx(0.0001 + 0.0005 + 0.0006 + 0.003 + 0.07 + 0.2 + 20)


def test_totals_survive_folds_and_never_go_backwards(pair, clock):
    p = metered(pair, make_app(clock))
    p.send(get("GET", "/200/0.002") * 3)
    p.responses_count(3)
    first = snapshot(p)
    assert first["requests"] == {"GET 2xx": 3} and sum(first["buckets"]) == 3
    assert snapshot(p) == first  # nothing new: the same totals
    p.send(get("DELETE", "/500/0.002"))
    p.responses_count(4)
    second = snapshot(p)
    assert second["requests"] == {"GET 2xx": 3, "DELETE 5xx": 1}
    assert second["buckets"][bucket(0.002)] == 4
    assert second["latency_sum"] == pytest.approx(0.008)
    # A fold empties what it counted: the lists hold at most a second's requests.
    metrics = p.state.metrics
    assert not any(latencies for row in (*metrics.rows.values(), metrics.other) for cls in row for latencies in cls)


def test_other_methods_share_one_row(pair, clock):
    p = metered(pair, make_app(clock))
    others = ("PROPFIND", "MKCOL", "LOCK", "UNLOCK", "COPY", "MOVE", "SEARCH", "REPORT")
    for method in others:
        p.send(get(method, "/200/0"))
    p.responses_count(len(others))
    assert set(p.state.metrics.rows) == set(METHODS)
    assert snapshot(p)["requests"] == {"other 2xx": len(others)}


def test_a_client_gone_before_the_answer_counts_as_none(pair, clock):
    async def app(scope, receive, send):
        while (await receive())["type"] != "http.disconnect":
            pass

    p = metered(pair, app)
    p.send(get("GET", "/"))
    p.run_until(lambda: p.conn.cycle is not None, what="the request to start")
    p.conn.abort()  # the connection is lost (connection_lost: the cycle is gone)
    p.run_until(lambda: p.conn.cycle is None, what="the request to end")
    assert snapshot(p)["requests"] == {"GET none": 1}


def test_health_checks_are_counted_with_their_status(pair, clock):
    p = metered(pair, make_app(clock), health_path="/healthz")
    state = p.state
    state.handler = HealthCheck("/healthz", state.handler, False)
    p.send(get("GET", "/healthz") + get("GET", "/200/0"))
    p.responses_count(2)
    assert snapshot(p)["requests"] == {"GET 2xx": 2}


def test_bucket_matches_prometheus_le():
    for i, bound in enumerate(BUCKETS):
        assert bucket(bound) == i  # le: the bound itself is inside
        assert bucket(bound * 1.0001) == i + 1
    assert bucket(0.0) == 0


def test_wsgi_requests_are_counted_with_their_latencies(pair, clock, monkeypatch):
    from corral.interfaces import wsgi
    from corral.interfaces.wsgi import WSGIHandler

    monkeypatch.setattr(wsgi, "perf_counter", clock)

    def app(environ, start_response):
        clock.now += 0.004
        start_response("404 Not Found", [("Content-Length", "1")])
        return [b"x"]

    p = pair(None)
    state = p.state
    state.metrics = WorkerMetrics()
    state.handler = WSGIHandler(app, state).new_cycle
    p.send(get("POST", "/") * 2)
    p.responses_count(2)
    data = snapshot(p)
    assert data["requests"] == {"POST 4xx": 2}
    assert data["buckets"][bucket(0.004)] == 2 and sum(data["buckets"]) == 2
    assert data["latency_sum"] == pytest.approx(0.008)
