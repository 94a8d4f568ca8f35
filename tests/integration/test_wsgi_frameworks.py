"""Flask and a small Django project, unchanged, served by corral's native WSGI
cycle (--threads 1 and --threads 4)."""

from __future__ import annotations

import hashlib
import re

import httpx
import pytest

from support import Reader, Server

flask = pytest.importorskip("flask", reason="Flask is in the test extra: pip install -e '.[test]'")
django = pytest.importorskip("django", reason="Django is in the test extra: pip install -e '.[test]'")

@pytest.fixture(scope="module", params=["1", "4"], ids=["inline", "threads"])
def flask_server(request):
    with Server("flask_app:app", "--threads", request.param) as server:
        yield server


@pytest.fixture(scope="module", params=["1", "4"], ids=["inline", "threads"])
def django_server(request):
    with Server("djproject.wsgi:application", "--threads", request.param) as server:
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

    def test_root_path(self, server_factory):
        server = server_factory("flask_app:app", "--root-path", "/api")
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/json").json()["next"] == "/api/json?page=2"


class TestDjango:
    def test_template_view(self, django_server):
        with httpx.Client(base_url=django_server.url) as client:
            response = client.get("/", params={"name": "<b>corral</b>"})
        assert response.status_code == 200
        assert "<h1>Hello, &lt;b&gt;corral&lt;/b&gt;!</h1>" in response.text
        assert '<a href="/form/">form</a>' in response.text

    def test_form_post_with_csrf(self, django_server):
        with httpx.Client(base_url=django_server.url) as client:
            page = client.get("/form/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
            assert "csrftoken" in client.cookies
            refused = httpx.post(django_server.url + "/form/", data={"name": "x"})
            accepted = client.post("/form/", data={"name": "Zoë", "csrfmiddlewaretoken": token})
        assert refused.status_code == 403
        assert (accepted.status_code, accepted.text) == (200, "thanks, Zoë")

    def test_streaming_response(self, django_server):
        with httpx.Client(base_url=django_server.url) as client:
            response = client.get("/stream/", params={"n": "50"})
        assert response.text == "".join(f"part {i}\n" for i in range(50))

    @pytest.mark.parametrize("size", [1000, 3 * 1024 * 1024])
    def test_file_upload(self, django_server, size):
        payload = hashlib.sha256(b"seed").digest() * (size // 32)
        with httpx.Client(base_url=django_server.url) as client:
            response = client.post("/upload/", files={"file": ("photo.jpg", payload)}, data={"note": "n"})
        assert response.json() == {"name": "photo.jpg", "size": len(payload),
                                   "sha256": hashlib.sha256(payload).hexdigest(), "note": "n"}

    def test_chunked_upload(self, django_server):
        """Django reads CONTENT_LENGTH only: a chunked body gets its length."""
        boundary = b"xyz"
        body = (b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"
                b"Content-Type: text/plain\r\n\r\nhello chunks\r\n--xyz--\r\n")
        with httpx.Client(base_url=django_server.url) as client:
            response = client.post("/upload/", content=iter([body[:40], body[40:]]),
                                   headers={"content-type": "multipart/form-data; boundary=" + boundary.decode()})
        assert response.json()["size"] == len(b"hello chunks")

    def test_spoofed_host_and_error(self, django_server):
        mark = django_server.mark()
        with django_server.connect() as sock:
            reader = Reader(sock)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\nGET /error/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert reader.response().code == 400  # DisallowedHost
            assert reader.response().code == 500
        django_server.wait_log(r"RuntimeError: django boom", start=mark)
