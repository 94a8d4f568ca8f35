"""Quart under corral's defaults, over HTTP/1.1, h2c and a WebSocket, with
Quart's ``test_client`` as the oracle (tests/apps/compat_quart.py)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from compat import client, import_app, no_errors, protocol, same_answer, websocket, WebSocketClosed, ws_transport
from support import Server

pytest.importorskip("quart", reason="Quart is in the test extra: pip install -e '.[test]'")


@pytest.fixture(scope="module")
def server():
    with Server("compat_quart:app") as server:
        yield server
        no_errors(server, 0)  # nothing the suite did was an error


@pytest.fixture(scope="module")
def quart_app():
    return import_app("compat_quart").app


def oracle(app, method: str, path: str, **kwargs) -> httpx.Response:
    """Quart's own test client's answer (startup run first), as an httpx.Response."""

    async def run():
        async with app.test_app() as test_app:
            response = await test_app.test_client().open(path, method=method, **kwargs)
            return httpx.Response(response.status_code, headers=list(response.headers.items()),
                                  content=await response.get_data())

    return asyncio.run(run())


REQUESTS = {
    "json-with-startup": ("GET", "/", {}, {}),
    "path-param": ("GET", "/users/3?tab=posts", {}, {}),
    "abort-404": ("GET", "/users/404", {}, {}),
    "post-json": ("POST", "/users", {"json": {"name": "ada"}}, {"json": {"name": "ada"}}),
    "post-invalid": ("POST", "/users", {"json": {}}, {"json": {}}),
    "form": ("POST", "/form", {"data": {"a": "1", "b": "x y"}}, {"form": {"a": "1", "b": "x y"}}),
    "stream": ("GET", "/stream", {}, {}),
    "cookie": ("GET", "/cookie", {}, {}),
    "method-not-allowed": ("PUT", "/users", {}, {}),
}


@protocol
@pytest.mark.parametrize("name", list(REQUESTS))
def test_same_answer_as_the_test_client(server, quart_app, protocol, name):
    method, path, ours_kwargs, oracle_kwargs = REQUESTS[name]
    mark = server.mark()
    with client(server, protocol) as http:
        ours = http.request(method, path, **ours_kwargs)
    same_answer(ours, oracle(quart_app, method, path, **oracle_kwargs), protocol)
    if name == "stream":
        assert ours.text == "row 0\nrow 1\nrow 2\nrow 3\n"
    no_errors(server, mark)


@ws_transport
def test_websocket(server, quart_app, transport):
    async def expected():
        async with quart_app.test_app() as test_app:
            async with test_app.test_client().websocket("/ws") as ws:
                await ws.send("hi")
                return json.loads(await ws.receive())

    echo = asyncio.run(expected())
    with websocket(server, transport, "/ws") as ws:
        ws.send("hi")
        assert json.loads(ws.recv()) == echo == {"echo": "hi", "path": "/ws"}
        ws.send("bye")
        with pytest.raises(WebSocketClosed) as closed:
            ws.recv()
    assert closed.value.code == 4004
