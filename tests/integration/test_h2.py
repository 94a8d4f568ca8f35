"""HTTP/2 end to end: curl, nghttp and h2load (Debian nghttp2-client), a raw
h2 client, over TLS (ALPN) and h2c; drain and reload under load; the known
HTTP/2 attacks, each run against a real corral."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import threading
import time

import h2.errors
import h2.events
import h2.settings
import pytest
from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame, PingFrame, RstStreamFrame, SettingsFrame

from h2support import H2Client, request_headers, terminated_or_closed
from support import Server, established, wait_until
from test_tls import Certs

E = h2.errors.ErrorCodes
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
needs_nghttp = pytest.mark.skipif(shutil.which("h2load") is None or shutil.which("nghttp") is None,
                                  reason="nghttp2-client (nghttp, h2load) is not installed: make test-packages")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Certs(tmp_path_factory.mktemp("h2tls"))


@pytest.fixture(scope="module")
def tls_server(certs):
    with Server("h2_app:app", *certs.args(), "--no-access-log") as srv:
        yield srv


@pytest.fixture(scope="module")
def server():
    with Server("h2_app:app", "--no-access-log") as srv:
        yield srv


def run(*command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=timeout)


def h2load_ok(out: subprocess.CompletedProcess, total: int) -> None:
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"requests: {total} total, {total} started, {total} done, {total} succeeded, 0 failed, 0 errored, 0 timeout" in out.stdout, out.stdout
    assert f"status codes: {total} 2xx" in out.stdout, out.stdout


# -- clients ---------------------------------------------------------------------------


@needs_curl
def test_curl_http2_over_tls_and_h2c(tls_server, server, certs):
    out = run("curl", "-sS", "--http2", "--cacert", str(certs.ca_file), "-w", " %{http_version}",
              f"https://127.0.0.1:{tls_server.port}/scope")
    scope = json.loads(out.stdout.rsplit(" ", 1)[0])
    assert out.stdout.endswith(" 2") and scope["http_version"] == "2" and scope["scheme"] == "https"
    assert scope["extensions"]["tls"]["tls_version"] == 0x0304
    out = run("curl", "-sS", "--http2-prior-knowledge", "-d", "posted", "-w", " %{http_version}",
              f"http://127.0.0.1:{server.port}/echo")
    assert out.stdout == "posted 2"
    # Without prior knowledge, the same cleartext port speaks HTTP/1.1.
    out = run("curl", "-sS", "-w", " %{http_version}", f"http://127.0.0.1:{server.port}/pid")
    assert out.stdout.endswith(" 1.1")


@needs_nghttp
def test_nghttp_and_h2load(tls_server, server):
    out = run("nghttp", "-nv", f"https://127.0.0.1:{tls_server.port}/trailers")
    assert re.search(r"recv \(stream_id=\d+\) :status: 200", out.stdout) and "x-checksum: abc" in out.stdout, out.stdout
    h2load_ok(run("h2load", "-n", "2000", "-c", "4", "-m", "10", f"https://127.0.0.1:{tls_server.port}/"), 2000)
    h2load_ok(run("h2load", "-n", "2000", "-c", "4", "-m", "10", f"http://127.0.0.1:{server.port}/"), 2000)


def test_request_body_streams_with_backpressure(server):
    data = bytes(range(256)) * 4096  # 1 MiB against a 256 KiB stream window
    with H2Client(server.port) as client:
        stream_id = client.conn.get_next_available_stream_id()
        client.conn.send_headers(stream_id, request_headers("/slow-echo", "POST"))
        sent = 0
        while sent < len(data):
            window = min(client.conn.local_flow_control_window(stream_id), len(data) - sent, 16384)
            if window <= 0:
                client.read(10)  # the server reopens the window as the app reads
                continue
            client.conn.send_data(stream_id, data[sent:sent + window])
            sent += window
            client.flush()
        client.conn.end_stream(stream_id)
        client.flush()
        headers, body, _ = client.response(stream_id, timeout=30)
    assert (headers[b":status"], body) == (b"200", str(len(data)).encode())


def test_app_error_is_500_and_others_go_on(server):
    with H2Client(server.port) as client:
        bad = client.request("/raise")
        good = client.request("/pid")
        assert client.response(bad)[0][b":status"] == b"500"
        assert client.response(good)[0][b":status"] == b"200"


def test_wsgi_over_h2(certs):
    with Server("wsgi_app:app", *certs.args()) as srv:
        out = run("curl", "-sS", "--http2", "--cacert", str(certs.ca_file), f"https://127.0.0.1:{srv.port}/environ")
    environ = json.loads(out.stdout)
    assert environ["SERVER_PROTOCOL"] == "HTTP/2" and environ["wsgi.url_scheme"] == "https" and environ["HTTPS"] == "on"


def test_http_1_turns_http2_off(certs):
    with Server("h2_app:app", *certs.args(), "--http", "1") as srv:
        out = run("curl", "-sS", "--http2", "--cacert", str(certs.ca_file), "-w", " %{http_version}",
                  f"https://127.0.0.1:{srv.port}/pid")
        assert out.stdout.endswith(" 1.1")


def test_preface_split_across_reads_is_still_http2(server):
    """The cleartext sniffer waits for enough bytes: a preface sent in pieces
    (first byte alone) gets HTTP/2; an HTTP/1.1 POST (also a "P") does not."""
    client = H2Client(server.port, preface=False)
    with client:
        client.conn.initiate_connection()
        data = client.conn.data_to_send()
        for piece in (data[:1], data[1:10], data[10:]):
            client.send_raw(piece)
            time.sleep(0.05)  # separate segments (not a wait for a condition: the point is the split)
        stream_id = client.request("/pid")
        assert client.response(stream_id)[0][b":status"] == b"200"
    out = run("curl", "-sS", "-d", "x", "-w", " %{http_version}", f"http://127.0.0.1:{server.port}/echo")
    assert out.stdout == "x 1.1", out


def test_proxy_headers_apply_to_http2_streams(server):
    """The same client identity as over HTTP/1.1: 127.0.0.1 is trusted by default."""
    with H2Client(server.port) as client:
        forwarded = client.request("/scope", extra=[(b"x-forwarded-for", b"198.51.100.1, 203.0.113.7"),
                                                    (b"x-forwarded-proto", b"https")])
        plain = client.request("/scope")
        scope = json.loads(client.response(forwarded)[1])
        assert (scope["client"][0], scope["scheme"]) == ("203.0.113.7", "https")
        scope = json.loads(client.response(plain)[1])
        assert (scope["client"][0], scope["scheme"]) == ("127.0.0.1", "http")


# -- Upgrade: h2c (cleartext, --http auto) -------------------------------------------------


def h2c_upgrade(port: int, request_head: bytes, settings: bytes | None = None):
    """Send an HTTP/1.1 request with ``Upgrade: h2c``; returns (client, the
    response head up to its blank line). After a 101 the client's HTTP/2
    side is set up and has read whatever came with it."""
    client = H2Client(port, preface=False)
    header = client.conn.initiate_upgrade_connection()
    if settings is not None:
        header = settings
    client.send_raw(request_head + b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                    b"HTTP2-Settings: " + header + b"\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.sock.recv(65536)
        assert chunk, data
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    if head.startswith(b"HTTP/1.1 101"):
        client.flush()  # the client preface
        if rest:
            client.events.extend(client.conn.receive_data(rest))
    else:
        client.raw = rest
    return client, head


def test_upgrade_h2c_answers_on_stream_1_then_serves_http2(server):
    client, head = h2c_upgrade(server.port, b"GET /scope?x=1 HTTP/1.1\r\nHost: example.test\r\n")
    with client:
        assert head.lower().split(b"\r\n") == [b"http/1.1 101 switching protocols", b"connection: upgrade",
                                                b"upgrade: h2c"]
        headers, body, _ = client.response(1)
        scope = json.loads(body)
        assert headers[b":status"] == b"200"
        assert (scope["http_version"], scope["method"], scope["path"], scope["scheme"]) == ("2", "GET", "/scope", "http")
        names = [name for name, _ in scope["headers"]]
        assert ["host", "example.test"] in scope["headers"]
        assert not {"connection", "upgrade", "http2-settings"} & set(names)
        # The connection is HTTP/2 from now on.
        stream_id = client.request("/echo", method="POST", body=b"after upgrade")
        assert stream_id == 3
        assert client.response(stream_id)[1] == b"after upgrade"


@needs_curl
def test_curl_http2_upgrades_cleartext(server):
    """curl --http2 on http:// asks with Upgrade: h2c."""
    out = run("curl", "-sS", "--http2", "-w", " %{http_version}", f"http://127.0.0.1:{server.port}/pid")
    assert out.returncode == 0 and out.stdout.endswith(" 2"), out
    # A body is never upgraded: the request is answered over HTTP/1.1.
    out = run("curl", "-sS", "--http2", "-d", "posted", "-w", " %{http_version}",
              f"http://127.0.0.1:{server.port}/echo")
    assert out.stdout == "posted 1.1", out


@pytest.mark.parametrize("settings", [b"AAM", b"!!!!"], ids=["not-a-settings-list", "not-base64"])
def test_upgrade_h2c_with_bad_settings_is_answered_over_http_1_1(server, settings):
    client, head = h2c_upgrade(server.port, b"GET /pid HTTP/1.1\r\nHost: x\r\n", settings=settings)
    with client:
        lines = head.lower().split(b"\r\n")
        assert lines[0] == b"http/1.1 200 ok" and b"connection: close" in lines


def test_upgrade_h2c_is_ignored_with_http_1():
    with Server("h2_app:app", "--no-access-log", "--http", "1") as srv:
        client, head = h2c_upgrade(srv.port, b"GET /pid HTTP/1.1\r\nHost: x\r\n")
        with client:
            lines = head.lower().split(b"\r\n")
            assert lines[0] == b"http/1.1 200 ok" and b"connection: close" not in lines


# -- drain and reload ------------------------------------------------------------------------


def test_graceful_stop_sends_two_goaways_and_finishes_the_streams():
    with Server("h2_app:app", "--no-access-log") as srv:
        client = H2Client(srv.port)
        slow = client.request("/sleep?1.5")
        srv.wait_log("sleep start")
        srv.signal(signal.SIGTERM)
        client.wait(lambda ev: len(client.goaways()) >= 2, timeout=10)
        first, second = client.goaways()[:2]
        assert first == (2**31 - 1, E.NO_ERROR)  # RFC 9113 6.8: the notice first
        assert second == (slow, E.NO_ERROR)  # then the last stream accepted
        client.wait_closed()  # after the accepted stream was answered
        data = b"".join(f[3] for f in client.frames() if f[0] == 0x0 and f[2] == slow)
        assert data == b"slept"
        assert srv.stop() == 0


@needs_nghttp
def test_reload_under_h2load_loses_no_stream(certs):
    with Server("h2_app:app", *certs.args(), "--no-access-log", workers=2) as srv:
        load = subprocess.Popen(["h2load", "-n", "200000", "-c", "8", "-m", "10", "-T", "20",
                                 f"https://127.0.0.1:{srv.port}/"], stdout=subprocess.PIPE, text=True)
        try:
            # h2load's 8 connections are open (the test asserts h2load's own count).
            wait_until(lambda: established(srv.port) >= 8, timeout=20, message="h2load's connections")
            mark = srv.mark()
            srv.signal(signal.SIGHUP)
            srv.wait_log(r"master: worker \d+ ready", count=2, start=mark, timeout=30)
            out, _ = load.communicate(timeout=90)
        finally:
            if load.poll() is None:
                load.kill()
        match = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
        # h2load does not open a new connection after a GOAWAY: the requests
        # it had not sent count as "failed" in its summary. Zero loss means:
        # every request that reached corral (the workers' served counts) was
        # answered 2xx to h2load.
        assert match, out
        succeeded = int(match.group(4))
        assert int(match.group(5)) > 0, out  # the reload came during the load (GOAWAY ended h2load's connections)
        assert f"status codes: {succeeded} 2xx, 0 3xx, 0 4xx, 0 5xx" in out, out
        assert srv.stop() == 0
        served = sum(int(m.group(1)) for m in srv.wait_log(r"served (\d+) requests", count=4))
        assert served == succeeded, (served, out)  # every request that reached corral was answered


# -- attacks ------------------------------------------------------------------------------------


@pytest.fixture
def attacked():
    with Server("h2_app:app", "--http", "2", "--no-access-log", "--timeout-write", "2") as srv:
        yield srv


def assert_still_serves(srv) -> None:
    with H2Client(srv.port) as other:
        assert other.response(other.request("/pid"))[0][b":status"] == b"200"


def test_rapid_reset_cve_2023_44487(attacked):
    with H2Client(attacked.port) as client:
        block = client.conn.encoder.encode(request_headers("/sleep?5"))
        burst = b""
        for stream_id in range(1, 2 * 5000, 2):
            frame = HeadersFrame(stream_id, block)
            frame.flags.add("END_HEADERS")
            frame.flags.add("END_STREAM")
            burst += frame.serialize() + RstStreamFrame(stream_id, error_code=8).serialize()
        try:
            client.send_raw(burst)
        except OSError:
            pass
        event = terminated_or_closed(client)
        assert event is None or event.error_code != E.NO_ERROR  # ended by nghttp2's RST_STREAM rate limit
    starts = [line for line in attacked.lines if "sleep start" in line]
    # A stream opened and reset in the same read never runs the app (io/h2.py);
    # only a pair split across two reads can, and nghttp2's RST_STREAM token
    # bucket ends the connection after about 1,000 resets.
    assert len(starts) < 200
    assert_still_serves(attacked)


def test_continuation_flood_cve_2024_27316(attacked):
    with H2Client(attacked.port) as client:
        first = HeadersFrame(1, client.conn.encoder.encode(request_headers("/")))
        first.flags.add("END_STREAM")
        flood = first.serialize() + b"".join(ContinuationFrame(1, b"").serialize() for _ in range(20000))
        try:
            client.send_raw(flood)
        except OSError:
            pass
        event = terminated_or_closed(client)
        assert event is None or event.error_code != E.NO_ERROR
    assert_still_serves(attacked)


def test_hpack_bomb(attacked):
    with H2Client(attacked.port) as client:
        # One 4 KiB field into the dynamic table, then thousands of one-byte references to it.
        big = client.conn.encoder.encode([(b"x-bomb", b"b" * 4000)])
        block = client.conn.encoder.encode(request_headers("/")) + big + bytes([0xBE]) * 16000
        frames = [HeadersFrame(1, block[:16000])]
        rest = block[16000:]
        while rest:
            frames.append(ContinuationFrame(1, rest[:16000]))
            rest = rest[16000:]
        frames[0].flags.add("END_STREAM")
        frames[-1].flags.add("END_HEADERS")
        try:
            client.send_raw(b"".join(f.serialize() for f in frames))
        except OSError:
            pass
        try:
            client.wait(lambda ev: client.resets(1) or client.goaways(), timeout=10)
        except AssertionError:
            assert client.closed
        assert not [f for f in client.frames() if f[0] == 0x1 and f[2] == 1]  # never served
    assert_still_serves(attacked)


@pytest.mark.parametrize("frame", ["ping", "settings", "empty-data"])
def test_floods(attacked, frame):
    with H2Client(attacked.port) as client:
        if frame == "ping":
            one = PingFrame(0, b"12345678").serialize()
        elif frame == "settings":
            one = SettingsFrame(0, settings={0x3: 100}).serialize()
        else:
            client.request("/echo", "POST", end=False)
            one = DataFrame(1, b"").serialize()
        client.sock.settimeout(10)
        sent = 0
        try:
            for _ in range(200):  # up to 200,000 frames, never reading the answers
                client.sock.sendall(one * 1000)
                sent += 1000
        except OSError:
            pass  # the server closed on us: what the test wants
        event = terminated_or_closed(client, timeout=15)
        # Torn down (a reset once the server stopped reading), or GOAWAY ENHANCE_YOUR_CALM.
        assert event is None or event.error_code in (E.ENHANCE_YOUR_CALM, E.PROTOCOL_ERROR), (event, sent)
    assert_still_serves(attacked)


def test_zero_window_peer_is_closed_after_timeout_write(attacked):
    mark = attacked.mark()
    with H2Client(attacked.port, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}) as client:
        client.hold = True
        client.request("/big?1000000")
        started = time.monotonic()
        client.wait_closed(timeout=15)
        assert time.monotonic() - started >= 1.0
    attacked.wait_log("did not read|read none of its response", start=mark)
    assert_still_serves(attacked)


def test_early_answers_are_heard_by_real_clients(server_factory, tmp_path):
    # Issue 19 finding 1: the answer given before the body is read (the app's,
    # or corral's own 413) goes out whole; the stream then lingers, reading
    # and dropping the rest, and only a client still sending after that gets
    # RST_STREAM(NO_ERROR) (RFC 9113 8.1). Before, the reset came first and
    # the client heard nothing (curl exited 92).
    if shutil.which("curl") is None or shutil.which("nghttp") is None:
        pytest.skip("curl and nghttp (nghttp2-client) are needed: make test-packages")
    server = server_factory("matrix_app:app", "--limit-request-body", "100000")
    upload = tmp_path / "upload"
    upload.write_bytes(b"x" * 1_000_000)
    url = f"http://127.0.0.1:{server.port}"
    # corral's 413: curl stops uploading on an error answer and reports it.
    out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "--data-binary", f"@{upload}", "-w", "\n%{http_code}",
                          f"{url}/echo"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "Request body too large\n\n413"  # the body ends in a newline, then -w's
    # The app's 200: nghttp uploads on through the lingering stream and ends it cleanly.
    # (curl before 8.11 stops uploading after a 2xx and then drops the answer at the reset:
    # curl's bug, fixed upstream; RFC 9113 8.1 says a client must not discard it.)
    out = subprocess.run(["nghttp", "-v", "-d", str(upload), f"{url}/early"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert ":status: 200" in out.stdout and "early" in out.stdout
    assert "recv RST_STREAM" not in out.stdout  # it got to the end of its upload within the linger
