#!/usr/bin/env python3
"""WebSocket broadcast benchmark: corral against uvicorn, same app, same client.

N clients connect to ``bench.ws_apps:broadcast``; one of them asks the app to
broadcast M text messages (each to every client). The time from that request
until every client has received all M messages gives messages delivered per
second (N x M / seconds). Servers run one at a time with one worker,
alternating over the rounds. See bench/README.md ("WebSocket").

The client is a minimal asyncio protocol (uvloop when available) that only
frames and counts, so that the server, not the client, is what is measured;
with compression on it offers permessage-deflate like a browser does and
counts compressed frames without inflating them.

Needs the main virtualenv for corral (.venv) and uvicorn in a separate one
(``--uvicorn``, default .venv-bench/bin/uvicorn, else /tmp/uvbench/bin/uvicorn).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run import REPO, BenchError, Scenario, Server, free_port  # noqa: E402

OK = Scenario(app="", path="/", expect_body=b"ok")


def default_uvicorn() -> str:
    for path in (os.path.join(REPO, ".venv-bench", "bin", "uvicorn"), "/tmp/uvbench/bin/uvicorn"):
        if os.path.exists(path):
            return path
    return os.path.join(REPO, ".venv-bench", "bin", "uvicorn")


UVICORN_WS = "websockets"  # what uvicorn's --ws auto picks when websockets is installed


def server_argv(name: str, exe: str, app: str, port: int, extra: list[str]) -> list[str]:
    if name == "corral":
        return [exe, app, "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                "--no-access-log", "--app-dir", REPO, *extra]
    if name == "uvicorn":
        return [exe, app, "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                "--no-access-log", "--loop", "uvloop", "--http", "httptools", "--ws", UVICORN_WS,
                "--log-level", "warning", "--app-dir", REPO, *extra]
    raise BenchError(f"unknown server {name!r}")


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- a counting WebSocket client ------------------------------------------------


class CountingClient(asyncio.Protocol):
    """Handshake, then count data frames; masks what it sends (RFC 6455 §5.3)."""

    def __init__(self, path: str, compression: bool) -> None:
        self.path = path
        self.compression = compression
        self.transport = None
        self.buf = b""
        self.opened = asyncio.get_running_loop().create_future()
        self.received = 0
        self.target = 0
        self.reached: asyncio.Future | None = None
        self.extensions = ""

    def connection_made(self, transport) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16))
        ext = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if self.compression else b""
        transport.write(b"GET " + self.path.encode() + b" HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n" + ext + b"\r\n")

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if not self.opened.done():
            head, sep, rest = buf.partition(b"\r\n\r\n")
            if not sep:
                self.buf = buf
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(BenchError(f"handshake refused: {head[:200]!r}"))
                return
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"sec-websocket-extensions:"):
                    self.extensions = line.split(b":", 1)[1].strip().decode()
            self.opened.set_result(None)
            buf = rest
        pos, end, count = 0, len(buf), 0
        while end - pos >= 2:
            b1 = buf[pos + 1] & 0x7F
            if b1 < 126:
                head, length = 2, b1
            elif b1 == 126:
                if end - pos < 4:
                    break
                head, length = 4, int.from_bytes(buf[pos + 2:pos + 4], "big")
            else:
                if end - pos < 10:
                    break
                head, length = 10, int.from_bytes(buf[pos + 2:pos + 10], "big")
            if end - pos < head + length:
                break
            if buf[pos] & 0x0F in (1, 2):
                count += 1
            pos += head + length
        self.buf = buf[pos:]
        if count:
            self.received += count
            if self.reached is not None and self.received >= self.target and not self.reached.done():
                self.reached.set_result(None)

    def expect(self, count: int) -> asyncio.Future:
        self.target = self.received + count
        self.reached = asyncio.get_running_loop().create_future()
        if count <= 0:
            self.reached.set_result(None)
        return self.reached

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        n = len(payload)
        head = bytes((0x81, 0x80 | n)) if n < 126 else bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
        masked = (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")
        self.transport.write(head + mask + masked)

    def connection_lost(self, exc) -> None:
        if not self.opened.done():
            self.opened.set_exception(BenchError(f"connection lost during the handshake: {exc}"))
        if self.reached is not None and not self.reached.done():
            self.reached.set_exception(BenchError(f"connection lost after {self.received} messages"))


async def open_clients(port: int, path: str, count: int, compression: bool, batch: int = 256) -> list[CountingClient]:
    loop = asyncio.get_running_loop()
    clients: list[CountingClient] = []
    for start in range(0, count, batch):
        made = await asyncio.gather(*(
            loop.create_connection(lambda: CountingClient(path, compression), "127.0.0.1", port)
            for _ in range(min(batch, count - start))
        ))
        batch_clients = [protocol for _, protocol in made]
        await asyncio.wait_for(asyncio.gather(*(c.opened for c in batch_clients)), 60)
        clients += batch_clients
    return clients


def payload_text(size: int) -> str:
    """Chat-like text: compressible as real messages are, not a run of one byte."""
    words = "the quick brown fox jumps over a lazy dog while corral serves websockets to many clients at once".split()
    rng = random.Random(size)
    text = ""
    while len(text) < size:
        text += rng.choice(words) + " "
    return text[:size]


async def broadcast_rounds(port: int, clients: int, messages: int, size: int, compression: bool, repeats: int) -> dict:
    conns = await open_clients(port, "/", clients, compression)
    extensions = conns[0].extensions
    payload = payload_text(size)
    rates = []
    for _ in range(repeats + 1):  # the first is a warm-up
        waits = [c.expect(messages) for c in conns]
        started = time.perf_counter()
        conns[0].send_text(f"go {messages} {payload}")
        await asyncio.wait_for(asyncio.gather(*waits), 300)
        elapsed = time.perf_counter() - started
        rates.append(clients * messages / elapsed)
    for c in conns:
        c.transport.close()
    await asyncio.sleep(0.2)
    return {"rates": rates[1:], "extensions": extensions}


def run_client(coro):
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)


def start_server(name: str, exe: str, app: str, extra: list[str]) -> tuple[Server, int]:
    port = free_port()
    server = Server(name, server_argv(name, exe, app, port, extra))
    try:
        server.wait_ready(port, OK)
    except BaseException:
        server.stop()
        raise
    return server, port


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="corral,uvicorn", help="comma-separated, in order (corral, uvicorn)")
    parser.add_argument("--clients", type=int, default=1000, help="connected clients (default 1000)")
    parser.add_argument("--messages", type=int, default=100, help="messages broadcast per round (default 100)")
    parser.add_argument("--size", type=int, default=64, help="bytes of text per message (default 64)")
    parser.add_argument("--compression", choices=["on", "off", "both"], default="both",
                        help="offer permessage-deflate from the clients (default both)")
    parser.add_argument("--rounds", type=int, default=3, help="server start-measure-stop cycles (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="broadcasts measured per round, after one warm-up (default 3)")
    parser.add_argument("--corral", default=os.path.join(REPO, ".venv", "bin", "corral"))
    parser.add_argument("--uvicorn", default=default_uvicorn())
    parser.add_argument("--uvicorn-ws", default=UVICORN_WS, help="uvicorn's --ws (default websockets, what auto picks)")
    parser.add_argument("--json", help="write every run and the summary to this file")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    global UVICORN_WS
    args = parse_args(argv)
    UVICORN_WS = args.uvicorn_ws
    raise_fd_limit()
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.compression]
    results: dict[str, list[float]] = {}
    extensions: dict[str, str] = {}
    print(f"{args.clients} clients x {args.messages} messages of {args.size} bytes, "
          f"{args.rounds} rounds x {args.repeats} broadcasts", file=sys.stderr)
    for round_no in range(args.rounds):
        for compression in modes:
            for name in names:
                key = f"{name} {'deflate' if compression else 'plain'}"
                exe = getattr(args, name)
                server, port = start_server(name, exe, "bench.ws_apps:broadcast", [])
                try:
                    out = run_client(broadcast_rounds(port, args.clients, args.messages, args.size, compression, args.repeats))
                finally:
                    server.stop()
                results.setdefault(key, []).extend(out["rates"])
                extensions[key] = out["extensions"]
                print(f"  round {round_no + 1}: {key:16} " + " ".join(f"{r:10.0f}" for r in out["rates"]) + " msg/s",
                      file=sys.stderr)
    print(f"\n{'server':18} {'median msg/s':>13} {'min':>10} {'max':>10}  extension negotiated")
    summary = {}
    for key, rates in results.items():
        summary[key] = {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}
        print(f"{key:18} {summary[key]['median']:13.0f} {min(rates):10.0f} {max(rates):10.0f}  {extensions[key] or '-'}")
    for compression in modes:
        label = "deflate" if compression else "plain"
        if f"corral {label}" in summary and f"uvicorn {label}" in summary:
            ratio = summary[f"corral {label}"]["median"] / summary[f"uvicorn {label}"]["median"]
            print(f"corral/uvicorn ({label}): {ratio:.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "runs": results, "summary": summary}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
