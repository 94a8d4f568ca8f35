"""--metrics-bind: the master adds up its workers' counts and serves /metrics.

Data enters from the workers: once a second each sends ``m JSON``, its
totals since it started (``io/metrics.py``), over the pipe it already has; a
worker that stops gracefully sends them once more on its way out. The master
keeps the last totals of each live worker and, when a worker exits, adds
them to ``dead``. A total is ``dead`` plus every live worker's last report,
so no counter goes backwards when a worker is killed, recycled or reloaded
(a worker killed with SIGKILL loses what it counted since its last report,
at most a second's worth). No files, no shared memory, nothing that grows
with worker churn.

The master measures the rest itself, at scrape time: worker RSS
(``/proc/PID/statm``), worker state, the accept queue of each TCP listening
socket (``TCP_INFO`` on a listening socket gives the queue's length and its
limit; the peak is sampled whenever a worker reports, about once a second).

Data leaves through ``MetricsEndpoint``: a small non-blocking HTTP/1.1 server
on the master's own select loop (``Master.readers``/``writers``) that answers
``GET /metrics`` in the Prometheus text format (0.0.4) and closes. A scrape
never blocks the master: a slow client is given 10 s, at most 32 at once.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import struct
import time
from collections import Counter
from functools import partial

from .. import __version__
from ..io.metrics import BUCKETS, CLOSE_REASONS

log = logging.getLogger("corral.error")

# recycle: --limit-max-requests; max_rss: --workers-max-rss; lifetime: --workers-lifetime
EXIT_CAUSES = ("crash", "timeout", "recycle", "max_rss", "lifetime", "reload", "scale_down", "shutdown", "boot_failure")
STATES = ("booting", "serving", "draining", "stuck")
SUMMED = ("accepted", "rejected", "shed", "ws", "ws_in", "ws_out", "latency_sum", "qdelay_sum")
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
TCP_INFO = getattr(socket, "TCP_INFO", 11)


def _empty() -> dict:
    return {
        "requests": {},
        "buckets": [0] * (len(BUCKETS) + 1),
        "qdelay": [0] * (len(BUCKETS) + 1),
        "closed": dict.fromkeys(CLOSE_REASONS, 0),
        **dict.fromkeys(SUMMED, 0),
    }


def _add(into: dict, data: dict) -> None:
    for key in SUMMED:
        into[key] += data.get(key, 0)
    for key, count in data.get("requests", {}).items():
        into["requests"][key] = into["requests"].get(key, 0) + count
    for key, count in data.get("closed", {}).items():
        into["closed"][key] = into["closed"].get(key, 0) + count
    for name in ("buckets", "qdelay"):
        buckets = into[name]
        for i, count in enumerate(data.get(name, ())[: len(buckets)]):
            buckets[i] += count


def accept_queue(sock: socket.socket) -> tuple[int, int] | None:
    """(connections waiting to be accepted, the queue's limit) of a TCP
    listening socket, from TCP_INFO (tcpi_unacked / tcpi_sacked hold them
    for a socket in LISTEN); None for other sockets."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, 104)
    except OSError:
        return None
    if len(info) < 32:
        return None
    return struct.unpack_from("=II", info, 24)


def rss(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return None


def _loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _build() -> str:
    from ..proto import h1

    return "compiled" if not h1.__file__.endswith(".py") else "pure"


def _labels(**labels) -> str:
    def escape(value) -> str:
        return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


def _num(value) -> str:
    if isinstance(value, float):
        return repr(round(value, 9))
    return str(value)


class MasterMetrics:
    """Counts the master keeps, and the /metrics text."""

    def __init__(self) -> None:
        self.dead = _empty()  # totals of workers that exited
        self.starts = 0
        self.exits: Counter = Counter()
        self.reloads = 0
        self.reloads_failed = 0
        self.queue_peak: dict[str, int] = {}
        self.build = {"version": __version__, "python": platform.python_version(), "loop": _loop_name(), "build": _build()}

    # -- events from the master ------------------------------------------

    def worker_report(self, worker, text: str, sockets) -> None:
        try:
            data = json.loads(text)
        except ValueError:
            return
        if isinstance(data, dict):
            worker.metrics = data
        self.sample_queues(sockets)

    def worker_exited(self, worker, cause: str) -> None:
        self.exits[cause] += 1
        if worker.metrics:
            _add(self.dead, worker.metrics)
            worker.metrics = None

    def sample_queues(self, sockets) -> list[tuple[str, int, int]]:
        queues = []
        for name, sock in self._listeners(sockets):
            measured = accept_queue(sock)
            if measured is None:
                continue
            depth, limit = measured
            if depth > self.queue_peak.get(name, -1):
                self.queue_peak[name] = depth
            queues.append((name, depth, limit))
        return queues

    @staticmethod
    def _listeners(sockets):
        seen: Counter = Counter()
        for sock in sockets.all():
            try:
                address = sock.getsockname()
            except OSError:
                continue
            if isinstance(address, tuple):
                name = f"[{address[0]}]:{address[1]}" if ":" in address[0] else f"{address[0]}:{address[1]}"
            else:
                name = address if isinstance(address, str) else repr(address)
            seen[name] += 1
            yield (name if seen[name] == 1 else f"{name}#{seen[name]}"), sock

    # -- exposition ---------------------------------------------------------

    def render(self, master) -> str:
        workers = list(master.workers.values())
        totals = _empty()
        _add(totals, self.dead)
        for worker in workers:
            if worker.metrics:
                _add(totals, worker.metrics)
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        def sample(name: str, value, **labels) -> None:
            out.append(f"{name}{_labels(**labels) if labels else ''} {_num(value)}")

        family("corral_build_info", "gauge", "corral's version, Python, event loop, and whether corral is compiled.")
        sample("corral_build_info", 1, **self.build)
        family("corral_master_pid", "gauge", "Process id of the master (signals go here).")
        sample("corral_master_pid", os.getpid())
        family("corral_workers_target", "gauge", "Worker slots the master keeps filled (--workers, TTIN, TTOU).")
        sample("corral_workers_target", master.target)

        family("corral_requests_total", "counter", "Requests answered, by method and status class.")
        for key in sorted(totals["requests"]):
            method, _, status = key.partition(" ")
            sample("corral_requests_total", totals["requests"][key], method=method, status=status)
        family("corral_request_duration_seconds", "histogram", "Time from a request's head to its response's end.")
        self._histogram(sample, "corral_request_duration_seconds", totals["buckets"], totals["latency_sum"])
        family("corral_requests_in_flight", "gauge", "Requests being handled now.")
        sample("corral_requests_in_flight", sum(w.in_flight for w in workers))
        family("corral_connections_open", "gauge", "Open client connections (HTTP and WebSocket).")
        sample("corral_connections_open", sum(w.connections for w in workers))
        family("corral_connections_accepted_total", "counter", "Connections accepted.")
        sample("corral_connections_accepted_total", totals["accepted"])
        family("corral_connections_closed_total", "counter", "HTTP connections closed, by reason (upgraded: handed to WebSocket).")
        for reason in CLOSE_REASONS:
            sample("corral_connections_closed_total", totals["closed"].get(reason, 0), reason=reason)
        family("corral_concurrency_rejected_total", "counter", "Requests answered 503 by --limit-concurrency.")
        sample("corral_concurrency_rejected_total", totals["rejected"])
        family("corral_requests_shed_total", "counter",
               "Requests answered 503 without the app, by reason: concurrency_limit (--limit-concurrency), "
               "queue_delay (overload control, --limit-queue-delay).")
        sample("corral_requests_shed_total", totals["rejected"], reason="concurrency_limit")
        sample("corral_requests_shed_total", totals["shed"], reason="queue_delay")
        family("corral_queue_delay_seconds", "histogram",
               "How long requests waited before corral read them, measured while the overload control watched.")
        self._histogram(sample, "corral_queue_delay_seconds", totals["qdelay"], totals["qdelay_sum"])
        family("corral_websocket_connections_total", "counter", "WebSocket connections accepted (upgraded).")
        sample("corral_websocket_connections_total", totals["ws"])
        family("corral_websocket_connections_open", "gauge", "Open WebSocket connections.")
        sample("corral_websocket_connections_open", sum((w.metrics or {}).get("ws_open", 0) for w in workers))
        family("corral_websocket_messages_total", "counter", "WebSocket messages, by direction.")
        sample("corral_websocket_messages_total", totals["ws_in"], direction="in")
        sample("corral_websocket_messages_total", totals["ws_out"], direction="out")

        queues = self.sample_queues(master.sockets)
        family("corral_accept_queue_length", "gauge", "Connections waiting in the kernel's accept queue (TCP listening sockets).")
        for name, depth, _ in queues:
            sample("corral_accept_queue_length", depth, listener=name)
        family("corral_accept_queue_peak", "gauge", "Largest accept queue length seen (sampled about once a second and at each scrape).")
        for name, _, _ in queues:
            sample("corral_accept_queue_peak", self.queue_peak.get(name, 0), listener=name)
        family("corral_accept_queue_limit", "gauge", "The accept queue's limit (the listen backlog).")
        for name, _, limit in queues:
            sample("corral_accept_queue_limit", limit, listener=name)

        family("corral_worker_starts_total", "counter", "Worker processes started.")
        sample("corral_worker_starts_total", self.starts)
        family("corral_worker_exits_total", "counter", "Worker processes that exited, by cause.")
        for cause in EXIT_CAUSES:
            sample("corral_worker_exits_total", self.exits.get(cause, 0), cause=cause)
        family("corral_reloads_total", "counter", "Reloads started (HUP or --reload).")
        sample("corral_reloads_total", self.reloads)
        family("corral_reloads_failed_total", "counter", "Reloads whose new workers did not boot (the old ones kept serving).")
        sample("corral_reloads_failed_total", self.reloads_failed)

        self._per_worker(family, sample, workers)
        return "\n".join(out) + "\n"

    @staticmethod
    def _histogram(sample, name: str, buckets, total: float, **labels) -> None:
        running = 0
        for bound, count in zip(BUCKETS, buckets):
            running += count
            sample(name + "_bucket", running, **labels, le=repr(bound))
        running += buckets[-1]
        sample(name + "_bucket", running, **labels, le="+Inf")
        sample(name + "_sum", round(total, 6), **labels)
        sample(name + "_count", running, **labels)

    def _per_worker(self, family, sample, workers) -> None:
        now_wall, now = time.time(), time.monotonic()
        rows = sorted(workers, key=lambda w: (w.slot, w.started))
        family("corral_worker_state", "gauge", "1 for the state each live worker is in.")
        for w in rows:
            current = _state(w)
            for state in STATES:
                sample("corral_worker_state", int(state == current), pid=w.pid, slot=w.slot, state=state)
        family("corral_worker_start_time_seconds", "gauge", "When each live worker started (Unix time).")
        for w in rows:
            sample("corral_worker_start_time_seconds", round(now_wall - (now - w.started), 3), pid=w.pid, slot=w.slot)
        family("corral_worker_rss_bytes", "gauge", "Resident memory of each live worker.")
        for w in rows:
            resident = rss(w.pid)
            if resident is not None:
                sample("corral_worker_rss_bytes", resident, pid=w.pid, slot=w.slot)
        family("corral_worker_loop_lag_seconds", "gauge", "How late each worker's once-a-second tick ran (worst in the last second).")
        for w in rows:
            if w.metrics:
                sample("corral_worker_loop_lag_seconds", w.metrics.get("lag", 0.0), pid=w.pid, slot=w.slot)
        family("corral_worker_requests_total", "counter", "Requests answered by each live worker.")
        for w in rows:
            sample("corral_worker_requests_total", w.requests, pid=w.pid, slot=w.slot)
        family("corral_worker_requests_in_flight", "gauge", "Requests being handled by each live worker.")
        for w in rows:
            sample("corral_worker_requests_in_flight", w.in_flight, pid=w.pid, slot=w.slot)
        family("corral_worker_connections_open", "gauge", "Open connections of each live worker.")
        for w in rows:
            sample("corral_worker_connections_open", w.connections, pid=w.pid, slot=w.slot)
        family("corral_worker_request_duration_seconds", "histogram", "Request latency of each live worker.")
        for w in rows:
            if w.metrics and w.metrics.get("buckets"):
                self._histogram(sample, "corral_worker_request_duration_seconds", w.metrics["buckets"],
                                w.metrics.get("latency_sum", 0.0), pid=w.pid, slot=w.slot)


def _state(worker) -> str:
    if worker.state == "ready":
        return "serving"
    return worker.state if worker.state in STATES else "serving"


def bind(address: str) -> socket.socket:
    """The metrics listening socket for HOST:PORT (raises OSError)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            # USR2: the new master binds the same address while the old one
            # still serves it.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, int(port)))
        sock.listen(64)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


MAX_CLIENTS = 32
CLIENT_TIMEOUT = 10.0
MAX_HEAD = 8192


class MetricsEndpoint:
    """GET /metrics on the master's select loop, one response per connection."""

    def __init__(self, sock: socket.socket, render, readers: dict, writers: dict) -> None:
        self.sock = sock
        self.render = render
        self.readers = readers
        self.writers = writers
        self.clients: dict[int, tuple[socket.socket, float]] = {}
        self.buffers: dict[int, bytes] = {}
        readers[sock.fileno()] = self._accept

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"

    def _accept(self) -> None:
        now = time.monotonic()
        for fd, (_, since) in list(self.clients.items()):
            if now - since > CLIENT_TIMEOUT:
                self._close(fd)
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: try again on the next wakeup
                log.warning("master: metrics endpoint cannot accept: %s", exc)
                return
            if len(self.clients) >= MAX_CLIENTS:
                oldest = min(self.clients, key=lambda fd: self.clients[fd][1])
                self._close(oldest)
            conn.setblocking(False)
            fd = conn.fileno()
            self.clients[fd] = (conn, now)
            self.buffers[fd] = b""
            self.readers[fd] = partial(self._read, fd)

    def _read(self, fd: int) -> None:
        conn, _ = self.clients[fd]
        try:
            data = conn.recv(MAX_HEAD)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(fd)
            return
        buffer = self.buffers[fd] + data
        self.buffers[fd] = buffer
        if b"\r\n\r\n" not in buffer and b"\n\n" not in buffer:
            if len(buffer) > MAX_HEAD:
                self._respond(fd, 431, b"Request header too large\n")
            return
        parts = buffer.split(b"\r\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self._respond(fd, 400, b"Bad request\n")
        elif parts[0] not in (b"GET", b"HEAD"):
            self._respond(fd, 405, b"Method not allowed\n", b"allow: GET, HEAD\r\n")
        elif parts[1].split(b"?", 1)[0] != b"/metrics":
            self._respond(fd, 404, b"Not found: try /metrics\n")
        else:
            body = self.render().encode("utf-8")
            self._respond(fd, 200, body, b"content-type: text/plain; version=0.0.4; charset=utf-8\r\n",
                          head_only=parts[0] == b"HEAD")

    def _respond(self, fd: int, status: int, body: bytes, headers: bytes = b"", head_only: bool = False) -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 431: "Request Header Fields Too Large"}[status]
        if status != 200:
            headers += b"content-type: text/plain; charset=utf-8\r\n"
        head = (
            f"HTTP/1.1 {status} {reason}\r\ncontent-length: {len(body)}\r\nconnection: close\r\n".encode("ascii")
            + headers
            + b"\r\n"
        )
        self.readers.pop(fd, None)
        self.buffers.pop(fd, None)
        self._send(fd, head + (b"" if head_only else body))

    def _send(self, fd: int, data: bytes) -> None:
        entry = self.clients.get(fd)
        if entry is None:
            return
        conn = entry[0]
        try:
            sent = conn.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(fd)
            return
        if sent < len(data):
            self.writers[fd] = partial(self._send, fd, data[sent:])
            return
        self.writers.pop(fd, None)
        try:
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self._close(fd)

    def _close(self, fd: int) -> None:
        self.readers.pop(fd, None)
        self.writers.pop(fd, None)
        self.buffers.pop(fd, None)
        entry = self.clients.pop(fd, None)
        if entry is not None:
            entry[0].close()

    def close(self) -> None:
        for fd in list(self.clients):
            self._close(fd)
        self.readers.pop(self.sock.fileno(), None)
        self.sock.close()
