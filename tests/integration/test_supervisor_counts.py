"""The master's and the workers' log lines count right (issue 20): the
numbers come from the worker as they are at that moment, not from a
heartbeat up to a second old."""

import re
import signal

from support import Reader, wait_until


def get(server, path: str = "/", close: bool = False) -> bytes:
    with server.connect() as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return Reader(sock).response().body


def test_recycle_line_counts_the_requests_served(server_factory):
    server = server_factory("basic:app", "--limit-max-requests", "7")
    (pid,) = server.worker_pids()
    mark = server.mark()
    for _ in range(7):  # within a second: no heartbeat in between
        get(server, "/pid")
    line = server.wait_log(rf"master: recycling worker {pid}: (\d+) requests served", start=mark)[0]
    assert int(line.group(1)) == 7
    served = server.wait_log(rf"worker {pid}: lifespan shutdown complete; exiting \(served (\d+) requests", start=mark)[0]
    assert int(served.group(1)) == 7


def test_stuck_worker_line_counts_what_it_was_doing(server_factory):
    server = server_factory("basic:app", "--timeout-worker", "1.5")
    (victim,) = server.worker_pids()
    get(server, "/pid")  # one served
    sock = server.connect()
    sock.sendall(b"GET /block?60 HTTP/1.1\r\nHost: x\r\n\r\n")  # then stuck on one
    mark = server.mark()
    server.wait_log(rf"master: worker {victim} was killed by SIGKILL", start=mark)
    line = [l for l in server.lines[mark:] if f"master: worker {victim} was killed by SIGKILL" in l][0]
    assert line.endswith("while stuck with 1 requests in flight on 1 connections, 1 served"), line
    sock.close()


def test_drain_line_counts_the_connection_of_a_request_in_flight(server_factory):
    """TERM while one request runs: its connection is counted with it."""
    server = server_factory("basic:app")
    (pid,) = server.worker_pids()
    sock = server.connect()
    mark = server.mark()
    sock.sendall(b"GET /sleep?1 HTTP/1.1\r\nHost: x\r\n\r\n")
    server.wait_log(rf"sleep start {pid}", start=mark)
    server.signal(signal.SIGTERM)
    server.wait_log(rf"worker {pid}: stopped accepting; draining 1 requests in flight on 1 connections and 0 websockets", start=mark)
    assert Reader(sock).response().code == 200
    sock.close()


def test_drain_line_counts_websockets(server_factory):
    server = server_factory("ws:app")
    (pid,) = server.worker_pids()
    sock = server.connect()
    sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert Reader(sock).head()[0] == b"HTTP/1.1 101 Switching Protocols"
    mark = server.mark()
    server.signal(signal.SIGTERM)
    server.wait_log(rf"worker {pid}: stopped accepting; draining 0 requests in flight on 0 connections and 1 websockets",
                    start=mark)
    server.wait_log(rf"worker {pid}: websockets closed \(1, 0 cut at the deadline\)", start=mark)
    sock.close()
