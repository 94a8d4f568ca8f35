"""HTTP/1.1 connection flow over a socketpair: pipelining, EOF, pauses, 503s,
drains and timeouts, and how they interleave (issue 9, losses 1 and 2).

Every test asserts the exact responses the client gets and whether the
connection closes: every request received whole gets an answer.
"""

import asyncio

from corral.io.h1 import PIPELINE_HIGH_WATER


class App:
    """``/slow...`` waits on its gate (``release(path)``); every path answers
    200 with the path and the request body."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.started: list[str] = []

    def gate(self, path: str) -> asyncio.Event:
        return self.gates.setdefault(path, asyncio.Event())

    def release(self, path: str) -> None:
        self.gate(path).set()

    async def __call__(self, scope, receive, send):
        path = scope["path"]
        self.started.append(path)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if path.startswith("/slow"):
            await self.gate(path).wait()
        if path.startswith("/big"):
            body = b"x" * int(path[4:])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": path.encode() + body})


def get(path: str, extra: bytes = b"") -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: a\r\n%s\r\n" % (path.encode(), extra)


def bodies(responses):
    return [(r.status, r.body) for r in responses]


# -- loss 1: pipelined requests behind a 503 --------------------------------


def test_every_pipelined_request_behind_a_503_is_answered(pair):
    app = App()
    p = pair(app, limit_concurrency=1)
    p.send(get("/slow"))
    p.run_until(lambda: app.started == ["/slow"])
    other = p.connect()
    other.send(get("/1") + get("/2") + get("/3"))
    done = p.responses_count(3, other)
    assert [r.status for r in done] == [503, 503, 503]
    assert done[0].headers[b"retry-after"] == b"1"
    assert not other.conn.closing
    # The slot frees: the same connection is served again.
    app.release("/slow")
    assert bodies(p.responses_count(1)) == [(200, b"/slow")]
    other.send(get("/4"))
    assert bodies(p.responses_count(4, other))[3] == (200, b"/4")


def test_a_connection_answered_503_is_idle_and_times_out(pair):
    app = App()
    p = pair(app, limit_concurrency=1, timeout_keep_alive=5)
    p.send(get("/slow"))
    p.run_until(lambda: app.started == ["/slow"])
    other = p.connect()
    other.send(get("/1") + get("/2"))
    p.responses_count(2, other)
    p.later(4)
    assert not other.conn.closing
    p.later(2)
    assert [r.status for r in p.until_closed(other)] == [503, 503]
    app.release("/slow")
    p.responses_count(1)


def test_draining_answers_503_with_close(pair):
    app = App()
    p = pair(app, limit_concurrency=1)
    p.send(get("/slow"))
    p.run_until(lambda: app.started == ["/slow"])
    p.state.draining = True
    other = p.connect()
    other.send(get("/1") + get("/2"))
    done = p.until_closed(other)
    assert [(r.status, r.headers.get(b"connection")) for r in done] == [(503, b"close")]
    app.release("/slow")
    p.responses_count(1)


def test_pipelined_requests_wait_for_a_slot_then_run_in_order(pair):
    app = App()
    p = pair(app, limit_concurrency=1, limit_concurrency_queue=10)
    p.send(get("/slow"))
    p.run_until(lambda: app.started == ["/slow"])
    other = p.connect()
    other.send(get("/1") + get("/2") + get("/3"))
    p.spin()
    assert app.started == ["/slow"]
    app.release("/slow")
    p.responses_count(1)
    assert bodies(p.responses_count(3, other)) == [(200, b"/1"), (200, b"/2"), (200, b"/3")]


def test_waiting_requests_get_503_one_by_one_when_the_wait_runs_out(pair):
    app = App()
    p = pair(app, limit_concurrency=1, limit_concurrency_queue=2)
    p.send(get("/slow"))
    p.run_until(lambda: app.started == ["/slow"])
    other = p.connect()
    other.send(get("/1") + get("/2"))
    p.spin()
    p.later(3)  # the first waited its 2 s: 503; the second starts waiting now
    assert [r.status for r in p.responses_count(1, other)] == [503]
    p.spin()
    assert len(other.responses.done) == 1
    p.later(3)
    assert [r.status for r in p.responses_count(2, other)] == [503, 503]
    app.release("/slow")
    p.responses_count(1)
    other.send(get("/3"))
    assert bodies(p.responses_count(3, other))[2] == (200, b"/3")


# -- loss 2: pipelined requests, then the client's FIN ----------------------


def test_pipelined_requests_then_fin_are_all_answered_then_closed(pair):
    app = App()
    p = pair(app)
    p.send(get("/slow") + get("/2"))
    p.shut_wr()
    p.run_until(lambda: app.started == ["/slow"])
    app.release("/slow")
    assert bodies(p.until_closed()) == [(200, b"/slow"), (200, b"/2")]
    assert p.responses.done[-1].headers.get(b"connection") == b"close"


def test_ten_pipelined_requests_then_fin(pair):
    app = App()
    p = pair(app)
    p.send(get("/slow") + b"".join(get(f"/{n}") for n in range(9)))
    p.shut_wr()
    p.run_until(lambda: app.started == ["/slow"])
    app.release("/slow")
    assert bodies(p.until_closed()) == [(200, b"/slow")] + [(200, f"/{n}".encode()) for n in range(9)]


def test_fast_pipelined_requests_then_fin(pair):
    p = pair(App())
    p.send(b"".join(get(f"/{n}") for n in range(5)))
    p.shut_wr()
    assert bodies(p.until_closed()) == [(200, f"/{n}".encode()) for n in range(5)]


def test_fin_after_a_partial_request_answers_the_whole_ones(pair):
    app = App()
    p = pair(app)
    p.send(get("/slow") + get("/2") + b"POST /3 HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    p.shut_wr()
    p.run_until(lambda: app.started == ["/slow"])
    app.release("/slow")
    assert bodies(p.until_closed()) == [(200, b"/slow"), (200, b"/2")]
    assert app.started == ["/slow", "/2"]


def test_fin_while_waiting_for_a_concurrency_slot(pair):
    app = App()
    p = pair(app, limit_concurrency=1, limit_concurrency_queue=10)
    p.send(get("/slow"))
    p.run_until(lambda: app.started == ["/slow"])
    other = p.connect()
    other.send(get("/1") + get("/2"))
    other.shut_wr()
    p.spin()
    app.release("/slow")
    p.responses_count(1)
    assert bodies(p.until_closed(other)) == [(200, b"/1"), (200, b"/2")]


def test_fin_during_a_body_disconnects_the_app(pair):
    seen = []

    async def app(scope, receive, send):
        seen.append(await receive())
        seen.append(await receive())

    p = pair(app)
    p.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    p.run_until(lambda: seen)
    p.shut_wr()
    p.until_closed()
    assert seen == [{"type": "http.request", "body": b"abc", "more_body": True}, {"type": "http.disconnect"}]


# -- pauses and drains ------------------------------------------------------


def test_a_full_pipeline_pauses_reading_and_every_request_is_answered(pair):
    app = App()
    p = pair(app)
    count = PIPELINE_HIGH_WATER + 10
    p.send(get("/slow") + b"".join(get(f"/{n}") for n in range(count)))
    p.run_until(lambda: p.conn.reading_paused, what="reading to pause")
    app.release("/slow")
    done = p.responses_count(count + 1)
    assert bodies(done) == [(200, b"/slow")] + [(200, f"/{n}".encode()) for n in range(count)]
    assert not p.conn.reading_paused


def test_a_slow_reader_is_answered_in_full(pair):
    app = App()
    p = pair(app)
    p.send(get("/big1000000") + get("/2"))
    p.run_until(lambda: p.conn.write_paused, what="writing to pause")
    done = p.responses_count(2)
    assert [r.status for r in done] == [200, 200] and len(done[0].body) == 1000000 + len(b"/big1000000")


# -- timeouts (the worker's sweep) ---------------------------------------------


def test_header_timeout_answers_408(pair):
    p = pair(App(), timeout_header=10)
    p.send(b"GET / HTTP/1.1\r\nHost:")
    p.spin()
    p.later(5)
    assert not p.conn.closing
    p.later(6)
    assert bodies(p.until_closed()) == [(408, b"Request header timeout\n")]


def test_body_timeout_answers_408(pair):
    seen = []

    async def app(scope, receive, send):
        seen.append(await receive())
        seen.append(await receive())

    p = pair(app, timeout_body=30)
    p.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    p.run_until(lambda: seen)
    p.later(31)
    assert [r.status for r in p.until_closed()] == [408]
    assert seen[-1] == {"type": "http.disconnect"}


def test_keep_alive_timeout_closes_an_idle_connection(pair):
    p = pair(App(), timeout_keep_alive=5)
    p.send(get("/1"))
    p.responses_count(1)
    p.later(4)
    assert not p.conn.closing
    p.later(2)
    assert bodies(p.until_closed()) == [(200, b"/1")]


def test_a_bad_request_behind_pipelined_ones_is_answered_last(pair):
    app = App()
    p = pair(app)
    p.send(get("/slow") + get("/2") + b"BAD\x00 / HTTP/1.1\r\n\r\n")
    p.run_until(lambda: app.started == ["/slow"])
    app.release("/slow")
    done = p.until_closed()
    assert [r.status for r in done] == [200, 200, 400]


# -- sweep finding e: --timeout-write is time without progress ---------------


def _read_some(client, limit: int) -> int:
    got = 0
    while got < limit:
        try:
            data = client.sock.recv(min(65536, limit - got))
        except BlockingIOError:
            break
        got += len(data)
        client.responses.feed(data)
    return got


def test_write_timeout_aborts_a_client_that_reads_nothing(pair):
    p = pair(App(), timeout_write=30)
    p.client.reading = False
    p.send(get("/big4000000"))
    p.run_until(lambda: p.conn.write_paused, what="writing to pause")
    p.spin()
    p.later(0)  # the kernel's buffer filled after the pause: that was progress
    p.later(29)
    assert not p.conn.closing
    p.later(2)
    assert p.conn.closing and p.state.counters["timeouts"] == 1


def test_write_timeout_counts_from_the_last_progress(pair):
    p = pair(App(), timeout_write=30)
    p.client.reading = False
    p.send(get("/big4000000"))
    p.run_until(lambda: p.conn.write_paused, what="writing to pause")
    for _ in range(4):  # 80 s in all, reading a little every 20 s
        p.later(20)
        assert not p.conn.closing
        before = p.conn.transport.get_write_buffer_size()
        assert _read_some(p.client, 1_000_000) > 0  # what the kernel holds: a few hundred KB
        p.run_until(lambda: p.conn.transport.get_write_buffer_size() < before, what="the buffer to shrink")
        p.later(0)  # the next sweep (once a second in a worker) sees the progress
    p.later(29)
    assert not p.conn.closing
    p.later(2)  # 31 s without progress
    assert p.conn.closing


def test_a_closing_connection_flushing_its_last_response_is_kept_while_the_client_reads(pair):
    p = pair(App(), timeout_write=30)
    p.client.reading = False
    # The app does not wait for a drain: the whole response is buffered at close.
    p.conn.transport.set_write_buffer_limits(high=8_000_000)
    p.send(get("/big4000000", b"Connection: close\r\n"))
    p.run_until(lambda: p.conn.closing, what="the response to be written")
    for n in range(3):
        p.later(20)
        before = p.conn.transport.get_write_buffer_size()
        assert before, n  # not aborted: still flushing
        assert _read_some(p.client, 1_000_000) > 0  # what the kernel holds: a few hundred KB
        p.run_until(lambda: p.conn.transport.get_write_buffer_size() < before, what="the buffer to shrink")
    p.later(31)  # no progress: cut
    p.client.reading = True
    p.run_until(lambda: p.client.eof, what="the abort")
    assert len(p.client.received) < 4_000_000
