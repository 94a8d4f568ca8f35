"""Every guarantee on every path (issue 19): one table, one test per cell.

Rows are the paths a request can take into corral: HTTP/1.1 and HTTP/2
(h2c with prior knowledge), each in cleartext and over TLS (ALPN), each
also behind a PROXY v2 header. Columns are the guarantees. A cell runs the
same check on every row through a client that speaks that row's path; a
cell that cannot apply says why in ``NOT_APPLICABLE``. A new path is a row
of ``PATHS`` (and its client), a new guarantee a function in ``CHECKS``:
the matrix grows by a line, not a file.

Real corral processes (one per server configuration, shared by the cells),
real bytes, real signals; the clock is corral's own (timeouts of 1 s, so a
timeout cell takes one to two of the worker's ticks).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import struct
import time
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.events
import httptools
import pytest

from h2support import ThroughGoaway
from support import Server, wait_until

trustme = pytest.importorskip("trustme")
prometheus = pytest.importorskip("prometheus_client.parser")

WAIT = 10.0


# -- the rows ----------------------------------------------------------------------


@dataclass(frozen=True)
class Path:
    h2: bool
    tls: bool
    proxy: bool
    ws: bool = False  # a WebSocket: over an HTTP/1.1 upgrade, or an HTTP/2 stream (RFC 8441)


PATHS = {
    "h1": Path(h2=False, tls=False, proxy=False),
    "h1+tls": Path(h2=False, tls=True, proxy=False),
    "h2c": Path(h2=True, tls=False, proxy=False),
    "h2+tls": Path(h2=True, tls=True, proxy=False),
    "proxy/h1": Path(h2=False, tls=False, proxy=True),
    "proxy/h1+tls": Path(h2=False, tls=True, proxy=True),
    "proxy/h2c": Path(h2=True, tls=False, proxy=True),
    "proxy/h2+tls": Path(h2=True, tls=True, proxy=True),
    "ws/h1": Path(h2=False, tls=False, proxy=False, ws=True),
    "ws/h2c": Path(h2=True, tls=False, proxy=False, ws=True),
}

# The client a PROXY v2 header names (TEST-NET-3): the app must see it.
PROXIED = ("203.0.113.7", 4242)


def proxy_v2(client=PROXIED, server=("127.0.0.1", 80)) -> bytes:
    body = socket.inet_aton(client[0]) + socket.inet_aton(server[0]) + struct.pack("!HH", client[1], server[1])
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes((0x21, 0x11)) + struct.pack("!H", len(body)) + body


# -- servers: one per configuration, shared by the cells ---------------------------------

OPTIONS = (
    "--http", "auto", "--no-access-log",
    "--timeout-header", "1", "--timeout-body", "1", "--timeout-write", "1",
    "--limit-request-body", "1000",
    "--limit-concurrency", "1", "--limit-concurrency-queue", "1",
    "--health-path", "/healthz",
    "--metrics-bind", "127.0.0.1:0",
    "--ws-max-size", "1000",
)


class Servers:
    def __init__(self, tmp) -> None:
        self.tmp = tmp
        self.running: dict = {}
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1")
        self.certfile = str(tmp / "cert.pem")
        self.keyfile = str(tmp / "key.pem")
        cert.cert_chain_pems[0].write_to_path(self.certfile)
        cert.private_key_pem.write_to_path(self.keyfile)

    def get(self, path: Path, app: str = "matrix_app:app") -> Server:
        key = (path.tls, path.proxy, app)
        server = self.running.get(key)
        if server is None or server.proc.poll() is not None:
            args = list(OPTIONS)
            if path.tls:
                args += ["--ssl-certfile", self.certfile, "--ssl-keyfile", self.keyfile]
            if path.proxy:
                args += ["--proxy-protocol", "v2", "--proxy-allow-from", "127.0.0.1"]
            if app.endswith(":wsgi"):
                args += ["--interface", "wsgi"]
            server = self.running[key] = Server(app, *args)
            server.metrics = int(server.wait_log(r"Prometheus metrics at http://127\.0\.0\.1:(\d+)/metrics")[0].group(1))
        return server

    def close(self) -> None:
        for server in self.running.values():
            server.kill()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    s = Servers(tmp_path_factory.mktemp("matrix"))
    yield s
    s.close()


# -- clients: one per protocol, the same verbs ---------------------------------------


@dataclass
class Reply:
    status: int | None
    headers: dict
    body: bytes
    complete: bool  # False: the response was cut (reset, or the connection closed early)


def open_socket(server: Server, path: Path, ca) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    if path.proxy:
        sock.sendall(proxy_v2())
    if path.tls:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        context.set_alpn_protocols(["h2"] if path.h2 else ["http/1.1"])
        sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
    return sock


class H1Client:
    """HTTP/1.1, one request at a time (``id`` is always 0)."""

    def __init__(self, sock) -> None:
        self.sock = sock
        self.buffer = b""

    def request(self, method="GET", target="/", headers=(), body=b"", end=True, length=None) -> int:
        lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{n}: {v}" for n, v in headers]
        if body or not end or length is not None:
            lines.append(f"Content-Length: {length if length is not None else len(body)}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        return 0

    def send_head_only(self, target="/") -> None:
        self.sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())  # no blank line: unfinished

    def response(self, stream=0, timeout=WAIT, method="GET") -> Reply:
        reply = Reply(None, {}, b"", False)
        done = []

        class Sink:
            def on_header(self, name, value):
                reply.headers[name.lower()] = value

            def on_headers_complete(self):
                reply.status = parser.get_status_code()

            def on_body(self, body):
                reply.body += body

            def on_message_complete(self):
                done.append(True)

        parser = httptools.HttpResponseParser(Sink())
        if method == "HEAD":
            parser.set_dangerous_leniencies(lenient_data_after_close=True)
        data = self.buffer
        deadline = time.monotonic() + timeout
        while True:
            if data:
                try:
                    parser.feed_data(data)
                except httptools.HttpParserUpgrade:
                    pass
            if done:
                reply.complete = True
                return reply
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                data = b""
            except socket.timeout:
                raise AssertionError(f"no whole response within {timeout}s: {reply}")
            if not data:
                return reply  # closed before the end: cut

    def closed(self, timeout=WAIT) -> bool:
        """Read (and drop) until the server closes; True if it did within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if not self.sock.recv(65536):
                    return True
            except (ConnectionResetError, ssl.SSLError):
                return True
            except socket.timeout:
                return False
        return False

    def close(self) -> None:
        self.sock.close()


class H2Client:
    """HTTP/2 (prior knowledge in cleartext, ALPN over TLS) with the ``h2`` state machine."""

    def __init__(self, sock) -> None:
        self.sock = sock
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.h2.initiate_connection()
        self.feed = ThroughGoaway(self.h2)
        self.replies: dict[int, Reply] = {}
        self.goaway = None
        self.gone = False
        self.flush()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, method="GET", target="/", headers=(), body=b"", end=True, length=None) -> int:
        stream_id = self.h2.get_next_available_stream_id()
        fields = [(":method", method), (":path", target), (":scheme", "https" if isinstance(self.sock, ssl.SSLSocket)
                                                              else "http"), (":authority", "127.0.0.1"), *headers]
        if length is not None:
            fields.append(("content-length", str(length)))
        self.h2.send_headers(stream_id, [(n.encode(), v.encode()) for n, v in fields], end_stream=end and not body)
        if body:
            self.h2.send_data(stream_id, body, end_stream=end)
        self.flush()
        self.replies[stream_id] = Reply(None, {}, b"", False)
        return stream_id

    def send_head_only(self, target="/") -> None:
        from hyperframe.frame import HeadersFrame

        block = self.h2.encoder.encode([(b":method", b"GET"), (b":path", target.encode()), (b":scheme", b"http")])
        self.sock.sendall(HeadersFrame(self.h2.get_next_available_stream_id(), block[:2]).serialize())

    def _read(self, deadline) -> bool:
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        except socket.timeout:
            return False
        if not data:
            self.gone = True
            return False
        for event in self.feed.receive(data):  # frame by frame: through a draining server's GOAWAY
            reply = self.replies.get(getattr(event, "stream_id", None))
            if isinstance(event, h2.events.ResponseReceived):
                reply.headers = {n.lower(): v for n, v in event.headers}
                reply.status = int(reply.headers[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                reply.body += event.data
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                reply.complete = True
                reply.headers[b"-ended"] = True
            elif isinstance(event, h2.events.StreamReset) and reply is not None:
                reply.headers[b"-reset"] = event.error_code
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.goaway = event
        self.flush()
        return True

    def response(self, stream, timeout=WAIT, method="GET") -> Reply:
        reply = self.replies[stream]
        deadline = time.monotonic() + timeout
        while not (reply.complete or b"-reset" in reply.headers):
            if not self._read(deadline):
                if self.gone:
                    return reply
                raise AssertionError(f"no whole response within {timeout}s: {reply}")
        return reply

    def closed(self, timeout=WAIT) -> bool:
        deadline = time.monotonic() + timeout
        while not self.gone and time.monotonic() < deadline:
            self._read(deadline)
        return self.gone

    def close(self) -> None:
        self.sock.close()


def connect(server: Server, path: Path, ca, headers=b""):
    if path.ws:  # the WebSocket wire clients of test_websocket.py, opened
        from test_websocket import H2Raw, Raw

        client = (H2Raw if path.h2 else Raw)(server, "/ws", headers=headers)
        client.open()
        return client
    sock = open_socket(server, path, ca)
    return H2Client(sock) if path.h2 else H1Client(sock)


def ws_hello(client) -> list:
    opcode, payload = client.read_frame()
    assert opcode == 0x81, (opcode, payload)
    return json.loads(payload)


# -- the checks: one per guarantee, the same on every path ------------------------------


def scrape(server) -> dict:
    with socket.create_connection(("127.0.0.1", server.metrics), timeout=WAIT) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    body = data.split(b"\r\n\r\n", 1)[1].decode()
    samples = {}
    for family in prometheus.text_string_to_metric_families(body):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples, name, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= lab)


def check_header_timeout(server, path, client, ca, tmp):
    client.send_head_only("/")
    if path.h2:
        assert client.closed(), "an unfinished header block must not hold the connection"
    else:
        reply = client.response()
        assert reply.status == 408
        assert client.closed()


def check_body_timeout(server, path, client, ca, tmp):
    stream = client.request("POST", "/echo", body=b"x" * 10, end=False, length=100)
    reply = client.response(stream)
    assert reply.status == 408


def check_write_timeout(server, path, client, ca, tmp):
    before = total(scrape(server), "corral_connections_closed_total", reason="write_timeout")
    client.request("GET", "/big")  # 16 MB, never read
    wait_until(lambda: total(scrape(server), "corral_connections_closed_total", reason="write_timeout") > before,
               timeout=WAIT, message="the write timeout")


def _hold(server, client, tmp, name):
    """A request that holds the worker's one slot until ``flag`` exists (its start logged)."""
    flag = tmp / name
    mark = server.mark()
    stream = client.request("GET", f"/hold?{flag}")
    server.wait_log(rf"hold {name} in \d+", start=mark)
    return flag, stream


def check_concurrency_limit(server, path, client, ca, tmp):
    other = connect(server, path, ca)
    try:
        flag, held = _hold(server, other, tmp, "limit")
        reply = client.response(client.request("GET", "/x"))  # waits the queue time (1 s), then 503
        assert reply.status == 503 and reply.headers.get(b"retry-after") == b"1"
        flag.touch()
        assert other.response(held).status == 200
    finally:
        other.close()


def check_concurrency_queue(server, path, client, ca, tmp):
    other = connect(server, path, ca)
    try:
        flag, held = _hold(server, other, tmp, "queue")
        stream = client.request("GET", "/x")
        flag.touch()  # the slot frees within the queue time: served, not 503
        assert other.response(held).status == 200
        reply = client.response(stream)
        assert reply.status == 200 and reply.body == b"app"
    finally:
        other.close()


def check_body_limit(server, path, client, ca, tmp):
    reply = client.response(client.request("POST", "/echo", body=b"x" * 2000))
    assert reply.status == 413


def check_early_response(server, path, client, ca, tmp):
    # The app answers without reading a body of 900 bytes it was sent only in part.
    stream = client.request("POST", "/early", body=b"x" * 100, end=False, length=900)
    reply = client.response(stream)
    assert reply.status == 200 and reply.body == b"early" and reply.complete


def check_framing(server, path, client, ca, tmp):
    reply = client.response(client.request("GET", "/long"))
    assert reply.status == 500 and b"too long" not in reply.body


def check_invalid_response_headers(server, path, client, ca, tmp):
    reply = client.response(client.request("GET", "/bad-header"))
    assert reply.status == 500 and b"injected" not in reply.headers


def check_underscore_headers(server, path, client, ca, tmp):
    wsgi = connect(SERVERS.get(path, "matrix_app:wsgi"), path, ca)
    try:
        fields = [("X_Forwarded_For", "6.6.6.6"), ("Content_Length", "5"), ("X-Real", "1")]
        reply = wsgi.response(wsgi.request("GET", "/", headers=fields))
        environ = json.loads(reply.body)
        assert environ.get("HTTP_X_REAL") == "1"
        assert "HTTP_X_FORWARDED_FOR" not in environ and environ.get("CONTENT_LENGTH", "") in ("", "0")
    finally:
        wsgi.close()


def check_proxy_identity(server, path, client, ca, tmp):
    if path.ws:
        client.close()
        client = connect(server, path, ca, headers=b"X-Forwarded-For: 198.51.100.9\r\n")
        host, _, scheme, version = ws_hello(client)
        client.close()
        assert (host, scheme, version) == ("198.51.100.9", "ws", "2" if path.h2 else "1.1")
        return
    reply = client.response(client.request("GET", "/client", headers=[("X-Forwarded-For", "198.51.100.9")]))
    host, port, scheme = json.loads(reply.body)
    if path.proxy:  # the PROXY header names the client; it is not a trusted forwarder itself
        assert (host, port) == PROXIED
    else:  # 127.0.0.1 is trusted (--forwarded-allow-ips): X-Forwarded-For names the client
        assert host == "198.51.100.9"
    assert scheme == ("https" if path.tls else "http")


def check_health_path(server, path, client, ca, tmp):
    reply = client.response(client.request("GET", "/healthz"))
    assert reply.status == 200 and reply.body == b"ok\n"


def check_metrics_count(server, path, client, ca, tmp):
    if path.ws:
        ws_hello(client)  # accepted; the snapshot that shows it open also counts it
        wait_until(lambda: total(scrape(server), "corral_websocket_connections_open") >= 1, timeout=WAIT,
                   message="the open WebSocket reported")
        before = total(scrape(server), "corral_websocket_connections_total")
        connect(server, path, ca).close()
        wait_until(lambda: total(scrape(server), "corral_websocket_connections_total") == before + 1, timeout=WAIT,
                   message="the WebSocket counted once")
        return

    def count():
        return total(scrape(server), "corral_requests_total", method="PATCH")

    before = count()
    assert client.response(client.request("PATCH", "/x")).status == 200
    wait_until(lambda: count() == before + 1, timeout=WAIT, message="the request counted once")


def check_message_limit(server, path, client, ca, tmp):
    from test_websocket import client_frame

    ws_hello(client)
    client.send(client_frame(0x1, b"x" * 1001))  # over --ws-max-size 1000
    client.expect_close(1009)


def check_drain_on_hup(server, path, client, ca, tmp):
    if path.ws:
        from test_websocket import client_frame

        ws_hello(client)
        mark = server.mark()
        server.signal(signal.SIGHUP)
        client.expect_close(1001)  # going away: the old worker drains
        client.send(client_frame(0x8, (1001).to_bytes(2, "big")))
        client.expect_eof()
        server.wait_log(r"ws disconnect 1001", start=mark)
        return
    flag, held = _hold(server, client, tmp, "drain")
    mark = server.mark()
    server.signal(signal.SIGHUP)
    server.wait_log(r"master: worker \d+ ready", start=mark)  # the new generation serves
    server.wait_log(r"draining 1 requests? in flight", start=mark)  # the old one drains, our request in it
    flag.touch()
    reply = client.response(held)
    assert reply.status == 200 and reply.body == b"held"
    if not path.h2:
        assert reply.headers.get(b"connection") == b"close"
    assert client.closed(), "the old worker's connection ends after its requests (HTTP/2: GOAWAY first)"


CHECKS = {
    "header timeout": check_header_timeout,
    "body timeout": check_body_timeout,
    "write timeout": check_write_timeout,
    "concurrency limit": check_concurrency_limit,
    "concurrency queue": check_concurrency_queue,
    "body limit": check_body_limit,
    "early response": check_early_response,
    "framing": check_framing,
    "invalid response headers": check_invalid_response_headers,
    "underscore headers (WSGI)": check_underscore_headers,
    "proxy identity": check_proxy_identity,
    "health path": check_health_path,
    "metrics count": check_metrics_count,
    "message size limit (WebSocket)": check_message_limit,
    "drain on HUP": check_drain_on_hup,
}

# Cells that do not apply, and why. Every other cell must pass.
NOT_APPLICABLE: dict[tuple[str, str], str] = {}
for _row in PATHS:
    if not PATHS[_row].ws:
        NOT_APPLICABLE[(_row, "message size limit (WebSocket)")] = "HTTP bodies have --limit-request-body (the body limit cell)"
for _row in ("ws/h1", "ws/h2c"):
    NOT_APPLICABLE.update({
        (_row, "header timeout"): "the handshake is a request head: the h1 and h2c rows' cell covers it",
        (_row, "body timeout"): "no request body; a silent WebSocket is pinged (--ws-ping-interval, --ws-ping-timeout)",
        (_row, "write timeout"): "a client that does not read makes the app's send wait; the keepalive ping closes it",
        (_row, "concurrency limit"): "a WebSocket is not a request in flight (--limit-connections bounds them)",
        (_row, "concurrency queue"): "a WebSocket is not a request in flight",
        (_row, "body limit"): "messages have --ws-max-size (the message size limit cell)",
        (_row, "early response"): "no request body to answer early",
        (_row, "framing"): "frames, not Content-Length; protocol errors close 1002/1007 (test_websocket.py)",
        (_row, "invalid response headers"): "the accept headers are checked: test_invalid_accept_headers_raise_in_the_app",
        (_row, "underscore headers (WSGI)"): "WSGI has no WebSocket",
        (_row, "health path"): "the health path is an HTTP request",
    })

# Cells whose fix lands separately (strict: the day they pass, this table must shrink).
AWAITING: dict[tuple[str, str], str] = {}

SERVERS: Servers  # the module's servers, for checks that need a second configuration


@pytest.mark.parametrize("guarantee", list(CHECKS))
@pytest.mark.parametrize("row", list(PATHS))
def test_guarantee(servers, tmp_path, request, row, guarantee):
    reason = NOT_APPLICABLE.get((row, guarantee))
    if reason:
        pytest.skip(reason)
    if (row, guarantee) in AWAITING:
        request.applymarker(pytest.mark.xfail(strict=True, reason=AWAITING[(row, guarantee)]))
    global SERVERS
    SERVERS = servers
    path = PATHS[row]
    server = servers.get(path)
    client = connect(server, path, servers.ca)
    try:
        CHECKS[guarantee](server, path, client, servers.ca, tmp_path)
    finally:
        client.close()
