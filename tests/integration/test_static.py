"""--static-path-mount end to end: files served before the app (no app
call), over HTTP/1.1 (raw sockets, byte-exact), HTTP/2 (h2c) and TLS;
validators and 304, Range, HEAD, precompressed siblings, MIME types,
--static-max-age; every attack on the path with its exact outcome; a file
truncated or replaced while it is sent; access log and metrics."""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys

import pytest

from h2support import H2Client
from support import APPS, ROOT, Reader, Server, wait_until
from test_tls import Certs

CSS = b"body { color: red }\n"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("static")
    www = base / "www"
    (www / "sub").mkdir(parents=True)
    (www / "style.css").write_bytes(CSS)
    (www / "data.bin").write_bytes(os.urandom(50 * 1024))
    (www / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    (www / "app.js").write_bytes(b"console.log('x');" * 20)
    (www / "app.js.gz").write_bytes(gzip.compress((www / "app.js").read_bytes()))
    (www / "app.js.br").write_bytes(b"pretend-brotli")
    (www / "sub" / "index.html").write_bytes(b"<h1>index</h1>")
    (www / "noext").write_bytes(b"raw")
    (www / ".env").write_bytes(b"SECRET=1")
    (www / "caf\u00e9.txt").write_bytes(b"utf-8 name")
    (base / "outside.txt").write_bytes(b"outside the mount")
    (www / "escape.txt").symlink_to(base / "outside.txt")
    (www / "escape-dir").symlink_to(base)
    (www / "inside-link.css").symlink_to(www / "style.css")
    (www / "leak.js.gz").symlink_to(base / "outside.txt")  # a sibling that leaves the mount
    (www / "leak.js").write_bytes(b"leak.js itself")
    os.mkfifo(www / "fifo")
    return base


@pytest.fixture(scope="module")
def server(tree):
    with Server("ext_app:app", "--static-path-mount", f"/static={tree / 'www'}",
                "--static-path-mount", f"/assets/v1={tree / 'www' / 'sub'}") as srv:
        yield srv


def get(server, target: bytes, extra: bytes = b"", method: bytes = b"GET"):
    with server.connect() as sock:
        sock.sendall(b"%s %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (method, target, extra))
        reader = Reader(sock)
        response = reader.response(method.decode())
        sock.sendall(b"GET /extensions HTTP/1.1\r\nHost: x\r\n\r\n")  # the connection stays usable
        assert reader.response().status == b"HTTP/1.1 200 OK"
        return response


class TestServing:
    def test_a_file_with_its_validators_and_caching(self, server, tree):
        response = get(server, b"/static/style.css")
        info = (tree / "www" / "style.css").stat()
        assert response.status == b"HTTP/1.1 200 OK"
        assert response.body == CSS
        assert response.headers[b"content-type"] == b"text/css; charset=utf-8"
        assert response.headers[b"content-length"] == b"%d" % len(CSS)
        assert response.headers[b"etag"] == b'"%x-%x"' % (info.st_mtime_ns // 1000, info.st_size)
        assert response.headers[b"last-modified"].endswith(b" GMT")
        assert response.headers[b"cache-control"] == b"public, max-age=86400"
        assert response.headers[b"accept-ranges"] == b"bytes"
        assert b"vary" not in response.headers and b"content-encoding" not in response.headers

    def test_the_app_is_not_called(self, server):
        mark = server.mark()
        get(server, b"/static/style.css")
        lines = server.wait_log(r'"GET /static/style.css HTTP/1.1" 200', start=mark)
        assert lines
        assert get(server, b"/elsewhere").code == 404 and get(server, b"/elsewhere").body == b"not found"  # the app's

    def test_big_file_byte_exact_keep_alive(self, server, tree):
        data = (tree / "www" / "big.bin").read_bytes()
        with server.connect() as sock:
            reader = Reader(sock, timeout=30)
            for _ in range(3):
                sock.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
                response = reader.response()
                assert response.headers[b"content-type"] == b"application/octet-stream"
                assert response.body == data

    def test_mime_types_and_names(self, server):
        assert get(server, b"/static/app.js").headers[b"content-type"] == b"text/javascript; charset=utf-8"
        assert get(server, b"/static/noext").headers[b"content-type"] == b"application/octet-stream"
        assert get(server, b"/static/caf%C3%A9.txt").body == b"utf-8 name"
        assert get(server, b"/static/sub/index.html").headers[b"content-type"] == b"text/html; charset=utf-8"

    def test_the_longest_prefix_wins(self, server):
        assert get(server, b"/assets/v1/index.html").body == b"<h1>index</h1>"

    def test_head(self, server):
        with server.connect() as sock:
            sock.sendall(b"HEAD /static/style.css HTTP/1.1\r\nHost: x\r\n\r\nGET /static/noext HTTP/1.1\r\nHost: x\r\n\r\n")
            reader = Reader(sock)
            head = reader.response("HEAD")
            assert head.headers[b"content-length"] == b"%d" % len(CSS) and head.body == b""
            assert reader.response().body == b"raw"  # nothing of the HEAD's body in between

    def test_a_symlink_inside_the_mount_is_served(self, server):
        assert get(server, b"/static/inside-link.css").body == CSS

    def test_other_methods_get_405_with_allow(self, server):
        for method in (b"POST", b"PUT", b"DELETE", b"OPTIONS"):
            response = get(server, b"/static/style.css", b"Content-Length: 0\r\n", method)
            assert response.status == b"HTTP/1.1 405 Method Not Allowed"
            assert response.headers[b"allow"] == b"GET, HEAD"


class TestConditionalAndRange:
    def test_if_none_match_gives_304(self, server):
        tag = get(server, b"/static/style.css").headers[b"etag"]
        for field in (tag, b"W/" + tag, b'"other", ' + tag, b"*"):
            response = get(server, b"/static/style.css", b"If-None-Match: %s\r\n" % field)
            assert response.status == b"HTTP/1.1 304 Not Modified", field
            assert response.headers[b"etag"] == tag and b"content-length" not in response.headers
        assert get(server, b"/static/style.css", b'If-None-Match: "other"\r\n').code == 200

    def test_if_modified_since(self, server):
        modified = get(server, b"/static/style.css").headers[b"last-modified"]
        assert get(server, b"/static/style.css", b"If-Modified-Since: %s\r\n" % modified).code == 304
        assert get(server, b"/static/style.css", b"If-Modified-Since: Mon, 01 Jan 2001 00:00:00 GMT\r\n").code == 200
        assert get(server, b"/static/style.css", b"If-Modified-Since: garbage\r\n").code == 200
        # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2)
        assert get(server, b"/static/style.css", b'If-None-Match: "x"\r\nIf-Modified-Since: %s\r\n' % modified).code == 200

    def test_single_ranges(self, server, tree):
        data = (tree / "www" / "data.bin").read_bytes()
        size = len(data)
        for spec, start, end in ((b"0-9", 0, 9), (b"100-", 100, size - 1), (b"-10", size - 10, size - 1),
                                 (b"5-999999", 5, size - 1)):
            response = get(server, b"/static/data.bin", b"Range: bytes=%s\r\n" % spec)
            assert response.status == b"HTTP/1.1 206 Partial Content"
            assert response.headers[b"content-range"] == b"bytes %d-%d/%d" % (start, end, size)
            assert response.body == data[start:end + 1]

    def test_unsatisfiable_is_416(self, server, tree):
        size = (tree / "www" / "data.bin").stat().st_size
        for spec in (b"%d-" % size, b"-0"):
            response = get(server, b"/static/data.bin", b"Range: bytes=%s\r\n" % spec)
            assert response.code == 416
            assert response.headers[b"content-range"] == b"bytes */%d" % size

    def test_several_ranges_malformed_or_stale_if_range_get_the_whole_file(self, server, tree):
        data = (tree / "www" / "data.bin").read_bytes()
        tag = get(server, b"/static/data.bin").headers[b"etag"]
        for extra in (b"Range: bytes=0-1,5-6\r\n", b"Range: bytes=x-y\r\n", b"Range: items=0-1\r\n",
                      b"Range: bytes=9-2\r\n", b'Range: bytes=0-1\r\nIf-Range: "stale"\r\n'):
            response = get(server, b"/static/data.bin", extra)
            assert response.code == 200 and response.body == data, extra
        assert get(server, b"/static/data.bin", b"Range: bytes=0-1\r\nIf-Range: %s\r\n" % tag).code == 206


class TestPrecompressed:
    def test_br_first_then_gzip_with_vary(self, server, tree):
        www = tree / "www"
        br = get(server, b"/static/app.js", b"Accept-Encoding: gzip, deflate, br\r\n")
        assert br.headers[b"content-encoding"] == b"br" and br.body == b"pretend-brotli"
        assert br.headers[b"vary"] == b"Accept-Encoding"
        assert br.headers[b"content-type"] == b"text/javascript; charset=utf-8"
        gz = get(server, b"/static/app.js", b"Accept-Encoding: gzip\r\n")
        assert gz.headers[b"content-encoding"] == b"gzip" and gz.body == (www / "app.js.gz").read_bytes()
        assert gz.headers[b"etag"] != br.headers[b"etag"]
        plain = get(server, b"/static/app.js", b"Accept-Encoding: br;q=0, gzip;q=0\r\n")
        assert b"content-encoding" not in plain.headers and plain.body == (www / "app.js").read_bytes()
        assert plain.headers[b"vary"] == b"Accept-Encoding"

    def test_a_sibling_that_leaves_the_mount_is_ignored(self, server):
        response = get(server, b"/static/leak.js", b"Accept-Encoding: gzip\r\n")
        assert response.body == b"leak.js itself" and b"content-encoding" not in response.headers


class TestAttacks:
    @pytest.mark.parametrize("target", [
        b"/static/../outside.txt",
        b"/static/%2e%2e/outside.txt",
        b"/static/%2e%2e%2foutside.txt",
        b"/static/..%2foutside.txt",
        b"/static/%2E%2E%2Foutside.txt",
        b"/static/sub/..%2f..%2foutside.txt",
        b"/static/style.css%00.png",
        b"/static/%00",
        b"/static/sub%5cindex.html",
        b"/static/..%5coutside.txt",
        b"/static//etc/passwd",
        b"/static/%2fetc%2fpasswd",
        b"/static/escape.txt",
        b"/static/escape-dir/outside.txt",
        b"/static/sub",
        b"/static/sub/",
        b"/static/",
        b"/static",
        b"/static/fifo",
        b"/static/.env",
        b"/static/./style.css",
        b"/static/nope.css",
        b"/static/%ff%fe.txt",
    ])
    def test_refused_with_404(self, server, target):
        response = get(server, target)
        assert response.status == b"HTTP/1.1 404 Not Found", target
        assert response.body == b"Not Found\n"

    def test_a_very_long_path(self, server):
        assert get(server, b"/static/" + b"a" * 300 + b"/x").code == 404  # a name too long for the file system
        assert get(server, b"/static/" + b"a/" * 2000 + b"x").code == 404  # a path too long
        with server.connect() as sock:  # past --limit-request-line: the parser's 414
            sock.sendall(b"GET /static/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            assert Reader(sock).response().code == 414
        assert "Traceback" not in "\n".join(server.lines)

    def test_the_server_survives_it_all(self, server):
        assert get(server, b"/static/style.css").body == CSS


def _fill(path, size: int) -> bytes:
    block = os.urandom(1024 * 1024)
    data = block * (size // len(block))
    path.write_bytes(data)
    return data


def _read(reader, size: int) -> bytes:
    parts, got = [reader.buffer], len(reader.buffer)
    while got < size:
        chunk = reader.sock.recv(1024 * 1024)
        assert chunk, f"closed after {got} of {size} bytes"
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _until_close(reader) -> bytes:
    parts = [reader.buffer]
    while True:
        try:
            chunk = reader.sock.recv(1024 * 1024)
        except ConnectionResetError:
            break
        if not chunk:
            break
        parts.append(chunk)
    return b"".join(parts)


class TestFileChangesWhileSent:
    def _slow_client(self, server):
        sock = server.connect()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        return sock

    def test_truncated_cuts_the_response(self, server, tree):
        path = tree / "www" / "shrinks.bin"
        data = _fill(path, 16 * 1024 * 1024)
        mark = server.mark()
        with self._slow_client(server) as sock:
            sock.sendall(b"GET /static/shrinks.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            reader = Reader(sock, timeout=30)
            _, headers, _ = reader.head()
            assert headers[b"content-length"] == b"%d" % len(data)
            os.truncate(path, 8 * 1024 * 1024)  # more than the socket buffers hold is still to send
            body = _until_close(reader)
        assert body == data[:8 * 1024 * 1024]  # what the file still had, then the close: never garbage
        server.wait_log(r"static file /static/shrinks.bin shrank while being sent \(8388608 of 16777216 bytes\)",
                        start=mark)
        assert get(server, b"/static/style.css").body == CSS

    def test_replaced_is_sent_whole_as_it_was(self, server, tree):
        path = tree / "www" / "replaced.bin"
        data = _fill(path, 16 * 1024 * 1024)
        with self._slow_client(server) as sock:
            sock.sendall(b"GET /static/replaced.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            reader = Reader(sock, timeout=30)
            reader.head()
            (tree / "new.bin").write_bytes(b"new content")
            os.replace(tree / "new.bin", path)
            body = _read(reader, len(data))
            assert body == data
        assert get(server, b"/static/replaced.bin").body == b"new content"


class TestOtherProtocols:
    def test_http2(self, server, tree):
        data = (tree / "www" / "big.bin").read_bytes()
        with H2Client(server.port, timeout=30) as client:
            big = client.request("/static/big.bin")
            ranged = client.request("/static/style.css", extra=[(b"range", b"bytes=5-9")])
            head = client.request("/static/style.css", method="HEAD")
            missing = client.request("/static/%2e%2e/outside.txt")
            headers, body, _ = client.response(big, timeout=30)
            assert headers[b":status"] == b"200" and body == data
            headers, body, _ = client.response(ranged)
            assert headers[b":status"] == b"206" and body == CSS[5:10]
            assert headers[b"content-range"] == b"bytes 5-9/%d" % len(CSS)
            headers, body, _ = client.response(head)
            assert headers[b":status"] == b"200" and headers[b"content-length"] == b"%d" % len(CSS) and body == b""
            headers, body, _ = client.response(missing)
            assert headers[b":status"] == b"404"

    def test_tls(self, tree, tmp_path):
        certs = Certs(tmp_path)
        data = (tree / "www" / "big.bin").read_bytes()
        with Server("ext_app:app", *certs.args(), "--static-path-mount", f"/static={tree / 'www'}") as srv:
            with socket.create_connection(("127.0.0.1", srv.port)) as raw:
                with certs.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                    reader = Reader(sock, timeout=30)
                    for _ in range(2):
                        sock.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
                        assert reader.response().body == data


def test_max_age_zero_and_metrics(tree, server_factory):
    from test_metrics import metrics_port, total, wait_count

    srv = server_factory("ext_app:app", "--static-path-mount", f"/static={tree / 'www'}", "--static-max-age", "0",
                         "--metrics-bind", "127.0.0.1:0")
    port = metrics_port(srv)
    assert get(srv, b"/static/style.css").headers[b"cache-control"] == b"no-cache"
    get(srv, b"/static/nope")
    samples = wait_count(port, 4)  # two static answers, two of the app (get() checks the connection)
    assert total(samples, "corral_requests_total", method="GET", status="2xx") == 3
    assert total(samples, "corral_requests_total", method="GET", status="4xx") == 1


@pytest.mark.parametrize("value, message", [
    ("/static=/nonexistent-dir", "corral: error: --static-path-mount: '/nonexistent-dir' is not a directory"),
    ("static=/tmp", "corral: error: --static-path-mount: URL prefix 'static' must be a path like /static"),
    ("/a/../b=/tmp", "corral: error: --static-path-mount: URL prefix '/a/../b' must not contain . or .. segments"),
])
def test_bad_mounts_are_one_line_and_exit_2(value, message):
    result = subprocess.run([sys.executable, "-m", "corral", "ext_app:app", "--app-dir", str(APPS), "--port", "0",
                             "--static-path-mount", value], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
