"""HTTP/1.1 end to end against a real corral process (httpx and raw sockets)."""

from __future__ import annotations

import json
import select
import socket

import httpx
import pytest

from support import Reader, Server

HELLO = b"Hello, world!"


@pytest.fixture(scope="module")
def server():
    with Server("h1_app:app") as server:
        yield server


def no_data_within(sock: socket.socket, seconds: float) -> bool:
    readable, _, _ = select.select([sock], [], [], seconds)
    return not readable


def pid(sock: socket.socket, reader: Reader) -> int:
    sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
    response = reader.response()
    assert response.status == b"HTTP/1.1 200 OK"
    return int(response.body)


class TestKeepAlive:
    def test_httpx_requests_share_one_connection_and_worker(self, server):
        with httpx.Client(base_url=server.url) as client:
            pids = set()
            ports = set()
            for _ in range(5):
                response = client.get("/pid")
                assert response.status_code == 200
                assert response.http_version == "HTTP/1.1"
                assert "connection" not in response.headers
                pids.add(int(response.text))
                ports.add(client.get("/scope").json()["client"][1])
        assert len(pids) == 1
        assert len(ports) == 1

    def test_raw_socket_serves_many_requests(self, server):
        with server.connect() as sock:
            reader = Reader(sock)
            pids = {pid(sock, reader) for _ in range(5)}
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            response = reader.response()
        assert (response.status, response.body) == (b"HTTP/1.1 200 OK", HELLO)
        assert response.headers[b"content-length"] == b"13"
        assert response.headers[b"content-type"] == b"text/plain"
        assert response.headers[b"server"] == b"corral"
        assert response.headers[b"date"].endswith(b" GMT")
        assert b"connection" not in response.headers
        assert len(pids) == 1

    def test_connection_close_is_honoured(self, server):
        with server.connect() as sock:
            reader = Reader(sock)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            response = reader.response()
            assert reader.closed()
        assert response.status == b"HTTP/1.1 200 OK"
        assert response.headers[b"connection"] == b"close"
        assert response.body == HELLO

    def test_app_connection_close_header_is_sent_once_and_closes(self, server):
        with server.connect() as sock:
            reader = Reader(sock)
            sock.sendall(b"GET /app-connection-close HTTP/1.1\r\nHost: x\r\n\r\n")
            response = reader.response()  # a repeated header would fail the read
            assert reader.closed()
        assert (response.status, response.headers[b"connection"], response.body) == (b"HTTP/1.1 200 OK", b"close", b"bye")


class TestPipelining:
    def test_answers_in_order(self, server):
        with server.connect() as sock:
            reader = Reader(sock)
            sock.sendall(
                b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n"
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n1;x=y\r\nf\r\n0\r\n\r\n"
                b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"
                b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            assert reader.response().body.isdigit()
            assert reader.response().body == b"abc"
            assert reader.response().body == b"def"
            assert reader.response().body == b"one,two,three"
            head = reader.response("HEAD")
            assert (head.status, head.headers[b"content-length"]) == (b"HTTP/1.1 200 OK", b"13")
            # HEAD sent no body bytes: the next response follows at once.
            assert reader.response().body == HELLO
            assert no_data_within(sock, 0.05)

    def test_many_pipelined_requests(self, server):
        count = 40
        with server.connect() as sock:
            reader = Reader(sock)
            sock.sendall(b"".join(b"GET /scope?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(count)))
            seen = [json.loads(reader.response().body)["query_string"] for _ in range(count)]
        assert seen == ["n=%d" % i for i in range(count)]

    def test_nothing_after_connection_close_is_answered(self, server):
        with server.connect() as sock:
            reader = Reader(sock)
            sock.sendall(
                b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            first = reader.response()
            second = reader.response()
            assert reader.closed()
        assert first.status == b"HTTP/1.1 200 OK" and first.body.isdigit()
        assert b"connection" not in first.headers
        assert (second.status, second.headers[b"connection"], second.body) == (b"HTTP/1.1 200 OK", b"close", HELLO)


class TestChunked:
    def test_chunked_request_body(self, server):
        body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in (b"hello ", b"chunked ", b"world")) + b"0\r\n\r\n"
        with server.connect() as sock:
            reader = Reader(sock)
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
            response = reader.response()
        assert (response.status, response.body) == (b"HTTP/1.1 200 OK", b"hello chunked world")
        assert response.headers[b"content-length"] == b"19"

    def test_chunked_request_body_in_pieces(self, server):
        with server.connect() as sock:
            reader = Reader(sock)
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in (b"3\r\nab", b"c\r\n", b"4\r\n", b"defg\r\n0\r\n", b"\r\n"):
                sock.sendall(piece)
            assert reader.response().body == b"abcdefg"
            assert pid(sock, reader) > 0

    def test_trailers_do_not_reach_the_next_request(self, server):
        with server.connect() as sock:
            reader = Reader(sock)
            sock.sendall(
                b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3\r\nabc\r\n0\r\nX-Trailer: yes\r\n\r\n"
                b"GET /headers HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            assert reader.response().body == b"abc"
            assert json.loads(reader.response().body) == [["host", "x"]]

    def test_large_chunked_request_body_streams_through(self, server):
        piece = bytes(range(256)) * 256  # 64 KiB

        def generate():
            for _ in range(24):  # 1.5 MiB: beyond the read-pause high-water mark
                yield piece

        with httpx.Client(base_url=server.url) as client:
            response = client.post("/echo", content=generate())
        assert response.status_code == 200
        assert response.content == piece * 24

    def test_large_content_length_body(self, server):
        data = b"x" * (2 * 1024 * 1024 + 7)
        with httpx.Client(base_url=server.url) as client:
            response = client.post("/echo", content=data)
            assert response.content == data
            assert client.get("/").content == HELLO

    def test_streaming_response_is_chunked(self, server):
        with server.connect() as sock:
            reader = Reader(sock)
            sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, _ = reader.head()
            while not reader.buffer.endswith(b"0\r\n\r\n"):
                assert reader._more()
            assert status == b"HTTP/1.1 200 OK"
            assert headers[b"transfer-encoding"] == b"chunked"
            assert b"content-length" not in headers
            assert reader.buffer == b"4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n"
            reader.buffer = b""
            assert pid(sock, reader) > 0

    def test_httpx_reads_a_streaming_response(self, server):
        with httpx.Client(base_url=server.url) as client:
            with client.stream("GET", "/stream") as response:
                assert response.headers["transfer-encoding"] == "chunked"
                assert b"".join(response.iter_bytes()) == b"one,two,three"

    def test_big_response(self, server):
        with httpx.Client(base_url=server.url) as client:
            response = client.get("/big?3000000")
        assert response.headers["content-length"] == "3000000"
        assert response.content == b"x" * 3000000


class TestExpectContinue:
    HEAD = b"POST /%s HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"

    def test_100_is_sent_when_the_app_first_receives(self, server):
        with server.connect() as sock, server.connect() as other:
            reader = Reader(sock)
            mark = server.mark()
            sock.sendall(self.HEAD % b"gated-echo")
            server.wait_log(r"^gated-echo waiting$", start=mark)
            # The app has not called receive(): no interim response yet.
            assert no_data_within(sock, 0.2)
            other.sendall(b"GET /open-gate HTTP/1.1\r\nHost: x\r\n\r\n")
            assert Reader(other).response().body == b"opened"
            interim = reader.response()
            assert interim.head == b"HTTP/1.1 100 Continue"
            assert reader.buffer == b""
            sock.sendall(b"hello")
            response = reader.response()
            assert (response.status, response.body) == (b"HTTP/1.1 200 OK", b"hello")
            assert pid(sock, reader) > 0

    def test_no_100_when_the_app_answers_without_reading(self, server):
        with server.connect() as sock:
            reader = Reader(sock)
            sock.sendall(self.HEAD % b"reject-early")
            response = reader.response()
            # The body was never read: the connection cannot be reused.
            assert reader.closed()
        assert (response.code, response.body) == (413, b"too large")
        assert response.headers[b"connection"] == b"close"

    def test_no_100_when_the_body_is_already_there(self, server):
        with server.connect() as sock:
            reader = Reader(sock)
            sock.sendall(self.HEAD % b"echo" + b"hello")
            response = reader.response()
            # The first thing read is the final response: no interim 100.
            assert (response.status, response.body) == (b"HTTP/1.1 200 OK", b"hello")
            assert pid(sock, reader) > 0

    def test_never_for_http_1_0(self, server):
        with server.connect() as sock:
            reader = Reader(sock)
            mark = server.mark()
            sock.sendall(b"POST /echo-100 HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
            server.wait_log(r"^echo-100 receiving$", start=mark)
            assert no_data_within(sock, 0.2)
            sock.sendall(b"hello")
            response = reader.response()
            assert reader.closed()
        assert (response.status, response.body) == (b"HTTP/1.1 200 OK", b"hello")
        assert response.headers[b"connection"] == b"close"


class TestHead:
    def test_head_has_the_get_length_and_no_body(self, server):
        with server.connect() as sock:
            reader = Reader(sock)
            sock.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
            response = reader.response("HEAD")
            assert response.status == b"HTTP/1.1 200 OK"
            assert response.headers[b"content-length"] == b"13"
            assert response.headers[b"content-type"] == b"text/plain"
            assert no_data_within(sock, 0.05)
            assert pid(sock, reader) > 0

    def test_head_of_a_streaming_response_has_no_framing(self, server):
        with server.connect() as sock:
            reader = Reader(sock)
            sock.sendall(b"HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            response = reader.response("HEAD")
            assert response.status == b"HTTP/1.1 200 OK"
            assert b"transfer-encoding" not in response.headers
            assert b"content-length" not in response.headers
            assert b"connection" not in response.headers
            assert no_data_within(sock, 0.05)
            assert pid(sock, reader) > 0

    def test_httpx_head(self, server):
        with httpx.Client(base_url=server.url) as client:
            response = client.head("/")
            assert response.headers["content-length"] == "13"
            assert response.content == b""
            assert client.get("/").content == HELLO


class TestHTTP10:
    def test_close_by_default_with_content_length(self, server):
        with server.connect() as sock:
            reader = Reader(sock)
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            response = reader.response()
            assert reader.closed()
        assert response.status == b"HTTP/1.1 200 OK"
        assert response.headers[b"connection"] == b"close"
        assert response.headers[b"content-length"] == b"13"
        assert response.body == HELLO

    def test_streaming_is_close_delimited(self, server):
        with server.connect() as sock:
            reader = Reader(sock)
            sock.sendall(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            response = reader.response()  # no framing: read until the close
        assert response.status == b"HTTP/1.1 200 OK"
        assert response.headers[b"connection"] == b"close"
        assert b"transfer-encoding" not in response.headers
        assert b"content-length" not in response.headers
        assert response.body == b"one,two,three"

    def test_keep_alive_when_asked(self, server):
        with server.connect() as sock:
            reader = Reader(sock)
            sock.sendall(b"GET /pid HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            first = reader.response()
            sock.sendall(b"GET /pid HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            second = reader.response()
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            third = reader.response()
            assert reader.closed()
        assert first.headers[b"connection"] == second.headers[b"connection"] == b"keep-alive"
        assert first.body == second.body
        assert third.headers[b"connection"] == b"close"

    def test_http_1_0_post_body(self, server):
        with server.connect() as sock:
            reader = Reader(sock)
            sock.sendall(b"POST /echo HTTP/1.0\r\nContent-Length: 4\r\n\r\nabcd")
            assert reader.response().body == b"abcd"
            assert reader.closed()


class TestNoBodyStatuses:
    def test_204_has_no_length_and_no_body(self, server):
        with server.connect() as sock:
            reader = Reader(sock)
            sock.sendall(b"GET /204 HTTP/1.1\r\nHost: x\r\n\r\n")
            response = reader.response()
            assert response.status == b"HTTP/1.1 204 No Content"
            assert b"content-length" not in response.headers
            assert b"transfer-encoding" not in response.headers
            assert no_data_within(sock, 0.05)
            assert pid(sock, reader) > 0

    def test_streamed_304_has_no_framing(self, server):
        with server.connect() as sock:
            reader = Reader(sock)
            sock.sendall(b"GET /304 HTTP/1.1\r\nHost: x\r\n\r\n")
            response = reader.response()
            assert response.status == b"HTTP/1.1 304 Not Modified"
            assert response.headers[b"etag"] == b'"x"'
            assert b"transfer-encoding" not in response.headers
            assert no_data_within(sock, 0.05)
            assert pid(sock, reader) > 0


def test_request_headers_reach_the_app_in_order(server):
    with server.connect() as sock:
        reader = Reader(sock)
        sock.sendall(
            b"GET /headers HTTP/1.1\r\nHost: example.com\r\nX-Dup: 1\r\nAccept: */*\r\nx-dup: 2\r\n"
            b"X-Padded:  value  \r\n\r\n"
        )
        body = reader.response().body
    assert json.loads(body) == [
        ["host", "example.com"],
        ["x-dup", "1"],
        ["accept", "*/*"],
        ["x-dup", "2"],
        ["x-padded", "value"],
    ]
