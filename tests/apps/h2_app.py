"""Test app for HTTP/2: trailers, big bodies, slow and disconnect-watching routes."""

import asyncio
import json
import os


def say(text: str) -> None:
    os.write(2, (text + "\n").encode())


async def _read(receive) -> bytes | None:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    query = scope["query_string"].decode()
    if path == "/scope":
        view = {k: v for k, v in scope.items() if k not in ("headers", "raw_path", "query_string", "state")}
        view["headers"] = [[k.decode(), v.decode()] for k, v in scope["headers"]]
        body = json.dumps(view).encode()
    elif path == "/echo":
        body = await _read(receive)
        if body is None:
            return
    elif path == "/slow-echo":  # reads slowly: the client's window must close
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            total += len(message.get("body", b""))
            await asyncio.sleep(0.01)
            if not message.get("more_body", False):
                break
        body = str(total).encode()
    elif path == "/big":
        size = int(query or "1000000")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(size).encode())]})
        chunk = b"x" * 65536
        sent = 0
        while sent < size:
            part = chunk[: size - sent]
            sent += len(part)
            await send({"type": "http.response.body", "body": part, "more_body": sent < size})
        say(f"big sent {size}")
        return
    elif path == "/sleep":
        say(f"sleep start {os.getpid()}")
        await asyncio.sleep(float(query or "1"))
        body = b"slept"
    elif path == "/disconnect":
        say("waiting for disconnect")
        while (await receive())["type"] != "http.disconnect":
            pass
        say("saw http.disconnect")
        return
    elif path == "/trailers":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")], "trailers": True})
        await send({"type": "http.response.body", "body": b"body", "more_body": False})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")], "more_trailers": False})
        return
    elif path == "/pid":
        body = str(os.getpid()).encode()
    elif path == "/raise":
        raise RuntimeError("boom")
    else:
        body = b"hello"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
