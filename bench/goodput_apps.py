"""Apps for `bench/overload.py goodput` (issue 21): the same work for every server.

* ``cpu``: ASGI, burns 2 ms of CPU per request (capacity about 490 req/s on one core);
* ``io``: ASGI, awaits 20 ms of simulated I/O, then burns 1 ms;
* ``wsgi``: WSGI, burns 2 ms (run with ``--threads 4``).
"""

from __future__ import annotations

import asyncio
import time

from bench.apps import _lifespan  # the same lifespan as every bench app

_BODY = b"ok"
_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"2")]


def burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


async def cpu(scope, receive, send):
    if scope["type"] != "http":
        return await _lifespan(receive, send) if scope["type"] == "lifespan" else None
    if scope["path"] != "/ping":
        burn(0.002)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})


async def io(scope, receive, send):
    if scope["type"] != "http":
        return await _lifespan(receive, send) if scope["type"] == "lifespan" else None
    if scope["path"] != "/ping":
        await asyncio.sleep(0.020)
        burn(0.001)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})


def wsgi(environ, start_response):
    if environ.get("PATH_INFO") != "/ping":
        burn(0.002)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [_BODY]


APPS = {"cpu": "bench.goodput_apps:cpu", "io": "bench.goodput_apps:io", "wsgi": "bench.goodput_apps:wsgi"}
