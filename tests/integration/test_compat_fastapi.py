"""FastAPI as its users use it, under corral's defaults, over HTTP/1.1 and
h2c, with FastAPI's TestClient as the oracle (tests/apps/compat_fastapi.py).

Dependencies with ``yield`` (their teardown runs), ``BackgroundTasks``,
``UploadFile``, a WebSocket, and Server-Sent Events that the client leaves
early: a client leaving is not an error (no ERROR line, no traceback, the
stream's ``finally`` runs).
"""

from __future__ import annotations

import hashlib
import json
import os

import httpx
import pytest

from compat import check_version, client, import_app, no_errors, protocol, QUIET_TESTCLIENT, same_answer, websocket, WebSocketClosed, ws_transport
from support import Server, wait_until

pytest.importorskip("fastapi", reason="FastAPI is in the test extra: pip install -e '.[test]'")
pytest.importorskip("multipart", reason="python-multipart is in the test extra: pip install -e '.[test]'")
pytestmark = QUIET_TESTCLIENT


@pytest.fixture(scope="module")
def server():
    with Server("compat_fastapi:app") as server:
        yield server


@pytest.fixture(scope="module")
def oracle():
    from fastapi.testclient import TestClient

    with TestClient(import_app("compat_fastapi").app) as test_client:
        yield test_client


def seen(server) -> dict:
    """What the app in corral's worker recorded (GET /events)."""
    response = httpx.get(server.url + "/events")
    assert response.status_code == 200
    return response.json()


def settle(server, mark: int) -> None:
    """One more request through the worker, and its access line read: what the
    worker logged before it (of an app's end) is in ``server.lines``."""
    token = os.urandom(4).hex()
    httpx.get(f"{server.url}/events?settle={token}")
    server.wait_log(rf'"GET /events\?settle={token} HTTP/1.1" 200', start=mark)


def count(server, name: str) -> int:
    return seen(server)["events"].get(name, 0)


class TestRoutes:
    @protocol
    @pytest.mark.parametrize("path", ["/items/5?q=x%20y", "/items/5", "/items/five", "/items/404", "/nowhere",
                                      "/sse-finite", "/openapi.json"])
    def test_same_answer_as_the_test_client(self, server, oracle, protocol, path):
        with client(server, protocol) as http:
            ours = http.get(path)
        same_answer(ours, oracle.get(path), protocol, headers=("x-error",))

    @protocol
    def test_dependencies_with_yield_are_torn_down(self, server, oracle, protocol):
        opened, closed = count(server, "session opened"), count(server, "user opened")
        body = {"name": "hammer", "price": 10.5, "tags": ["tool"]}
        with client(server, protocol) as http:
            ours = http.post("/items/3", json=body, headers={"x-user": "ada"})
            refused = http.post("/items/3", json=body)
        same_answer(ours, oracle.post("/items/3", json=body, headers={"x-user": "ada"}), protocol)
        assert ours.json() == {"id": 3, "item": body, "by": "ada", "session": "db"}
        same_answer(refused, oracle.post("/items/3", json=body), protocol)
        assert refused.status_code == 401
        # Both requests opened a session; only the first got past get_user. Every
        # dependency opened was closed (teardown runs after the response).
        wait_until(lambda: count(server, "session closed") == opened + 2, message="the sessions' teardown")
        assert count(server, "session opened") == opened + 2
        assert count(server, "user opened") == closed + 1
        wait_until(lambda: count(server, "user closed") == closed + 1, message="the user's teardown")

    @protocol
    def test_background_tasks_run_after_the_response(self, server, oracle, protocol):
        name = f"ada-{protocol}"
        with client(server, protocol) as http:
            ours = http.post("/signup", data={"name": name})
        same_answer(ours, oracle.post("/signup", data={"name": name}), protocol)
        assert ours.json() == {"welcome": name}
        log = wait_until(lambda: (lambda entries: f"background async {name}" in entries and entries)(seen(server)["log"]),
                         message="both background tasks")
        assert log.index(f"background {name}") < log.index(f"background async {name}")  # in order

    @protocol
    def test_file_upload(self, server, oracle, protocol):
        big = os.urandom(3 * 1024 * 1024 + 17)  # past any in-memory spool of python-multipart
        files = [("files", ("big.bin", big, "application/octet-stream")),
                 ("files", ("note.txt", "héllo\n".encode(), "text/plain"))]
        with client(server, protocol) as http:
            ours = http.post("/upload", files=files, data={"note": "two files"})
        same_answer(ours, oracle.post("/upload", files=files, data={"note": "two files"}), protocol)
        assert ours.json()["files"][0] == {"filename": "big.bin", "type": "application/octet-stream",
                                           "size": len(big), "sha256": hashlib.sha256(big).hexdigest()}


class TestWebSocket:
    @ws_transport
    def test_echo_then_the_server_closes(self, server, oracle, transport):
        with oracle.websocket_connect("/ws/lobby") as expected:
            expected.send_text("hi")
            echo = expected.receive_json()
            expected.send_text("bye")
            closing = expected.receive()
        with websocket(server, transport, "/ws/lobby") as ws:
            ws.send("hi")
            assert json.loads(ws.recv()) == echo == {"room": "lobby", "echo": "hi"}
            ws.send("bye")
            with pytest.raises(WebSocketClosed) as closed:
                ws.recv()
        assert (closed.value.code, closed.value.reason) == (closing["code"], closing["reason"]) == (4000, "bye")

    @ws_transport
    def test_client_leaving_is_seen_by_the_app_not_logged(self, server, transport):
        mark = server.mark()
        before = count(server, "ws disconnect")
        sessions = count(server, "session closed")
        with websocket(server, transport, "/ws/hall") as ws:
            ws.send("one")
            ws.recv()
        wait_until(lambda: count(server, "ws disconnect") == before + 1, message="the app's WebSocketDisconnect")
        wait_until(lambda: count(server, "session closed") >= sessions + 1, message="the dependency's teardown")
        assert seen(server)["log"].count("ws disconnect 1000") == before + 1
        settle(server, mark)
        no_errors(server, mark)

    @ws_transport
    def test_client_leaving_while_the_server_pushes(self, server, transport):
        """The app sends until a send fails (Starlette turns the OSError into
        WebSocketDisconnect, which the app does not catch): not an error."""
        mark = server.mark()
        before = count(server, "ws ticks ended")
        with websocket(server, transport, "/ws-ticks") as ws:
            assert [ws.recv(), ws.recv()] == ["tick 0", "tick 1"]
        wait_until(lambda: count(server, "ws ticks ended") == before + 1, message="the endpoint's finally")
        settle(server, mark)
        no_errors(server, mark)


def read_events(response, wanted: int) -> list[str]:
    data = []
    for line in response.iter_lines():
        if line.startswith("data:"):
            data.append(line)
            if len(data) == wanted:
                break
    return data


def leave_early(server, protocol: str, path: str) -> list[str]:
    """Open an SSE stream, read two events, leave."""
    with client(server, protocol) as http:
        with http.stream("GET", path) as response:
            check_version(response, protocol)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            return read_events(response, 2)


SSE = [("/sse", "sse", ["data: 0", "data: 1"])]
try:
    import fastapi.sse  # noqa: F401  (FastAPI >= 0.135)
except ImportError:  # pragma: no cover
    pass
else:
    SSE.append(("/sse-native", "native", ['data: {"n":0}', 'data: {"n":1}']))


class TestClientLeaves:
    """A client leaving an endless SSE stream is not an error: no ERROR line,
    no traceback, and the stream's ``finally`` runs (uvicorn logs nothing)."""

    @protocol
    @pytest.mark.parametrize("path, kind, first", SSE, ids=[entry[1] for entry in SSE])
    def test_sse_client_leaving_early(self, server, protocol, path, kind, first):
        mark = server.mark()
        before = count(server, f"{kind} ended")
        data = leave_early(server, protocol, path)
        assert [line.replace(" ", "") for line in data] == [line.replace(" ", "") for line in first]
        wait_until(lambda: count(server, f"{kind} ended") == before + 1, message="the stream's finally")
        version = "HTTP/2" if protocol == "h2c" else "HTTP/1.1"
        # The access line is written after whatever the cycle logged of the app's end.
        server.wait_log(rf'"GET {path} {version}" 200', start=mark)
        no_errors(server, mark)

    @protocol
    @pytest.mark.parametrize("path, kind", [("/sse", "sse ended"), ("/raw/handled", "raw handled"),
                                            ("/raw/listens", "listened")])
    def test_at_debug_level_one_line(self, debug, protocol, path, kind):
        """The app stopped by the exception (/sse), handling it and
        returning (/raw/handled), or told by http.disconnect and returning
        (/raw/listens): one DEBUG line, nothing else."""
        mark = debug.mark()
        before = count(debug, kind)
        assert leave_early(debug, protocol, path) == ["data: 0", "data: 1"]
        wait_until(lambda: count(debug, kind) == before + 1, message="the app's end")
        version = "HTTP/2" if protocol == "h2c" else "HTTP/1.1"
        debug.wait_log(rf'"GET {path} {version}" 200', start=mark)
        no_errors(debug, mark)
        gone = [line for line in debug.lines[mark:] if "client went away" in line]
        assert len(gone) == 1 and "[DEBUG]" in gone[0] and f"GET {path}" in gone[0], "\n".join(debug.lines[mark:])

    def test_a_defect_is_still_an_error_when_the_client_has_gone(self, server):
        mark = server.mark()
        before = count(server, "raw handled")
        leave_early(server, "http/1.1", "/raw/defect")
        wait_until(lambda: count(server, "raw handled") == before + 1, message="the app's end")
        server.wait_log(r"\[ERROR\] Exception in ASGI application \(GET /raw/defect\)$", start=mark)
        server.wait_log(r"^LookupError: a defect while cleaning up$", start=mark)


@pytest.fixture(scope="module")
def debug():
    with Server("compat_fastapi:app", "--log-level", "debug") as server:
        yield server
