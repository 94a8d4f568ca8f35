"""Falcon under corral's defaults, as WSGI (``falcon.App``) and ASGI
(``falcon.asgi.App``), over HTTP/1.1 and h2c (and a WebSocket for ASGI),
with Falcon's ``testing.TestClient`` as the oracle (tests/apps/compat_falcon.py)."""

from __future__ import annotations

import asyncio
import json
import os

import httpx
import pytest

from compat import client, import_app, no_errors, protocol, same_answer, websocket, WebSocketClosed, ws_transport
from support import Server

pytest.importorskip("falcon", reason="Falcon is in the test extra: pip install -e '.[test]'")

FLAVOURS = {"wsgi": "compat_falcon:wsgi_app", "asgi": "compat_falcon:asgi_app"}
BODY = os.urandom(600 * 1024)


@pytest.fixture(scope="module", params=list(FLAVOURS))
def server(request):
    with Server(FLAVOURS[request.param]) as server:
        server.flavour = request.param
        server.wait_log(rf"worker \d+ ready \({request.param},")  # auto-detected as it should be
        yield server
        no_errors(server, 0)  # nothing the suite did was an error


@pytest.fixture(scope="module")
def module():
    return import_app("compat_falcon")


def oracle(module, flavour: str, method: str, path: str, **kwargs) -> httpx.Response:
    """Falcon's own test client's answer, as an httpx.Response."""
    from falcon.testing import TestClient

    app = module.wsgi_app if flavour == "wsgi" else module.asgi_app
    path, _, query = path.partition("?")
    result = TestClient(app).simulate_request(method, path, query_string=query or None, **kwargs)
    return httpx.Response(result.status_code, headers=list(result.headers.items()), content=result.content)


REQUESTS = {
    "json-path-param-query": ("GET", "/items/5?q=x%20y", {}),
    "http-error": ("GET", "/items/404", {}),
    "bad-path-param": ("GET", "/items/five", {}),
    "post-media": ("POST", "/items/9", {"json": {"a": [1, 2], "b": None}}),
    "put-binary-body": ("PUT", "/echo", {"content": BODY, "headers": {"content-type": "application/octet-stream"}}),
    "stream": ("GET", "/stream", {}),
    "method-not-allowed": ("DELETE", "/stream", {}),
    "no-route": ("GET", "/nowhere", {}),
}


@protocol
@pytest.mark.parametrize("name", list(REQUESTS))
def test_same_answer_as_the_test_client(server, module, protocol, name):
    method, path, kwargs = REQUESTS[name]
    mark = server.mark()
    with client(server, protocol) as http:
        ours = http.request(method, path, **kwargs)
    oracle_kwargs = dict(kwargs)
    if "content" in oracle_kwargs:
        oracle_kwargs["body"] = oracle_kwargs.pop("content")
    expected = oracle(module, server.flavour, method, path, **oracle_kwargs)
    same_answer(ours, expected, protocol, headers=("x-flavour",))
    assert ours.headers["x-flavour"] == server.flavour
    if name == "stream":
        assert ours.text == "chunk 0\nchunk 1\nchunk 2\nchunk 3\n"
    no_errors(server, mark)


@ws_transport
@pytest.mark.parametrize("server", ["asgi"], indirect=True)  # WSGI has no WebSocket
def test_websocket_asgi(server, module, transport):
    from falcon.testing import ASGIConductor

    async def expected():
        async with ASGIConductor(module.asgi_app) as conductor:
            async with conductor.simulate_ws("/chat/lobby") as ws:
                await ws.send_text("hi")
                return await ws.receive_json()

    echo = asyncio.run(expected())
    with websocket(server, transport, "/chat/lobby") as ws:
        ws.send("hi")
        assert json.loads(ws.recv()) == echo == {"room": "lobby", "echo": "hi"}
        ws.send("bye")
        with pytest.raises(WebSocketClosed) as closed:
            ws.recv()
    assert closed.value.code == 4003
