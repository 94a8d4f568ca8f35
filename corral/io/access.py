"""The access log: one line per request, formatted cheaply, written in batches.

Every request handler (the ASGI cycle, the WSGI cycle, the WebSocket
handshake) calls one entry point, ``AccessLog.record(request, client,
status, sent, started)``. ``record`` formats the line (an f-string, no
``logging`` records) and appends it to a buffer; the first line of a batch
schedules one ``flush`` with ``loop.call_soon``, so all the requests answered
in one pass of the event loop cost one ``write`` system call. The default
format, which every request pays for unless the log is off, is formatted
inside ``record`` (``_record_default``): its time is read once per batch,
the milliseconds and pid come from a table, the client's ``host:port`` from
a cache, the status from a table; the handlers read no clock for it
(``AccessLog.timed`` is False: only formats with the request time need one).

No line is lost:

* at exit the worker calls ``close()`` (flush);
* on SIGUSR1 ``reopen()`` flushes to the old file, then reopens;
* when the loop blocks (an app that never yields), a watchdog thread writes
  the lines left in the buffer once they have waited ``STALE_SECONDS``, so
  they are out before the master's stack dump and kill (which come
  ``--timeout-worker`` seconds after the last heartbeat).

Formats (``--access-log-format``): ``default`` (corral's own line), ``common``
and ``combined`` (Apache/nginx; combined adds the referrer, the user agent and
the request time in seconds), ``json`` (one object per line) or a template
with gunicorn's atoms, e.g. ``'%(h)s "%(r)s" %(s)s %(D)s'``.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from json.encoder import encode_basestring_ascii as _json_str

from .. import logs as _logs

STALE_SECONDS = 0.2  # the watchdog writes lines older than this when the loop is stuck
MAX_BATCH = 1024  # lines; a longer batch is written at once

FORMATS = ("default", "common", "combined", "json")
_STATUS = [str(code) for code in range(1000)]
_time = time.time
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# gunicorn's atoms (https://docs.gunicorn.org/en/stable/settings.html#access-log-format)
ATOMS = {
    "h": "remote address",
    "l": "'-'",
    "u": "user name ('-')",
    "t": "date of the request, [10/Oct/2000:13:55:36 +0000]",
    "r": "request line",
    "m": "method",
    "U": "URL path without the query string",
    "q": "query string",
    "H": "protocol",
    "s": "status",
    "B": "response body bytes",
    "b": "response body bytes, '-' for none",
    "f": "referrer",
    "a": "user agent",
    "T": "request time, whole seconds",
    "M": "request time, milliseconds",
    "D": "request time, microseconds",
    "L": "request time, decimal seconds",
    "p": "process id",
}
_ATOM = re.compile(r"%\(([^)]*)\)")
_HEADER_ATOM = re.compile(r"\{([^}]+)\}i")


def check_format(value: str) -> str:
    """Validate ``--access-log-format`` (raises ValueError); returns it."""
    if value in FORMATS:
        return value
    names = _ATOM.findall(value)
    if not names:
        raise ValueError(f"expected one of {', '.join(FORMATS)} or a template with %(atom)s atoms")
    for name in names:
        if name not in ATOMS and not _HEADER_ATOM.fullmatch(name):
            raise ValueError(f"unknown access log atom %({name})s")
    try:
        value % {name: "" for name in names}
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"bad access log template: {exc}") from None
    return value


def _escape(value: bytes) -> str:
    """A header value inside double quotes (Apache/nginx escaping)."""
    text = value.decode("latin-1")
    if '"' in text or "\\" in text or not text.isprintable():
        text = "".join(c if " " <= c <= "~" and c not in '"\\' else f"\\x{ord(c):02x}" for c in text)
    return text


def _header(headers, name: bytes):
    for key, value in headers:
        if key == name:
            return value
    return None


class AccessLog:
    """Batched access log of one worker; see the module docstring."""

    def __init__(self, loop, fmt: str = "default", path: str | None = None, log_format: str = "text") -> None:
        self.loop = loop
        # --log-config gave the corral.access logger handlers of its own: the
        # lines go through logging (``_record_logging``), not the batched file.
        self.logger = None
        if _logs.access_routed:
            import logging

            self.logger = logging.getLogger("corral.access")
            path = None
        self.path = path
        self.fd = self._open()
        self.pid = os.getpid()
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._scheduled_at = 0.0  # when the pending flush was scheduled (monotonic)
        self._second = -1
        self._stamp = ""
        self._prefix = ""  # the default line's time and pid, for the current batch
        # ",123 [pid] " for each millisecond: the default line's middle, by table
        self._ms_pid = [f",{ms:03d} [{self.pid}] " for ms in range(1000)]
        self._peers: dict = {}  # client (host, port) -> "host:port", for the default line
        self._watchdog: threading.Thread | None = None
        self._stop = threading.Event()
        if fmt == "default" and log_format == "json" and self.logger is None:
            fmt = "envelope"  # --log-format json: the envelope of every other log line
        self.format = fmt
        if self.logger is not None:
            self.record = self._record_logging
            self._format_line = self._message if fmt == "default" else (getattr(self, "_" + fmt) if fmt in FORMATS else self._custom)
            if fmt not in FORMATS:
                self._template = fmt
                self._atoms = _ATOM.findall(fmt)
            self.timed = fmt in ("combined", "json") or (
                fmt not in FORMATS and any(atom in ("T", "M", "D", "L") for atom in self._atoms))
        elif fmt == "default":  # formatted inside record: one call less per request
            self.record = self._record_default
            self.timed = False
        elif fmt in FORMATS or fmt == "envelope":
            self._format_line = getattr(self, "_" + fmt)
            # Whether lines need the request time: the handlers read the clock for it.
            self.timed = fmt in ("combined", "json")
        else:
            self._template = fmt
            self._atoms = _ATOM.findall(fmt)
            self._format_line = self._custom
            self.timed = any(atom in ("T", "M", "D", "L") for atom in self._atoms)

    # -- the entry point ----------------------------------------------------

    def record(self, request, client, status: int, sent: int, started: float) -> None:
        """Log one answered request. ``client`` is (host, port) or None,
        ``sent`` the response body bytes, ``started`` ``time.perf_counter()``
        when the request head was complete."""
        lines = self._lines
        if not lines:
            self._schedule_flush()
        lines.append(self._format_line(request, client, status, sent, started))
        if len(lines) >= MAX_BATCH:
            self.flush()

    def _record_logging(self, request, client, status: int, sent: int, started: float) -> None:
        """``record`` when --log-config routes corral.access elsewhere: one
        ``logging`` call per request, the message being the line in
        --access-log-format (the default's without its time and pid, which the
        config's formatter adds), with uvicorn's record attributes
        ``client_addr``, ``request_line`` and ``status_code`` for its format."""
        line = self._format_line(request, client, status, sent, started)
        self.logger.info(line[:-1] if line.endswith("\n") else line, extra={
            "client_addr": f"{client[0]}:{client[1]}" if client else "-",
            "request_line": f"{request.method} {request.target.decode('latin-1')} HTTP/{request.http_version}",
            "status_code": status,
        })

    def _message(self, request, client, status, sent, started) -> str:
        """The default line without its time and pid (the logging formatter's)."""
        peer = f"{client[0]}:{client[1]}" if client else "-"
        return f'{peer} - "{request.method} {request.target.decode("latin-1")} HTTP/{request.http_version}" {status}'

    def _schedule_flush(self) -> None:
        """The first line of a batch: one flush at the end of this loop pass."""
        self._scheduled_at = time.monotonic()
        self.loop.call_soon(self.flush)

    # -- writing ------------------------------------------------------------

    def flush(self) -> None:
        lines = self._lines
        if not lines:
            return
        with self._lock:
            # Same list object: a line appended meanwhile stays for the next flush.
            count = len(lines)
            data = "".join(lines[:count]).encode("utf-8", "backslashreplace")
            del lines[:count]
            self._write(data)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except InterruptedError:
                continue
            except BlockingIOError:
                time.sleep(0.001)
                continue
            except OSError as exc:
                print(f"corral: access log write failed: {exc}", file=sys.stderr)
                return
            view = view[written:]

    def _open(self) -> int:
        if self.path:
            return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        return sys.stderr.fileno()

    def reopen(self) -> None:
        """SIGUSR1: lines so far go to the old file, the next ones to the new one."""
        self.flush()
        if self.path:
            with self._lock:
                old, self.fd = self.fd, self._open()
                os.close(old)

    def start_watchdog(self) -> None:
        if self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, name="corral-access-log", daemon=True)
            self._watchdog.start()

    def _watch(self) -> None:
        while not self._stop.wait(STALE_SECONDS):
            if self._lines and time.monotonic() - self._scheduled_at >= STALE_SECONDS:
                self.flush()

    def close(self) -> None:
        self._stop.set()
        self.flush()
        if self.path:
            os.close(self.fd)
            self.path = None
            self.fd = sys.stderr.fileno()

    # -- formats ------------------------------------------------------------

    def _clock(self) -> float:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._set_stamps(second)
        return now

    def _set_stamps(self, second: int) -> None:
        fmt = self.format
        if fmt == "default":
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        elif fmt == "envelope":
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        elif fmt == "json":
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(second))
            self._stamp = self._stamp[:-2] + ":" + self._stamp[-2:]
        else:
            t = time.localtime(second)
            self._stamp = "%02d/%s/%d:%02d:%02d:%02d %s" % (
                t.tm_mday, _MONTHS[t.tm_mon - 1], t.tm_year, t.tm_hour, t.tm_min, t.tm_sec,
                time.strftime("%z", t),
            )

    def _record_default(self, request, client, status, sent, started) -> None:
        """``record`` for the default format, which every request pays for by
        default. The time is read once per batch, for its first line (as nginx
        caches its clock once per event-loop pass): the lines of one loop pass
        share it. The rest of the line comes by table or cache where
        formatting costs (bench/hotpath.py --stage access)."""
        lines = self._lines
        if not lines:
            self._start_batch()
        try:
            peer = self._peers.get(client)
        except TypeError:  # the app made the scope's client a list
            peer = None
        if peer is None:
            peer = self._peer(client)
        try:
            code = _STATUS[status]
        except (IndexError, TypeError):
            code = str(status)
        lines.append(
            f'{self._prefix}{peer} - '
            f'"{request.method} {request.target.decode("latin-1")} HTTP/{request.http_version}" {code}\n'
        )
        if len(lines) >= MAX_BATCH:
            self.flush()

    def _start_batch(self) -> None:
        """The first default line of a batch: the time for its lines, and the flush."""
        now = _time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._set_stamps(second)
        self._prefix = self._stamp + self._ms_pid[min(int((now - second) * 1000), 999)]
        self._schedule_flush()

    def _peer(self, client) -> str:
        if client is None:
            return "-"
        peer = f"{client[0]}:{client[1]}"
        peers = self._peers
        if len(peers) >= 4096:  # clients that keep their connections, not every one seen
            peers.clear()
        try:
            peers[client] = peer
        except TypeError:
            pass
        return peer

    def _envelope(self, request, client, status, sent, started) -> str:
        now = self._clock()
        peer = f"{client[0]}:{client[1]}" if client else "-"
        message = _json_str(
            f'{peer} - "{request.method} {request.target.decode("latin-1")} HTTP/{request.http_version}" {status}'
        )
        return (
            f'{{"time": "{self._stamp}.{int(now * 1000) % 1000:03d}Z", "level": "info", "pid": {self.pid}, '
            f'"event": "http.access", "message": {message}}}\n'
        )

    def _common(self, request, client, status, sent, started) -> str:
        self._clock()
        return (
            f'{client[0] if client else "-"} - - [{self._stamp}] '
            f'"{request.method} {request.target.decode("latin-1")} HTTP/{request.http_version}" '
            f'{status} {sent if sent else "-"}\n'
        )

    def _combined(self, request, client, status, sent, started) -> str:
        self._clock()
        referer = agent = "-"
        for name, value in request.headers:
            if name == b"referer":
                referer = _escape(value)
            elif name == b"user-agent":
                agent = _escape(value)
        return (
            f'{client[0] if client else "-"} - - [{self._stamp}] '
            f'"{request.method} {request.target.decode("latin-1")} HTTP/{request.http_version}" '
            f'{status} {sent if sent else "-"} "{referer}" "{agent}" {time.perf_counter() - started:.6f}\n'
        )

    def _json(self, request, client, status, sent, started) -> str:
        self._clock()
        referer = agent = '""'
        for name, value in request.headers:
            if name == b"referer":
                referer = _json_str(value.decode("latin-1"))
            elif name == b"user-agent":
                agent = _json_str(value.decode("latin-1"))
        return (
            f'{{"time": "{self._stamp}", "remote_addr": {_json_str(client[0]) if client else "null"}, '
            f'"remote_port": {client[1] if client else "null"}, '
            f'"request_method": "{request.method}", "request_uri": {_json_str(request.target.decode("latin-1"))}, '
            f'"server_protocol": "HTTP/{request.http_version}", "status": {status}, "body_bytes_sent": {sent}, '
            f'"request_time": {time.perf_counter() - started:.6f}, "http_referer": {referer}, '
            f'"http_user_agent": {agent}, "pid": {self.pid}}}\n'
        )

    def _custom(self, request, client, status, sent, started) -> str:
        self._clock()
        values = {}
        for atom in self._atoms:
            values[atom] = self._atom(atom, request, client, status, sent, started)
        return self._template % values + "\n"

    def _atom(self, atom, request, client, status, sent, started):
        if atom == "h":
            return client[0] if client else "-"
        if atom in ("l", "u"):
            return "-"
        if atom == "t":
            return f"[{self._stamp}]"
        if atom == "r":
            return f"{request.method} {request.target.decode('latin-1')} HTTP/{request.http_version}"
        if atom == "m":
            return request.method
        if atom == "U":
            return request.raw_path.decode("latin-1")
        if atom == "q":
            return request.query_string.decode("latin-1")
        if atom == "H":
            return f"HTTP/{request.http_version}"
        if atom == "s":
            return status
        if atom == "B":
            return sent
        if atom == "b":
            return sent if sent else "-"
        if atom == "f":
            value = _header(request.headers, b"referer")
            return "-" if value is None else _escape(value)
        if atom == "a":
            value = _header(request.headers, b"user-agent")
            return "-" if value is None else _escape(value)
        if atom == "p":
            return self.pid
        elapsed = time.perf_counter() - started
        if atom == "T":
            return int(elapsed)
        if atom == "M":
            return int(elapsed * 1000)
        if atom == "D":
            return int(elapsed * 1_000_000)
        if atom == "L":
            return f"{elapsed:.6f}"
        value = _header(request.headers, _HEADER_ATOM.fullmatch(atom).group(1).lower().encode("latin-1"))
        return "-" if value is None else _escape(value)
