"""A real Django project (tests/apps/djproject: sqlite with migrations, the
admin, sessions, CSRF, a model, uploads, streaming, static files through
WhiteNoise, an async view), unchanged,
served by corral: under the default WSGI mode (--threads 1, the app inline on
the worker's thread) over HTTP/1.1 and over HTTP/2 (h2c), with --threads 4,
and under ASGI over HTTP/1.1 and h2c.

The module's setup migrates a fresh sqlite database in a temporary directory
and creates a superuser, with Django's own manage commands. Django's test
``Client``, run in this process on the same database, is the oracle for the
pages it can render: corral must answer the same status and body.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from support import APPS, Reader, Server

django = pytest.importorskip("django", reason="Django is in the test extra: pip install -e '.[test]'")

PASSWORD = "corral-admin-pw"
INTERFACES = {
    "wsgi": ("djproject.wsgi:application",),  # the defaults: --threads 1
    "wsgi-threads": ("djproject.wsgi:application", "--threads", "4"),
    "wsgi-h2c": ("djproject.wsgi:application",),  # the defaults, the client speaking HTTP/2 (prior knowledge)
    "asgi": ("djproject.asgi:application",),
    "asgi-h2c": ("djproject.asgi:application",),  # ASGI, the client speaking HTTP/2 (prior knowledge)
}


@pytest.fixture(scope="module")
def django_env(tmp_path_factory):
    """A migrated database with a superuser; the environment that names it."""
    base = tmp_path_factory.mktemp("django")
    env = {"DJANGO_SETTINGS_MODULE": "djproject.settings", "CORRAL_DJANGO_DB": str(base / "db.sqlite3"),
           "CORRAL_DJANGO_STATIC": str(base / "static")}
    manage_env = dict(os.environ, PYTHONPATH=str(APPS), DJANGO_SUPERUSER_PASSWORD=PASSWORD, **env)
    for command in (["migrate", "--noinput"],
                    ["createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.test"],
                    ["collectstatic", "--noinput"]):
        done = subprocess.run([sys.executable, "-m", "django", *command], env=manage_env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    return env


@pytest.fixture(scope="module")
def oracle(django_env):
    """Django's test Client in this process, on the same database."""
    saved = {key: os.environ.get(key) for key in django_env}
    os.environ.update(django_env)
    if str(APPS) not in sys.path:
        sys.path.insert(0, str(APPS))
    django.setup()
    from django.test import Client

    yield Client()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module", params=list(INTERFACES))
def server(request, django_env):
    app, *args = INTERFACES[request.param]
    with Server(app, *args, extra_env=django_env) as server:
        server.interface = request.param
        server.http2 = request.param.endswith("h2c")
        yield server


def client_of(server) -> httpx.Client:
    """httpx with cookies; over HTTP/2 only (h2c with prior knowledge) for the h2c servers."""
    if server.http2:
        client = httpx.Client(base_url=server.url, http1=False, http2=True)
    else:
        client = httpx.Client(base_url=server.url)
    client.event_hooks["response"] = [lambda response: _check_version(server, response)]
    return client


def _check_version(server, response) -> None:
    assert response.http_version == ("HTTP/2" if server.http2 else "HTTP/1.1")


def csrf_token(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


def login(client: httpx.Client, password: str = PASSWORD) -> httpx.Response:
    page = client.get("/admin/login/", params={"next": "/admin/"})
    assert page.status_code == 200 and "csrftoken" in client.cookies
    return client.post("/admin/login/?next=/admin/", data={
        "username": "admin", "password": password, "csrfmiddlewaretoken": csrf_token(page.text), "next": "/admin/"})


class TestAdmin:
    def test_login_with_csrf_and_session_then_the_orm_through_the_admin(self, server):
        with client_of(server) as client:
            assert client.get("/admin/").headers["location"] == "/admin/login/?next=/admin/"
            wrong = login(client, "wrong")
            assert wrong.status_code == 200 and "Please enter the correct username and password" in wrong.text
            response = login(client)
            assert (response.status_code, response.headers["location"]) == (302, "/admin/")
            assert "sessionid" in client.cookies
            home = client.get("/admin/")
            assert home.status_code == 200 and "Site administration" in home.text and "Notes" in home.text
            # A row written by the admin's form (CSRF again), read back by a plain view.
            add = client.get("/admin/notes/note/add/")
            text = f"from the admin over {server.interface}"
            saved = client.post("/admin/notes/note/add/",
                                data={"text": text, "csrfmiddlewaretoken": csrf_token(add.text), "_save": "Save"})
            assert (saved.status_code, saved.headers["location"]) == (302, "/admin/notes/note/")
            assert text in client.get("/admin/notes/note/").text
            assert f": {text}\n" in client.get("/notes/").text
            # The session is stored in the database and read on each request.
            assert client.get("/whoami/").json() == {"user": "admin", "visits": 1}
            assert client.get("/whoami/").json() == {"user": "admin", "visits": 2}
            logout = client.post("/admin/logout/", data={"csrfmiddlewaretoken": client.cookies["csrftoken"]})
            assert logout.status_code == 200
            assert client.get("/whoami/").status_code == 302  # logged out: to the login page

    def test_post_without_csrf_token_is_refused(self, server):
        with client_of(server) as client:
            login(client)
            refused = client.post("/notes/", data={"text": "no token"})
        assert refused.status_code == 403
        with client_of(server) as other:
            assert "no token" not in other.get("/notes/").text

    def test_form_post_with_csrf(self, server):
        with client_of(server) as client:
            page = client.get("/form/")
            token = csrf_token(page.text)
            assert "csrftoken" in client.cookies
            with client_of(server) as other:
                refused = other.post("/form/", data={"name": "x"})
            accepted = client.post("/form/", data={"name": "Zoë", "csrfmiddlewaretoken": token})
        assert refused.status_code == 403
        assert (accepted.status_code, accepted.text) == (200, "thanks, Zoë")


class TestViews:
    def test_template_view(self, server):
        with client_of(server) as client:
            response = client.get("/", params={"name": "<b>corral</b>"})
        assert response.status_code == 200
        assert "<h1>Hello, &lt;b&gt;corral&lt;/b&gt;!</h1>" in response.text
        assert '<a href="/form/">form</a>' in response.text

    @pytest.mark.parametrize("path", ["/?name=oracle", "/notes/", "/json/", "/async/", "/missing/", "/whoami/"])
    def test_same_answer_as_djangos_test_client(self, server, oracle, path):
        expected = oracle.get(path)
        with client_of(server) as client:
            response = client.get(path)
        assert response.status_code == expected.status_code
        assert response.content == expected.content
        assert response.headers.get("content-type") == expected.headers.get("Content-Type")

    def test_streaming_response_runs_the_query_inside_the_iterable(self, server):
        with client_of(server) as client:
            client.post("/upload/", files={"file": ("x.txt", b"x")})  # some database traffic first
            listed = client.get("/notes/").text
            streamed = client.get("/notes/stream/")
        assert streamed.status_code == 200
        assert streamed.text == ("" if listed == "no notes\n" else listed)

    def test_static_file_through_whitenoise(self, server, django_env):
        pytest.importorskip("whitenoise", reason="WhiteNoise is in the test extra: pip install -e '.[test]'")
        path = "admin/css/base.css"
        expected = (Path(django_env["CORRAL_DJANGO_STATIC"]) / path).read_bytes()
        with client_of(server) as client:
            response = client.get("/static/" + path)
            assert (response.status_code, response.content) == (200, expected)
            assert response.headers["content-type"].startswith("text/css")
            assert int(response.headers["content-length"]) == len(expected)
            again = client.get("/static/" + path, headers={"if-none-match": response.headers["etag"]})
            assert (again.status_code, again.content) == (304, b"")

    def test_streaming_response(self, server):
        with client_of(server) as client:
            response = client.get("/stream/", params={"n": "50"})
        assert response.text == "".join(f"part {i}\n" for i in range(50))

    def test_async_view(self, server):
        """Under ASGI on corral's loop; under WSGI through async_to_sync."""
        with client_of(server) as client:
            body = client.get("/async/").json()
        assert body["users"] == ["admin"] and isinstance(body["notes"], int)

    @pytest.mark.parametrize("size", [1000, 3 * 1024 * 1024])
    def test_file_upload_is_stored(self, server, oracle, size):
        payload = hashlib.sha256(b"%d %s" % (size, server.interface.encode())).digest() * (size // 32)
        digest = hashlib.sha256(payload).hexdigest()
        with client_of(server) as client:
            response = client.post("/upload/", files={"file": ("photo.jpg", payload)}, data={"note": "n"})
        assert response.json() == {"name": "photo.jpg", "size": len(payload), "sha256": digest, "note": "n"}
        from djproject.notes.models import Upload

        assert list(Upload.objects.filter(sha256=digest).values_list("name", "size")) == [("photo.jpg", len(payload))]

    def test_chunked_upload(self, server):
        """Django's WSGI request reads CONTENT_LENGTH only: a chunked body gets its length."""
        if server.interface.startswith("asgi"):
            pytest.skip("Django's ASGI request reads Content-Length only; a chunked body is empty there (uvicorn too)")
        body = (b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"
                b"Content-Type: text/plain\r\n\r\nhello chunks\r\n--xyz--\r\n")
        with client_of(server) as client:
            response = client.post("/upload/", content=iter([body[:40], body[40:]]),
                                   headers={"content-type": "multipart/form-data; boundary=xyz"})
        assert response.json()["size"] == len(b"hello chunks")

    def test_spoofed_host_and_error(self, server):
        if server.http2:
            pytest.skip("raw HTTP/1.1 bytes: the HTTP/1.1 servers run it")
        mark = server.mark()
        with server.connect() as sock:
            reader = Reader(sock)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\nGET /error/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert reader.response().code == 400  # DisallowedHost
            assert reader.response().code == 500
        server.wait_log(r"RuntimeError: django boom", start=mark)
