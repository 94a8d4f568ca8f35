"""HTTP/2 for the interfaces: nothing of its own but WSGI's adapter.

The ASGI ``http`` cycle is the one ``interfaces/asgi.py`` writes for every
protocol: each HTTP/2 stream (``io/h2.py``) is a request with the same
fields, and ``H2Connection`` implements the exchange verbs the cycle sends
through (HEADERS and DATA, the stream's window, RST_STREAM). ``H2Handler``
is that same ``ASGIHandler``.

WSGI apps run here through ``WSGIOverASGI`` (a thread per call from a pool;
the body read whole first), so HTTP/2 serves them too.
"""

from __future__ import annotations

import asyncio
import io
import sys
from concurrent.futures import ThreadPoolExecutor

from .asgi import ASGIHandler

H2Handler = ASGIHandler  # one ASGI cycle for every protocol


class WSGIOverASGI:
    """A WSGI app as an ASGI one, for HTTP/2 streams (HTTP/1.1 has its own
    native WSGI path). The body is read whole, the app runs in a thread pool,
    each piece of its iterable goes out through ``send`` (which waits on the
    peer's window)."""

    def __init__(self, app, threads: int = 16) -> None:
        self.app = app
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="corral-wsgi-h2")

    async def __call__(self, scope, receive, send) -> None:
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        environ = _environ(scope, bytes(body))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self._run, environ, send, loop)

    def _run(self, environ, send, loop) -> None:
        def call(message) -> None:
            asyncio.run_coroutine_threadsafe(send(message), loop).result()

        response: dict = {}

        def start_response(status, headers, exc_info=None):
            if exc_info is not None and response.get("sent"):
                raise exc_info[1].with_traceback(exc_info[2])
            response["start"] = {
                "type": "http.response.start",
                "status": int(status.split(" ", 1)[0]),
                "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
            }
            return write

        def flush() -> None:
            if not response.get("sent"):
                if "start" not in response:
                    raise RuntimeError("WSGI app wrote a body before calling start_response")
                response["sent"] = True
                call(response["start"])

        def write(data: bytes) -> None:
            flush()
            call({"type": "http.response.body", "body": data, "more_body": True})

        result = self.app(environ, start_response)
        try:
            if isinstance(result, (list, tuple)) and len(result) <= 1 and not response.get("sent"):
                flush()
                call({"type": "http.response.body", "body": result[0] if result else b""})
                return
            for chunk in result:
                if chunk:
                    write(chunk)
            flush()
            call({"type": "http.response.body", "body": b""})
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()


def _environ(scope, body: bytes) -> dict:
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client")
    root_path = scope.get("root_path", "")
    path = scope["path"]
    if root_path and path.startswith(root_path):
        path = path[len(root_path):]
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root_path.encode("utf-8").decode("latin-1"),
        "PATH_INFO": path.encode("utf-8", "surrogateescape").decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]) if server[1] is not None else "",
        "SERVER_PROTOCOL": "HTTP/2",
        "SERVER_SOFTWARE": "corral",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)) if body else "",
    }
    if environ["wsgi.url_scheme"] == "https":
        environ["HTTPS"] = "on"
    if client:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client[0], str(client[1])
    for name, value in scope["headers"]:
        key = name.decode("latin-1").upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = value.decode("latin-1")
            continue
        key = "HTTP_" + key
        text = value.decode("latin-1")
        if key in environ:
            text = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + text
        environ[key] = text
    return environ
