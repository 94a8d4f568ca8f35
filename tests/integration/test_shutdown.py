"""Stopping releases the port at once; queued connections are answered (issue 10).

To have connections waiting in the kernel's accept queue, one worker runs
with ``--limit-connections 1`` and holds one slow request: it has taken its
listener out of the loop, so every later connection completes its handshake
and waits in the queue, request bytes included.
"""

import errno
import signal
import socket
import time

import pytest

from support import Reader, Server, read_response, wait_until

REQUEST = b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n"


def queue_behind_slow_request(server, count, connect):
    """One request in flight for 1.5 s, then ``count`` connections queued, each with its request sent."""
    slow = connect()
    slow.sendall(b"GET /sleep?1.5 HTTP/1.1\r\nHost: x\r\n\r\n")
    server.wait_log(r"sleep start")
    queued = []
    for _ in range(count):
        sock = connect()
        sock.sendall(REQUEST)
        queued.append(sock)
    return slow, queued


def attempt(connect) -> str:
    """One new connection: 'refused', 'dropped' (no answer to the SYN yet) or 'connected'."""
    try:
        sock = connect(0.02)
    except ConnectionRefusedError:
        return "refused"
    except FileNotFoundError:  # a UNIX socket whose file is gone
        return "refused"
    except (TimeoutError, socket.timeout):
        return "dropped"
    sock.close()
    return "connected"


def wait_refused(server, connect, start_mark) -> float:
    """Seconds until a new connection is refused. Once the master has logged
    that it refuses them, no connection may complete its handshake."""
    start = time.monotonic()
    server.wait_log(r"master: new connections are refused", start=start_mark)
    while True:
        outcome = attempt(connect)
        assert outcome != "connected", "a stopping corral accepted a connection it will not serve"
        if outcome == "refused":
            return time.monotonic() - start
        assert time.monotonic() - start < 10, "new connections are still not refused"


def check_answered(slow, queued):
    for sock in queued:
        response = Reader(sock).response()
        assert response.code == 200
        assert response.headers[b"connection"] == b"close"
        assert Reader(sock).closed()
        sock.close()
    status, headers, body = read_response(slow)
    assert (status, body) == (b"HTTP/1.1 200 OK", b"slept\n")
    assert headers[b"connection"] == b"close"
    slow.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_refuses_new_connections_and_answers_queued_tcp(server_factory, signum):
    server = server_factory("basic:app", "--limit-connections", "1", workers=1)
    connect = lambda timeout=10: socket.create_connection(("127.0.0.1", server.port), timeout=timeout)  # noqa: E731
    slow, queued = queue_behind_slow_request(server, 3, connect)
    mark = server.mark()
    server.signal(signum)
    elapsed = wait_refused(server, connect, mark)
    # Refused while the slow request is still being served: the master has not exited.
    assert server.proc.poll() is None
    print(f"refused {elapsed * 1000:.1f} ms after the signal")
    check_answered(slow, queued)
    assert server.proc.wait(20) == 0
    server.wait_log(r"\(3 taken from the queue\)", start=mark)


def test_stop_refuses_new_connections_and_answers_queued_unix(server_factory, tmp_path):
    path = str(tmp_path / "corral.sock")
    server = server_factory("basic:app", "--limit-connections", "1", workers=1, uds=path)

    def connect(timeout=10):
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            raise
        return sock

    slow, queued = queue_behind_slow_request(server, 3, connect)
    server.signal(signal.SIGTERM)
    wait_refused(server, connect, 0)
    assert server.proc.poll() is None
    check_answered(slow, queued)
    assert server.proc.wait(20) == 0
    server.wait_log(r"\(3 taken from the queue\)")


def test_quit_answers_queued_connections_503(server_factory):
    server = server_factory("basic:app", "--limit-connections", "1", workers=1)
    connect = lambda timeout=10: socket.create_connection(("127.0.0.1", server.port), timeout=timeout)  # noqa: E731
    slow, queued = queue_behind_slow_request(server, 2, connect)
    server.signal(signal.SIGQUIT)
    wait_refused(server, connect, 0)
    for sock in queued:
        response = Reader(sock).response()
        assert response.code == 503
        assert response.headers[b"connection"] == b"close"
        sock.close()
    assert Reader(slow).until_close() == b""  # fast shutdown: in-flight requests are cut
    slow.close()
    assert server.proc.wait(20) == 0
    server.wait_log(r"2 queued ones answered 503")


def test_inherited_socket_is_left_open_with_its_queue(server_factory):
    """--fd: the socket is its owner's. Corral stops without closing it or
    filtering it: connections made during and after the stop wait in its queue."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    server = Server("basic:app", "--fd", str(fd), "--limit-connections", "1", wait_ready=False, pass_fds=(fd,))
    connect = lambda timeout=10: socket.create_connection(("127.0.0.1", port), timeout=timeout)  # noqa: E731
    try:
        server.wait_log(r"master: worker \d+ ready")
        slow, queued = queue_behind_slow_request(server, 1, connect)
        server.signal(signal.SIGTERM)
        server.wait_log(r"inherited sockets stay open for their owner")
        during = connect()  # the owner's queue still takes it
        during.sendall(REQUEST)
        status, _, body = read_response(slow)
        assert (status, body) == (b"HTTP/1.1 200 OK", b"slept\n")
        assert server.proc.wait(20) == 0
        after = connect()
        after.sendall(REQUEST)
        # The owner accepts all three, request bytes intact: nothing was reset.
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        listener.settimeout(5)
        for _ in range(3):
            conn, _ = listener.accept()
            conn.settimeout(5)
            assert conn.recv(100) == REQUEST
            conn.close()
        for sock in (slow, *queued, during, after):
            sock.close()
    finally:
        server.stop()
        listener.close()


def test_hup_keeps_the_port(server_factory):
    """A reload is not a stop: the queue stays served, nothing is refused."""
    server = server_factory("basic:app", workers=1)
    mark = server.mark()
    server.signal(signal.SIGHUP)
    server.wait_log(r"master: reload complete", start=mark)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(REQUEST)
        assert read_response(sock)[0] == b"HTTP/1.1 200 OK"
    assert not any("refused" in line for line in server.lines[mark:])


# -- --shutdown-delay and --health-path --------------------------------------


def get(sock, path, version="1.1", method="GET"):
    sock.sendall(f"{method} {path} HTTP/{version}\r\nHost: x\r\n\r\n".encode())
    return Reader(sock).response(method)


def served_requests(server) -> int:
    return sum(int(m.group(1)) for m in server.wait_log(r"exiting \(served (\d+) requests", count=server.workers))


def test_health_path_is_answered_without_the_app(server_factory):
    server = server_factory("basic:app", "--health-path", "/healthz", "--log-level", "debug", workers=1)
    with server.connect() as sock:
        response = get(sock, "/healthz")
        assert (response.code, response.body) == (200, b"ok\n")
        assert b"connection" not in response.headers  # keep-alive
        assert response.headers[b"cache-control"] == b"no-store"
        assert get(sock, "/healthz", method="HEAD").headers[b"content-length"] == b"3"
        assert get(sock, "/healthz?full=1").code == 200  # the query does not matter
        assert get(sock, "/healthzz").body == b"Hello, world!"  # only the exact path; the rest is the app's
        assert get(sock, "/pid").code == 200
    with server.connect() as sock:
        response = get(sock, "/healthz", version="1.0")
        assert response.code == 200 and response.headers[b"connection"] == b"close"
    server.wait_log(r'"GET /healthz HTTP/1.1" 200 \(health\)')
    server.stop()
    assert served_requests(server) == 2  # /healthzz and /pid: health checks are not the app's requests


def test_health_path_with_wsgi_app(server_factory):
    server = server_factory("wsgi_app:app", "--health-path", "/healthz", workers=1)
    with server.connect() as sock:
        assert get(sock, "/healthz").body == b"ok\n"
    assert not any("/healthz" in line for line in server.lines)  # access-logged at debug level only


def test_shutdown_delay_serves_with_close_then_refuses(server_factory):
    server = server_factory("basic:app", "--shutdown-delay", "2", "--health-path", "/healthz", workers=2)
    connect = lambda timeout=10: socket.create_connection(("127.0.0.1", server.port), timeout=timeout)  # noqa: E731
    kept = server.connect()
    assert b"connection" not in get(kept, "/pid").headers
    mark = server.mark()
    server.signal(signal.SIGTERM)
    server.wait_log(r"master: SIGTERM: shutdown delay 2.0s", start=mark)
    server.wait_log(r"shutdown delay: serving on", count=2, start=mark)
    # Lame duck: new connections are still accepted and served, each answer closes.
    with connect() as sock:
        response = get(sock, "/pid")
        assert response.code == 200 and response.headers[b"connection"] == b"close"
    with connect() as sock:
        response = get(sock, "/healthz")
        assert (response.code, response.body) == (503, b"stopping\n")
        assert response.headers[b"connection"] == b"close"
    response = get(kept, "/pid")  # a keep-alive connection's next answer closes it
    assert response.code == 200 and response.headers[b"connection"] == b"close"
    assert Reader(kept).closed()
    kept.close()
    assert not any("shutdown delay over" in line for line in server.lines[mark:]), "the delay ran out too early"
    server.wait_log(r"master: shutdown delay over", start=mark)
    wait_refused(server, connect, mark)
    assert server.proc.wait(20) == 0
    assert served_requests(server) == 3


def test_second_term_skips_the_shutdown_delay(server_factory):
    server = server_factory("basic:app", "--shutdown-delay", "60", workers=1)
    mark = server.mark()
    server.signal(signal.SIGTERM)
    server.wait_log(r"shutdown delay: serving on", start=mark)
    server.signal(signal.SIGTERM)
    assert server.proc.wait(20) == 0  # far less than the 60 s delay
    assert not any("shutdown delay over" in line for line in server.lines[mark:])
    server.wait_log(r"master: graceful shutdown", start=mark)


def test_stop_refuses_new_connections_with_reuseport(server_factory):
    """--accept reuseport: every slot's socket stops taking connections."""
    server = server_factory("basic:app", "--accept", "reuseport", workers=2)
    connect = lambda timeout=10: socket.create_connection(("127.0.0.1", server.port), timeout=timeout)  # noqa: E731
    kept = connect()
    assert get(kept, "/pid").code == 200
    server.signal(signal.SIGTERM)
    wait_refused(server, connect, 0)
    assert server.proc.wait(20) == 0
    kept.close()
