"""--bind, repeatable (issue 22): every worker serves every listener, herd-free;
reload, stop, USR2 and --accept reuseport treat all listeners alike."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from support import (APPS, EPOLLEXCLUSIVE, ROOT, Load, Reader, epoll_entries, listening_inode, pid_alive,
                     read_response, wait_until)

NEW_MASTER = r"SIGUSR2: upgrading: new master (\d+) started"
REQUEST = b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n"


def listeners(server, start: int = 0) -> list[str]:
    """The addresses of the master's 'serving ...' line, in order."""
    line = server.wait_log(r"serving (.*) with \d+ worker", start=start)[-1].group(1)
    return line.split(", ")


def tcp_ports(names: list[str]) -> list[int]:
    return [int(name.rsplit(":", 1)[1]) for name in names if name.startswith("http")]


def connector(name: str):
    """A connect(timeout) function for a listener named as in the 'serving' line."""
    if name.startswith("unix:"):
        path = name[5:]

        def connect(timeout=10):
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(timeout)
            try:
                sock.connect(path)
            except OSError:
                sock.close()
                raise
            return sock

        return connect
    host, port = name.split("://", 1)[1].rsplit(":", 1)
    return lambda timeout=10: socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)


def get_pid(connect) -> int:
    with connect() as sock:
        sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, _, body = read_response(sock)
        assert status == b"HTTP/1.1 200 OK"
        return int(body)


def unix_inode(path: str) -> int:
    """The socket inode of the listening UNIX socket at ``path`` (from /proc/net/unix)."""
    with open("/proc/net/unix") as table:
        for line in table:
            fields = line.split()
            if len(fields) >= 8 and fields[7] == path and fields[5] == "01":  # SS_UNCONNECTED: the listener
                return int(fields[6])
    raise AssertionError(f"no listening UNIX socket at {path}")


class UnixLoad:
    """Keep-alive requests on a UNIX socket from threads; every failure recorded (as support.Load)."""

    def __init__(self, path: str, threads: int = 2, max_seconds: float = 30.0) -> None:
        self.path, self.ok, self.failures = path, 0, []
        self.deadline = time.monotonic() + max_seconds
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _conn(self):
        conn = http.client.HTTPConnection("localhost", timeout=10)
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(10)
        sock.connect(self.path)
        conn.sock = sock
        return conn

    def _run(self) -> None:
        conn = None
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            try:
                if conn is None:
                    conn = self._conn()
                conn.request("GET", "/pid")
                response = conn.getresponse()
                body = response.read()
                if response.status != 200:
                    raise AssertionError(f"status {response.status}")
                with self._lock:
                    self.ok += 1
                if response.will_close:
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
        wait_until(lambda: self.ok >= count, timeout=timeout, message=f"{count} requests on {self.path} ({self.failures[:3]})")

    def stop(self) -> "UnixLoad":
        self._stop.set()
        for thread in self._threads:
            thread.join(15)
        return self


def binds(tmp_path, *extra: str) -> tuple[list[str], str]:
    path = str(tmp_path / "corral.sock")
    return ["-b", "127.0.0.1:0", "--bind", "127.0.0.1:0", "--bind", f"unix:{path}", *extra], path


def test_every_worker_serves_every_listener_herd_free(server_factory, tmp_path):
    args, path = binds(tmp_path, "--metrics-bind", "127.0.0.1:0")
    server = server_factory("basic:app", *args, workers=2)
    names = listeners(server)
    ports = tcp_ports(names)
    assert len(ports) == 2 and ports[0] != ports[1] and names[2] == f"unix:{path}"
    for name in names:
        for _ in range(3):
            assert get_pid(connector(name)) in server.worker_pids()
    workers = server.worker_pids()
    assert len(workers) == 2
    inodes = [listening_inode(port) for port in ports] + [unix_inode(path)]
    for pid in workers:
        for inode in inodes:
            mine, _ = epoll_entries(pid, inode)
            assert len(mine) == 1, (pid, inode, mine)  # served by this worker's loop
            assert mine[0][1] & EPOLLEXCLUSIVE, (pid, inode, mine)  # one idle worker wakes per connection
    # Every TCP listener's accept queue is in the metrics (UNIX sockets have no TCP_INFO).
    metrics_port = int(server.wait_log(r"Prometheus metrics at http://127\.0\.0\.1:(\d+)/metrics")[0].group(1))
    conn = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    for port in ports:
        assert re.search(rf'corral_accept_queue_limit{{listener="127\.0\.0\.1:{port}"}} \d+', text), text[-2000:]


def test_hup_then_term_lose_nothing_on_any_listener(server_factory, tmp_path):
    args, path = binds(tmp_path)
    server = server_factory("basic:app", *args, workers=2)
    names = listeners(server)
    ports = tcp_ports(names)
    loads = [Load(port, threads=2, max_seconds=30) for port in ports] + [UnixLoad(path)]
    try:
        for load in loads:
            load.wait_requests(100)
        old = server.worker_pids()
        mark = server.mark()
        server.signal(signal.SIGHUP)
        server.wait_log(r"master: reload complete", start=mark, timeout=30)
        wait_until(lambda: not (server.worker_pids() & old), timeout=30, message="the old workers to exit")
        counts = [load.ok for load in loads]
        for load, count in zip(loads, counts):
            load.wait_requests(count + 100)
    finally:
        for load in loads:
            load.stop()
    for load in loads:
        assert load.failures == [], load.failures[:5]
    for name in names:  # the new workers serve every listener
        assert get_pid(connector(name)) in server.worker_pids()

    # TERM: one slow request holds the one connection each worker may have, so
    # connections on every listener wait in the kernel's queues; all answered.
    server.stop()
    server = server_factory("basic:app", *args, "--limit-connections", "1", workers=1)
    names = listeners(server)
    slow = connector(names[0])()
    slow.sendall(b"GET /sleep?1.5 HTTP/1.1\r\nHost: x\r\n\r\n")
    server.wait_log(r"sleep start")
    queued = []
    for name in names:
        for _ in range(2):
            sock = connector(name)()
            sock.sendall(REQUEST)
            queued.append(sock)
    mark = server.mark()
    server.signal(signal.SIGTERM)
    server.wait_log(r"master: new connections are refused", start=mark)
    for name in names:  # no listener takes a new connection
        with pytest.raises((ConnectionRefusedError, FileNotFoundError, TimeoutError, socket.timeout)):
            connector(name)(0.05).close()
    for sock in queued:
        response = Reader(sock).response()
        assert response.code == 200
        assert response.headers[b"connection"] == b"close"
        sock.close()
    status, _, body = read_response(slow)
    assert (status, body) == (b"HTTP/1.1 200 OK", b"slept\n")
    slow.close()
    assert server.proc.wait(20) == 0
    server.wait_log(r"\(6 taken from the queue\)", start=mark)
    assert not os.path.exists(path)


def test_usr2_hands_every_listener_over(server_factory, tmp_path):
    args, path = binds(tmp_path)
    server = server_factory("basic:app", *args, workers=1)
    names = listeners(server)
    ports = tcp_ports(names)
    loads = [Load(port, threads=2, max_seconds=30) for port in ports] + [UnixLoad(path)]
    new_master = 0
    try:
        for load in loads:
            load.wait_requests(100)
        mark = server.mark()
        server.signal(signal.SIGUSR2)
        new_master = int(server.wait_log(NEW_MASTER, start=mark)[0].group(1))
        server.wait_log(r"upgrade: every worker ready", start=mark, timeout=30)
        assert listeners(server, mark) == names  # the new master serves the same sockets
        assert server.proc.wait(30) == 0  # the old master drained and left
        counts = [load.ok for load in loads]
        for load, count in zip(loads, counts):
            load.wait_requests(count + 100)
    finally:
        for load in loads:
            load.stop()
        try:
            for load in loads:
                assert load.failures == [], load.failures[:5]
            with open(f"/proc/{new_master}/task/{new_master}/children") as handle:
                children = {int(pid) for pid in handle.read().split()}
            for name in names:
                assert get_pid(connector(name)) in children
            assert os.path.exists(path)  # the old master left the socket file to the new one
        finally:
            if new_master:
                os.kill(new_master, signal.SIGTERM)
                wait_until(lambda: not pid_alive(new_master), timeout=20, message="the new master to exit")
    assert not os.path.exists(path)  # the new master owned it, and removed it


def test_reuseport_one_socket_per_slot_per_tcp_listener(server_factory, tmp_path):
    args, path = binds(tmp_path, "--accept", "reuseport")
    server = server_factory("basic:app", *args, workers=2)
    names = listeners(server)
    ports = tcp_ports(names)
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table][1:]
    for port in ports:
        assert sum(1 for f in rows if f[3] == "0A" and int(f[1].split(":")[1], 16) == port) == 2
    for name in names:
        assert get_pid(connector(name)) in server.worker_pids()
    # The UNIX listener stays one socket shared by both workers, with exclusive wake-ups.
    for pid in server.worker_pids():
        mine, _ = epoll_entries(pid, unix_inode(path))
        assert len(mine) == 1 and mine[0][1] & EPOLLEXCLUSIVE
    mark = server.mark()
    server.signal(signal.SIGHUP)
    server.wait_log(r"master: reload complete", start=mark, timeout=30)
    for name in names:
        assert get_pid(connector(name)) in server.worker_pids()


def test_an_inherited_descriptor_next_to_a_tcp_bind(server_factory):
    inherited = socket.socket()
    inherited.bind(("127.0.0.1", 0))
    inherited.listen(16)
    fd = inherited.fileno()
    try:
        server = server_factory("basic:app", "-b", "127.0.0.1:0", "-b", f"fd://{fd}", pass_fds=(fd,))
        names = listeners(server)
        assert names[1] == f"http://127.0.0.1:{inherited.getsockname()[1]}"
        for name in names:
            assert get_pid(connector(name)) in server.worker_pids()
        mark = server.mark()
        assert server.stop() == 0
        server.wait_log(r"master: new connections are refused", start=mark)
        # The inherited socket is its owner's: still listening, its queue kept.
        client = socket.create_connection(inherited.getsockname(), timeout=5)
        client.close()
    finally:
        inherited.close()


def test_ipv6_loopback(server_factory):
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError as exc:
        pytest.skip(f"IPv6 loopback ::1 is not available here ({exc.strerror}); [::1]:PORT not tested")
    server = server_factory("basic:app", "-b", "[::1]:0", "-b", "127.0.0.1:0")
    names = listeners(server)
    assert re.fullmatch(r"http://\[::1\]:\d+", names[0]), names
    for name in names:
        assert get_pid(connector(name)) in server.worker_pids()


def corral(*args: str, timeout: float = 20, **kwargs) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "corral", "basic:app", "--app-dir", str(APPS), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=timeout, **kwargs)


@pytest.mark.parametrize("bad, why", [
    ("127.0.0.1:http", "'127.0.0.1:http' is not HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N"),
    ("::1:8000", "'::1:8000': an IPv6 address goes in brackets, e.g. [::1]:8000"),
    ("unix:", "'unix:': unix: needs a path, e.g. unix:/run/corral.sock"),
    ("fd://three", "'fd://three': fd:// needs a descriptor number, e.g. fd://3"),
    ("127.0.0.1:70000", "'127.0.0.1:70000' is not HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N"),
])
def test_a_bad_bind_is_one_line_exit_2(bad, why):
    result = corral("-b", "127.0.0.1:0", "--bind", bad)
    assert result.returncode == 2
    assert result.stderr == f"corral: error: --bind: {why} (got ['127.0.0.1:0', {bad!r}])\n"


def test_a_bind_given_twice_and_a_port_in_use(tmp_path):
    result = corral("-b", "127.0.0.1:8123", "-b", "127.0.0.1:8123")
    assert result.returncode == 2
    assert result.stderr.startswith("corral: error: --bind: '127.0.0.1:8123' is given twice")
    assert result.stderr.count("\n") == 1
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    path = tmp_path / "corral.sock"
    try:
        result = corral("-b", f"unix:{path}", "-b", f"127.0.0.1:{port}")
    finally:
        taken.close()
    assert result.returncode == 2
    assert result.stderr == f"corral: error: cannot bind 127.0.0.1:{port}: Address already in use\n"
    assert not path.exists()  # the listener bound before it was closed and its file removed


def test_binds_from_the_environment_and_a_toml_list(server_factory, tmp_path):
    config = tmp_path / "corral.toml"
    config.write_text(f'bind = ["127.0.0.1:0", "unix:{tmp_path}/a.sock"]\n')
    server = server_factory("basic:app", "--config", str(config))
    names = listeners(server)
    assert len(names) == 2 and names[1] == f"unix:{tmp_path}/a.sock"
    server.stop()
    server = server_factory("basic:app", extra_env={"CORRAL_BIND": f"127.0.0.1:0,unix:{tmp_path}/b.sock"},
                            uds=str(tmp_path / "c.sock"))
    names = listeners(server)
    # --uds adds a listener to the --bind ones; --host/--port are not used.
    assert names[1:] == [f"unix:{tmp_path}/b.sock", f"unix:{tmp_path}/c.sock"] and names[0].startswith("http://")
    for name in names:
        assert get_pid(connector(name)) in server.worker_pids()


def test_a_handover_from_a_corral_of_one_listener_is_adopted(tmp_path):
    """USR2 from a corral before --bind (one listener: slots as one fd each, 'owned', 'uds'):
    the new master adopts it; and its own spec round-trips."""
    from corral.config import Config
    from corral.supervisor.sockets import Sockets

    path = str(tmp_path / "old.sock")
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(path)
    unix.listen(1)
    tcp = [socket.create_server(("127.0.0.1", 0), reuse_port=True) for _ in range(2)]
    old = {"shared": [unix.fileno()], "slots": {0: tcp[0].fileno(), 1: tcp[1].fileno()}, "owned": True,
           "uds": path, "uds_inode": os.stat(path).st_ino}
    sockets = Sockets(Config(app="m:a"), old)
    sockets.bind()
    assert sockets.reuseport and [s.fileno() for s in sockets.for_slot(1)] == [tcp[1].fileno(), unix.fileno()]
    assert sockets.uds == {path: os.stat(path).st_ino} and sockets.inherited == [] and sockets.owned
    spec = json.loads(json.dumps(sockets.handover_spec()))
    from corral.supervisor.upgrade import take

    again = Sockets(Config(app="m:a"), take({"CORRAL_UPGRADE": json.dumps(spec)}))
    again.bind()
    assert [s.fileno() for s in again.all()] == [s.fileno() for s in sockets.all()]
    assert again.uds == sockets.uds and again.reuseport
    for sock in sockets.all() + again.all():
        sock.detach()  # the same descriptors as below: closed once
    for sock in (unix, *tcp):
        sock.close()
