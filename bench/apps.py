"""ASGI applications served by the benchmark (see bench/run.py)."""

import os

HELLO_BODY = b"Hello, world!"
HELLO_HEADERS = [
    (b"content-type", b"text/plain"),
    (b"content-length", str(len(HELLO_BODY)).encode()),
]


async def _lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def hello(scope, receive, send):
    """Plain-text hello world: 200, text/plain, b'Hello, world!'."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await send({"type": "http.response.start", "status": 200, "headers": HELLO_HEADERS})
    await send({"type": "http.response.body", "body": HELLO_BODY})


BIG_BODY = b"x" * (100 * 1024)
BIG_HEADERS = [
    (b"content-type", b"application/octet-stream"),
    (b"content-length", str(len(BIG_BODY)).encode()),
]


async def big(scope, receive, send):
    """GET 100 KB: one body message of 102400 bytes."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await send({"type": "http.response.start", "status": 200, "headers": BIG_HEADERS})
    await send({"type": "http.response.body", "body": BIG_BODY})


# The static50k scenario (bench/run.py writes the file before it starts the servers).
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".static")
STATIC_BODY = bytes(range(256)) * 200  # 51200 bytes


def write_static_file() -> str:
    os.makedirs(STATIC_DIR, exist_ok=True)
    path = os.path.join(STATIC_DIR, "file50k.bin")
    with open(path, "wb") as file:
        file.write(STATIC_BODY)
    return path


def _file50k():
    """Starlette's FileResponse of the 50 KB file, whatever the path (the
    app-level way; it uses http.response.pathsend where the server offers it)."""
    path = os.path.join(STATIC_DIR, "file50k.bin")

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        from starlette.responses import FileResponse  # imported once, on the first request

        await FileResponse(path)(scope, receive, send)

    return app


file50k = _file50k()


async def echo(scope, receive, send):
    """POST echo: reads the whole body, answers it with its Content-Length."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", str(len(body)).encode()),
    ]})
    await send({"type": "http.response.body", "body": body})


def _fastapi_app():
    try:
        from fastapi import FastAPI
    except ImportError:  # the scenario is skipped where FastAPI is not installed
        return None
    api = FastAPI()

    @api.get("/items/{item_id}")
    async def item(item_id: int, q: str | None = None):
        return {"item_id": item_id, "q": q, "name": "widget", "price": 9.99, "tags": ["a", "b"]}

    return api


fastapi_json = _fastapi_app()


def hello_wsgi(environ, start_response):
    """The same hello world for WSGI-only servers (gunicorn's own workers)."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO_BODY)))])
    return [HELLO_BODY]
