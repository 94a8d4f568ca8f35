"""Starlette with lifespan state (tests/integration/test_compat_starlette.py).

The lifespan yields a dict; each request and WebSocket sees it as
``request.state`` (a shallow copy per request: objects in it are shared, a
key set on one request's state is not seen by the next), as Starlette
documents.
"""

from __future__ import annotations

import itertools
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse
from starlette.routing import Route, WebSocketRoute


class Pool:
    """Stands for a connection pool made at startup, closed at shutdown."""

    def __init__(self) -> None:
        self.open = True
        self.checkouts = itertools.count(1)


@asynccontextmanager
async def lifespan(app):
    pool = Pool()
    yield {"pool": pool, "settings": {"name": "compat"}}
    pool.open = False


async def state(request):
    pool = request.state.pool
    leaked = getattr(request.state, "mine", None)  # set by the previous request on its own copy
    request.state.mine = "set by a request"
    return JSONResponse({"open": pool.open, "checkout": next(pool.checkouts) > 0,
                         "name": request.state.settings["name"], "leaked": leaked})


async def greet(request):
    name = request.path_params["name"]
    return PlainTextResponse(f"hello {name} from {request.state.settings['name']}", headers={"x-name-length": str(len(name))})


async def echo(request):
    fields = {}
    async with request.form() as form:
        for key, value in form.multi_items():
            fields[key] = value if isinstance(value, str) else {"filename": value.filename, "body": (await value.read()).decode()}
    return JSONResponse({"fields": fields, "type": request.headers.get("content-type", "").split(";")[0]})


async def moved(request):
    return RedirectResponse("/greet/moved", status_code=308)


async def ws_state(websocket):
    await websocket.accept()
    await websocket.send_json({"name": websocket.state.settings["name"], "open": websocket.state.pool.open})
    await websocket.close()


app = Starlette(
    routes=[
        Route("/state", state),
        Route("/greet/{name}", greet),
        Route("/echo", echo, methods=["POST"]),
        Route("/moved", moved),
        WebSocketRoute("/ws", ws_state),
    ],
    lifespan=lifespan,
)
