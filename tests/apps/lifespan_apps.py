"""Apps with every kind of lifespan behaviour (tests/integration/test_lifespan.py)."""

import os
import sys


def say(text: str) -> None:
    os.write(2, (str(text) + "\n").encode())  # one write: lines never mix


async def _hello(send, body: bytes = b"hello") -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


async def no_lifespan(scope, receive, send):
    """Written for http only: raises on any other scope type."""
    assert scope["type"] == "http", "this app only speaks http"
    await _hello(send, b"no lifespan here")


async def returns_early(scope, receive, send):
    if scope["type"] != "http":
        return
    await _hello(send, b"returned early")


async def startup_raises(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError("startup exploded")
    await _hello(send, b"served anyway")


async def shutdown_fails(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        scope["state"]["phase"] = "started"
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.failed", "message": "cleanup broke"})
        return
    await _hello(send, scope["state"]["phase"].encode())


async def shutdown_raises(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        raise ValueError("shutdown exploded")
    await _hello(send)
