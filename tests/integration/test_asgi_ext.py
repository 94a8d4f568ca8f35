"""ASGI extensions end to end (tests/apps/ext_app.py): pathsend and
zerocopysend (through the connections' send_file verb: os.sendfile on plain
TCP, read and write over TLS, DATA frames over HTTP/2), 103 Early Hints,
response trailers over HTTP/1.1, and Starlette's FileResponse using pathsend.
Byte-exact over HTTP/1.1 (raw sockets), HTTP/2 (h2c, tests/h2support.py)
and TLS."""

from __future__ import annotations

import json
import os
import socket
import ssl

import pytest

from h2support import H2Client
from support import Reader, Server
from test_tls import Certs

EXTENSIONS = ["http.response.early_hint", "http.response.pathsend", "http.response.trailers",
              "http.response.zerocopysend"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ext")
    big = directory / "big.bin"
    big.write_bytes(os.urandom(3 * 1024 * 1024 + 17))  # past every socket buffer and window
    small = directory / "hello.txt"
    small.write_bytes(b"hello world")
    return {"big": big, "small": small, "dir": directory}


@pytest.fixture(scope="module")
def server():
    with Server("ext_app:app", "--no-access-log") as srv:
        yield srv


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Certs(tmp_path_factory.mktemp("exttls"))


@pytest.fixture(scope="module")
def tls_server(certs):
    with Server("ext_app:app", *certs.args(), "--no-access-log") as srv:
        yield srv


def get(server, target: str, extra: bytes = b"", version: bytes = b"1.1", sock=None):
    with server.connect() as sock:
        sock.sendall(b"GET %s HTTP/%s\r\nHost: x\r\n%s\r\n" % (target.encode(), version, extra))
        reader = Reader(sock)
        return reader.response(), reader


def test_every_extension_is_declared_over_each_protocol(server, tls_server, certs):
    response, _ = get(server, "/extensions")
    assert json.loads(response.body) == EXTENSIONS
    with H2Client(server.port) as client:
        _, body, _ = client.response(client.request("/extensions"))
    assert json.loads(body) == EXTENSIONS
    with socket.create_connection(("127.0.0.1", tls_server.port)) as raw:
        with certs.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(b"GET /extensions HTTP/1.1\r\nHost: x\r\n\r\n")
            assert json.loads(Reader(sock).response().body) == sorted(EXTENSIONS + ["tls"])


class TestPathsend:
    def test_small_file_gets_the_apps_head_and_a_length(self, server, files):
        response, reader = get(server, f"/pathsend?file={files['small']}")
        assert response.status == b"HTTP/1.1 200 OK"
        assert response.headers[b"content-length"] == b"11"
        assert response.headers[b"content-type"] == b"application/octet-stream"
        assert response.body == b"hello world"

    def test_big_file_is_byte_exact_and_the_connection_stays_open(self, server, files):
        data = files["big"].read_bytes()
        with server.connect() as sock:
            reader = Reader(sock, timeout=30)
            for _ in range(2):
                sock.sendall(b"GET /pathsend?file=%s HTTP/1.1\r\nHost: x\r\n\r\n" % str(files["big"]).encode())
                response = reader.response()
                assert response.headers[b"content-length"] == b"%d" % len(data)
                assert response.body == data

    def test_over_http2(self, server, files):
        data = files["big"].read_bytes()
        with H2Client(server.port, timeout=30) as client:
            streams = [client.request(f"/pathsend?file={files['big']}") for _ in range(2)]
            for stream in streams:
                headers, body, _ = client.response(stream, timeout=30)
                assert headers[b":status"] == b"200" and headers[b"content-length"] == b"%d" % len(data)
                assert body == data

    def test_over_tls(self, tls_server, certs, files):
        data = files["big"].read_bytes()
        with socket.create_connection(("127.0.0.1", tls_server.port)) as raw:
            with certs.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                reader = Reader(sock, timeout=30)
                for _ in range(2):
                    sock.sendall(b"GET /pathsend?file=%s HTTP/1.1\r\nHost: x\r\n\r\n" % str(files["big"]).encode())
                    assert reader.response().body == data

    def test_a_missing_file_is_a_500(self, server, files):
        response, _ = get(server, f"/pathsend?file={files['dir']}/nope")
        assert response.code == 500

    def test_a_directory_is_a_500(self, server, files):
        response, _ = get(server, f"/pathsend?file={files['dir']}")
        assert response.code == 500

    def test_head_sends_no_body(self, server, files):
        with server.connect() as sock:
            sock.sendall(b"HEAD /pathsend?file=%s HTTP/1.1\r\nHost: x\r\n\r\n" % str(files["small"]).encode())
            reader = Reader(sock)
            response = reader.response("HEAD")
            assert response.headers[b"content-length"] == b"11"
            sock.sendall(b"GET /extensions HTTP/1.1\r\nHost: x\r\n\r\n")  # nothing stray before the next response
            assert reader.response().status == b"HTTP/1.1 200 OK"


class TestZerocopysend:
    def test_slices_by_offset_and_count_then_app_bytes(self, server, files):
        response, _ = get(server, f"/zerocopy?file={files['small']}&offset=6&count=5")
        assert response.headers[b"transfer-encoding"] == b"chunked"
        assert response.body == b"worldhel|end"

    def test_from_the_files_position_which_advances(self, server, files):
        response, _ = get(server, f"/zerocopy-position?file={files['small']}")
        assert response.body == b"llo world"

    def test_over_http2_and_tls(self, server, tls_server, certs, files):
        with H2Client(server.port) as client:
            _, body, _ = client.response(client.request(f"/zerocopy?file={files['small']}&offset=0&count=5"))
        assert body == b"hellohel|end"
        with socket.create_connection(("127.0.0.1", tls_server.port)) as raw:
            with certs.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                sock.sendall(b"GET /zerocopy?file=%s&offset=6&count=5 HTTP/1.1\r\nHost: x\r\n\r\n" % str(files["small"]).encode())
                assert Reader(sock).response().body == b"worldhel|end"

    def test_a_file_shorter_than_its_count_cuts_the_response(self, server, files):
        # Content-Length promised 111: 11 bytes, then the close (never a full-looking response).
        with server.connect() as sock:
            sock.sendall(b"GET /zerocopy-short?file=%s&length=1 HTTP/1.1\r\nHost: x\r\n\r\n" % str(files["small"]).encode())
            reader = Reader(sock)
            status, headers, _ = reader.head()
            assert headers[b"content-length"] == b"111"
            assert reader.until_close() == b"hello world"
        # Chunked: the chunk is written, never the last chunk.
        with server.connect() as sock:
            sock.sendall(b"GET /zerocopy-short?file=%s&more=1 HTTP/1.1\r\nHost: x\r\n\r\n" % str(files["small"]).encode())
            reader = Reader(sock)
            status, headers, _ = reader.head()
            assert headers[b"transfer-encoding"] == b"chunked"
            assert reader.until_close() == b"b\r\nhello world\r\n"
        # HTTP/2: the stream is reset, after the bytes there were.
        with H2Client(server.port) as client:
            stream = client.request(f"/zerocopy-short?file={files['small']}")
            client.wait(lambda events: client.resets(stream))
            assert client.resets(stream)[0].error_code == 2  # INTERNAL_ERROR
        assert "file shorter than the 111 bytes to send" in "\n".join(server.lines)


class TestEarlyHints:
    def test_http11_gets_a_103_then_the_response(self, server):
        with server.connect() as sock:
            sock.sendall(b"GET /hint HTTP/1.1\r\nHost: x\r\n\r\n")
            reader = Reader(sock)
            while b"\r\n\r\n" not in reader.buffer:
                assert reader._more()
            hint, _, reader.buffer = reader.buffer.partition(b"\r\n\r\n")
            assert hint == (b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload; as=style\r\n"
                            b"link: </app.js>; rel=preload; as=script")
            final = reader.response()
            assert final.status == b"HTTP/1.1 200 OK" and final.body == b"hinted"

    def test_http10_gets_no_103(self, server):
        with server.connect() as sock:
            sock.sendall(b"GET /hint HTTP/1.0\r\n\r\n")
            data = Reader(sock).until_close()
            assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nhinted")

    def test_http2_gets_an_informational_headers(self, server):
        import h2.events

        with H2Client(server.port) as client:
            stream = client.request("/hint")
            headers, body, _ = client.response(stream)
            informational = [e for e in client.events if isinstance(e, h2.events.InformationalResponseReceived)]
        assert [dict(e.headers) for e in informational] == [{b":status": b"103", b"link": b"</app.js>; rel=preload; as=script"}]
        assert [v for k, v in informational[0].headers if k == b"link"] == [
            b"</style.css>; rel=preload; as=style", b"</app.js>; rel=preload; as=script"]
        assert headers[b":status"] == b"200" and body == b"hinted"

    def test_a_link_with_a_line_break_is_refused(self, server):
        response, _ = get(server, "/bad-hint")
        assert response.status == b"HTTP/1.1 200 OK" and response.body == b"refused"


class TestTrailersOverHTTP11:
    def test_with_te_trailers_the_fields_follow_the_last_chunk(self, server):
        with server.connect() as sock:
            sock.sendall(b"GET /trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
            reader = Reader(sock)
            _, headers, _ = reader.head()
            assert headers[b"transfer-encoding"] == b"chunked" and b"content-length" not in headers
            while not reader.buffer.endswith(b"\r\n\r\n"):
                assert reader._more()
            assert reader.buffer == b"3\r\nabc\r\n3\r\ndef\r\n0\r\nx-checksum: 42\r\nx-status: ok\r\n\r\n"
            sock.sendall(b"GET /extensions HTTP/1.1\r\nHost: x\r\n\r\n")  # keep-alive: the next one follows
            reader.buffer = b""
            assert reader.response().status == b"HTTP/1.1 200 OK"

    def test_without_te_trailers_the_body_ends_plainly(self, server):
        with server.connect() as sock:
            sock.sendall(b"GET /trailers HTTP/1.1\r\nHost: x\r\n\r\n")
            reader = Reader(sock)
            reader.head()
            while not reader.buffer.endswith(b"0\r\n\r\n"):
                assert reader._more()
            assert reader.buffer == b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"

    def test_http2_trailers(self, server):
        with H2Client(server.port) as client:
            headers, body, trailers = client.response(client.request("/trailers"))
        assert body == b"abcdef" and trailers == {b"x-checksum": b"42", b"x-status": b"ok"}


class TestStarletteFileResponse:
    def test_uses_pathsend(self, server, files):
        response, _ = get(server, f"/starlette?file={files['small']}")
        assert response.body == b"hello world" and response.headers[b"content-length"] == b"11"
        seen, _ = get(server, "/seen")
        assert json.loads(seen.body) == ["http.response.start", "http.response.pathsend"]
