"""Test app: routes that exercise the HTTP/1.1 and ASGI paths."""

import asyncio
import json
import os

STARTED = []


def say(text: str) -> None:
    """One line to stderr in one write, so lines from two workers never mix."""
    os.write(2, (text + "\n").encode())


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["started"] = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                say("lifespan shutdown ran")
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/echo":
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        await _respond(send, body)
    elif path == "/scope":
        view = {k: v for k, v in scope.items() if k not in ("headers", "raw_path", "query_string", "state")}
        view["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
        view["raw_path"] = scope["raw_path"].decode("latin-1")
        view["query_string"] = scope["query_string"].decode("latin-1")
        view["state"] = dict(scope["state"])
        await _respond(send, json.dumps(view).encode(), b"application/json")
    elif path == "/sleep":
        seconds = float(scope["query_string"].decode() or "1")
        say(f"sleep start {os.getpid()}")
        await asyncio.sleep(seconds)
        await _respond(send, b"slept\n")
    elif path == "/block":
        import time

        say(f"block start {os.getpid()}")
        time.sleep(float(scope["query_string"].decode() or "5"))
        await _respond(send, b"blocked\n")
    elif path == "/block-until":  # blocks the loop until the file named by the query exists (30 s at most)
        import time

        say(f"block start {os.getpid()}")
        release = scope["query_string"].decode()
        deadline = time.monotonic() + 30
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)
        await _respond(send, b"blocked\n")
    elif path == "/pid":
        await _respond(send, str(os.getpid()).encode())
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for part in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/no-response":
        return
    elif path == "/raise":
        raise RuntimeError("boom")
    elif path == "/raise-after-start":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom after start")
    elif path == "/bad-header":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-evil", b"a\r\nset-cookie: x")]})
        await send({"type": "http.response.body", "body": b"no"})
    elif path == "/disconnect":
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                say("saw http.disconnect")
                return
            body += message.get("body", b"")
    elif path == "/204":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/stream-big":
        size = int(scope["query_string"].decode() or "10000000")
        chunk = b"x" * 65536
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(size).encode())]})
        sent = 0
        try:
            while sent < size:
                part = chunk[: min(len(chunk), size - sent)]
                await send({"type": "http.response.body", "body": part, "more_body": True})
                sent += len(part)
            await send({"type": "http.response.body", "body": b""})
        except OSError as exc:
            say(f"send failed after {sent} bytes: {type(exc).__name__}")
            raise
    elif path == "/big":
        size = int(scope["query_string"].decode() or "1000000")
        await _respond(send, b"x" * size)
    else:
        await _respond(send, b"Hello, world!")


async def _respond(send, body, content_type=b"text/plain"):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": body})
