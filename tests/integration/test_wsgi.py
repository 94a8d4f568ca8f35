"""WSGI (PEP 3333) end to end, with --threads 1 (on the loop) and --threads 4."""

from __future__ import annotations

import json
import socket
import struct
import sys
import time

import pytest

from support import APPS, Reader, Server, wait_until


@pytest.fixture(scope="module", params=["1", "4"], ids=["inline", "threads"])
def wsgi(request):
    with Server("wsgi_pep:app", "--threads", request.param, "--log-level", "debug") as server:
        server.threads = int(request.param)
        yield server


def exchange(server, raw: bytes, method: str = "GET"):
    with server.connect() as sock:
        sock.sendall(raw)
        return Reader(sock).response(method)


def get(server, path: str, method: str = "GET"):
    return exchange(server, b"%s %s HTTP/1.1\r\nHost: x\r\n\r\n" % (method.encode(), path.encode()), method)


def get_json(server, path: str):
    response = get(server, path)
    assert response.code == 200, response
    return json.loads(response.body)


def post(server, path: str, body: bytes, extra: bytes = b""):
    return exchange(server, b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n%s" % (
        path.encode(), len(body), extra, body))


def chunked(parts) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


class TestRequest:
    def test_hello_has_content_length_and_keeps_alive(self, wsgi):
        with wsgi.connect() as sock:
            reader = Reader(sock)
            for _ in range(3):
                sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
                response = reader.response()
                assert (response.code, response.body) == (200, b"Hello, world!")
                assert response.headers[b"content-length"] == b"13"
                assert b"connection" not in response.headers

    def test_pipelined_requests_answered_in_order(self, wsgi):
        with wsgi.connect() as sock:
            reader = Reader(sock)
            sock.sendall(b"".join(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n%d" % i for i in range(5)))
            assert [reader.response().body for _ in range(5)] == [b"%d" % i for i in range(5)]

    def test_read_modes(self, wsgi):
        body = b"abcdef\nline2\nline3\nline4"
        assert json.loads(post(wsgi, "/read-modes", body).body) == {
            "read3": "abc", "readline": "def\n", "readline2": "li",
            "readlines": ["ne2\n", "line3\n", "line4"], "eof": "", "eof_n": "",
        }
        assert json.loads(post(wsgi, "/iterate", b"a\nb\nc").body) == ["a\n", "b\n", "c"]

    def test_chunked_body_is_terminated_input_with_its_length(self, wsgi):
        response = exchange(wsgi, b"POST /input-size HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                            + chunked([b"hello ", b"world"]))
        assert json.loads(response.body) == {"read": 11, "spooled": False, "CONTENT_LENGTH": "11", "terminated": True}

    def test_large_body_is_spooled_to_a_file(self, wsgi):
        body = b"z" * (3 * 1024 * 1024)
        response = post(wsgi, "/input-size", body)
        assert json.loads(response.body) == {"read": len(body), "spooled": True, "CONTENT_LENGTH": str(len(body)),
                                             "terminated": True}

    def test_unread_large_body_does_not_sit_in_memory(self, wsgi):
        """The issue's attack: a big POST to an app that ignores wsgi.input
        (300 MiB took a worker from 23 to 623 MiB RSS). Here 48 MiB, spooled."""
        pid = int(get(wsgi, "/pid").body)

        def rss_kib() -> int:
            with open(f"/proc/{pid}/status") as status:
                return int(next(line for line in status if line.startswith("VmRSS:")).split()[1])

        before = rss_kib()
        size = 48 * 1024 * 1024
        piece = b"u" * (1024 * 1024)
        with wsgi.connect() as sock:
            sock.sendall(b"POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
            for _ in range(size // len(piece)):
                sock.sendall(piece)
            response = Reader(sock, timeout=30).response()
        assert (response.code, response.body) == (200, b"ignored")
        grown = rss_kib() - before
        assert grown < 16 * 1024, f"worker RSS grew by {grown} KiB for a {size >> 20} MiB body"

    def test_body_read_as_it_arrives_with_expect_continue(self, wsgi):
        with wsgi.connect() as sock:
            reader = Reader(sock)
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
            assert reader.response().status == b"HTTP/1.1 100 Continue"
            sock.sendall(b"ab")
            sock.sendall(b"cd")
            assert reader.response().body == b"abcd"

    def test_underscore_headers_are_dropped(self, wsgi):
        mark = wsgi.mark()
        response = exchange(wsgi, b"POST /environ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent_Length: 0\r\n"
                            b"X_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 1.2.3.4\r\n\r\nhello")
        environ = json.loads(response.body)
        assert environ["CONTENT_LENGTH"] == "5"
        assert environ["body"] == "hello"
        assert environ["HTTP_X_FORWARDED_FOR"] == "1.2.3.4"
        assert not [key for key in environ if "_" in key and key.lower().replace("_", "-") != key.lower()
                    and key.startswith("HTTP_X_FORWARDED_FOR_")]
        wsgi.wait_log(r"dropped request header b'content_length'", start=mark)
        wsgi.wait_log(r"dropped request header b'x_forwarded_for'", start=mark)

    def test_environ(self, wsgi):
        response = exchange(wsgi, b"GET /environ/%C3%A9?q=%20 HTTP/1.1\r\nHost: example.com:8080\r\n"
                            b"Cookie: a=1\r\nCookie: b=2\r\n\r\n")
        environ = json.loads(response.body)
        assert environ["PATH_INFO"] == "/environ/\u00c3\u00a9"  # the bytes, as latin-1
        assert environ["QUERY_STRING"] == "q=%20"
        assert environ["SCRIPT_NAME"] == ""
        assert environ["SERVER_NAME"] == "127.0.0.1"
        assert environ["SERVER_PORT"] == str(wsgi.port)
        assert environ["HTTP_COOKIE"] == "a=1; b=2"
        assert environ["wsgi.input_terminated"] is True
        assert environ["wsgi.multithread"] is (wsgi.threads > 1)
        assert "CONTENT_LENGTH" not in environ
        if wsgi.threads > 1:
            assert environ["thread"].startswith("corral-wsgi-")
        else:
            assert environ["thread"] == "MainThread"

    def test_head(self, wsgi):
        with wsgi.connect() as sock:
            reader = Reader(sock)
            sock.sendall(b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            head = reader.response("HEAD")
            assert (head.code, head.headers[b"content-length"]) == (200, b"13")
            assert reader.response().body == b"Hello, world!"


class TestNoRunningLoop:
    """gunicorn runs every WSGI app with no event loop on its thread; so does
    corral, inline (--threads 1) too: asyncio.run(), asgiref's async_to_sync
    and Django's ORM (which refuses a thread with a running loop) work in a
    view, in the pieces of its iterable and in its close()."""

    EXPECTED = {"running_loop": False, "asyncio_run": 42, "get_running_loop": "RuntimeError", "async_to_sync": "sync"}

    def test_view_sees_no_running_loop(self, wsgi):
        assert get_json(wsgi, "/no-loop") == self.EXPECTED
        assert get_json(wsgi, "/no-loop") == self.EXPECTED  # the worker's loop was given back in between

    def test_iterable_pieces_see_no_running_loop(self, wsgi):
        response = get(wsgi, "/no-loop-stream")
        assert response.code == 200
        assert [json.loads(line) for line in response.body.splitlines()] == [self.EXPECTED] * 3
        assert get_json(wsgi, "/closed")["no-loop-stream"] >= 1

    @pytest.mark.parametrize("threads", ["1", "2"])
    def test_get_event_loop_in_a_view_is_the_threads_own_as_under_gunicorn(self, server_factory, threads):
        """The worker does not make its loop the thread's current loop under
        WSGI: ``asyncio.get_event_loop()`` in a view gives what it gives in
        gunicorn's sync worker (a loop of the view's own, kept from request to
        request) or in a gthread pool thread (RuntimeError)."""
        server = server_factory("wsgi_pep:app", "--threads", threads)
        first, second = get_json(server, "/legacy-loop"), get_json(server, "/legacy-loop")
        if threads != "1" or sys.version_info >= (3, 14):  # 3.14: no implicit loop in any thread
            assert first == second == {"error": "RuntimeError"}
        else:
            assert first == {"result": 7, "same_loop": True, "main_thread": True}
            assert second == first
        assert get_json(server, "/no-loop") == self.EXPECTED  # and asyncio.run works after it

    def test_worker_serves_on_and_stops_cleanly_after_asyncio_run(self, server_factory):
        server = server_factory("wsgi_pep:app")
        for _ in range(3):
            assert get_json(server, "/no-loop")["asyncio_run"] == 42
        assert get(server, "/hello").body == b"Hello, world!"
        assert server.stop() == 0
        log = "\n".join(server.lines)
        assert "Traceback" not in log and "ERROR" not in log, log


class TestResponse:
    def test_iterable_is_chunked_and_closed(self, wsgi):
        before = get_json(wsgi, "/closed").get("tracked", 0)
        response = get(wsgi, "/tracked")
        if wsgi.threads == 1:
            assert response.headers[b"transfer-encoding"] == b"chunked"
        # else: pieces that reach the loop in one pass go out together, maybe with a length
        assert response.body == b"abc"
        assert get_json(wsgi, "/closed")["tracked"] == before + 1

    def test_file_wrapper_is_sent_whole_with_its_length(self, wsgi):
        response = get(wsgi, "/file")
        data = (APPS / "wsgi_pep.py").read_bytes()
        assert response.body == data
        assert response.headers[b"content-length"] == str(len(data)).encode()

    def test_large_file_through_sendfile_to_a_slow_reader(self, wsgi):
        before = get_json(wsgi, "/closed").get("big", 0)  # the connection serves on afterwards
        with wsgi.connect() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
            reader = Reader(sock, timeout=20)
            sock.sendall(b"GET /bigfile HTTP/1.1\r\nHost: x\r\n\r\nHEAD /bigfile HTTP/1.1\r\nHost: x\r\n\r\n")
            response = reader.response()
            head = reader.response("HEAD")
            sock.sendall(b"GET /closed HTTP/1.1\r\nHost: x\r\n\r\n")
            assert json.loads(reader.response().body).get("big", 0) == before
        expected = bytes(range(256)) * (32 * 1024)
        assert response.headers[b"content-length"] == b"%d" % len(expected)
        assert response.body == expected
        assert head.headers[b"content-length"] == b"%d" % len(expected)

    def test_wsgi_errors_go_to_the_log(self, wsgi):
        mark = wsgi.mark()
        assert get(wsgi, "/errors").code == 200
        wsgi.wait_log(r"wsgi.errors: first line$", start=mark)
        wsgi.wait_log(r"wsgi.errors: second line$", start=mark)

    def test_start_response_twice_without_exc_info_is_an_error(self, wsgi):
        mark = wsgi.mark()
        response = get(wsgi, "/twice")
        assert response.code == 500
        wsgi.wait_log(r"Exception in WSGI application \(GET /twice\)", start=mark)
        wsgi.wait_log(r"start_response called a second time without exc_info", start=mark)

    def test_exc_info_replaces_the_response_before_the_head(self, wsgi):
        response = get(wsgi, "/exc-info")
        assert (response.code, response.body) == (503, b"replaced")

    def test_exc_info_after_the_head_reraises_and_cuts(self, wsgi):
        mark = wsgi.mark()
        with wsgi.connect() as sock:
            sock.sendall(b"GET /exc-info-late HTTP/1.1\r\nHost: x\r\n\r\n")
            reader = Reader(sock)
            status, headers, _ = reader.head()
            assert headers[b"transfer-encoding"] == b"chunked"
            rest = reader.until_close()
        assert rest.startswith(b"5\r\nfirst\r\n") and not rest.endswith(b"0\r\n\r\n")
        wsgi.wait_log(r"ValueError: too late", start=mark)

    def test_generator_raising_after_head_closes_without_terminator(self, wsgi):
        before = get_json(wsgi, "/closed").get("gen-raise", 0)
        mark = wsgi.mark()
        with wsgi.connect() as sock:
            sock.sendall(b"GET /gen-raise HTTP/1.1\r\nHost: x\r\n\r\n")
            reader = Reader(sock)
            reader.head()
            rest = reader.until_close()
        assert rest == b"9\r\npart one,\r\n"  # no last chunk: the client knows it is cut
        wsgi.wait_log(r"Exception in WSGI application \(GET /gen-raise\)", start=mark)
        assert "Exception in ASGI application" not in "\n".join(wsgi.lines[mark:])
        assert get_json(wsgi, "/closed")["gen-raise"] == before + 1

    def test_raise_before_any_body_is_500_and_closed(self, wsgi):
        before = get_json(wsgi, "/closed").get("raise-first", 0)
        assert get(wsgi, "/raise-first").code == 500
        assert get_json(wsgi, "/closed")["raise-first"] == before + 1

    def test_invalid_headers_and_missing_start_response_are_500(self, wsgi):
        assert get(wsgi, "/bad-header").code == 500
        assert get(wsgi, "/no-start").code == 500
        assert get(wsgi, "/hello").code == 200

    def test_declared_content_length_is_never_exceeded(self, wsgi):
        for path, body in (("/long-length", b"12345"), ("/short-length", b"12345")):
            with wsgi.connect() as sock:
                sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
                reader = Reader(sock)
                reader.head()
                assert reader.until_close() == body  # and the connection closes

    def test_slow_client_pauses_the_iterable(self, wsgi):
        """A client that reads nothing: the app's iterable is not drained
        into memory; reading resumes it, and close() is called at the end."""
        before = get_json(wsgi, "/closed").get("big", 0)
        total = 1024 * 65536
        sock = wsgi.connect()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        try:
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            last = [-1, time.monotonic()]

            def settled():
                sent = get_json(wsgi, "/progress")["sent"]
                now = time.monotonic()
                if sent != last[0]:
                    last[:] = [sent, now]
                    return False
                return sent > 0 and now - last[1] > 0.3

            wait_until(settled, timeout=20, interval=0.05, message="the iterable to stop being drained")
            assert last[0] < 1024 // 2, f"{last[0]} of 1024 pieces taken by a client that read nothing"
            received = 0
            reader = Reader(sock, timeout=20)
            _, headers, _ = reader.head()
            received = len(reader.buffer)
            while received < total:
                data = sock.recv(1 << 20)
                assert data
                received += len(data)
        finally:
            sock.close()
        assert get_json(wsgi, "/progress")["sent"] == 1024
        wait_until(lambda: get_json(wsgi, "/closed").get("big", 0) == before + 1, message="close() of the iterable")

    def test_client_gone_mid_stream_closes_the_iterable(self, wsgi):
        before = get_json(wsgi, "/closed").get("big", 0)
        sock = wsgi.connect()
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        Reader(sock).head()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # a reset
        wait_until(lambda: get_json(wsgi, "/closed").get("big", 0) == before + 1, message="close() after the client left")


class TestValidator:
    def test_validated_app_logs_no_complaint(self, server_factory):
        for threads in ("1", "3"):
            server = server_factory("wsgi_pep:validated", "--threads", threads, "--interface", "wsgi")
            mark = server.mark()
            assert (get(server, "/").code, get(server, "/").body) == (200, b"Hello, world!")
            assert post(server, "/post", b"0123456789").body == b"0123456789"
            assert get(server, "/stream").body == b"ab"
            assert get(server, "/write").body == b"wr"
            assert get(server, "/errors").code == 204
            assert get(server, "/", "HEAD").code == 200
            server.wait_log(r"wsgi.errors: validated", start=mark)
            server.stop()
            log = "\n".join(server.lines[mark:])
            assert "Warning" not in log and "AssertionError" not in log and "Exception" not in log, log


class TestThreads:
    def test_requests_run_concurrently(self, server_factory):
        server = server_factory("wsgi_pep:app", "--threads", "2")
        socks = [server.connect() for _ in range(2)]
        for sock in socks:
            sock.sendall(b"GET /barrier HTTP/1.1\r\nHost: x\r\n\r\n")
        names = {Reader(sock).response().body for sock in socks}
        for sock in socks:
            sock.close()
        assert names == {b"corral-wsgi-0", b"corral-wsgi-1"}

    def test_time_waiting_for_a_thread_is_not_running_time(self, server_factory):
        """12 one-second requests on 2 threads take 6 s, past --timeout-worker
        3; none ran longer than 1 s, so none is stuck: all 12 are served by
        the same worker (gunicorn gthread serves them all too)."""
        server = server_factory("wsgi_pep:app", "--threads", "2", "--timeout-worker", "3")
        mark = server.mark()
        socks = [server.connect(timeout=30) for _ in range(12)]
        for sock in socks:
            sock.sendall(b"GET /sleep HTTP/1.1\r\nHost: x\r\n\r\n")
        responses = [Reader(sock, timeout=30).response() for sock in socks]
        for sock in socks:
            sock.close()
        assert [response.code for response in responses] == [200] * 12
        assert len({response.body for response in responses}) == 1  # one worker, never replaced
        assert not [line for line in server.lines[mark:] if "running for" in line or "exited" in line]

    def test_request_whose_client_left_while_waiting_for_a_thread_is_not_run(self, server_factory):
        server = server_factory("wsgi_pep:app", "--threads", "2")
        busy = [server.connect(timeout=30) for _ in range(2)]
        for sock in busy:
            sock.sendall(b"GET /sleep?1.5 HTTP/1.1\r\nHost: x\r\n\r\n")
        server_busy = time.monotonic()
        with server.connect() as sock:  # queued behind the two, then reset (a FIN alone is a half-close)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.sendall(b"GET /count HTTP/1.1\r\nHost: x\r\n\r\n")
        assert [Reader(sock, timeout=30).response().code for sock in busy] == [200, 200]
        assert time.monotonic() - server_busy < 5
        for sock in busy:
            sock.close()
        assert "count" not in get_json(server, "/closed")
        assert get(server, "/count").code == 200
        assert get_json(server, "/closed")["count"] == 1

    def test_request_past_timeout_worker_dumps_stacks_and_replaces_the_worker(self, server_factory):
        server = server_factory("wsgi_pep:app", "--threads", "2", "--timeout-worker", "1")
        old = int(get(server, "/pid").body)
        sock = server.connect()
        sock.sendall(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        server.wait_log(r"WSGI request GET /hang running for [\d.]+s \(--timeout-worker 1.0\)")
        server.wait_log(r'File ".*wsgi_pep.py", line \d+ in app')
        server.wait_log(r"master: worker \d+ ready", count=2)
        assert Reader(sock).closed()
        sock.close()
        assert int(get(server, "/pid").body) != old


def test_file_wrapper_over_tls_is_encrypted_not_sendfile(server_factory, tmp_path):
    """sendfile would bypass TLS: over a TLS transport the file goes through
    the transport in blocks, and the client reads it whole."""
    trustme = pytest.importorskip("trustme", reason="trustme is in the test extra: pip install -e '.[test]'")
    import ssl

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    pem = tmp_path / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    server = server_factory("wsgi_pep:app", "--ssl-certfile", str(pem))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with context.wrap_socket(server.connect(), server_hostname="127.0.0.1") as sock:
        sock.sendall(b"GET /bigfile HTTP/1.1\r\nHost: x\r\n\r\n")
        response = Reader(sock, timeout=20).response()
    expected = bytes(range(256)) * (32 * 1024)
    assert response.headers[b"transfer-encoding"] == b"chunked"  # iterated, not the sendfile path
    assert response.body == expected
