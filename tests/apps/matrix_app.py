"""The guarantee matrix's app (tests/integration/test_guarantee_matrix.py):
one route per guarantee, the same under every path. ``wsgi`` is the WSGI
twin for the columns that are WSGI's own."""

import asyncio
import json
import os


async def app(scope, receive, send):
    if scope["type"] == "websocket":
        await websocket(scope, receive, send)
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/echo":  # reads the whole body
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        await respond(send, 200, body)
    elif path == "/early":  # answers without reading the body
        await respond(send, 200, b"early")
    elif path == "/long":  # a body longer than its Content-Length
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"too long"})
    elif path == "/bad-header":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-bad", b"a\r\nInjected: 1")]})
        await send({"type": "http.response.body", "body": b"never"})
    elif path == "/client":  # who the app thinks the client is
        await respond(send, 200, json.dumps([scope["client"][0], scope["client"][1], scope["scheme"]]).encode())
    elif path == "/big":  # more than a socket buffer holds, for --timeout-write
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"x" * 65536
        for _ in range(256):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/hold":  # holds its slot until the file named by the query exists
        flag = scope["query_string"].decode()
        os.write(2, f"hold {os.path.basename(flag)} in {os.getpid()}\n".encode())
        while not os.path.exists(flag):
            await asyncio.sleep(0.01)
        await respond(send, 200, b"held")
    else:
        await respond(send, 200, b"app")


async def respond(send, status, body):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def wsgi(environ, start_response):
    """Which environ keys came from request fields (underscore headers must not)."""
    keys = sorted(k for k in environ if k.startswith("HTTP_") or k in ("CONTENT_LENGTH", "CONTENT_TYPE"))
    body = json.dumps({k: environ[k] for k in keys}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


async def websocket(scope, receive, send):
    """Says who the client is and how it came, then echoes."""
    await receive()
    await send({"type": "websocket.accept"})
    client = scope["client"]
    await send({"type": "websocket.send",
                "text": json.dumps([client[0], client[1], scope["scheme"], scope["http_version"]])})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            os.write(2, f"ws disconnect {message['code']}\n".encode())
            return
        await send({"type": "websocket.send", "text": message.get("text") or ""})
