"""WSGI test app for PEP 3333 behaviour (tests/integration/test_wsgi.py).

Works the same under --threads 1 and --threads N; state shared between
requests (closes, progress) is kept per worker process.
"""

import asyncio
import json
import os
import sys
import tempfile
import threading
import time
import warnings
from wsgiref.validate import WSGIWarning, validator

warnings.simplefilter("always", WSGIWarning)  # every complaint reaches the log

closed: dict[str, int] = {}
progress = {"sent": 0}
barrier = threading.Barrier(2)
_lock = threading.Lock()


class Tracked:
    """An iterable that counts its close() per name."""

    def __init__(self, name, parts, fail_at=None):
        self.name = name
        self.parts = parts
        self.fail_at = fail_at

    def __iter__(self):
        for index, part in enumerate(self.parts):
            if index == self.fail_at:
                raise RuntimeError("iterable boom")
            yield part

    def close(self):
        with _lock:
            closed[self.name] = closed.get(self.name, 0) + 1


def _big_file():
    path = os.path.join(tempfile.gettempdir(), f"corral-test-bigfile-{os.getpid()}")
    if not os.path.exists(path):
        with open(path, "wb") as handle:
            handle.write(BIG_FILE)
    return path


BIG_FILE = bytes(range(256)) * (32 * 1024)  # 8 MiB


def _json(start_response, value, status="200 OK"):
    body = json.dumps(value).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _plain(start_response, body=b"ok", status="200 OK"):
    start_response(status, [("Content-Type", "text/plain")])
    return [body]


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, world!"]


def _read_modes(stream):
    out = {"read3": stream.read(3).decode(), "readline": stream.readline().decode()}
    out["readline2"] = stream.readline(2).decode()
    out["readlines"] = [line.decode() for line in stream.readlines()]
    out["eof"] = stream.read().decode()
    out["eof_n"] = stream.read(10).decode()
    return out


async def _answer(value):
    await asyncio.sleep(0)
    return value


def _loop_view() -> dict:
    """What a view sees of asyncio: gunicorn's sync worker has no running loop
    on the app's thread, so asyncio.run() and asgiref's async_to_sync work."""
    view = {"running_loop": asyncio._get_running_loop() is not None, "asyncio_run": asyncio.run(_answer(42))}
    try:
        asyncio.get_running_loop()
        view["get_running_loop"] = "a loop"
    except RuntimeError:
        view["get_running_loop"] = "RuntimeError"
    try:
        from asgiref.sync import async_to_sync
    except ImportError:  # pragma: no cover - asgiref comes with Django, in the test extra
        view["async_to_sync"] = None
    else:
        view["async_to_sync"] = async_to_sync(_answer)("sync")
    return view


_legacy_loops: list = []


def _legacy_loop_view() -> dict:
    """Older sync code: ``asyncio.get_event_loop().run_until_complete(...)``.
    Under gunicorn's sync worker the main thread gets a loop of its own, the
    same one on every request; a thread of gthread's pool gets RuntimeError."""
    try:
        loop = asyncio.get_event_loop()
        result = loop.run_until_complete(_answer(7))
    except RuntimeError as exc:
        return {"error": type(exc).__name__}
    _legacy_loops.append(loop)
    return {"result": result, "same_loop": _legacy_loops[0] is loop, "main_thread": threading.current_thread() is threading.main_thread()}


def app(environ, start_response):
    path = environ["PATH_INFO"]
    stream = environ["wsgi.input"]
    if path == "/legacy-loop":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: get_event_loop() making a loop
            return _json(start_response, _legacy_loop_view())
    if path == "/no-loop":
        return _json(start_response, _loop_view())
    if path == "/no-loop-stream":
        # The body's pieces are made by app code too, one next() at a time.
        def pieces():
            for _ in range(3):
                yield json.dumps(_loop_view()).encode() + b"\n"
        start_response("200 OK", [("Content-Type", "application/x-ndjson")])
        return Tracked("no-loop-stream", pieces())
    if path == "/hello":
        return hello(environ, start_response)
    if path == "/pid":
        return _plain(start_response, str(os.getpid()).encode())
    if path == "/echo":
        body = stream.read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    if path == "/read-modes":
        return _json(start_response, _read_modes(stream))
    if path == "/iterate":
        return _json(start_response, [line.decode() for line in stream])
    if path == "/input-size":
        total = 0
        while True:
            data = stream.read(65536)
            if not data:
                break
            total += len(data)
        return _json(start_response, {"read": total, "spooled": not hasattr(stream, "getbuffer"),
                                      "CONTENT_LENGTH": environ.get("CONTENT_LENGTH"),
                                      "terminated": environ.get("wsgi.input_terminated")})
    if path == "/ignore":
        return _plain(start_response, b"ignored")
    if path.startswith("/environ"):
        keys = [key for key in environ if key.isupper() or key.startswith("wsgi.")]
        view = {key: environ[key] for key in keys if isinstance(environ[key], (str, bool, int, tuple))}
        view["body"] = stream.read().decode("latin-1")
        view["thread"] = threading.current_thread().name
        return _json(start_response, view)
    if path == "/twice":
        start_response("200 OK", [("Content-Type", "text/plain")])
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"never"]
    if path == "/exc-info":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("handled")
        except ValueError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"replaced"]
    if path == "/exc-info-late":
        def late():
            yield b"first"
            try:
                raise ValueError("too late")
            except ValueError:
                start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
            yield b"never"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return late()
    if path == "/gen-raise":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Tracked("gen-raise", [b"part one,", b"part two"], fail_at=1)
    if path == "/raise-first":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Tracked("raise-first", [b"x"], fail_at=0)
    if path == "/tracked":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Tracked("tracked", [b"a", b"b", b"c"])
    if path == "/closed":
        with _lock:
            return _json(start_response, dict(closed))
    if path == "/errors":
        errors = environ["wsgi.errors"]
        errors.write("first line\nsecond ")
        errors.write("line\n")
        errors.flush()
        return _plain(start_response)
    if path == "/file":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(__file__, "rb"), 1000)
    if path == "/bigfile":
        # 8 MiB through wsgi.file_wrapper: os.sendfile, then the transport when the socket is full.
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(_big_file(), "rb"))
    if path == "/big":
        # 64 MiB in 64 KiB pieces; progress says how many were taken.
        chunk = b"x" * 65536
        progress["sent"] = 0

        def pieces():
            for _ in range(1024):
                progress["sent"] += 1
                yield chunk
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Tracked("big", pieces())
    if path == "/progress":
        return _json(start_response, progress)
    if path == "/barrier":
        barrier.wait(timeout=10)
        return _plain(start_response, threading.current_thread().name.encode())
    if path == "/count":
        with _lock:
            closed["count"] = closed.get("count", 0) + 1
        return _plain(start_response)
    if path == "/sleep":
        time.sleep(float(environ.get("QUERY_STRING") or 1))
        return _plain(start_response, str(os.getpid()).encode())
    if path == "/hang":
        start_response("200 OK", [("Content-Type", "text/plain")])
        time.sleep(60)
        return [b"late"]
    if path == "/bad-header":
        start_response("200 OK", [("Content-Type", "text/plain\r\nX-Injected: 1")])
        return [b"no"]
    if path == "/long-length":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return iter([b"12", b"3456789"])
    if path == "/short-length":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return iter([b"12", b"345"])
    if path == "/no-start":
        return [b"nothing"]
    return _plain(start_response, b"not found", "404 Not Found")


def _validated(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/post":
        stream = environ["wsgi.input"]
        body = b""
        while True:
            data = stream.read(4)  # the validator wants read(n)
            if not data:
                break
            body += data
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"a", b"b"])
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"w")
        return [b"r"]
    if path == "/errors":
        environ["wsgi.errors"].write("validated\n")
        environ["wsgi.errors"].flush()
        start_response("204 No Content", [])
        return []
    return hello(environ, start_response)


validated = validator(_validated)
