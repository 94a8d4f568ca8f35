"""WSGI (PEP 3333) apps, run in a thread pool behind an ASGI adapter.

``WSGIAdapter`` makes a WSGI callable look like an ASGI app, so the HTTP
machinery (framing, keep-alive, limits) is the one the ASGI path uses. The
request body is read in full before the app is called (``wsgi.input`` is an
in-memory file); the response iterable is consumed in the worker thread and
each piece is written through ASGI ``send``, which waits while the client is
slow to read. A response given as a one-item list goes out in one write with
Content-Length.
"""

from __future__ import annotations

import asyncio
import io
import sys
from concurrent.futures import ThreadPoolExecutor

WSGI_THREADS = 16


class WSGIAdapter:
    def __init__(self, app, threads: int = WSGI_THREADS) -> None:
        self.app = app
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="corral-wsgi")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return  # no lifespan for WSGI
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        environ = build_environ(scope, bytes(body))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self._run, environ, send, loop)

    def _run(self, environ, send, loop) -> None:
        def call(message) -> None:
            asyncio.run_coroutine_threadsafe(send(message), loop).result()

        response: dict = {}

        def start_response(status, headers, exc_info=None):
            if exc_info is not None and response.get("sent"):
                raise exc_info[1].with_traceback(exc_info[2])
            code = int(status.split(" ", 1)[0])
            response["start"] = {
                "type": "http.response.start",
                "status": code,
                "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
            }
            return write

        def write(data: bytes) -> None:
            flush()
            call({"type": "http.response.body", "body": data, "more_body": True})

        def flush() -> None:
            if not response.get("sent"):
                if "start" not in response:
                    raise RuntimeError("WSGI app wrote a body before calling start_response")
                response["sent"] = True
                call(response["start"])

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


def build_environ(scope, body: bytes) -> dict:
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client")
    root_path = scope.get("root_path", "")
    path = scope["path"]
    if root_path and path.startswith(root_path):
        path = path[len(root_path):]  # ASGI path includes root_path; PATH_INFO does not
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root_path.encode("utf-8").decode("latin-1"),
        "PATH_INFO": path.encode("utf-8", "surrogateescape").decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]) if server[1] is not None else "",
        "SERVER_PROTOCOL": "HTTP/" + scope["http_version"],
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if client:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client[0], str(client[1])
    for name, value in scope["headers"]:
        key = name.decode("latin-1").upper().replace("-", "_")
        if key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
            environ[key] = value.decode("latin-1")
            continue
        key = "HTTP_" + key
        text = value.decode("latin-1")
        environ[key] = environ[key] + "," + text if key in environ else text
    environ.setdefault("CONTENT_LENGTH", str(len(body)) if body else "")
    return environ
