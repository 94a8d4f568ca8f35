"""``--static-path-mount``: files served by the connection, before the app.

``StaticMount`` wraps the worker's request handlers only when a mount is
configured (``worker/process.py``: no mount, no wrapper, nothing on the
request path). A request whose raw path is under a mount's prefix gets a
``StaticCycle`` instead of the app's: no app call, and no Task unless the
socket is full (the coroutine is stepped like an app's). The decisions are
``proto/static.py``'s (path segments, conditionals, ranges, headers); here
the files are opened and the response goes out through the connection's
exchange verbs (``send_head``, ``send_file``, ``send_body``, ``answer``,
``cut``, ``cycle_done``), the same over HTTP/1.1, HTTP/2, TLS and PROXY.

Containment: the segments are joined under the mount's directory, the
result is resolved (``os.path.realpath``) and must still be inside the
directory's own real path, so a symlink out of it is refused; the file is
opened ``O_NOFOLLOW | O_NONBLOCK`` (a FIFO does not block the worker) and
must be a regular file (``fstat``). Anything refused is a 404; only GET and
HEAD are served (405 with ``Allow``). The file stays open while it is sent:
a file replaced meanwhile is sent whole as it was; one truncated meanwhile
cuts the response (HTTP/1.1: the connection closes before the promised
Content-Length; HTTP/2: RST_STREAM), logged on one line.

Every answer is access-logged and counted in ``--metrics-bind`` like an
app's response; it is not a request of the app for ``--limit-max-requests``.
"""

from __future__ import annotations

import logging
import os
import stat
from time import perf_counter

from ..proto import static as proto
from ..proto.h1 import plan_response
from .contract import ServerAnswer
from .transport import peer_name

log = logging.getLogger("corral.error")

_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_ALLOW = ((b"allow", b"GET, HEAD"), _TEXT)
_VARY = (b"vary", b"Accept-Encoding")


class Mount:
    __slots__ = ("prefix", "exact", "root", "real")

    def __init__(self, prefix: str, directory: str) -> None:
        self.prefix = prefix.encode("ascii") + b"/"
        self.exact = prefix.encode("ascii")
        self.root = directory
        self.real = os.path.realpath(directory)

    def resolve(self, rest: bytes) -> str | None:
        """The real path of the file the request names, if it is inside the mount."""
        parts = proto.segments(rest)
        if parts is None:
            return None
        try:
            real = os.path.realpath(os.path.join(self.real, *parts))
        except (OSError, ValueError):
            return None
        return real if real.startswith(self.real + os.sep) else None


def check_mounts(specs) -> list[Mount]:
    """The mounts of --static-path-mount; a directory that is not one is an
    error at startup (config.py reports it: ``corral: error: ...``)."""
    mounts = []
    for spec in specs:
        prefix, directory = proto.parse_mount(spec)
        if not os.path.isdir(directory):
            raise proto.MountError(f"{directory!r} is not a directory")
        mounts.append(Mount(prefix, directory))
    mounts.sort(key=lambda mount: len(mount.prefix), reverse=True)  # the longest prefix wins
    return mounts


class StaticMount:
    """The handler wrapper: a request under a mount gets a StaticCycle."""

    __slots__ = ("mounts", "handler", "state", "max_age")

    def __init__(self, mounts: list[Mount], handler, state) -> None:
        self.mounts = mounts
        self.handler = handler
        self.state = state
        self.max_age = proto.cache_control(state.config.static_max_age)

    def __call__(self, conn, request):
        raw = request.raw_path
        for mount in self.mounts:
            if raw.startswith(mount.prefix) or raw == mount.exact:
                return StaticCycle(self, mount, conn, request)
        return self.handler(conn, request)


def _field(headers, name: bytes):
    for key, value in headers:
        if key == name:
            return value
    return None


class StaticCycle(ServerAnswer):
    """The cycle interface the connections drive (start, request, head,
    status, the notifications), for a file or a short answer."""

    __slots__ = ("static", "mount", "conn", "request", "head", "status", "headers", "started", "finished",
                 "gone", "trailers", "bytes_sent", "fd")

    def __init__(self, static: StaticMount, mount: Mount, conn, request) -> None:
        self.static = static
        self.mount = mount
        self.conn = conn
        self.request = request
        self.head = None
        self.status = 0
        self.headers = ()
        self.started = perf_counter()
        self.finished = False
        self.gone = False
        self.trailers = False  # what the exchange verbs read of a cycle
        self.bytes_sent = 0
        self.fd = -1

    # -- notifications from the connection --------------------------------------------

    def disconnected(self) -> None:
        self.gone = True


    # -- the answer -------------------------------------------------------------------

    def start(self) -> None:
        self.conn.state.requests -= 1  # not a request of the app: the connection counts it back
        if self.gone or self.finished:  # HTTP/2: reset, or answered by the server meanwhile
            self.finished = True
            self.conn.cycle_done(self, False)
            return
        try:
            plan = self._decide()
        except OSError:
            plan = None
        if plan is None:
            return  # answered at once
        self.conn.state.stepper.run(self._send(*plan), self)

    def _answer(self, status: int, headers=(_TEXT,), body: bytes = b"") -> None:
        self.status = status
        if self.request.method != "HEAD":
            self.bytes_sent = len(body)
        self.conn.answer(self, status, headers, body)  # cycle_done too
        self.finished = True
        self._log()

    def _decide(self):
        """Answer at once (404, 405, 304, 416), or return what to send."""
        request = self.request
        method = request.method
        if method != "GET" and method != "HEAD":
            self._answer(405, _ALLOW, b"Method Not Allowed\n")
            return None
        mount = self.mount
        real = mount.resolve(request.raw_path[len(mount.prefix):])
        fd = -1 if real is None else self._open(real)
        if fd < 0:
            self._answer(404, (_TEXT,), b"Not Found\n")
            return None
        headers = request.headers
        info = os.fstat(fd)
        encoding = None
        vary = False
        for name, suffix in proto.ENCODINGS:  # a precompressed sibling: is there one, does the client take it?
            sibling = real + suffix
            other = self._open(sibling) if os.path.realpath(sibling).startswith(mount.real + os.sep) else -1
            if other < 0:
                continue
            vary = True
            if encoding is None and name in proto.accepted_encodings(_field(headers, b"accept-encoding")):
                os.close(fd)
                fd, info, encoding = other, os.fstat(other), name
            else:
                os.close(other)
        self.fd = fd
        size = info.st_size
        mtime = info.st_mtime
        tag = proto.etag(size, info.st_mtime_ns, encoding)
        fields = [
            (b"content-type", proto.content_type(real)),
            (b"etag", tag),
            (b"last-modified", proto.http_date(mtime)),
            (b"cache-control", self.static.max_age),
            (b"accept-ranges", b"bytes"),
        ]
        if encoding is not None:
            fields.append((b"content-encoding", encoding.encode()))
        if vary:
            fields.append(_VARY)
        if proto.fresh(_field(headers, b"if-none-match"), _field(headers, b"if-modified-since"), tag, mtime):
            self._close()
            self._answer(304, [field for field in fields if field[0] != b"content-type"])
            return None
        chosen = proto.byte_range(_field(headers, b"range"), _field(headers, b"if-range"), size, tag, mtime)
        if chosen is proto.UNSATISFIABLE:
            self._close()
            self._answer(416, ((b"content-range", b"bytes */%d" % size), _TEXT), b"Range Not Satisfiable\n")
            return None
        if chosen is None:
            return 200, fields, 0, size
        start, length = chosen
        fields.append((b"content-range", b"bytes %d-%d/%d" % (start, start + length - 1, size)))
        return 206, fields, start, length

    @staticmethod
    def _open(path: str) -> int:
        """An open regular file, or -1 (missing, a directory, a FIFO, a device, a symlink)."""
        try:
            fd = os.open(path, _OPEN)
        except (OSError, ValueError):
            return -1
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                return fd
        except OSError:
            pass
        os.close(fd)
        return -1

    async def _send(self, status: int, fields: list, offset: int, length: int) -> None:
        conn = self.conn
        request = self.request
        fields.append((b"content-length", b"%d" % length))
        self.status = status
        self.headers = fields
        keep_alive = request.keep_alive and request.complete and not conn.state.draining
        version = request.http_version
        plan = plan_response(status, fields, request.method == "HEAD", version == "1.1" or version == "2",
                             keep_alive, False)
        self.head = plan
        conn.send_head(self, plan, b"", True)
        if plan.body_allowed and length:
            sent = self.bytes_sent = await conn.send_file(self, self.fd, offset, length)
            if sent < length:
                log.warning("%s: static file %s shrank while being sent (%d of %d bytes): the response is cut",
                            peer_name(conn.client), request.path, sent, length)
                self._cut()
                return
        conn.send_body(self, b"", False)
        self.finished = True
        self._close()
        conn.cycle_done(self, plan.keep_alive)
        self._log()

    def app_returned(self) -> None:
        pass  # _send ended the response itself

    def app_raised(self, exc: BaseException) -> None:
        if not self.gone:
            log.error("static file %s: %s", self.request.path, exc, exc_info=not isinstance(exc, OSError))
        self._cut()

    def _cut(self) -> None:
        self._close()
        self.finished = True
        if not self.gone:
            self.conn.cut(self)
        self.conn.cycle_done(self, False)
        self._log()

    def _close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _log(self) -> None:
        access = self.conn.state.access
        if access is not None and self.status:
            request = self.request
            client = request.forwarded.client if request.forwarded else self.conn.client
            access.record(request, client, self.status, self.bytes_sent, self.started)
