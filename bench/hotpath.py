"""The cost of one request inside a worker, without sockets or a client.

A real ``H1Connection`` with the real ASGI cycle is fed the request wrk sends,
from a loop callback as a transport would, N times; the transport's write
does nothing. Stages: ``parser`` (RequestParser alone), ``conn`` (parser and
connection, with a handler that answers without ASGI), ``full`` (everything
up to the transport write), ``wsgi`` (the same with the native WSGI cycle,
``--threads 1``, and ``bench/wsgi_apps.py:hello``), ``access`` (``full`` with the default access log
on, written to /dev/null), ``browser`` (``full`` with a browser's 11 header
fields), ``setup`` (a connection made and lost, no request), ``close``
(``setup`` around one ``full`` request with ``Connection: close``: a new
connection per request, without the kernel's part), ``forwarded`` (``full``
with X-Forwarded-For/-Proto from a trusted peer) and ``forwarded-off`` (the
same with ``--no-proxy-headers``).

    .venv/bin/python bench/hotpath.py              # microseconds per request (noisy)
    .venv/bin/python bench/hotpath.py --callgrind  # instructions per request (exact)
    .venv/bin/python bench/hotpath.py --callgrind --metrics  # the same, counting for --metrics-bind
                                                             # (and the once-a-second fold, run once at the end)

``--callgrind`` runs this script under ``valgrind --tool=callgrind`` with N
requests and with none, for each stage, and prints the difference divided by
N: the same figure on every run, whatever else the machine is doing, so the
one to compare before and after a change of the hot path.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time

import uvloop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
CLOSE_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nConnection: close\r\n\r\n"
# bench/run.py's browser scenario: 11 fields besides Host
BROWSER_REQUEST = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.9,de;q=0.8\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Cookie: session=6f1c2a9e4b7d4e0f9a3b8c1d2e5f6a7b; theme=dark; _ga=GA1.1.123456789.1700000000\r\n"
    b"Referer: https://www.example.com/products/list?page=2\r\n"
    b"Sec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Site: same-origin\r\n"
    b"Sec-Fetch-User: ?1\r\nUpgrade-Insecure-Requests: 1\r\n\r\n"
)
# bench/run.py's forwarded scenario: a proxy on 127.0.0.1 names the client
FORWARDED_REQUEST = REQUEST[:-2] + b"X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n\r\n"
STAGES = ("parser", "conn", "full", "wsgi", "access", "browser", "setup", "close", "forwarded", "forwarded-off")


class NullTransport:
    def write(self, data):
        pass

    def writelines(self, parts):
        pass

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 40000)

    def is_closing(self):
        return False

    def can_write_eof(self):
        return True

    def write_eof(self):
        pass

    def close(self):
        pass

    def get_write_buffer_size(self):
        return 0

    def set_protocol(self, protocol):
        pass


def build(stage: str, metrics: bool = False):
    """Return a function feeding one request to the stage, and a closer."""
    from bench.apps import hello
    from corral.config import Config
    from corral.interfaces.asgi import ASGIHandler
    from corral.io.h1 import H1Connection
    from corral.io.state import ServerState
    from corral.proto.h1 import RequestParser

    loop = uvloop.new_event_loop()  # what the worker runs on
    asyncio.set_event_loop(loop)
    if stage == "access":
        import logging

        logging.getLogger("corral.access").setLevel(logging.INFO)
        config = Config(app="bench.apps:hello", log_file="/dev/null")
    else:
        config = Config(app="bench.apps:hello", access_log=False, proxy_headers=stage != "forwarded-off")
    state = ServerState(config, loop)
    # As the worker sets up a cleartext listener with the default --http auto
    # (corral/worker/process.py): HTTP/1.1 connections look for the HTTP/2
    # preface first and take Upgrade: h2c.
    from corral.io.h2 import prior_knowledge, upgrade_h2c

    state.h2c = True
    state.h2c_upgrade = upgrade_h2c
    state.h2c_prior_knowledge = prior_knowledge
    if metrics:
        from corral.io.metrics import WorkerMetrics

        state.metrics = WorkerMetrics()
    if stage == "parser":

        class Sink:
            def on_request(self, request):
                pass

            def on_body(self, request, chunk):
                pass

            def on_request_complete(self, request):
                pass

        return loop, state, RequestParser(Sink()).feed
    if stage == "conn":

        class Answer:
            __slots__ = ("conn", "request", "head", "status", "gone", "started")

            def __init__(self, conn, request):
                self.conn, self.request, self.head = conn, request, None
                self.status, self.gone = 200, False  # what --metrics counts
                self.started = time.perf_counter() if conn.state.metrics is not None else 0.0

            def start(self):
                self.conn.transport.write(b"")
                self.conn.cycle_done(self, True)

        state.handler = Answer
    elif stage == "wsgi":
        from bench.wsgi_apps import hello as wsgi_hello
        from corral.interfaces.wsgi import WSGIHandler

        state.handler = WSGIHandler(wsgi_hello, state).new_cycle
    else:
        state.handler = ASGIHandler(hello, state).new_cycle
    if stage in ("setup", "close"):
        transport = NullTransport()
        request = CLOSE_REQUEST if stage == "close" else None

        def connection(_):
            conn = H1Connection(state)
            conn.connection_made(transport)
            if request is not None:
                conn.data_received(request)
            conn.connection_lost(None)

        return loop, state, connection
    conn = H1Connection(state)
    conn.connection_made(NullTransport())
    if stage == "browser":
        feed = conn.data_received
        return loop, state, lambda _: feed(BROWSER_REQUEST)
    if stage.startswith("forwarded"):
        feed = conn.data_received
        return loop, state, lambda _: feed(FORWARDED_REQUEST)
    return loop, state, conn.data_received


def run(stage: str, n: int, metrics: bool = False) -> float:
    loop, state, feed = build(stage, metrics)
    elapsed = []

    def main():
        started = time.perf_counter()
        for _ in range(n):
            feed(REQUEST)
        if state.metrics is not None:
            state.metrics.fold()  # what the worker's tick does once a second, counted too
        elapsed.append(time.perf_counter() - started)

    loop.call_soon(main)
    loop.call_soon(loop.stop)
    loop.run_forever()
    if state.stepper.tasks_created:
        raise SystemExit(f"{stage}: the hello app suspended ({state.stepper.tasks_created} tasks)")
    if state.access is not None:
        state.access.close()
    state.stepper.close()
    loop.close()
    return elapsed[0]


def callgrind(stage: str, n: int, metrics: bool = False) -> int:
    def collected(count: int) -> int:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
             sys.executable, os.path.abspath(__file__), "--stage", stage, "-n", str(count)]
            + (["--metrics"] if metrics else []),
            capture_output=True, text=True, check=True,
        ).stderr
        return int(re.search(r"Collected : (\d+)", out).group(1))

    return (collected(n) - collected(0)) // n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", choices=STAGES, help="one stage only (default: all)")
    p.add_argument("-n", type=int, default=None, help="requests (default 200000, or 20000 with --callgrind)")
    p.add_argument("--callgrind", action="store_true", help="count instructions under valgrind")
    p.add_argument("--metrics", action="store_true", help="with the counters --metrics-bind turns on")
    args = p.parse_args()
    stages = [args.stage] if args.stage else list(STAGES)
    if args.callgrind:
        n = args.n or 20000
        for stage in stages:
            print(f"{stage:<7} {callgrind(stage, n, args.metrics):>8} instructions/request")
        return 0
    n = args.n if args.n is not None else 200000
    for stage in stages:
        seconds = run(stage, n, args.metrics)
        if n:
            print(f"{stage:<7} {seconds / n * 1e6:8.2f} us/request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
