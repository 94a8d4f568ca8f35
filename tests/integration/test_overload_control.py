"""Overload control (issue 21, io/overload.py): under a burst past capacity
every client gets an answer, 200 or a fast 503, none times out; clients that
left are not served; under capacity nothing is shed; a half-closed pipelining
client gets every answer.

Load is bounded (a few hundred requests over a few seconds, loopback) and the
assertions are about outcomes, not timings: how fast is for bench/overload.py.
"""

import asyncio
import socket

from support import read_response, wait_until
from test_metrics import metrics_port, scrape, total

BURN_MS = 20  # per request: a worker serves at most 50 per second


def overload_server(server_factory, tmp_path, *args):
    return server_factory("overload:app", *args,
                          extra_env={"OVERLOAD_BURN_MS": str(BURN_MS), "OVERLOAD_MARK": str(tmp_path / "blocked")})


async def _client(port: int, deadline: float, request: bytes) -> str:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), deadline)
    except asyncio.TimeoutError:
        return "timeout"
    except OSError as exc:
        return f"error {exc!r}"
    try:
        writer.write(request)
        data = await asyncio.wait_for(reader.read(), deadline)
    except asyncio.TimeoutError:
        return "timeout"
    except OSError as exc:
        return f"error {exc!r}"
    finally:
        writer.close()
    return data[9:12].decode() if data.startswith(b"HTTP/1.1 ") else f"no answer {data[:40]!r}"


async def _open_loop(port: int, rate: float, seconds: float, deadline: float) -> list[str]:
    """Clients arriving every 1/rate seconds for ``seconds``, each on its own
    connection, each waiting at most ``deadline`` for its answer."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    count = int(rate * seconds)
    tasks = []
    request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    for n in range(count):
        delay = start + n / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(_client(port, deadline, request)))
    return list(await asyncio.gather(*tasks))


def get(server, path: bytes) -> bytes:
    with server.connect(timeout=30) as sock:
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, _, body = read_response(sock, timeout=30)
    assert b" 200 " in status, status
    return body


def test_a_burst_past_capacity_gets_fast_503s_and_no_timeouts(server_factory, tmp_path):
    server = overload_server(server_factory, tmp_path, "--metrics-bind", "127.0.0.1:0")
    # 4x the most a worker can serve (1000 / BURN_MS per second), for 3 s.
    outcomes = asyncio.run(_open_loop(server.port, rate=4 * 1000 / BURN_MS, seconds=3, deadline=20))
    counts = {outcome: outcomes.count(outcome) for outcome in set(outcomes)}
    assert set(counts) <= {"200", "503"}, counts  # every client answered: no timeout, no reset, no silence
    assert counts.get("503", 0) > 0 and counts.get("200", 0) > 0, counts
    assert int(get(server, b"/count")) == counts["200"]  # a 503 never ran the app
    server.wait_log(r"overloaded \(.*\): answering 503 to requests that waited over 100 ms")
    server.wait_log(r"overload over: \d+ requests answered 503", timeout=10)
    port = metrics_port(server)
    wait_until(lambda: total(scrape(port), "corral_requests_shed_total", reason="queue_delay") == counts["503"],
               timeout=10, message="the 503s counted as shed for queue delay")
    samples = scrape(port)
    assert total(samples, "corral_requests_shed_total", reason="concurrency_limit") == 0
    assert total(samples, "corral_queue_delay_seconds_count") >= counts["503"]  # every request measured while watching


def test_requests_of_clients_that_left_are_not_run(server_factory, tmp_path):
    server = overload_server(server_factory, tmp_path)
    blocker = server.connect(timeout=30)
    try:
        blocker.sendall(b"GET /block?1.5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        wait_until(lambda: (tmp_path / "blocked").exists(), timeout=10)
        # While the worker is stuck, 150 clients send a request and leave.
        for _ in range(150):
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_response(blocker, timeout=30)[2] == b"unblocked"
    finally:
        blocker.close()
    assert get(server, b"/count") == b"0"  # none of the 150 ran
    server.wait_log(r"overload over: 150 requests answered 503", timeout=10)


def test_no_503_under_capacity(server_factory, tmp_path):
    server = overload_server(server_factory, tmp_path)
    # A third of what the worker can serve, steadily, for 3 s.
    outcomes = asyncio.run(_open_loop(server.port, rate=1000 / BURN_MS / 3, seconds=3, deadline=20))
    assert outcomes == ["200"] * len(outcomes)
    assert int(get(server, b"/count")) == len(outcomes)
    assert not any("overloaded" in line for line in server.lines)


def test_a_pipelining_client_that_half_closes_gets_every_answer(server_factory, tmp_path):
    server = overload_server(server_factory, tmp_path)
    with server.connect(timeout=30) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 5)
        sock.shutdown(socket.SHUT_WR)
        statuses = [read_response(sock, timeout=30)[0] for _ in range(5)]
    assert statuses == [b"HTTP/1.1 200 OK"] * 5
    assert get(server, b"/count") == b"5"


def test_off_with_zero(server_factory, tmp_path):
    server = overload_server(server_factory, tmp_path, "--limit-queue-delay", "0")
    blocker = server.connect(timeout=30)
    try:
        blocker.sendall(b"GET /block?1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        wait_until(lambda: (tmp_path / "blocked").exists(), timeout=10)
        waiting = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
        for sock in waiting:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_response(blocker, timeout=30)[2] == b"unblocked"
        statuses = [read_response(sock, timeout=30)[0] for sock in waiting]
        for sock in waiting:
            sock.close()
    finally:
        blocker.close()
    assert statuses == [b"HTTP/1.1 200 OK"] * 20  # off: they waited, and were served
