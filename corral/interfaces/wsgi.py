"""WSGI (PEP 3333) natively: one ``WSGICycle`` per request, no coroutine, no Task.

The connection (``io/h1.py``) asks ``WSGIHandler.new_cycle(conn, request)``
for a cycle and calls ``cycle.start()``, exactly as for ASGI. Over HTTP/2,
``WSGIOverASGI`` is the ASGI app of each stream's ``HTTPCycle`` (the ASGI
cycle of every protocol) and runs a ``WSGIStream``. What WSGI means is written once, in ``WSGIRequest`` (the
environ, the body, ``start_response``, ``close()``) and ``WSGIHandler`` (the
pool, the stuck-thread bookkeeping); the two subclasses only send.

Request body: the cycle collects it as it arrives (``body_arrived``) while
the connection's flow control keeps reading; up to ``SPOOL_MEMORY`` bytes stay
in memory, beyond that the body goes to a temporary file. The app is called
once the body is complete, so ``wsgi.input`` never blocks, is a real file
object (``read``, ``read(n)``, ``readline(n)``, ``readlines``, iteration, EOF
at the end) and ``wsgi.input_terminated`` is true; a chunked body gets its
de-chunked length as ``CONTENT_LENGTH``. Header names with an underscore are
dropped (they would spoof dashed ones: ``Content_Length``, ``X_Forwarded_For``).

Running the app, ``--threads``:

* ``1`` (default): on the loop's thread, one request at a time per worker
  (gunicorn's sync worker). A response given as a list goes out in one
  ``transport.write``. An iterable is iterated while the transport takes
  more, and resumed from ``resume_writing`` when a slow client pauses it.
* ``N > 1``: a pool of N threads; one hand-off to a thread per request and
  one back for a response given as a list. Streamed pieces are batched per
  loop pass; the app's thread waits while ``STREAM_HIGH_WATER`` bytes are
  queued or the transport is paused. ``--timeout-worker`` (the worker's
  tick reads ``longest_running``) counts from when a thread takes the
  request, not while it waits for one; a request whose client is gone by
  then is not run.

Either way the app sees no running event loop on its thread, as under
gunicorn (Django's ORM, ``asyncio.run`` and ``async_to_sync`` need that):
inline, the loop is hidden from the thread while app code runs.

A failure before the head is written answers 500; after it, the connection
closes without the chunked terminator (a client never takes a cut body as
whole). ``close()`` of the app's iterable is called in every case.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import queue
import stat
import sys
import tempfile
import threading
from asyncio.events import _get_running_loop, _set_running_loop
from functools import partial
from time import perf_counter

from ..io.contract import BUSY, RETRY_AFTER
from ..proto.h1 import CONTINUE, LAST_CHUNK, InvalidResponse, encode_chunk, error_response, plan_response

log = logging.getLogger("corral.error")

# Request body bytes kept in memory; a longer body is spooled to a temporary file.
SPOOL_MEMORY = 1024 * 1024
# --threads > 1: response bytes queued for the loop before the app's thread waits.
STREAM_HIGH_WATER = 256 * 1024
_LARGE_BODY = 64 * 1024
# wsgi.file_wrapper over a regular file: bytes per sendfile call, and the block
# written through the transport when the socket is full (it then pauses us).
_SENDFILE_BLOCK = 1024 * 1024
_FILE_BLOCK = 128 * 1024
_KEY_CACHE_SIZE = 1024
_END = object()

# Cycle phases.
_BODY = 0  # collecting the request body
_RUNNING = 1  # the app runs, or its iterable is being sent
_DONE = 2  # cycle_done was called


class ClientDisconnected(OSError):
    """Raised by ``write()`` (and ends iteration) once the client has gone."""


class FileWrapper:
    """``wsgi.file_wrapper``: a file-like object sent in blocks of ``blksize``."""

    def __init__(self, filelike, blksize: int = 64 * 1024) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


class ErrorStream:
    """``wsgi.errors``: text written by the app goes to the error log, a line
    per record (a partial line waits for its end or ``flush``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._partial = ""

    def write(self, text: str) -> None:
        if not isinstance(text, str):
            raise TypeError(f"wsgi.errors.write() takes str, not {type(text).__name__}")
        with self._lock:
            text = self._partial + text
            *lines, self._partial = text.split("\n")
        for line in lines:
            log.error("wsgi.errors: %s", line)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        with self._lock:
            rest, self._partial = self._partial, ""
        if rest:
            log.error("wsgi.errors: %s", rest)


class _Pool:
    """N threads taking callables from one queue (started on first use, after the fork)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []

    def submit(self, job) -> None:
        if not self.threads:
            for index in range(self.size):
                thread = threading.Thread(target=self._work, name=f"corral-wsgi-{index}", daemon=True)
                thread.start()
                self.threads.append(thread)
        self.jobs.put(job)

    def _work(self) -> None:
        get = self.jobs.get
        while True:
            job = get()
            if job is None:
                return
            job()

    def stop(self) -> None:
        for _ in self.threads:
            self.jobs.put(None)


class _EmptyInput:
    """``wsgi.input`` of a request without a body: always at EOF, stateless,
    so one instance serves every such request."""

    __slots__ = ()

    def read(self, size: int = -1) -> bytes:
        return b""

    def readline(self, size: int = -1) -> bytes:
        return b""

    def readlines(self, hint: int = -1) -> list:
        return []

    def __iter__(self):
        return iter(())

    def close(self) -> None:
        pass


EMPTY_INPUT = _EmptyInput()


class RequestBody:
    """A request body as it arrives, on any protocol: up to ``SPOOL_MEMORY``
    bytes in memory, a longer body in a temporary file. Made at the first
    body bytes (a request without a body has none)."""

    __slots__ = ("parts", "spool", "size")

    def __init__(self) -> None:
        self.parts: list | None = []  # pieces, while in memory
        self.spool = None  # temporary file, once the body is larger than SPOOL_MEMORY
        self.size = 0

    def extend(self, chunks, size: int) -> None:
        total = self.size + size
        spool = self.spool
        if spool is None and total > SPOOL_MEMORY:
            spool = self.spool = tempfile.TemporaryFile(prefix="corral-body-")
            spool.writelines(self.parts)
            self.parts = None
        if spool is not None:
            spool.writelines(chunks)
        else:
            self.parts += chunks
        self.size = total

    def input(self):
        """``wsgi.input``: the whole body as a file object, at its start."""
        spool = self.spool
        if spool is not None:
            spool.seek(0)
            return spool
        parts = self.parts
        if not parts:
            return io.BytesIO()
        return io.BytesIO(parts[0] if len(parts) == 1 else b"".join(parts))

    def close(self) -> None:
        self.parts = None
        if self.spool is not None:
            self.spool.close()
            self.spool = None
_PROTOCOLS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}


def _environ_key(name: bytes) -> str:
    """The environ key of a request header ("" for a name that must be dropped)."""
    if b"_" in name:
        return ""  # would collide with a dashed name once dashes become underscores
    key = name.decode("latin-1").upper().replace("-", "_")
    if key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
        return key
    return "HTTP_" + key


class WSGIHandler:
    """What every request of a worker shares: the app, the base environ, the pool.

    ``new_cycle(conn, request)`` is the connection's ``state.handler``."""

    def __init__(self, app, state) -> None:
        self.app = app
        self.state = state
        config = state.config
        self.threads = threads = getattr(config, "threads", 1)
        self.pool = _Pool(threads) if threads > 1 else None
        self.access = state.access  # io/access.py, None when off
        self.timed = state.cycles_timed()
        self.errors = ErrorStream()
        self.script_name = config.root_path.rstrip("/").encode("utf-8").decode("latin-1")
        self.multithread = threads > 1
        self.keys: dict[bytes, str] = {}
        self.server_names: dict = {}  # listening (host, port) -> (SERVER_NAME, SERVER_PORT)
        self.statuses: dict[str, int] = {}  # status line -> code, once checked
        self.encodings: dict = {}  # the app's header tuple -> the same in bytes, once checked
        self.running: set = set()  # cycles whose app runs in a pool thread
        self.new_cycle = partial(WSGICycle, self)

    def server_name(self, server) -> tuple[str, str]:
        names = (str(server[0]), str(server[1]))
        if len(self.server_names) < 64:
            self.server_names[server] = names
        return names

    def key(self, name: bytes) -> str:
        key = _environ_key(name)
        if len(self.keys) < _KEY_CACHE_SIZE:
            self.keys[name] = key
        return key

    def longest_running(self, now: float) -> tuple[float, object]:
        """(seconds, cycle) of the request running longest in a pool thread,
        counted from when the thread took it (``now``: ``loop.time()``)."""
        oldest = None
        for cycle in list(self.running):
            if oldest is None or cycle.since < oldest.since:
                oldest = cycle
        if oldest is None:
            return 0.0, None
        return now - oldest.since, oldest

    def close(self) -> None:
        if self.pool is not None:
            self.pool.stop()


class WSGIRequest:
    """What a WSGI request is on every protocol, written once: the environ
    (from a request with ``method``, ``path``, ``raw_path``, ``query_string``,
    ``http_version``, ``headers`` and ``forwarded``, and a connection with
    ``client``, ``scheme``, ``server`` and ``proxy``: ``proto.h1.Request`` and
    ``H1Connection``, or ``io.h2.H2Stream`` and ``H2Connection``), the body
    (``RequestBody``), ``start_response``, ``close()`` of the app's iterable,
    and ``since``, which the worker's stuck-thread check reads. HTTP/1.1:
    ``WSGICycle``; HTTP/2: ``WSGIStream``."""

    __slots__ = ("handler", "conn", "request", "body", "status", "headers", "committed", "result", "since")

    # -- environ -----------------------------------------------------------

    def environ(self) -> dict:
        handler = self.handler
        request = self.request
        conn = self.conn
        path = request.path
        if b"%" in request.raw_path:  # PEP 3333: the decoded bytes, as latin-1
            path = path.encode("utf-8", "surrogateescape").decode("latin-1")
        client = conn.client
        scheme = conn.scheme
        if request.forwarded:  # proto.forwarded.Identity from a trusted proxy
            client, scheme = request.forwarded[:2]
        query = request.query_string
        body = self.body
        stream = EMPTY_INPUT if body is None else body.input()
        # One dict display: cheaper than copying a base dict and filling it in.
        environ = {
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": handler.script_name,
            "PATH_INFO": path,
            "QUERY_STRING": query.decode("latin-1") if query else "",
            "SERVER_PROTOCOL": _PROTOCOLS.get(request.http_version) or "HTTP/" + request.http_version,
            "SERVER_SOFTWARE": "corral",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": scheme,
            "wsgi.input": stream,
            "wsgi.errors": handler.errors,
            "wsgi.multithread": handler.multithread,
            # Other processes may run the app at once (TTIN, a reload's overlap).
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
        }
        if scheme == "https":
            environ["HTTPS"] = "on"
        server = conn.server
        if server is not None:
            environ["SERVER_NAME"], environ["SERVER_PORT"] = handler.server_names.get(server) or handler.server_name(server)
        if client is not None:
            environ["REMOTE_ADDR"] = client[0]
            environ["REMOTE_PORT"] = str(client[1])
        keys = handler.keys
        for name, value in request.headers:
            key = keys.get(name)
            if key is None:
                key = handler.key(name)
            if not key:
                log.debug("dropped request header %r (underscore in the name)", name)
                continue
            if key in environ:
                environ[key] += ("; " if key == "HTTP_COOKIE" else ",") + value.decode("latin-1")
            else:
                environ[key] = value.decode("latin-1")
        if conn.proxy is not None:  # a PROXY header: its TLS details (HTTPS, SSL_*)
            environ.update(conn.proxy.wsgi_environ())
        if body is not None and body.size and "CONTENT_LENGTH" not in environ:
            environ["CONTENT_LENGTH"] = str(body.size)  # a chunked body (or HTTP/2 without one), read whole
        if server is None:  # UNIX socket: the name the client used
            host = environ.get("HTTP_HOST") or "localhost"
            name, sep, port = host.rpartition(":")
            if sep and port.isdigit():
                environ["SERVER_NAME"], environ["SERVER_PORT"] = name, port
            else:
                environ["SERVER_NAME"] = host
                environ["SERVER_PORT"] = "443" if scheme == "https" else "80"
        return environ

    # -- start_response ------------------------------------------------------

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.committed:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise RuntimeError("WSGI: start_response called a second time without exc_info (PEP 3333)")
        statuses = self.handler.statuses
        code = statuses.get(status) if type(status) is str else None
        if code is None:
            code = _status_code(status)
            if len(statuses) < 256:
                statuses[status] = code
        encodings = self.handler.encodings
        try:
            key = tuple(headers)
            encoded = encodings.get(key)
        except TypeError:  # unhashable items: encoded below, or refused
            key = encoded = None
        if encoded is None:
            try:
                encoded = tuple([(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers])
            except (AttributeError, UnicodeEncodeError, ValueError, TypeError):
                raise TypeError(f"WSGI: headers must be a list of (str, str) in latin-1, got {headers!r}") from None
            if key is not None and len(encodings) < 256:
                encodings[key] = encoded
        self.status = code
        self.headers = encoded
        return self.write

    def _close_result(self) -> None:
        result = self.result
        if result is None:
            return
        self.result = None
        close = getattr(result, "close", None)
        if close is not None:
            running = _get_running_loop()  # None in a pool thread
            _set_running_loop(None)
            try:
                close()
            except Exception:
                log.exception("WSGI: close() of the response iterable raised (%s %s)", self.request.method, self.request.path)
            finally:
                _set_running_loop(running)


class WSGICycle(WSGIRequest):
    """One HTTP/1.1 request: the response written to the connection's transport."""

    __slots__ = (
        "phase",
        "gone",
        "head",
        "keep_alive",
        "bytes_sent",
        "iterator",
        "cond",
        "queued",
        "final",
        "flush_pending",
        "blocked",
        "started",
        "file",
    )

    def __init__(self, handler, conn, request) -> None:
        self.handler = handler
        self.conn = conn
        self.request = request
        self.phase = _BODY
        self.gone = False  # the client went away (or the response was given up)
        self.body = None  # RequestBody, once body bytes arrived
        self.status = None  # int, from start_response
        self.headers = None  # tuple of (bytes, bytes), from start_response
        self.head = None  # ResponsePlan once the head is written
        self.committed = False  # the head is on its way: start_response may no longer change it
        self.keep_alive = False
        self.bytes_sent = 0
        self.result = None
        self.iterator = None
        self.since = 0.0  # --threads > 1: when a pool thread took it (loop.time())
        self.file = None  # [socket fd, file fd, offset, bytes left] for wsgi.file_wrapper
        self.started = perf_counter() if handler.timed else 0.0

    # -- the connection's side ---------------------------------------------

    def start(self) -> None:
        request = self.request
        if request.complete:
            if request.body:
                self._take_body()
            self.phase = _RUNNING
            if self.handler.pool is None:
                self._run_inline()
            else:
                self._submit()
            return
        if request.expect_continue and not request.body:
            self.conn.transport.write(CONTINUE)  # the body is always read
        self._take_body()

    def body_arrived(self) -> None:
        if self.phase != _BODY or self.gone:
            return
        self._take_body()
        if self.request.complete:
            # Not from inside the parser's callback: on the next loop pass.
            self.conn.loop.call_soon(self._run)

    def disconnected(self) -> None:
        if self.gone:
            return
        self.gone = True
        phase = self.phase
        if phase == _BODY:
            self._discard_body()
            self.conn.loop.call_soon(self._end, False)
        elif phase == _RUNNING and self.handler.pool is not None:
            cond = self.cond
            with cond:
                cond.notify_all()
        # Inline and paused on a slow client: the drain waiter wakes _resume.

    def client_eof(self) -> None:
        """The client shut its side after a whole request: the response is still sent."""

    # -- request body --------------------------------------------------------

    def _take_body(self) -> None:
        request = self.request
        chunks = request.body
        if not chunks:
            return
        body = self.body
        if body is None:
            body = self.body = RequestBody()
        body.extend(chunks, request.buffered)
        chunks.clear()
        request.buffered = 0
        self.conn.body_consumed()

    def _discard_body(self) -> None:
        if self.body is not None:
            self.body.close()
            self.body = None

    def write(self, data) -> None:
        """The ``write()`` callable start_response returns (legacy; prefer an iterable)."""
        if self.status is None:
            raise RuntimeError("WSGI: write() called before start_response")
        if type(data) is not bytes:
            data = _check_bytes(data)
        if self.gone:
            raise ClientDisconnected("client disconnected")
        if not data:
            return
        self.committed = True
        if self.handler.pool is None:
            self._out(data, False)
        else:
            self._queue(data, False)

    # -- running the app ---------------------------------------------------

    def _run(self) -> None:
        if self.gone or self.phase != _BODY:
            return
        self.phase = _RUNNING
        if self.handler.pool is None:
            self._run_inline()
        else:
            self._submit()

    def _submit(self) -> None:
        handler = self.handler
        self.cond = threading.Condition(threading.Lock())
        self.queued = []
        self.final = False
        self.flush_pending = False
        self.blocked = False
        self.since = self.conn.loop.time()  # queued for a thread (the overload check reads it)
        handler.pool.submit(self._run_in_thread)

    def _call(self, app=None):
        """Call the app (or ``app``); returns its iterable or a bytes body given whole (list/tuple)."""
        result = self.result = (app or self.handler.app)(self.environ(), self.start_response)
        kind = type(result)
        if (kind is list or kind is tuple) and not self.committed:
            if len(result) == 1:
                body = result[0]
            else:
                body = b"".join(result)
            if type(body) is not bytes:
                body = _check_bytes(body)
            return body
        return None

    def _run_inline(self) -> None:
        try:
            # The app runs with no running event loop on its thread, as under
            # gunicorn: Django's ORM, asyncio.run() and async_to_sync refuse a
            # thread whose loop runs. Hidden while app code runs (the call,
            # each next(), close()), and given back before anything of ours.
            running = self.conn.loop  # inline cycles run on their loop's thread
            _set_running_loop(None)
            try:
                result = self.result = self.handler.app(self.environ(), self.start_response)
            finally:
                _set_running_loop(running)
            kind = type(result)
            if (kind is list or kind is tuple) and not self.committed:
                # The whole body at once (no close() on a list): one write.
                self.result = None
                body = result[0] if len(result) == 1 else b"".join(result)
                if type(body) is not bytes:
                    body = _check_bytes(body)
                if self.status is None:
                    raise RuntimeError("WSGI: the app returned without calling start_response")
                self.committed = True
                self._out(body, True)
                return
            if kind is FileWrapper and not self.committed and self._file_source(result):
                self._send_file()
                return
            _set_running_loop(None)
            try:
                self.iterator = iter(result)
            finally:
                _set_running_loop(running)
        except BaseException as exc:
            self._failed(exc)
            return
        self._pump()

    def _pump(self, _waiter=None) -> None:
        """Inline: send the iterable's pieces while the transport takes them."""
        conn = self.conn
        running = conn.loop
        iterator = self.iterator
        try:
            while True:
                if self.gone:
                    self._close_result()
                    self._end(False)
                    return
                if conn.write_paused:
                    waiter = conn.drain_waiter
                    if waiter is None:
                        waiter = conn.drain_waiter = conn.loop.create_future()
                    waiter.add_done_callback(self._pump)
                    return
                _set_running_loop(None)
                try:
                    chunk = next(iterator, _END)
                finally:
                    _set_running_loop(running)
                if chunk is _END:
                    break
                if type(chunk) is not bytes:
                    chunk = _check_bytes(chunk)
                if chunk:
                    if self.status is None:
                        raise RuntimeError("WSGI: the app yielded a body before calling start_response")
                    self.committed = True
                    self._out(chunk, False)
            self._close_result()
            if self.status is None:
                raise RuntimeError("WSGI: the app returned without calling start_response")
            self.committed = True
            self._out(b"", True)
        except BaseException as exc:
            self._failed(exc)

    def _run_in_thread(self) -> None:
        """A pool thread: call the app, iterate, hand the outcome back to the loop."""
        loop = self.conn.loop
        if self.gone:  # the client left while the request waited for a thread
            loop.call_soon_threadsafe(self._end, False)
            return
        app = _waited_too_long(self.handler.state.overload, self.since, loop)
        # --timeout-worker counts from here: time spent waiting for a thread
        # is not running time (the loop's clock, the one the check reads).
        self.since = loop.time()
        self.handler.running.add(self)
        try:
            body = self._call(app)
            if body is not None:
                self._close_result()
                if self.status is None:
                    raise RuntimeError("WSGI: the app returned without calling start_response")
                self.committed = True
                loop.call_soon_threadsafe(self._out, body, True)
                return
            result = self.result
            if type(result) is FileWrapper and not self.committed and self._file_source(result):
                loop.call_soon_threadsafe(self._send_file)  # sent by the loop, with sendfile
                return
            for chunk in result:
                if type(chunk) is not bytes:
                    chunk = _check_bytes(chunk)
                if self.gone:
                    raise ClientDisconnected("client disconnected")
                if chunk:
                    if self.status is None:
                        raise RuntimeError("WSGI: the app yielded a body before calling start_response")
                    self.committed = True
                    self._queue(chunk, False)
            self._close_result()
            if self.status is None:
                raise RuntimeError("WSGI: the app returned without calling start_response")
            self.committed = True
            self._queue(b"", True)
        except BaseException as exc:
            self._close_result()
            self._log_failure(exc)
            loop.call_soon_threadsafe(self._after_failure)

    # -- wsgi.file_wrapper: sendfile ----------------------------------------

    def _file_source(self, wrapper) -> bool:
        """True when ``wrapper`` holds a regular file and the transport is a
        plain socket: then the loop sends it with ``os.sendfile``."""
        transport = self.conn.transport
        sock = transport.get_extra_info("socket")
        if sock is None or transport.get_extra_info("sslcontext") is not None:
            return False
        filelike = wrapper.filelike
        try:
            fd = filelike.fileno()
            st = os.fstat(fd)
            offset = filelike.tell() if hasattr(filelike, "tell") else 0
            sock_fd = sock.fileno()
        except (AttributeError, OSError, ValueError):
            return False
        if not stat.S_ISREG(st.st_mode) or sock_fd < 0:
            return False
        self.file = [sock_fd, fd, offset, max(0, st.st_size - offset)]
        return True

    def _send_file(self) -> None:
        """Loop thread: the head (with the file's length unless the app gave
        one), then the file, zero-copy while the socket takes it."""
        if self.phase == _DONE:
            return
        try:
            if self.status is None:
                raise RuntimeError("WSGI: the app returned without calling start_response")
            file = self.file
            declared = None
            for name, value in self.headers:
                if name.lower() == b"content-length" and value.isdigit():
                    declared = int(value)
            if declared is None:
                self.headers += ((b"Content-Length", b"%d" % file[3]),)
            else:
                file[3] = min(file[3], declared)  # short: the end closes the connection
            self.committed = True
            self._out(b"", False)
        except BaseException as exc:
            self._failed(exc)
            return
        if self.phase == _DONE:
            return
        if not self.head.body_allowed:
            file[3] = 0
        self._pump_file()

    def _pump_file(self, _waiter=None) -> None:
        conn = self.conn
        transport = conn.transport
        file = self.file
        sock_fd, fd = file[0], file[1]
        try:
            while file[3] > 0:
                if self.gone or conn.closing:
                    self._close_result()
                    self._end(False)
                    return
                if conn.write_paused:
                    waiter = conn.drain_waiter
                    if waiter is None:
                        waiter = conn.drain_waiter = conn.loop.create_future()
                    waiter.add_done_callback(self._pump_file)
                    return
                sent = 0
                if not transport.get_write_buffer_size():
                    # Nothing queued in the transport: the socket is ours to write.
                    try:
                        sent = os.sendfile(sock_fd, fd, file[2], min(file[3], _SENDFILE_BLOCK))
                        if not sent:
                            break  # the file is shorter than it was
                    except (BlockingIOError, InterruptedError):
                        pass
                if not sent:
                    # The socket is full: one block through the transport, which
                    # pauses us past its high-water mark and resumes us when drained.
                    data = os.pread(fd, min(file[3], _FILE_BLOCK), file[2])
                    if not data:
                        break
                    transport.write(data)
                    sent = len(data)
                file[2] += sent
                file[3] -= sent
                self.bytes_sent += sent
        except OSError as exc:
            self._close_result()
            self.gone = True
            self._log_failure(exc)
            self._end(False)
            return
        self._close_result()
        self._out(b"", True)

    # -- thread mode: batches of pieces for the loop -------------------------

    def _queue(self, data: bytes, final: bool) -> None:
        cond = self.cond
        with cond:
            while (self.blocked or sum(map(len, self.queued)) > STREAM_HIGH_WATER) and not self.gone:
                cond.wait()
            if self.gone:
                raise ClientDisconnected("client disconnected")
            self.queued.append(data)
            if final:
                self.final = True
            if self.flush_pending:
                return
            self.flush_pending = True
        self.conn.loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        cond = self.cond
        with cond:
            queued = self.queued
            self.queued = []
            final = self.final
            self.flush_pending = False
        if self.phase == _DONE:
            return
        self._out(queued[0] if len(queued) == 1 else b"".join(queued), final)
        if final or self.phase == _DONE:
            return
        conn = self.conn
        with cond:
            if conn.write_paused and not self.gone:
                self.blocked = True
            else:
                cond.notify()
                return
        waiter = conn.drain_waiter
        if waiter is None:
            waiter = conn.drain_waiter = conn.loop.create_future()
        waiter.add_done_callback(self._unblock)

    def _unblock(self, _waiter=None) -> None:
        cond = self.cond
        with cond:
            self.blocked = False
            cond.notify_all()

    def _after_failure(self) -> None:
        """Loop side of an app failure in a thread (already logged)."""
        if self.phase == _DONE:
            return
        self._give_up()

    # -- writing (loop thread) -----------------------------------------------

    def _out(self, data: bytes, final: bool) -> None:
        """Write ``data`` (the head first, once); ``final`` ends the response."""
        if self.phase == _DONE:
            return
        if self.gone:
            self._end(False)
            return
        transport = self.conn.transport
        plan = self.head
        if plan is None:
            request = self.request
            state = self.handler.state
            head_request = request.method == "HEAD"
            try:
                plan = plan_response(
                    self.status,
                    self.headers,
                    head_request,
                    request.http_version == "1.1",
                    request.keep_alive and not state.draining,
                    final and (not head_request or len(data) > 0),
                )
            except InvalidResponse as exc:
                error = RuntimeError(f"WSGI: invalid response from start_response: {exc}")
                if self.handler.pool is None:
                    raise error from None  # into the app (write) or the runner: a 500
                # A thread's response: answer 500 here, and stop the thread's app.
                self._log_failure(error)
                self._give_up()
                self.gone = True
                with self.cond:
                    self.cond.notify_all()
                return
            self.head = plan
            self.keep_alive = plan.keep_alive
            prefix = plan.render(len(data), state.extra_headers)
        else:
            prefix = None
        if not plan.body_allowed:
            data = b""
        elif plan.chunked:
            if data:
                self.bytes_sent += len(data)
                data = encode_chunk(data)
            if final:
                data += LAST_CHUNK
        elif plan.content_length is not None:
            data = self._bounded(data, plan.content_length, final)
        else:
            self.bytes_sent += len(data)
        if prefix is not None:
            if len(data) < _LARGE_BODY:
                transport.write(prefix + data)
            else:
                transport.writelines((prefix, data))
        elif data:
            transport.write(data)
        if final:
            self._end(self.keep_alive)

    def _bounded(self, data: bytes, content_length: int, final: bool) -> bytes:
        """A declared Content-Length: never send more; close when short."""
        sent = self.bytes_sent
        total = sent + len(data)
        if total > content_length:
            if sent <= content_length and self.keep_alive:
                log.error(
                    "WSGI app gave more body than its Content-Length (%d) for %s %s; truncated, closing the connection",
                    content_length, self.request.method, self.request.path,
                )
            self.keep_alive = False
            data = data[: max(0, content_length - sent)]
            total = content_length
        self.bytes_sent = total
        if final and total < content_length:
            self.keep_alive = False
            log.error(
                "WSGI app sent %d of %d body bytes (Content-Length) for %s %s; closing the connection",
                total, content_length, self.request.method, self.request.path,
            )
        return data

    # -- endings -----------------------------------------------------------

    def _log_failure(self, exc: BaseException) -> None:
        request = self.request
        if self.gone and isinstance(exc, OSError):
            log.debug("client went away during %s %s", request.method, request.path)
        else:
            log.error("Exception in WSGI application (%s %s)", request.method, request.path, exc_info=exc)

    def _failed(self, exc: BaseException) -> None:
        """Inline: the app (or its iterable) raised."""
        self._close_result()
        self._log_failure(exc)
        self._give_up()
        if not isinstance(exc, Exception):
            raise exc

    def _give_up(self) -> None:
        if self.head is None and not self.gone:
            self.conn.transport.write(error_response(500, "", self.handler.state.extra_headers))
            self.status = 500
        self._end(False)

    def _end(self, keep_alive: bool) -> None:
        if self.phase == _DONE:
            return
        self.phase = _DONE
        if self.body is not None:
            self._discard_body()
        handler = self.handler
        if handler.pool is not None:
            handler.running.discard(self)
        self.conn.cycle_done(self, keep_alive)
        access = handler.access
        if access is not None and not self.gone:
            request = self.request
            # As the app saw it (behind a proxy: the real client).
            client = request.forwarded.client if request.forwarded else self.conn.client
            access.record(request, client, self.status, self.bytes_sent, self.started)


def _status_code(status) -> int:
    if type(status) is not str or len(status) < 3 or not status[:3].isdigit() or status[3:4] not in ("", " "):
        raise TypeError(f"WSGI: status must be a str such as '200 OK', got {status!r}")
    code = int(status[:3])
    if code < 200:
        raise ValueError(f"WSGI: status {status!r}: informational (1xx) responses cannot be sent")
    return code


def _check_bytes(data) -> bytes:
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, bytes):
        return bytes(data)
    raise TypeError(f"WSGI: the response body must be bytes, got {type(data).__name__}")


# -- HTTP/2 -------------------------------------------------------------------


class WSGIOverASGI:
    """A WSGI app over HTTP/2 streams: an ASGI app for ``asgi.py``'s
    ``HTTPCycle``, which owns the response's HTTP semantics (its head,
    framing and Content-Length checks, errors, access log) and sends through
    the stream's exchange verbs. Everything WSGI
    is the code HTTP/1.1 runs (``WSGIRequest``) with the worker's one
    ``WSGIHandler``: the environ (underscore headers dropped, proxy identity),
    the body spooled past 1 MiB, ``--threads`` (inline with the loop hidden,
    or the same pool) and the stuck-thread check of ``--timeout-worker``."""

    def __init__(self, handler: WSGIHandler) -> None:
        self.handler = handler

    async def __call__(self, scope, receive, send) -> None:
        exchange = send.__self__  # asgi.py's HTTPCycle: its connection and request (the stream)
        call = WSGIStream(self.handler, exchange, send)
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                data = message.get("body", b"")
                if data:
                    body = call.body
                    if body is None:
                        body = call.body = RequestBody()
                    body.extend((data,), len(data))
                if not message.get("more_body", False):
                    break
            if self.handler.pool is None:
                await call.run_inline()
            else:
                await call.run_in_pool()
        finally:
            if call.body is not None:
                call.body.close()


class WSGIStream(WSGIRequest):
    """One WSGI request over an HTTP/2 stream. The response goes out through
    the exchange's ASGI ``send``: from the loop (inline, ``--threads 1``; a
    ``write()`` is held until the app returns, as it cannot wait there), or
    from a pool thread, which waits for each piece to be taken (the peer's
    window pushes back on the app)."""

    __slots__ = ("exchange", "send", "written", "loop")

    def __init__(self, handler, exchange, send) -> None:
        self.handler = handler
        self.exchange = exchange
        self.conn = exchange.conn
        self.request = exchange.request
        self.send = send
        self.loop = self.conn.loop
        self.body = None
        self.status = None
        self.headers = None
        self.committed = False
        self.result = None
        self.since = 0.0
        self.written = None  # write() data held until the app returns (inline)

    def write(self, data) -> None:
        """The ``write()`` callable start_response returns."""
        if self.status is None:
            raise RuntimeError("WSGI: write() called before start_response")
        if type(data) is not bytes:
            data = _check_bytes(data)
        if self.exchange.gone:
            raise ClientDisconnected("client disconnected")
        if not data:
            return
        self.committed = True
        if self.handler.pool is None:
            if self.written is None:
                self.written = []
            self.written.append(data)
        else:
            asyncio.run_coroutine_threadsafe(self._send(data, True), self.loop).result()

    async def _send(self, data: bytes, more: bool) -> None:
        """A piece of the body: the head first, once, and what write() held."""
        send = self.send
        if self.exchange.status is None:
            if self.status is None:
                raise RuntimeError("WSGI: the app returned without calling start_response")
            self.committed = True
            await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        written = self.written
        if written is not None:
            self.written = None
            data = b"".join(written) + data
        await send({"type": "http.response.body", "body": data, "more_body": more})

    async def run_inline(self) -> None:
        """``--threads 1``: the app on the loop's thread, with the loop hidden
        from it; its iterable stepped here, each piece sent as the stream's
        window allows (other streams and connections are served meanwhile)."""
        loop = self.loop
        try:
            _set_running_loop(None)
            try:
                result = self.result = self.handler.app(self.environ(), self.start_response)
                kind = type(result)
                whole = (kind is list or kind is tuple) and not self.committed
                iterator = None if whole else iter(result)
            finally:
                _set_running_loop(loop)
            if whole:
                self.result = None
                body = result[0] if len(result) == 1 else b"".join(result)
                await self._send(body if type(body) is bytes else _check_bytes(body), False)
                return
            while True:
                _set_running_loop(None)
                try:
                    chunk = next(iterator, _END)
                finally:
                    _set_running_loop(loop)
                if chunk is _END:
                    break
                if type(chunk) is not bytes:
                    chunk = _check_bytes(chunk)
                if chunk:
                    if self.status is None:
                        raise RuntimeError("WSGI: the app yielded a body before calling start_response")
                    await self._send(chunk, True)
            self._close_result()  # before the end goes out, as over HTTP/1.1
            await self._send(b"", False)
        finally:
            self._close_result()

    async def run_in_pool(self) -> None:
        """``--threads N``: the app in the worker's pool, counted by the
        stuck-thread check from when a thread takes it."""
        done = self.loop.create_future()
        self.since = self.loop.time()  # queued for a thread (the overload check reads it)
        self.handler.pool.submit(partial(self._run_in_thread, done))
        body = await done
        if body is not None:  # a list or tuple: sent from here, head and body at once
            await self._send(body, False)

    def _run_in_thread(self, done) -> None:
        loop = self.loop
        handler = self.handler
        outcome = None
        if self.exchange.gone:  # the client reset the stream while it waited for a thread
            loop.call_soon_threadsafe(_settle, done, None)
            return
        app = _waited_too_long(handler.state.overload, self.since, loop) or handler.app
        self.since = loop.time()
        handler.running.add(self)
        try:
            result = self.result = app(self.environ(), self.start_response)
            kind = type(result)
            if (kind is list or kind is tuple) and not self.committed:
                self.result = None
                body = result[0] if len(result) == 1 else b"".join(result)
                outcome = body if type(body) is bytes else _check_bytes(body)
                if self.status is None:
                    raise RuntimeError("WSGI: the app returned without calling start_response")
            else:
                for chunk in result:
                    if type(chunk) is not bytes:
                        chunk = _check_bytes(chunk)
                    if chunk:
                        if self.status is None:
                            raise RuntimeError("WSGI: the app yielded a body before calling start_response")
                        asyncio.run_coroutine_threadsafe(self._send(chunk, True), loop).result()
                self._close_result()  # before the end goes out, as over HTTP/1.1
                asyncio.run_coroutine_threadsafe(self._send(b"", False), loop).result()
        except BaseException as exc:  # raised on the loop: HTTPCycle answers 500 or cuts the response
            outcome = exc
        finally:
            self._close_result()
            handler.running.discard(self)
        loop.call_soon_threadsafe(_settle, done, outcome)


def _busy(environ, start_response):
    """What a pool thread runs instead of the app for a request that waited
    for a thread past --limit-queue-delay while the worker is overloaded."""
    start_response("503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8"), ("Retry-After", RETRY_AFTER.decode())])
    return [BUSY]


def _waited_too_long(overload, queued_at: float, loop):
    """In a pool thread: ``_busy`` if the overload control sheds this request
    (io/overload.py: it waited for a thread past the target), else None."""
    if overload is not None and overload.watching and overload.late_for_thread(queued_at):
        loop.call_soon_threadsafe(overload.shed_by_thread)
        return _busy
    return None


def _settle(future, outcome) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
