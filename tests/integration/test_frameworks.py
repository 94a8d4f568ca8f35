"""Real frameworks end to end: Starlette, FastAPI and WSGI apps."""

from __future__ import annotations

import time

import httpx
import pytest

from support import Reader, Server


@pytest.fixture(scope="module")
def starlette():
    with Server("starlette_app:app") as server:
        yield server


@pytest.fixture(scope="module")
def fastapi():
    with Server("fastapi_app:app") as server:
        yield server


@pytest.fixture(scope="module")
def wsgi():
    with Server("wsgi_app:app") as server:
        yield server


class TestStarlette:
    def test_async_endpoint_with_lifespan_state(self, starlette):
        with httpx.Client(base_url=starlette.url) as client:
            response = client.get("/")
        assert (response.status_code, response.text) == (200, "hello from lifespan at /")
        assert response.headers["content-type"] == "text/plain; charset=utf-8"

    def test_sync_endpoint_runs_in_a_thread(self, starlette):
        with httpx.Client(base_url=starlette.url) as client:
            first = client.get("/sync").json()
            second = client.get("/sync").json()
        assert first["main"] is False and second["main"] is False
        assert first["thread"].startswith("AnyIO worker thread")

    def test_json_body(self, starlette):
        with httpx.Client(base_url=starlette.url) as client:
            response = client.post("/json", json={"a": [1, 2, {"b": None}]})
        assert response.json() == {"got": {"a": [1, 2, {"b": None}]}}

    def test_path_parameter_and_url_for(self, starlette):
        with httpx.Client(base_url=starlette.url) as client:
            response = client.get("/items/42")
            missing = client.get("/items/nope")
        assert response.json() == {"id": 42, "url": f"{starlette.url}/items/7"}
        assert missing.status_code == 404

    def test_streaming_response(self, starlette):
        with httpx.Client(base_url=starlette.url) as client:
            with client.stream("GET", "/stream") as response:
                assert response.headers["transfer-encoding"] == "chunked"
                assert b"".join(response.iter_bytes()) == b"part0;part1;part2;"

    def test_background_task_runs_after_the_response(self, starlette):
        mark = starlette.mark()
        with httpx.Client(base_url=starlette.url) as client:
            response = client.post("/background?name=ada")
            assert (response.status_code, response.text) == (202, "accepted")
            starlette.wait_log(r"^starlette background task ran for ada$", start=mark)
            assert client.get("/").status_code == 200  # same connection, next request

    def test_root_path_routing_and_url_for(self, server_factory):
        server = server_factory("starlette_app:app", "--root-path", "/api")
        with httpx.Client(base_url=server.url) as client:
            response = client.get("/items/3")
            home = client.get("/")
        assert response.json() == {"id": 3, "url": f"{server.url}/api/items/7"}
        assert home.text == "hello from lifespan at /api/"

    def test_lifespan_shutdown_runs(self, server_factory):
        server = server_factory("starlette_app:app")
        assert server.stop() == 0
        server.wait_log(r"^starlette lifespan shutdown$")


class TestFastAPI:
    def test_async_endpoint(self, fastapi):
        with httpx.Client(base_url=fastapi.url) as client:
            response = client.get("/async")
        assert response.json() == {"kind": "async", "db": "connected", "main": True}
        assert response.headers["content-type"] == "application/json"

    def test_sync_endpoint_runs_in_a_thread_via_anyio(self, fastapi):
        with httpx.Client(base_url=fastapi.url) as client:
            data = client.get("/sync").json()
        assert data["kind"] == "sync"
        assert data["main"] is False
        assert data["thread"].startswith("AnyIO worker thread")

    def test_json_body_post(self, fastapi):
        with httpx.Client(base_url=fastapi.url) as client:
            response = client.post("/items", json={"name": "hammer", "price": 10.0, "tags": ["tool"]})
            invalid = client.post("/items", json={"name": "hammer"})
        assert response.status_code == 201
        assert response.json() == {"item": {"name": "hammer", "price": 10.0, "tags": ["tool"]}, "total": 12.0}
        assert invalid.status_code == 422
        assert invalid.json()["detail"][0]["loc"] == ["body", "price"]

    def test_path_parameter(self, fastapi):
        with httpx.Client(base_url=fastapi.url) as client:
            assert client.get("/items/5", params={"q": "x y"}).json() == {"item_id": 5, "q": "x y"}
            assert client.get("/items/5").json() == {"item_id": 5, "q": None}
            assert client.get("/items/five").status_code == 422

    def test_streaming_response(self, fastapi):
        with httpx.Client(base_url=fastapi.url) as client:
            with client.stream("GET", "/stream") as response:
                assert response.headers["transfer-encoding"] == "chunked"
                assert b"".join(response.iter_bytes()) == b"0\n1\n2\n3\n4\n"

    def test_background_task(self, fastapi):
        mark = fastapi.mark()
        with httpx.Client(base_url=fastapi.url) as client:
            response = client.post("/notify/ada@example.com")
        assert response.json() == {"message": "notification scheduled"}
        fastapi.wait_log(r"^fastapi background task: notified ada@example\.com$", start=mark)

    def test_keep_alive_across_endpoint_kinds(self, fastapi):
        with fastapi.connect() as sock:
            reader = Reader(sock)
            for path in (b"/async", b"/sync", b"/items/1", b"/stream", b"/async"):
                sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path)
                assert reader.response().status == b"HTTP/1.1 200 OK"


class TestWSGI:
    def test_auto_detected(self, wsgi):
        wsgi.wait_log(r"worker \d+ ready")
        with httpx.Client(base_url=wsgi.url) as client:
            response = client.get("/")
        assert (response.status_code, response.text) == (200, "Hello from WSGI")
        assert response.headers["content-length"] == "15"

    def test_environ(self, wsgi):
        with wsgi.connect() as sock:
            reader = Reader(sock)
            sock.sendall(
                b"POST /environ?a=1&b=%20 HTTP/1.1\r\nHost: example.com\r\nContent-Type: text/plain\r\n"
                b"Content-Length: 2\r\nX-Dup: 1\r\nX-Dup: 2\r\n\r\nhi"
            )
            response = reader.response()
        import json

        assert json.loads(response.body) == {
            "REQUEST_METHOD": "POST",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/environ",
            "QUERY_STRING": "a=1&b=%20",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "CONTENT_TYPE": "text/plain",
            "CONTENT_LENGTH": "2",
            "HTTP_HOST": "example.com",
            "HTTP_X_DUP": "1,2",
            "REMOTE_ADDR": "127.0.0.1",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": str(wsgi.port),
            "wsgi.url_scheme": "http",
            "wsgi.version": [1, 0],
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "in_main_thread": True,  # --threads 1: on the loop's thread
        }

    def test_request_body(self, wsgi):
        data = bytes(range(256)) * 1000
        with httpx.Client(base_url=wsgi.url) as client:
            response = client.post("/echo", content=data)
            chunked = client.post("/echo", content=iter([b"abc", b"def"]))
        assert response.status_code == 201
        assert response.headers["x-length"] == str(len(data))
        assert response.content == data
        assert chunked.content == b"abcdef"

    def test_iterable_response_is_streamed(self, wsgi):
        with httpx.Client(base_url=wsgi.url) as client:
            response = client.get("/stream")
        assert response.headers["transfer-encoding"] == "chunked"
        assert response.content == b"a,b,c"

    def test_write_callable(self, wsgi):
        with httpx.Client(base_url=wsgi.url) as client:
            assert client.get("/write").content == b"written,returned"

    def test_exception_is_500(self, wsgi):
        mark = wsgi.mark()
        with httpx.Client(base_url=wsgi.url) as client:
            response = client.get("/error")
            assert (response.status_code, response.text) == (500, "Internal Server Error\n")
            assert client.get("/").status_code == 200
        wsgi.wait_log(r"^RuntimeError: wsgi boom$", start=mark)

    def test_class_based_app_is_auto_detected(self, server_factory):
        server = server_factory("wsgi_app:class_app")
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/").text == "Hello from WSGI"

    def test_interface_wsgi_option(self, server_factory):
        server = server_factory("wsgi_app:star_app", "--interface", "wsgi")
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/").text == "Hello from WSGI"

    def test_stop_is_prompt_after_the_client_left(self, server_factory):
        """The client reads its response and closes before the app's thread
        has handed back: the connection must not linger (2 s) after that."""
        server = server_factory("wsgi_app:app")
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/").status_code == 200
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 1.5
        server.wait_log(r"worker \d+: connections closed \(\d\)")

    def test_root_path_is_script_name(self, server_factory):
        server = server_factory("wsgi_app:app", "--root-path", "/w")
        with httpx.Client(base_url=server.url) as client:
            environ = client.get("/environ").json()
        assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/w", "/environ")
