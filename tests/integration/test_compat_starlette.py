"""Starlette with lifespan state, under corral's defaults over HTTP/1.1 and
h2c and a WebSocket, with Starlette's TestClient as the oracle
(tests/apps/compat_starlette.py)."""

from __future__ import annotations

import json

import pytest

from compat import client, import_app, no_errors, protocol, QUIET_TESTCLIENT, same_answer, websocket, WebSocketClosed, ws_transport
from support import Server

pytest.importorskip("starlette", reason="Starlette is in the test extra: pip install -e '.[test]'")
pytest.importorskip("multipart", reason="python-multipart is in the test extra: pip install -e '.[test]'")
pytestmark = QUIET_TESTCLIENT


@pytest.fixture(scope="module")
def server():
    with Server("compat_starlette:app") as server:
        yield server
        no_errors(server, 0)  # nothing the suite did was an error


@pytest.fixture(scope="module")
def oracle():
    from starlette.testclient import TestClient

    with TestClient(import_app("compat_starlette").app) as test_client:
        yield test_client


@protocol
def test_lifespan_state_is_each_requests_state(server, oracle, protocol):
    with client(server, protocol) as http:
        first, second = http.get("/state"), http.get("/state")
    expected = oracle.get("/state")
    same_answer(first, expected, protocol)
    same_answer(second, expected, protocol)
    # The yielded objects are shared; a key one request set on its state is
    # not seen by the next (each request gets a copy of the dict).
    assert second.json() == {"open": True, "checkout": True, "name": "compat", "leaked": None}


@protocol
@pytest.mark.parametrize("method, path, kwargs", [
    ("GET", "/greet/ada", {}),
    ("GET", "/greet/%C3%A9l%C3%A8ve", {}),
    ("POST", "/echo", {"data": {"a": "1", "b": "two words"}}),
    ("POST", "/echo", {"files": {"f": ("f.txt", b"file body")}, "data": {"a": "1"}}),
    ("GET", "/moved", {}),
    ("GET", "/nowhere", {}),
    ("DELETE", "/greet/ada", {}),
], ids=["path-param", "utf8-path", "form", "multipart", "redirect", "404", "405"])
def test_same_answer_as_the_test_client(server, oracle, protocol, method, path, kwargs):
    with client(server, protocol) as http:
        ours = http.request(method, path, **kwargs)
    expected = oracle.request(method, path, follow_redirects=False, **kwargs)
    same_answer(ours, expected, protocol, headers=("x-name-length",))
    if "files" in kwargs:
        assert ours.json() == {"fields": {"a": "1", "f": {"filename": "f.txt", "body": "file body"}},
                               "type": "multipart/form-data"}


@ws_transport
def test_websocket_sees_the_lifespan_state(server, oracle, transport):
    with oracle.websocket_connect("/ws") as expected:
        wanted = expected.receive_json()
    with websocket(server, transport, "/ws") as ws:
        assert json.loads(ws.recv()) == wanted == {"name": "compat", "open": True}
        with pytest.raises(WebSocketClosed) as closed:
            ws.recv()
    assert closed.value.code == 1000
