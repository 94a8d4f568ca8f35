"""Flask, unchanged, served by corral's native WSGI cycle (--threads 1 and
--threads 4), over HTTP/1.1 and HTTP/2 (h2c); Flask's test_client is the
oracle for its pages. The Django project's tests are in test_wsgi_django.py."""

from __future__ import annotations

import hashlib
import sys

import httpx
import pytest

from support import APPS, Reader, Server

flask = pytest.importorskip("flask", reason="Flask is in the test extra: pip install -e '.[test]'")

@pytest.fixture(scope="module", params=["1", "4"], ids=["inline", "threads"])
def flask_server(request):
    with Server("flask_app:app", "--threads", request.param) as server:
        yield server


class TestFlask:
    def test_hello_and_json(self, flask_server):
        with httpx.Client(base_url=flask_server.url) as client:
            assert client.get("/").text == "Hello from Flask"
            response = client.get("/json")
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {
            "items": [{"id": i, "name": f"item {i}"} for i in range(3)],
            "next": "/json?page=2",
        }

    def test_body_content_length_and_chunked(self, flask_server):
        data = bytes(range(256)) * 4000
        with httpx.Client(base_url=flask_server.url) as client:
            whole = client.post("/echo", content=data)
            chunked = client.post("/echo", content=iter([b"abc", b"def", b"g" * 100000]))
        assert (whole.headers["x-length"], whole.content) == (str(len(data)), data)
        # Werkzeug reads a chunked body only with wsgi.input_terminated.
        assert chunked.content == b"abcdef" + b"g" * 100000

    def test_form_and_upload(self, flask_server):
        payload = bytes(range(256)) * 8000  # 2 MB: spooled by corral
        with httpx.Client(base_url=flask_server.url) as client:
            form = client.post("/form", data={"name": "Zoë", "tag": ["a", "b"]})
            upload = client.post("/upload", files={"file": ("data.bin", payload)}, data={"note": "hi"})
        assert form.json() == {"name": "Zoë", "tags": ["a", "b"]}
        assert upload.json() == {"filename": "data.bin", "size": len(payload),
                                 "sha256": hashlib.sha256(payload).hexdigest(), "note": "hi"}

    def test_streamed_response(self, flask_server):
        with httpx.Client(base_url=flask_server.url) as client:
            response = client.get("/stream", params={"who": "me"})
        assert response.text == "".join(f"line {i} of me\n" for i in range(5))

    def test_error_is_flask_500_and_the_connection_serves_on(self, flask_server):
        mark = flask_server.mark()
        with flask_server.connect() as sock:
            reader = Reader(sock)
            sock.sendall(b"GET /error HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert reader.response().code == 500  # Flask's own error page
            assert reader.response().body == b"Hello from Flask"
        flask_server.wait_log(r"RuntimeError: flask boom", start=mark)

    def test_async_view_and_asyncio_run_in_a_view(self, flask_server):
        """Both need a thread with no running event loop: the defaults too."""
        with httpx.Client(base_url=flask_server.url) as client:
            assert client.get("/async").json() == {"answer": 42}
            assert client.get("/asyncio-run").json() == {"answer": 42}

    @pytest.mark.parametrize("path", ["/", "/json", "/async", "/asyncio-run", "/stream?who=oracle", "/missing"])
    @pytest.mark.parametrize("http2", [False, True], ids=["h1", "h2c"])
    def test_same_answer_as_flasks_test_client(self, flask_server, path, http2):
        if str(APPS) not in sys.path:
            sys.path.insert(0, str(APPS))
        from flask_app import app

        expected = app.test_client().get(path)
        with httpx.Client(base_url=flask_server.url, http1=not http2, http2=http2) as client:
            response = client.get(path)
        assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        assert (response.status_code, response.content) == (expected.status_code, expected.data)
        assert response.headers["content-type"] == expected.headers["Content-Type"]

    def test_root_path(self, server_factory):
        server = server_factory("flask_app:app", "--root-path", "/api")
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/json").json()["next"] == "/api/json?page=2"
