"""--metrics-bind: the master's /metrics, exact across workers, kills and reloads (issue 15)."""

import os
import signal
import socket
import time

import pytest

from support import Reader, read_response, wait_until

parser = pytest.importorskip("prometheus_client.parser")


def metrics_port(server) -> int:
    return int(server.wait_log(r"Prometheus metrics at http://127\.0\.0\.1:(\d+)/metrics")[0].group(1))


def raw_get(port: int, target: str = "/metrics", method: str = "GET") -> tuple[bytes, dict, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        response = Reader(sock).response(method)
        return response.status, response.headers, response.body


def scrape(port: int) -> dict:
    """{(name, frozenset(labels)): value} from a real scrape, parsed by prometheus_client."""
    status, headers, body = raw_get(port)
    assert status == b"HTTP/1.1 200 OK"
    assert headers[b"content-type"] == b"text/plain; version=0.0.4; charset=utf-8"
    samples = {}
    for family in parser.text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: dict, name: str, **labels) -> float:
    want = set(labels.items())
    return sum(value for (n, lab), value in samples.items() if n == name and want <= lab)


def per_worker(samples: dict, name: str) -> dict[int, float]:
    return {int(dict(lab)["pid"]): value for (n, lab), value in samples.items() if n == name}


def send_requests(server, count: int) -> set[int]:
    """Exactly ``count`` requests, one connection each; returns the pids that answered."""
    pids = set()
    for _ in range(count):
        with server.connect() as sock:
            sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status, _, body = read_response(sock)
            assert status == b"HTTP/1.1 200 OK"
            pids.add(int(body))
    return pids


def wait_count(port: int, count: int) -> dict:
    """Scrape until the workers have reported ``count`` requests; never more."""
    deadline = time.monotonic() + 10
    while True:
        samples = scrape(port)
        seen = total(samples, "corral_requests_total")
        assert seen <= count, f"{seen} requests counted, {count} sent"
        if seen == count:
            return samples
        assert time.monotonic() < deadline, f"scrape says {seen}, {count} sent"
        time.sleep(0.1)


def test_exact_count_across_workers_kill_and_reload(server_factory, tmp_path):
    server = server_factory("basic:app", "--metrics-bind", "127.0.0.1:0", "--no-access-log", workers=2)
    port = metrics_port(server)
    workers = server.worker_pids()

    # Both workers answer, whatever the kernel's choice of acceptor: one
    # worker's loop is held by a blocking request, so the next 20 can only go
    # to the other; then it is released. Every request is counted.
    release = tmp_path / "release"
    mark = server.mark()
    with server.connect() as blocker:
        blocker.sendall(b"GET /block-until?" + str(release).encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        held = int(server.wait_log(r"block start (\d+)", start=mark)[0].group(1))
        assert send_requests(server, 20) == workers - {held}
        release.touch()
        assert read_response(blocker)[0] == b"HTTP/1.1 200 OK"
    sent = 21
    samples = wait_count(port, sent)
    assert total(samples, "corral_requests_total", method="GET", status="2xx") == sent
    assert total(samples, "corral_request_duration_seconds_count") == sent
    assert total(samples, "corral_connections_accepted_total") == sent
    wait_until(lambda: total(scrape(port), "corral_connections_closed_total", reason="normal") == sent,
               message="every connection closed")
    by_worker = wait_until(lambda: (b := per_worker(scrape(port), "corral_worker_requests_total"))
                           and sum(b.values()) == sent and b, message="heartbeats")
    assert set(by_worker) == workers and all(by_worker.values())
    assert total(samples, "corral_worker_starts_total") == 2

    # A worker killed: its counts stay.
    victim = max(workers, key=lambda pid: by_worker[pid])
    mark = server.mark()
    os.kill(victim, signal.SIGKILL)
    server.wait_log(r"master: worker \d+ ready", start=mark)
    samples = scrape(port)
    assert total(samples, "corral_requests_total") == sent
    assert total(samples, "corral_worker_exits_total", cause="crash") == 1
    assert total(samples, "corral_worker_starts_total") == 3
    send_requests(server, 30)
    sent += 30
    wait_count(port, sent)

    # A reload: the old workers' last counts arrive with their exit.
    mark = server.mark()
    server.signal(signal.SIGHUP)
    server.wait_log(r"master: reload complete", start=mark, timeout=20)
    wait_until(lambda: total(scrape(port), "corral_worker_exits_total", cause="reload") == 2, message="exits")
    samples = scrape(port)
    assert total(samples, "corral_requests_total") == sent
    assert total(samples, "corral_reloads_total") == 1
    send_requests(server, 25)
    sent += 25
    samples = wait_count(port, sent)
    assert total(samples, "corral_request_duration_seconds_count") == sent
    assert total(samples, "corral_worker_starts_total") == 5
    assert server.stop() == 0


def test_gauges_accept_queue_and_endpoint(server_factory, tmp_path):
    server = server_factory("basic:app", "--metrics-bind", "127.0.0.1:0", "--no-access-log", "--backlog", "100")
    port = metrics_port(server)
    [pid] = server.worker_pids()
    samples = scrape(port)
    assert total(samples, "corral_build_info") == 1
    [(_, labels)] = [key for key in samples if key[0] == "corral_build_info"]
    assert dict(labels)["loop"] == "uvloop" and dict(labels)["version"]
    assert total(samples, "corral_master_pid") == server.proc.pid
    assert total(samples, "corral_worker_state", state="serving") == 1
    assert per_worker(samples, "corral_worker_rss_bytes")[pid] > 1_000_000
    listener = f"127.0.0.1:{server.port}"
    assert total(samples, "corral_accept_queue_limit", listener=listener) == 100

    # The worker's loop is blocked (until the test releases it, however slow
    # the machine): connections wait in the kernel's queue.
    release = tmp_path / "release"
    blocker = server.connect()
    blocker.sendall(b"GET /block-until?" + str(release).encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    queued = lambda: total(scrape(port), "corral_accept_queue_length", listener=listener)  # noqa: E731
    probes = []

    def blocked() -> bool:  # a probe left in the queue: the worker stopped accepting
        probes.append(server.connect())
        return queued() >= 1

    wait_until(blocked, message="the worker to block")
    before = queued()
    waiting = probes + [server.connect() for _ in range(5)]
    assert queued() == before + 5
    assert total(scrape(port), "corral_accept_queue_peak", listener=listener) >= before + 5
    for sock in waiting:
        sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    release.touch()
    assert read_response(blocker)[2] == b"blocked\n"
    for sock in waiting:
        assert read_response(sock)[2] == str(pid).encode()
        sock.close()
    blocker.close()
    samples = wait_until(lambda: (s := scrape(port)) and total(s, "corral_requests_total") == 1 + len(waiting) and s,
                         message="every request counted")
    lag = per_worker(samples, "corral_worker_loop_lag_seconds")
    assert set(lag) == {pid}
    assert total(samples, "corral_accept_queue_length", listener=listener) == 0

    # The endpoint answers only GET/HEAD /metrics.
    assert raw_get(port, "/other")[0] == b"HTTP/1.1 404 Not Found"
    assert raw_get(port, "/metrics", "POST")[0] == b"HTTP/1.1 405 Method Not Allowed"
    status, headers, body = raw_get(port, "/metrics", "HEAD")
    assert status == b"HTTP/1.1 200 OK" and int(headers[b"content-length"]) > 1000
    assert server.stop() == 0


def test_close_reasons_and_503s(server_factory):
    server = server_factory("basic:app", "--metrics-bind", "127.0.0.1:0", "--no-access-log",
                            "--limit-concurrency", "1", "--timeout-keep-alive", "1")
    port = metrics_port(server)
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")  # no Host: 400
        assert read_response(sock)[0].startswith(b"HTTP/1.1 400")
    slow = server.connect()
    slow.sendall(b"GET /sleep?0.3 HTTP/1.1\r\nHost: x\r\n\r\n")
    server.wait_log(r"sleep start")
    with server.connect() as sock:
        sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_response(sock)[0] == b"HTTP/1.1 503 Service Unavailable"
    assert read_response(slow)[2] == b"slept\n"  # keep-alive: closed by the server once idle 1 s
    samples = wait_until(lambda: (s := scrape(port)) and total(s, "corral_connections_closed_total") == 3 and s,
                         message="3 closes")
    assert total(samples, "corral_connections_closed_total", reason="bad_request") == 1
    assert total(samples, "corral_connections_closed_total", reason="limit") == 1
    assert total(samples, "corral_connections_closed_total", reason="keepalive_timeout") == 1
    assert total(samples, "corral_concurrency_rejected_total") == 1
    assert total(samples, "corral_requests_total", status="2xx") == 1
    slow.close()


def test_metrics_bind_in_use_is_a_clear_error(server_factory):
    import subprocess
    import sys

    from support import APPS, ROOT

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        result = subprocess.run([sys.executable, "-m", "corral", "basic:app", "--app-dir", str(APPS), "--port", "0",
                                 "--metrics-bind", address], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert result.returncode == 2
    assert result.stderr == f"corral: error: --metrics-bind {address}: Address already in use\n"


def test_http2_streams_are_counted(server_factory):
    from h2support import H2Client

    server = server_factory("basic:app", "--metrics-bind", "127.0.0.1:0", "--no-access-log")
    port = metrics_port(server)
    with H2Client(server.port) as client:  # h2c, prior knowledge: one connection, five streams
        streams = [client.request(path) for path in ("/pid", "/pid", "/raise", "/pid", "/pid")]
        statuses = [client.response(stream_id)[0][b":status"] for stream_id in streams]
    assert statuses == [b"200", b"200", b"500", b"200", b"200"]
    samples = wait_count(port, 5)
    assert total(samples, "corral_requests_total", method="GET", status="2xx") == 4
    assert total(samples, "corral_requests_total", method="GET", status="5xx") == 1
    assert total(samples, "corral_request_duration_seconds_count") == 5
    assert total(samples, "corral_connections_accepted_total") == 1
