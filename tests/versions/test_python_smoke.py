"""The integration smoke ``make test-versions`` runs on every Python:
start, serve HTTP/1.1 and HTTP/2 (h2c, prior knowledge), HUP, TERM.

It runs in ``make test`` too (a few seconds). ``make test-versions`` sets
CORRAL_EXPECT_MODE to the build it means to run (``compiled`` or ``pure``),
so a build that silently fell back is a failure there.
"""

from __future__ import annotations

import os
import signal

from h2support import H2Client
from support import read_response, wait_until


def get(server, path: str = "/pid") -> tuple[bytes, bytes]:
    with server.connect() as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        status, _, body = read_response(sock)
    return status, body


def test_start_serve_h1_and_h2_hup_term(server_factory):
    # Every warning shown (DeprecationWarning is hidden by default): what a
    # newer Python deprecates shows up here before it breaks.
    server = server_factory("basic:app", workers=2, extra_env={"PYTHONWARNINGS": "always"})
    mode = os.environ.get("CORRAL_EXPECT_MODE", r"(compiled|pure)")
    server.wait_log(rf"worker \d+ ready \(asgi, uvloop, {mode}\)", count=2)
    first = server.worker_pids()
    assert len(first) == 2

    status, body = get(server)
    assert status == b"HTTP/1.1 200 OK"
    assert int(body) in first

    with H2Client(server.port) as client:
        stream_id = client.request("/pid")
        headers, body, _ = client.response(stream_id)
        assert headers[b":status"] == b"200"
        assert int(body) in first
        second = client.request("/echo", "POST", body=b"over h2")
        headers, body, _ = client.response(second)
        assert (headers[b":status"], body) == (b"200", b"over h2")

    mark = server.mark()
    server.signal(signal.SIGHUP)
    server.wait_log(r"master: reload complete", start=mark)
    wait_until(lambda: len(server.worker_pids()) == 2 and not server.worker_pids() & first,
               message="two new workers, the old ones gone")
    status, body = get(server)
    assert status == b"HTTP/1.1 200 OK"
    assert int(body) in server.worker_pids()

    mark = server.mark()
    assert server.stop() == 0
    server.wait_log(r"master \d+: all workers gone, sockets closed; exit 0", start=mark)
    assert not [line for line in server.lines if "Warning:" in line]
