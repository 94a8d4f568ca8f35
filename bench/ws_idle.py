#!/usr/bin/env python3
"""Memory per idle WebSocket: corral against uvicorn, one worker each.

For each server: start it with ``bench.ws_apps:idle`` (accept, then wait in
``receive()``), warm it up with a few hundred connections that exchange a
message and close, read the serving process's RSS (``VmRSS`` in
/proc/PID/status), open N WebSocket connections and keep them idle, wait for
the process to settle, read RSS again. RSS per connection = growth / N.

The clients offer permessage-deflate as browsers do (``--compression on``),
or not (``off``), or both in turn. One server runs at a time. Needs file
descriptors for N sockets on each side (the script raises its own soft
limit to the hard one; the servers inherit it).

    python3 bench/ws_idle.py                       # 10,000 connections, both servers
    python3 bench/ws_idle.py --connections 2000 --servers corral
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run import REPO  # noqa: E402
import ws_broadcast  # noqa: E402
from ws_broadcast import default_uvicorn, open_clients, raise_fd_limit, run_client, start_server  # noqa: E402


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def serving_pid(name: str, server) -> int:
    """corral serves from a worker (a child of the master); uvicorn --workers 1 from itself."""
    if name == "uvicorn":
        return server.proc.pid
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = subprocess.run(["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True).stdout.split()
        if out:
            return int(out[0])
        time.sleep(0.05)
    raise RuntimeError("no corral worker found")


async def measure(port: int, pid: int, connections: int, compression: bool, settle: float) -> dict:
    warm = await open_clients(port, "/", 300, compression)
    for client in warm:
        client.send_text("warm up")
    await asyncio.wait_for(asyncio.gather(*(c.expect(1) for c in warm)), 30)
    for client in warm:
        client.transport.close()
    await asyncio.sleep(settle)
    before = rss_kib(pid)
    started = time.perf_counter()
    clients = await open_clients(port, "/", connections, compression)
    opened = time.perf_counter() - started
    await asyncio.sleep(settle)
    after = rss_kib(pid)
    # Every connection is still there and answers.
    probe = clients[:: max(1, connections // 100)]
    for client in probe:
        client.send_text("still there?")
    await asyncio.wait_for(asyncio.gather(*(c.expect(1) for c in probe)), 30)
    extensions = clients[0].extensions
    for client in clients:
        client.transport.close()
    await asyncio.sleep(0.5)
    return {
        "rss_before_kib": before,
        "rss_after_kib": after,
        "per_connection_bytes": (after - before) * 1024 / connections,
        "open_seconds": opened,
        "extensions": extensions,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="corral,uvicorn")
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--compression", choices=["on", "off", "both"], default="on")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds to wait before reading RSS (default 2)")
    parser.add_argument("--corral", default=os.path.join(REPO, ".venv", "bin", "corral"))
    parser.add_argument("--uvicorn", default=default_uvicorn())
    parser.add_argument("--uvicorn-ws", default=ws_broadcast.UVICORN_WS, help="uvicorn's --ws (default websockets, what auto picks)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    ws_broadcast.UVICORN_WS = args.uvicorn_ws
    raise_fd_limit()
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.compression]
    results = {}
    for compression in modes:
        for name in [n.strip() for n in args.servers.split(",") if n.strip()]:
            key = f"{name} {'deflate offered' if compression else 'no deflate'}"
            server, port = start_server(name, getattr(args, name), "bench.ws_apps:idle", [])
            try:
                pid = serving_pid(name, server)
                results[key] = run_client(measure(port, pid, args.connections, compression, args.settle))
            finally:
                server.stop()
            r = results[key]
            print(f"  {key:26} RSS {r['rss_before_kib'] / 1024:7.1f} -> {r['rss_after_kib'] / 1024:7.1f} MiB "
                  f"({r['open_seconds']:.1f}s to open)", file=sys.stderr)
    print(f"\n{args.connections} idle WebSockets, one worker")
    print(f"{'server':26} {'RSS growth MiB':>15} {'bytes/connection':>17}  extension")
    for key, r in results.items():
        growth = (r["rss_after_kib"] - r["rss_before_kib"]) / 1024
        print(f"{key:26} {growth:15.1f} {r['per_connection_bytes']:17.0f}  {r['extensions'] or '-'}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "results": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
