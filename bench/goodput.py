"""Goodput under overload (issue 21): `python3 bench/overload.py goodput`.

Open-loop arrivals, as independent clients arrive: each client opens a new
connection from its own loopback address (127.0.0.2 and up), sends one GET
and waits at most ``--deadline`` (1 s) from the moment it arrived, then gives
up. Arrivals are Poisson at a multiple of the capacity measured in the same
run, for each server (its own capacity: a closed loop of 64 clients, a new
connection per request, ``--capacity-seconds``).

Goodput is the responses received within the deadline per second, as a
fraction of that capacity. For every load it prints goodput, the p50/p99 of
the served requests, and how the rest ended: 503 (and within the deadline),
refused or reset, timed out. Bounded: ``--seconds`` of arrivals per load, at
most ``--max-clients`` each; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.goodput_apps import APPS  # noqa: E402

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
PING = b"GET /ping HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
SOURCES = [f"127.0.0.{i}" for i in range(2, 250)]


# -- servers -------------------------------------------------------------------


def server_command(name: str, app: str, port: int, workers: int, corral: str, peers: str, extra: list[str]) -> list[str]:
    target = APPS[app]
    wsgi = app == "wsgi"
    if name.startswith("corral"):
        cmd = [corral, target, "--app-dir", REPO, "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
        if wsgi:
            cmd += ["--threads", "4"]
        return cmd + extra
    if name == "uvicorn":
        if wsgi:
            return []
        return [f"{peers}/bin/uvicorn", target, "--app-dir", REPO, "--host", "127.0.0.1", "--port", str(port),
                "--workers", str(workers), "--log-level", "warning"]
    if name == "granian":
        cmd = [f"{peers}/bin/granian", "--interface", "wsgi" if wsgi else "asgi", "--host", "127.0.0.1",
               "--port", str(port), "--workers", str(workers), "--working-dir", REPO, "--log-level", "warning"]
        if wsgi:
            cmd += ["--blocking-threads", "4"]
        return cmd + [target]
    if name == "gunicorn":
        kind = ["-k", "gthread", "--threads", "4"] if wsgi else ["-k", "uvicorn.workers.UvicornWorker"]
        return [f"{peers}/bin/gunicorn", *kind, "-w", str(workers), "-b", f"127.0.0.1:{port}", "--chdir", REPO,
                "--log-level", "warning", target]
    raise SystemExit(f"unknown server {name}")


class Server:
    def __init__(self, cmd: list[str], port: int):
        self.port = port
        self.log = open(f"/tmp/goodput-{os.getpid()}-{port}.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log, start_new_session=True, cwd=REPO)
        deadline = time.monotonic() + 30
        while not ping(port, 1.0):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{cmd[0]} did not start (log: {self.log.name})")
            time.sleep(0.1)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        self.log.close()


def ping(port: int, timeout: float) -> float | None:
    """Seconds a /ping took, or None."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(PING)
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
    except OSError:
        return None
    return time.monotonic() - started if data.startswith(b"HTTP/1.1 200") else None


def wait_idle(port: int, limit: float = 30.0) -> None:
    """Until a /ping answers within 20 ms three times running (the last load's backlog is gone)."""
    deadline = time.monotonic() + limit
    fast = 0
    while fast < 3 and time.monotonic() < deadline:
        took = ping(port, 2.0)
        fast = fast + 1 if took is not None and took < 0.02 else 0
        time.sleep(0.05)


# -- clients -------------------------------------------------------------------


class Client(asyncio.Protocol):
    """One connection, one request; ``done`` gets (outcome, status, finished)."""

    __slots__ = ("request", "done", "data", "transport")

    def __init__(self, done: asyncio.Future, request: bytes = REQUEST):
        self.request = request
        self.done = done
        self.data = b""
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data):
        self.data += data

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        if self.done.done():
            return
        now = time.monotonic()
        if self.data[:9] in (b"HTTP/1.1 ", b"HTTP/1.0 "):
            self.done.set_result(("status", int(self.data[9:12]), now))
        else:
            self.done.set_result(("reset", 0, now))


async def one(loop, source: str, port: int, deadline: float) -> tuple[str, int, float]:
    done = loop.create_future()
    holder: list = []

    def factory():
        client = Client(done)
        holder.append(client)
        return client

    def connected(task):
        if task.cancelled() or done.done():
            return
        exc = task.exception()
        if exc is not None:
            done.set_result(("refused" if isinstance(exc, ConnectionRefusedError) else "reset", 0, time.monotonic()))

    def expire():
        if not done.done():
            done.set_result(("timeout", 0, time.monotonic()))
        if not connect.done():
            connect.cancel()
        elif holder and holder[0].transport is not None:
            holder[0].transport.abort()

    connect = loop.create_task(loop.create_connection(factory, "127.0.0.1", port, local_addr=(source, 0)))
    connect.add_done_callback(connected)
    timer = loop.call_at(loop.time() + max(0.0, deadline - time.monotonic()), expire)
    try:
        return await done
    finally:
        timer.cancel()


async def open_loop(port: int, rate: float, seconds: float, deadline_s: float, max_clients: int, seed: int) -> dict:
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    arrivals, t = [], 0.0
    while len(arrivals) < max_clients:
        t += rng.expovariate(rate)
        if t > seconds:
            break
        arrivals.append(t)
    start = time.monotonic() + 0.05
    tasks, late = [], []
    for n, offset in enumerate(arrivals):
        at = start + offset
        delay = at - time.monotonic()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        now = time.monotonic()
        late.append(now - at)
        tasks.append((at, loop.create_task(one(loop, SOURCES[n % len(SOURCES)], port, at + deadline_s))))
    results = []
    for at, task in tasks:
        kind, status, finished = await task
        results.append((kind, status, finished - at))
    return summarize(results, seconds, late)


def summarize(results, seconds: float, late: list[float]) -> dict:
    served = sorted(took for kind, status, took in results if kind == "status" and status == 200)
    shed = [took for kind, status, took in results if kind == "status" and status == 503]
    other = sum(1 for kind, status, _ in results if kind == "status" and status not in (200, 503))
    late.sort()
    return {
        "clients": len(results),
        "served": len(served),
        "served_per_s": len(served) / seconds,
        "p50_ms": 1000 * served[len(served) // 2] if served else None,
        "p99_ms": 1000 * served[min(len(served) - 1, int(len(served) * 0.99))] if served else None,
        "shed_503": len(shed),
        "shed_503_fast": sum(1 for took in shed if took <= 1.0),
        "refused": sum(1 for kind, _, _ in results if kind in ("refused", "reset")),
        "timed_out": sum(1 for kind, _, _ in results if kind == "timeout"),
        "other": other,
        "generator_late_p99_ms": 1000 * late[int(len(late) * 0.99)] if late else 0.0,
    }


async def closed_loop(port: int, seconds: float, clients: int = 64) -> float:
    loop = asyncio.get_running_loop()
    stop = time.monotonic() + seconds
    count = 0

    async def worker(n: int):
        nonlocal count
        while time.monotonic() < stop:
            kind, status, _ = await one(loop, SOURCES[n], port, time.monotonic() + 5.0)
            if kind == "status" and status == 200:
                count += 1

    started = time.monotonic()
    await asyncio.gather(*(worker(n) for n in range(clients)))
    return count / (time.monotonic() - started)


def run(args) -> list[dict]:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    rows = []
    for app in args.apps:
        for workers in args.workers:
            for name in args.servers:
                extra = args.corral_args.split() if name.startswith("corral") and args.corral_args else []
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", 0))
                    port = probe.getsockname()[1]
                cmd = server_command(name, app, port, workers, args.corral, args.peers, extra)
                if not cmd:
                    continue
                server = Server(cmd, port)
                try:
                    wait_idle(port)
                    capacity = asyncio.run(closed_loop(port, args.capacity_seconds))
                    wait_idle(port)
                    for factor in args.loads:
                        rate = factor * capacity
                        result = asyncio.run(open_loop(port, rate, args.seconds, args.deadline,
                                                       args.max_clients, seed=int(factor * 1000)))
                        result.update(server=name, app=app, workers=workers, load=factor,
                                      capacity=capacity, goodput=result["served_per_s"] / capacity)
                        rows.append(result)
                        print(line(result), flush=True)
                        wait_idle(port)
                finally:
                    server.stop()
    return rows


def line(r: dict) -> str:
    unserved = r["clients"] - r["served"]
    fast = r["shed_503_fast"] + r["refused"]
    told = f"{100 * fast / unserved:.0f}%" if unserved else "-"
    p99 = f"{r['p99_ms']:.0f}" if r["p99_ms"] is not None else "-"
    return (f"{r['server']:<8} {r['app']:<4} w{r['workers']} {r['load']:>4.1f}x  cap {r['capacity']:6.0f}/s  "
            f"goodput {r['goodput']:.2f}  p99 {p99:>5} ms  clients {r['clients']:5d}  served {r['served']:5d}  "
            f"503 {r['shed_503']:5d}  refused {r['refused']:5d}  timeout {r['timed_out']:5d}  "
            f"told fast {told}  (gen late p99 {r['generator_late_p99_ms']:.0f} ms)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="overload.py goodput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="corral,uvicorn,granian,gunicorn")
    parser.add_argument("--apps", default="cpu,io,wsgi")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--loads", default="0.8,2,4,8")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--capacity-seconds", type=float, default=3.0)
    parser.add_argument("--deadline", type=float, default=1.0)
    parser.add_argument("--max-clients", type=int, default=40000)
    parser.add_argument("--corral", default=os.path.join(REPO, ".venv", "bin", "corral"))
    parser.add_argument("--corral-args", default="", help="extra corral options, e.g. '--overload-delay 0'")
    parser.add_argument("--peers", default=os.path.join(REPO, ".venv-bench"))
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    args.servers = args.servers.split(",")
    args.apps = args.apps.split(",")
    args.workers = [int(w) for w in args.workers.split(",")]
    args.loads = [float(x) for x in args.loads.split(",")]
    rows = run(args)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
