"""The example app served by `make run`: a tiny ASGI app with a few routes."""

import asyncio
import json


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/echo":
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        await respond(send, 200, body, b"application/octet-stream")
    elif path == "/slow":
        await asyncio.sleep(1.0)
        await respond(send, 200, b"slow\n")
    elif path == "/info":
        info = {"method": scope["method"], "path": path, "query": scope["query_string"].decode()}
        await respond(send, 200, json.dumps(info).encode(), b"application/json")
    else:
        await respond(send, 200, b"Hello from corral\n")


async def respond(send, status, body, content_type=b"text/plain"):
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": body})
