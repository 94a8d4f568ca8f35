"""The overload control's one admission check (io/overload.py through
ServerState.admit) on every protocol's path: an HTTP/1.1 request and an
HTTP/2 stream that waited past the target while the worker watches get 503
with Retry-After, and the app never runs for them; one that did not wait is
served. Over socketpairs (no TCP_INFO there: the loop's lag is the wait)."""

from __future__ import annotations

from corral.io.overload import Overload


class Counting:
    def __init__(self):
        self.calls = 0

    async def __call__(self, scope, receive, send):
        self.calls += 1
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


def watching(state, lag: float) -> Overload:
    """The control as the probe leaves it when it starts watching, with the
    loop ``lag`` seconds behind (its next probe that much overdue)."""
    overload = state.overload = Overload(state, 0.1)
    overload.watching = True
    state.limit_concurrency = -1
    overload.due = state.loop.time() - lag
    return overload


def test_http1_request_that_waited_past_the_target_gets_503_without_the_app(pair):
    app = Counting()
    p = pair(app)
    overload = watching(p.state, lag=1.0)
    p.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    (response,) = p.responses_count(1)
    assert response.status == 503 and response.headers[b"retry-after"] == b"1"
    assert app.calls == 0 and p.state.counters["shed_queue_delay"] == 1 and overload.shed == 1
    # Caught up: the next request on the same connection is served.
    overload.due = p.state.loop.time() + 1.0
    p.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [r.status for r in p.responses_count(2)] == [503, 200]
    assert app.calls == 1


def test_http2_stream_that_waited_past_the_target_gets_503_without_the_app(h2pair):
    app = Counting()
    pair = h2pair(app)
    overload = watching(pair.state, lag=1.0)
    stream = pair.finished(pair.client.request("/"))
    assert stream.status == 503 and app.calls == 0 and overload.shed == 1
    overload.due = pair.state.loop.time() + 1.0
    assert pair.finished(pair.client.request("/")).status == 200 and app.calls == 1


def test_in_flight_limit_sheds_while_watching(pair):
    app = Counting()
    p = pair(app)
    overload = watching(p.state, lag=0.0)
    overload.due = p.state.loop.time() + 1.0
    overload.limit = 0  # the AIMD limit at its floor for this test: nothing more in flight
    p.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert p.responses_count(1)[0].status == 503 and app.calls == 0


def test_watching_ends_and_the_limit_comes_back(pair):
    p = pair(Counting(), limit_concurrency=7)
    overload = watching(p.state, lag=0.0)
    overload.watch_until = 0.0
    overload._probe()  # a calm probe after the watch: back to the one comparison
    assert not overload.watching and p.state.limit_concurrency == 7
    overload.stop()
