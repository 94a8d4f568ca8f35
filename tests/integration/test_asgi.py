"""The ASGI http scope and cycle against a real corral process."""

from __future__ import annotations

import json
import re
import socket
from http import HTTPStatus

import httpx
import pytest

from support import Reader, Server

SCOPE_KEYS = [
    "asgi", "client", "extensions", "headers", "http_version", "method", "path", "query_string",
    "raw_path", "root_path", "scheme", "server", "state", "type",
]


@pytest.fixture(scope="module")
def server():
    with Server("h1_app:app") as server:
        yield server


def send(server, data: bytes) -> tuple[socket.socket, Reader]:
    sock = server.connect()
    sock.sendall(data)
    return sock, Reader(sock)


def get_scope(server, data: bytes) -> tuple[dict, int]:
    sock, reader = send(server, data)
    with sock:
        port = sock.getsockname()[1]
        response = reader.response()
    assert response.status == b"HTTP/1.1 200 OK"
    return json.loads(response.body), port


def assert_500(response) -> None:
    assert response.status == b"HTTP/1.1 500 Internal Server Error"
    assert response.body == b"Internal Server Error\n"
    assert response.headers[b"content-type"] == b"text/plain; charset=utf-8"
    assert response.headers[b"content-length"] == b"22"
    assert response.headers[b"connection"] == b"close"


def assert_still_serving(server) -> None:
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/").content == b"Hello, world!"


class TestScope:
    def test_scope_is_complete_and_exact(self, server):
        scope, port = get_scope(
            server,
            b"GET /scope/caf%C3%A9/a%2Fb?x=1&y=%20 HTTP/1.1\r\nHost: example.com:8080\r\n"
            b"X-Dup: 1\r\nUser-Agent: test\r\nx-dup: 2\r\n\r\n",
        )
        assert scope == {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "server": ["127.0.0.1", server.port],
            "client": ["127.0.0.1", port],
            "scheme": "http",
            "method": "GET",
            "root_path": "",
            "path": "/scope/caf\u00e9/a/b",
            "raw_path": "/scope/caf%C3%A9/a%2Fb",
            "query_string": "x=1&y=%20",
            "headers": [["host", "example.com:8080"], ["x-dup", "1"], ["user-agent", "test"], ["x-dup", "2"]],
            "state": {"started": True},
            "extensions": {"http.response.trailers": {}, "http.response.early_hint": {},
                           "http.response.pathsend": {}, "http.response.zerocopysend": {}},
            "keys": SCOPE_KEYS,
        }

    def test_http_1_0_post(self, server):
        scope, _ = get_scope(server, b"POST /scope HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi")
        assert (scope["http_version"], scope["method"], scope["path"], scope["query_string"]) == ("1.0", "POST", "/scope", "")
        assert scope["headers"] == [["content-length", "2"]]

    def test_absolute_form_target(self, server):
        scope, _ = get_scope(server, b"GET http://example.org/scope?q=1 HTTP/1.1\r\nHost: other\r\n\r\n")
        assert (scope["path"], scope["raw_path"], scope["query_string"]) == ("/scope", "/scope", "q=1")
        assert scope["headers"] == [["host", "example.org"]]

    def test_state_is_copied_per_request(self, server):
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/mutate-state").content == b"mutated"
            assert client.get("/scope").json()["state"] == {"started": True}

    def test_root_path(self, server_factory):
        prefixed = server_factory("h1_app:app", "--root-path", "/api")
        scope, _ = get_scope(prefixed, b"GET /scope/x%20y?z=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        # ASGI: root_path is also the start of path (and raw_path), as WSGI's
        # SCRIPT_NAME + PATH_INFO; the proxy in front stripped it.
        assert scope["root_path"] == "/api"
        assert scope["path"] == "/api/scope/x y"
        assert scope["raw_path"] == "/api/scope/x%20y"
        assert scope["query_string"] == "z=1"


class TestAppErrors:
    def test_exception_before_start_is_500(self, server):
        mark = server.mark()
        sock, reader = send(server, b"GET /raise HTTP/1.1\r\nHost: x\r\n\r\n")
        with sock:
            response = reader.response()
            assert reader.closed()
        assert_500(response)
        server.wait_log(r"\[ERROR\] Exception in ASGI application \(GET /raise\)$", start=mark)
        server.wait_log(r"^RuntimeError: boom$", start=mark)
        assert_still_serving(server)

    def test_exception_after_start_cuts_the_body(self, server):
        mark = server.mark()
        sock, reader = send(server, b"GET /raise-after-start HTTP/1.1\r\nHost: x\r\n\r\n")
        with sock:
            status, headers, _ = reader.head()
            body = reader.until_close()
        assert status == b"HTTP/1.1 200 OK"
        assert headers[b"content-length"] == b"100"
        assert body == b"partial"  # then the close: the client sees an incomplete body
        server.wait_log(r"Exception in ASGI application \(GET /raise-after-start\)$", start=mark)
        with httpx.Client(base_url=server.url) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                client.get("/raise-after-start")
        assert_still_serving(server)

    def test_returning_without_a_response_is_500(self, server):
        mark = server.mark()
        sock, reader = send(server, b"GET /no-response HTTP/1.1\r\nHost: x\r\n\r\n")
        with sock:
            response = reader.response()
            assert reader.closed()
        assert_500(response)
        server.wait_log(r"\[ERROR\] ASGI app returned without starting a response: GET /no-response$", start=mark)

    def test_returning_after_start_only_is_500(self, server):
        mark = server.mark()
        sock, reader = send(server, b"GET /start-only HTTP/1.1\r\nHost: x\r\n\r\n")
        with sock:
            response = reader.response()
            assert reader.closed()
        assert_500(response)
        server.wait_log(r"\[ERROR\] ASGI app returned without sending a response body: GET /start-only$", start=mark)

    def test_header_injection_is_500_and_not_sent(self, server):
        mark = server.mark()
        sock, reader = send(server, b"GET /bad-header HTTP/1.1\r\nHost: x\r\n\r\n")
        with sock:
            response = reader.response()
            rest = reader.until_close()
        assert_500(response)
        assert rest == b""
        assert b"evil" not in response.head.lower() and b"set-cookie" not in response.head.lower()
        server.wait_log(r"invalid http\.response\.start: header values must not contain CR, LF or NUL", start=mark)

    def test_informational_status_from_the_app_is_500(self, server):
        sock, reader = send(server, b"GET /informational HTTP/1.1\r\nHost: x\r\n\r\n")
        with sock:
            assert_500(reader.response())

    def test_body_longer_than_content_length_in_one_piece_is_500(self, server):
        mark = server.mark()
        sock, reader = send(server, b"GET /long-body HTTP/1.1\r\nHost: x\r\n\r\n")
        with sock:
            response = reader.response()
            assert reader.closed()
        assert_500(response)
        server.wait_log(r"response body longer than its Content-Length", start=mark)

    @pytest.mark.parametrize(
        "upgrade",
        [b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n",
         b"Connection: Upgrade\r\nUpgrade: websocket\r\n"],
        ids=["h2c", "websocket-on-post"],
    )
    def test_an_upgrade_not_taken_keeps_the_body_and_the_connection(self, server, upgrade):
        # Issue 9 finding c: what curl --http2 sends on cleartext. The app got
        # an empty body, and a body in a later segment was parsed as a request.
        sock, reader = send(server, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n" + upgrade + b"\r\n")
        with sock:
            sock.sendall(b"hello world")
            response = reader.response()
            assert (response.status, response.body) == (b"HTTP/1.1 200 OK", b"hello world")
            assert b"connection" not in response.headers
            sock.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
            assert reader.response().headers[b"x-route"] == b"scope"

    def test_two_content_lengths_from_the_app_are_500_and_close(self, server):
        # Issue 9 finding b: both lines were sent, framed by the last; a
        # client using the first ate 7 bytes of the pipelined response.
        mark = server.mark()
        sock, reader = send(server, b"GET /two-lengths HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with sock:
            response = reader.response()
            rest = reader.until_close()
        assert_500(response)
        assert rest == b""
        server.wait_log(r"invalid http\.response\.start: content-length and content-length both set", start=mark)

    def test_the_apps_date_and_server_replace_ours_and_hop_by_hop_fields_are_dropped(self, server):
        # Issue 9 findings h (date and server were sent twice) and i (the
        # app's Keep-Alive went out while corral manages the connection).
        sock, reader = send(server, b"GET /own-headers HTTP/1.1\r\nHost: x\r\n\r\n")
        with sock:
            response = reader.response()
        lines = [line.lower() for line in response.head.split(b"\r\n")[1:]]
        assert [line for line in lines if line.startswith((b"date:", b"server:", b"keep-alive:"))] == [
            b"date: tue, 01 jan 2030 00:00:00 gmt",
            b"server: app/1.0",
        ]
        assert response.body == b"own"

    @pytest.mark.parametrize("path, sent", [("/short-body", b"abc"), ("/short-body-streamed", b"abcdef")])
    def test_body_shorter_than_content_length_closes(self, server, path, sent):
        sock, reader = send(server, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
        with sock:
            status, headers, _ = reader.head()
            sock.settimeout(2)  # promptly: not after the keep-alive timeout
            body = reader.until_close()  # the close tells the client the body is cut
        assert (status, headers[b"content-length"], body) == (b"HTTP/1.1 200 OK", b"10", sent)

    def test_body_after_the_response_completed(self, server):
        mark = server.mark()
        sock, reader = send(server, b"GET /body-after-complete HTTP/1.1\r\nHost: x\r\n\r\n")
        with sock:
            response = reader.response()
            assert reader.closed()
        assert (response.status, response.body) == (b"HTTP/1.1 200 OK", b"complete")
        server.wait_log(r"RuntimeError: ASGI: http\.response\.body sent after the response completed", start=mark)


class TestReceive:
    def test_disconnect_mid_request(self, server):
        mark = server.mark()
        with server.connect() as sock:
            sock.sendall(b"POST /disconnect HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        server.wait_log(r"^saw http\.disconnect$", start=mark)
        assert_still_serving(server)

    def test_disconnect_with_a_reset(self, server):
        mark = server.mark()
        sock = server.connect()
        sock.sendall(b"POST /disconnect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
        server.wait_log(r"^saw http\.disconnect$", start=mark)

    def test_client_closing_after_a_whole_request_is_seen_by_a_listening_app(self, server):
        mark = server.mark()
        with server.connect() as sock:
            sock.sendall(b"GET /long-poll HTTP/1.1\r\nHost: x\r\n\r\n")
            server.wait_log(r"^long-poll waiting$", start=mark)
        server.wait_log(r"^long-poll got http\.disconnect$", start=mark, timeout=5)

    def test_half_close_still_gets_the_response_of_an_app_that_does_not_listen(self, server):
        with server.connect() as sock:
            sock.sendall(b"GET /sleep?0.2 HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.shutdown(socket.SHUT_WR)
            reader = Reader(sock)
            response = reader.response()
            assert reader.closed()
        assert (response.status, response.body) == (b"HTTP/1.1 200 OK", b"slept\n")

    def test_receive_after_the_response_is_disconnect(self, server):
        mark = server.mark()
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/receive-after-response").content == b"done"
        server.wait_log(r"^after response got http\.disconnect$", start=mark)

    def test_a_pending_receive_gets_disconnect_when_the_response_completes(self, server):
        mark = server.mark()
        with httpx.Client(base_url=server.url) as client:
            assert client.post("/listen-then-respond", content=b"body").content == b"done"
        server.wait_log(r"^listener got http\.disconnect$", start=mark)


def test_access_log_line(server):
    mark = server.mark()
    sock, reader = send(server, b"GET /pid?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    with sock:
        port = sock.getsockname()[1]
        assert reader.response().status == b"HTTP/1.1 200 OK"
    server.wait_log(rf"\[\d+\] 127\.0\.0\.1:{port} - \"GET /pid\?x=1 HTTP/1\.1\" 200$", start=mark)


def test_no_access_log_with_no_access_log(server_factory):
    quiet = server_factory("h1_app:app", "--no-access-log")
    mark = quiet.mark()
    with httpx.Client(base_url=quiet.url) as client:
        assert client.get("/pid").status_code == 200
        client.get("/raise")
    quiet.wait_log(r"Exception in ASGI application \(GET /raise\)", start=mark)
    assert not [line for line in quiet.lines[mark:] if re.search(r'"GET /pid HTTP/1\.1"', line)]
