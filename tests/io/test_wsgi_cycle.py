"""The native WSGI cycle (--threads 1) on a real H1Connection, without sockets:
a recording transport, bytes checked exactly.

Structure, not time: one write per response given as a list, no Task and no
timer, iteration paused while the transport is paused, a generator that
fails after the head leaves the body unterminated, close() always called.
"""

import asyncio

import pytest

from corral.config import Config
from corral.interfaces.wsgi import WSGIHandler
from corral.io.h1 import H1Connection
from corral.io.state import ServerState

REQUEST = b"GET /p?q=1 HTTP/1.1\r\nHost: example.test\r\nUser-Agent: t\r\n\r\n"


class Transport:
    def __init__(self):
        self.writes = []
        self.eof = False

    def write(self, data):
        self.writes.append(bytes(data))

    def writelines(self, parts):
        self.writes.append(b"".join(parts))

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def is_closing(self):
        return False

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def can_write_eof(self):
        return True

    def write_eof(self):
        self.eof = True

    def close(self):
        self.eof = True

    def get_write_buffer_size(self):
        return 0


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def connect(loop, app):
    state = ServerState(Config(app="x:y", access_log=False, date_header=False, server_header=False), loop)
    state.handler = WSGIHandler(app, state).new_cycle
    conn = H1Connection(state)
    transport = Transport()
    conn.connection_made(transport)
    return conn, transport, state


def run(loop, *callbacks):
    """Run ``callbacks`` from the loop, then one more pass (for what they scheduled)."""
    for callback in callbacks:
        loop.call_soon(callback)
    loop.call_soon(loop.call_soon, loop.stop)
    loop.run_forever()


def test_list_response_is_one_exact_write_without_task_or_timer(loop):
    environs = []

    def app(environ, start_response):
        environs.append(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hi"]

    conn, transport, state = connect(loop, app)
    run(loop, lambda: [conn.data_received(REQUEST) for _ in range(3)])
    assert transport.writes == [b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length: 2\r\n\r\nhi"] * 3
    assert state.stepper.tasks_created == 0 and not loop._scheduled
    assert state.requests == 3 and state.in_flight == 0
    environ = environs[0]
    assert (environ["PATH_INFO"], environ["QUERY_STRING"], environ["HTTP_HOST"], environ["HTTP_USER_AGENT"]) == (
        "/p", "q=1", "example.test", "t")
    assert environ["wsgi.input"].read() == b"" and "CONTENT_LENGTH" not in environ


def test_body_in_pieces_runs_the_app_once_complete(loop):
    bodies = []

    def app(environ, start_response):
        bodies.append((environ["CONTENT_LENGTH"], environ["wsgi.input"].read()))
        start_response("204 No Content", [])
        return []

    conn, transport, _ = connect(loop, app)
    head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nExpect: 100-continue\r\n\r\n"
    run(loop, lambda: conn.data_received(head), lambda: conn.data_received(b"abc"))
    assert bodies == [] and transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    run(loop, lambda: conn.data_received(b"def"))
    assert bodies == [("6", b"abcdef")]
    assert transport.writes[1] == b"HTTP/1.1 204 No Content\r\n\r\n"


def test_iteration_waits_while_the_transport_is_paused(loop):
    taken = []

    def app(environ, start_response):
        start_response("200 OK", [])

        def pieces():
            for n in range(4):
                taken.append(n)
                if n == 1:
                    conn.pause_writing()  # the transport's buffer passed its high-water mark
                yield b"%d" % n
        return pieces()

    conn, transport, _ = connect(loop, app)
    run(loop, lambda: conn.data_received(REQUEST))
    assert taken == [0, 1]
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\n0\r\n", b"1\r\n1\r\n"]
    run(loop, conn.resume_writing)
    assert taken == [0, 1, 2, 3]
    assert b"".join(transport.writes[2:]) == b"1\r\n2\r\n1\r\n3\r\n0\r\n\r\n"
    assert conn.cycle is None and not transport.eof


def test_failure_after_the_head_leaves_the_body_unterminated_and_closes(loop):
    closed = []

    class Body:
        def __iter__(self):
            yield b"part"
            raise RuntimeError("boom")

        def close(self):
            closed.append(True)

    def app(environ, start_response):
        start_response("200 OK", [])
        return Body()

    conn, transport, _ = connect(loop, app)
    run(loop, lambda: conn.data_received(REQUEST))
    assert b"".join(transport.writes) == b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\npart\r\n"
    assert closed == [True] and transport.eof and conn.closing


def test_failure_before_the_head_is_500(loop):
    def app(environ, start_response):
        start_response("200 OK", [])
        start_response("200 OK", [])  # without exc_info: an error
        return [b"never"]

    conn, transport, _ = connect(loop, app)
    run(loop, lambda: conn.data_received(REQUEST))
    assert transport.writes[0].startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert transport.eof


def test_underscore_headers_never_reach_the_environ(loop):
    seen = []

    def app(environ, start_response):
        seen.append({k: v for k, v in environ.items() if k.startswith(("HTTP_", "CONTENT_"))})
        start_response("200 OK", [])
        return [environ["wsgi.input"].read()]

    conn, transport, _ = connect(loop, app)
    request = (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent_Length: 0\r\n"
               b"X_Forwarded_For: 6.6.6.6\r\nX-Real: 1\r\n\r\nhello")
    run(loop, lambda: conn.data_received(request))
    assert seen == [{"HTTP_HOST": "a", "CONTENT_LENGTH": "5", "HTTP_X_REAL": "1"}]
    assert transport.writes[0].endswith(b"\r\n\r\nhello")
