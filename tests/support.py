"""Start real corral processes and talk to them with real bytes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"


class Server:
    """A corral master process on 127.0.0.1, port 0 (or a UNIX socket).

    Its stderr is collected line by line so tests can wait on log lines
    instead of sleeping."""

    started: list["Server"] = []  # every server of the running test (tests/conftest.py)

    def __init__(self, app: str = "basic:app", *args: str, workers: int = 1, env=None, uds: str | None = None,
                 wait_ready: bool = True, extra_env=None, pass_fds=(), prefix=(),
                 corral=(sys.executable, "-m", "corral"), cwd=ROOT):
        # corral: the command that starts it (tests/test_dist.py: an installed console script).
        command = [*prefix, *corral, app, "--app-dir", str(APPS), "--workers", str(workers)]
        if uds:
            command += ["--uds", uds]
        else:
            command += ["--host", "127.0.0.1", "--port", "0"]
        command += list(args)
        environ = dict(os.environ if env is None else env)
        environ.update(extra_env or {})
        environ.setdefault("PYTHONUNBUFFERED", "1")
        self.lines: list[str] = []
        self._cond = threading.Condition()
        Server.started.append(self)  # tests/conftest.py shows its log when a test fails
        self.proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, cwd=cwd,
                                     env=environ, start_new_session=True, pass_fds=pass_fds)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = None
        self.uds = uds
        self.workers = workers
        if wait_ready:
            self.wait_ready(workers)

    def _read(self) -> None:
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    # -- waiting on conditions ---------------------------------------------

    def wait_log(self, pattern: str, count: int = 1, timeout: float = 15.0, start: int = 0) -> list[re.Match]:
        """Wait until ``pattern`` matched ``count`` log lines (from index ``start``)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                matches = [m for m in (regex.search(line) for line in self.lines[start:]) if m]
                if len(matches) >= count:
                    return matches
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no {count}x {pattern!r} in log:\n" + "\n".join(self.lines[-60:]))
                self._cond.wait(min(remaining, 0.2))

    def mark(self) -> int:
        with self._cond:
            return len(self.lines)

    def wait_ready(self, workers: int) -> None:
        match = self.wait_log(r"serving (\S+)")[0]
        address = match.group(1)
        if address.startswith(("http://", "https://")):
            self.port = int(address.rsplit(":", 1)[1].split(",")[0])
        self.wait_log(r"master: worker \d+ ready", count=workers)

    def worker_pids(self) -> set[int]:
        """Live worker pids (children of the master)."""
        try:
            out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        except FileNotFoundError:  # pragma: no cover
            return set()
        return {int(pid) for pid in out.split()}

    # -- talking -------------------------------------------------------------

    def connect(self, timeout: float = 10.0) -> socket.socket:
        if self.uds:
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(timeout)
            sock.connect(self.uds)
        else:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return sock

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError("corral did not stop in time:\n" + "\n".join(self.lines[-60:]))
        finally:
            self._reader.join(5)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            try:
                self.stop()
            finally:
                self.kill()


def read_response(sock: socket.socket, timeout: float = 10.0) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """Read one response: (status line, headers, body). Bytes after it are
    dropped: read pipelined responses with ``Reader``."""
    response = Reader(sock, timeout).response()
    return response.status, response.headers, response.body


class Load:
    """A bounded HTTP load on loopback from threads: keep-alive or churn.

    Each thread sends requests until ``stop()`` or ``max_requests`` or
    ``max_seconds``; every failure (exception or non-200) is recorded."""

    def __init__(self, port: int, *, threads: int = 4, keep_alive: bool = True, path: str = "/pid",
                 max_requests: int = 20000, max_seconds: float = 30.0):
        self.port = port
        self.keep_alive = keep_alive
        self.path = path
        self.max_requests = max_requests
        self.deadline = time.monotonic() + max_seconds
        self.ok = 0
        self.failures: list[str] = []
        self.pids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        import http.client

        conn = None
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            with self._lock:
                if self.ok + len(self.failures) >= self.max_requests:
                    return
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                headers = {} if self.keep_alive else {"Connection": "close"}
                conn.request("GET", self.path, headers=headers)
                response = conn.getresponse()
                body = response.read()
                if response.status != 200:
                    raise AssertionError(f"status {response.status}: {body[:100]!r}")
                with self._lock:
                    self.ok += 1
                    if body.isdigit():
                        self.pids.add(int(body))
                if not self.keep_alive or response.will_close:
                    conn.close()
                    conn = None
            except Exception as exc:  # noqa: BLE001 - every failure counts
                with self._lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def wait_requests(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.ok < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"load made only {self.ok} requests; failures: {self.failures[:5]}")
            time.sleep(0.01)

    def stop(self) -> "Load":
        self._stop.set()
        for thread in self._threads:
            thread.join(15)
        return self


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except OSError:
        return False


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(interval)


class Response:
    __slots__ = ("status", "headers", "body", "head")

    def __init__(self, status: bytes, headers: dict[bytes, bytes], body: bytes, head: bytes):
        self.status = status  # the status line, e.g. b"HTTP/1.1 200 OK"
        self.headers = headers  # lower-cased names; a repeated name fails the read
        self.body = body  # de-chunked
        self.head = head  # the raw head, without the final CRLF CRLF

    @property
    def code(self) -> int:
        return int(self.status.split(b" ", 2)[1])

    def __repr__(self) -> str:
        return f"<Response {self.status!r} {self.headers!r} {self.body[:80]!r}>"


class Reader:
    """Reads responses one at a time from a socket and keeps the bytes that
    follow, so pipelined responses can be read in order. Knows HEAD, 1xx,
    204 and 304 (no body), Content-Length, chunked and close-delimited."""

    def __init__(self, sock: socket.socket, timeout: float = 10.0):
        self.sock = sock
        self.buffer = b""
        sock.settimeout(timeout)

    def _more(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def head(self) -> tuple[bytes, dict[bytes, bytes], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            if not self._more():
                raise ConnectionError(f"closed before a full head: {self.buffer!r}")
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status, *lines = head.split(b"\r\n")
        headers: dict[bytes, bytes] = {}
        for line in lines:
            name, sep, value = line.partition(b":")
            assert sep and name == name.strip(), f"malformed header line {line!r}"
            assert name.lower() not in headers, f"repeated header {name!r} in {head!r}"
            headers[name.lower()] = value.strip()
        return status, headers, head

    def response(self, method: str = "GET") -> Response:
        status, headers, head = self.head()
        code = int(status.split(b" ", 2)[1])
        if method == "HEAD" or code in (204, 304) or 100 <= code < 200:
            return Response(status, headers, b"", head)
        if headers.get(b"transfer-encoding") == b"chunked":
            body = b""
            while True:
                while b"\r\n" not in self.buffer:
                    if not self._more():
                        raise ConnectionError("closed inside a chunk size")
                size_line, _, self.buffer = self.buffer.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                while len(self.buffer) < size + 2:
                    if not self._more():
                        raise ConnectionError("closed inside a chunk")
                assert self.buffer[size:size + 2] == b"\r\n"
                body += self.buffer[:size]
                self.buffer = self.buffer[size + 2:]
                if size == 0:
                    return Response(status, headers, body, head)
        if b"content-length" in headers:
            length = int(headers[b"content-length"])
            while len(self.buffer) < length:
                if not self._more():
                    raise ConnectionError(f"closed after {len(self.buffer)} of {length} body bytes")
            body, self.buffer = self.buffer[:length], self.buffer[length:]
            return Response(status, headers, body, head)
        return Response(status, headers, self.until_close(), head)

    def until_close(self) -> bytes:
        """Everything up to the server's close (a reset counts as a close)."""
        try:
            while self._more():
                pass
        except ConnectionResetError:
            pass
        data, self.buffer = self.buffer, b""
        return data

    def closed(self) -> bool:
        """True if the server closes with nothing more to read."""
        return self.until_close() == b""


EPOLLEXCLUSIVE = 1 << 28


def listening_inode(port: int) -> int:
    """The inode of the LISTEN socket on ``port`` (from /proc/net/tcp)."""
    with open("/proc/net/tcp") as table:
        for line in table:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
                return int(fields[9])
    raise AssertionError(f"no listening socket on port {port}")


def established(port: int) -> int:
    """How many connections to ``port`` are established (server side, from /proc/net/tcp)."""
    with open("/proc/net/tcp") as table:
        return sum(1 for line in table if (f := line.split())[3] == "01" and int(f[1].split(":")[1], 16) == port)


def epoll_entries(pid: int, inode: int) -> tuple[list, list]:
    """Every epoll entry in process ``pid`` as (fd, events, ino), split into
    those watching the socket ``inode`` and the others (from /proc)."""
    listening_fds, epolls = set(), []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target == f"socket:[{inode}]":
            listening_fds.add(int(fd))
        elif target == "anon_inode:[eventpoll]":
            epolls.append(fd)
    entries = []
    for fd in epolls:
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                for line in info:
                    if line.startswith("tfd:"):
                        fields = line.split()
                        ino = int(fields[fields.index("ino:") + 1], 16) if "ino:" in fields else None
                        entries.append((int(fields[1]), int(fields[3], 16), ino))
        except OSError:
            continue
    mine = [e for e in entries if e[0] in listening_fds and e[2] in (None, inode)]
    return mine, [e for e in entries if e not in mine]
