"""Litestar under corral's defaults, over HTTP/1.1, h2c and a WebSocket, with
Litestar's TestClient as the oracle (tests/apps/compat_litestar.py)."""

from __future__ import annotations

import json

import pytest

from compat import client, import_app, no_errors, protocol, same_answer, websocket, WebSocketClosed, ws_transport
from support import Server

pytest.importorskip("litestar", reason="Litestar is in the test extra: pip install -e '.[test]'")
# The app keeps the parameter style every Litestar 2.x takes; 2.2x warns about it.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def server():
    with Server("compat_litestar:app") as server:
        yield server
        no_errors(server, 0)  # nothing the suite did was an error


@pytest.fixture(scope="module")
def oracle():
    from litestar.testing import TestClient

    with TestClient(import_app("compat_litestar").app) as test_client:
        yield test_client


REQUESTS = {
    "json-with-state": ("GET", "/", {}),
    "path-param": ("GET", "/orders/7?verbose=true", {}),
    "bad-path-param": ("GET", "/orders/seven", {}),
    "not-found": ("GET", "/orders/404", {}),
    "post-body": ("POST", "/orders", {"json": {"item": "tea", "quantity": 2, "notes": ["green"]}}),
    "invalid-body": ("POST", "/orders", {"json": {"item": "tea"}}),
    "stream": ("GET", "/stream", {}),
    "sync-in-thread": ("GET", "/sync", {}),
    "no-route": ("GET", "/nowhere", {}),
}


@protocol
@pytest.mark.parametrize("name", list(REQUESTS))
def test_same_answer_as_the_test_client(server, oracle, protocol, name):
    method, path, kwargs = REQUESTS[name]
    mark = server.mark()
    with client(server, protocol) as http:
        ours = http.request(method, path, **kwargs)
    same_answer(ours, oracle.request(method, path, **kwargs), protocol)
    if name == "stream":
        assert ours.text == "line 0\nline 1\nline 2\nline 3\n"
    if ours.status_code < 500:
        no_errors(server, mark)


@ws_transport
def test_websocket(server, oracle, transport):
    with oracle.websocket_connect("/ws") as expected:
        expected.send_json({"n": 1})
        echo = expected.receive_json()
    with websocket(server, transport, "/ws") as ws:
        ws.send(json.dumps({"n": 1}))
        assert json.loads(ws.recv()) == echo == {"echo": {"n": 1}}
        ws.send(json.dumps({"bye": True}))
        with pytest.raises(WebSocketClosed) as closed:
            ws.recv()
    assert (closed.value.code, closed.value.reason) == (4002, "bye")
