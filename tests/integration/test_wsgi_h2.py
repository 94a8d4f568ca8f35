"""WSGI over HTTP/2 (h2c with prior knowledge, a raw client): the same WSGI as
over HTTP/1.1, because it is the same code (interfaces/wsgi.py WSGIRequest and
the worker's one WSGIHandler): the environ (underscore headers dropped), the
body spooled to a file past 1 MiB, --threads (inline with no running loop, or
the pool) and --timeout-worker's stuck-thread check."""

from __future__ import annotations

import json

import h2.events
import pytest

from h2support import H2Client, request_headers
from support import APPS, Server, wait_until

EXPECTED_LOOP_VIEW = {"running_loop": False, "asyncio_run": 42, "get_running_loop": "RuntimeError",
                      "async_to_sync": "sync"}


@pytest.fixture(scope="module", params=["1", "4"], ids=["inline", "threads"])
def wsgi(request):
    with Server("wsgi_pep:app", "--threads", request.param, "--log-level", "debug") as server:
        server.threads = int(request.param)
        yield server


def fetch(server, path: str, method: str = "GET", body: bytes | None = None, extra=()):
    with H2Client(server.port) as client:
        if body is None:
            stream_id = client.request(path, method, extra=extra)
        else:
            stream_id = send_body(client, path, body, extra)
        headers, data, _ = client.response(stream_id, timeout=60)
    return headers, data


def send_body(client: H2Client, path: str, data: bytes, extra=()) -> int:
    """A POST whose body goes out as the server's windows allow."""
    stream_id = client.conn.get_next_available_stream_id()
    client.conn.send_headers(stream_id, request_headers(path, "POST", extra=extra))
    view = memoryview(data)
    sent = 0
    while sent < len(data):
        window = min(client.conn.local_flow_control_window(stream_id), len(data) - sent, 16384)
        if window <= 0:
            client.read(10)  # the server reopens the window as the body is taken
            continue
        client.conn.send_data(stream_id, bytes(view[sent:sent + window]))
        sent += window
        client.flush()
    client.conn.end_stream(stream_id)
    client.flush()
    return stream_id


def peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


def fetch_json(server, path: str, **kwargs):
    headers, data = fetch(server, path, **kwargs)
    assert headers[b":status"] == b"200", (headers, data)
    return json.loads(data)


class TestEnviron:
    def test_underscore_headers_never_reach_the_environ(self, wsgi):
        spoof = [(b"x_forwarded_for", b"203.0.113.9"), (b"remote_user", b"admin"), (b"content_length", b"5"),
                 (b"x-real", b"kept")]
        environ = fetch_json(wsgi, "/environ", extra=spoof)
        assert "HTTP_X_FORWARDED_FOR" not in environ and "HTTP_REMOTE_USER" not in environ
        assert "CONTENT_LENGTH" not in environ and "HTTP_CONTENT_LENGTH" not in environ
        assert environ["HTTP_X_REAL"] == "kept"
        assert environ["REMOTE_ADDR"] == "127.0.0.1"
        wsgi.wait_log(r"dropped request header b'x_forwarded_for' \(underscore in the name\)")

    def test_environ_is_http2_with_the_threads_mode(self, wsgi):
        environ = fetch_json(wsgi, "/environ?a=1", extra=[(b"cookie", b"a=1"), (b"cookie", b"b=2")])
        assert environ["SERVER_PROTOCOL"] == "HTTP/2"
        assert (environ["PATH_INFO"], environ["QUERY_STRING"], environ["SCRIPT_NAME"]) == ("/environ", "a=1", "")
        assert environ["HTTP_COOKIE"] == "a=1; b=2"
        assert environ["HTTP_HOST"] == "localhost"
        assert environ["wsgi.multithread"] is (wsgi.threads > 1)
        assert environ["wsgi.input_terminated"] is True
        if wsgi.threads > 1:
            assert environ["thread"].startswith("corral-wsgi-")  # the HTTP/1.1 pool, sized by --threads
        else:
            assert environ["thread"] == "MainThread"

    def test_no_running_loop_in_the_app(self, wsgi):
        assert fetch_json(wsgi, "/no-loop") == EXPECTED_LOOP_VIEW
        headers, data = fetch(wsgi, "/no-loop-stream")
        assert [json.loads(line) for line in data.splitlines()] == [EXPECTED_LOOP_VIEW] * 3


class TestBody:
    def test_small_body_in_memory(self, wsgi):
        result = fetch_json(wsgi, "/input-size", method="POST", body=b"x" * 1000)
        assert result == {"read": 1000, "spooled": False, "CONTENT_LENGTH": "1000", "terminated": True}

    def test_large_body_is_spooled_to_a_file(self, wsgi):
        size = 3 * 1024 * 1024
        result = fetch_json(wsgi, "/input-size", method="POST", body=b"y" * size)
        assert result == {"read": size, "spooled": True, "CONTENT_LENGTH": str(size), "terminated": True}

    def test_large_body_does_not_sit_in_memory(self, server_factory):
        """48 MiB through a fresh worker: its peak memory grows by far less
        (bodies past 1 MiB go to a temporary file, as over HTTP/1.1)."""
        server = server_factory("wsgi_pep:app")
        assert fetch(server, "/hello")[1] == b"Hello, world!"
        (pid,) = server.worker_pids()
        before = peak_rss(pid)
        size = 48 * 1024 * 1024
        result = fetch_json(server, "/input-size", method="POST", body=b"z" * size)
        assert result == {"read": size, "spooled": True, "CONTENT_LENGTH": str(size), "terminated": True}
        assert peak_rss(pid) - before < 16 * 1024 * 1024

    def test_echo(self, wsgi):
        data = bytes(range(256)) * 1000
        headers, body = fetch(wsgi, "/echo", method="POST", body=data)
        assert (headers[b":status"], body) == (b"200", data)


class TestResponse:
    def test_iterable_is_sent_and_closed(self, wsgi):
        headers, body = fetch(wsgi, "/tracked")
        assert (headers[b":status"], body) == (b"200", b"abc")
        assert fetch_json(wsgi, "/closed")["tracked"] >= 1

    def test_write_callable_and_exc_info(self, wsgi):
        headers, body = fetch(wsgi, "/exc-info")
        assert (headers[b":status"], body) == (b"503", b"replaced")

    def test_failure_before_any_body_is_500(self, wsgi):
        headers, _ = fetch(wsgi, "/raise-first")
        assert headers[b":status"] == b"500"
        assert fetch_json(wsgi, "/closed")["raise-first"] >= 1

    def test_stream_reset_mid_body_closes_the_iterable(self, wsgi):
        """The client stops reading (its window stays shut), then resets the
        stream: the app's iterable is closed, and the connection serves on."""
        with H2Client(wsgi.port) as client:
            client.hold = True
            stream_id = client.request("/big")
            client.wait(lambda events: any(getattr(e, "stream_id", None) == stream_id and hasattr(e, "data")
                                           for e in events))
            client.conn.reset_stream(stream_id)
            client.flush()
            wait_until(lambda: fetch_json(wsgi, "/closed").get("big", 0) >= 1, timeout=10)
            client.hold = False
            other = client.request("/hello")
            assert client.response(other)[1] == b"Hello, world!"

    def test_body_over_the_limit_is_413_before_the_app(self, server_factory):
        server = server_factory("wsgi_pep:app", "--limit-request-body", "1000")
        mark = server.mark()
        with H2Client(server.port) as client:
            stream_id = client.request("/count", "POST", body=b"x" * 5000)
            # The 413, then RST_STREAM(NO_ERROR) for the rest of the body (RFC 9113 8.1).
            response = client.wait(lambda events: [e for e in events if isinstance(e, h2.events.ResponseReceived)
                                                   and e.stream_id == stream_id])
        assert dict(response[0].headers)[b":status"] == b"413"
        server.wait_log(r"413 .*\(HTTP/2 stream 1\)", start=mark)
        assert "count" not in fetch_json(server, "/closed")  # the app never ran
        assert fetch(server, "/echo", method="POST", body=b"x" * 1000)[1] == b"x" * 1000

    def test_file_wrapper(self, wsgi):
        headers, body = fetch(wsgi, "/file")
        assert (headers[b":status"], body) == (b"200", (APPS / "wsgi_pep.py").read_bytes())


class TestThreads:
    def test_streams_run_concurrently_on_the_pool(self, server_factory):
        server = server_factory("wsgi_pep:app", "--threads", "2")
        with H2Client(server.port) as client:
            streams = [client.request("/barrier") for _ in range(2)]
            names = {client.response(stream_id, timeout=20)[1] for stream_id in streams}
        assert names == {b"corral-wsgi-0", b"corral-wsgi-1"}

    def test_time_waiting_for_a_thread_is_not_running_time(self, server_factory):
        server = server_factory("wsgi_pep:app", "--threads", "2", "--timeout-worker", "3")
        mark = server.mark()
        with H2Client(server.port, timeout=30) as client:
            streams = [client.request("/sleep") for _ in range(8)]  # 4 s of work on 2 threads
            answers = [client.response(stream_id, timeout=30) for stream_id in streams]
        assert [headers[b":status"] for headers, _, _ in answers] == [b"200"] * 8
        assert len({body for _, body, _ in answers}) == 1  # one worker, never replaced
        assert not [line for line in server.lines[mark:] if "running for" in line or "exited" in line]

    def test_stream_past_timeout_worker_dumps_stacks_and_replaces_the_worker(self, server_factory):
        server = server_factory("wsgi_pep:app", "--threads", "2", "--timeout-worker", "1")
        old = fetch(server, "/pid")[1]
        client = H2Client(server.port)
        client.request("/hang")
        server.wait_log(r"WSGI request GET /hang running for [\d.]+s \(--timeout-worker 1.0\)")
        server.wait_log(r'File ".*wsgi_pep.py", line \d+ in app')
        server.wait_log(r"master: worker \d+ ready", count=2)
        client.wait_closed()
        client.close()
        assert fetch(server, "/pid")[1] != old
