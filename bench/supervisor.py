#!/usr/bin/env python3
"""Supervisor drills: failed requests during reloads, wakeups per accepted
connection (thundering herd), respawn delay. Same run, same machine, for
corral and its peers. Stdlib only; loopback only; every load is bounded.

    python3 bench/supervisor.py reload  [--servers corral,uvicorn,granian]
    python3 bench/supervisor.py herd    [--workers 8 --connections 2000]
    python3 bench/supervisor.py respawn [--times 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import REPO, SCENARIOS, SERVERS, BenchError, Server, free_port, run_wrk  # noqa: E402

HELLO = SCENARIOS["hello"]


def argv_for(name: str, port: int, workers: int) -> list[str]:
    exe, build = SERVERS[name]
    argv = build(exe, HELLO.app, port)
    return [str(workers) if (i and argv[i - 1] == "--workers") else a for i, a in enumerate(argv)]


def children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def start(name: str, workers: int) -> tuple[Server, int]:
    port = free_port()
    server = Server(name, argv_for(name, port, workers))
    server.wait_ready(port, HELLO)
    deadline = time.monotonic() + 20
    while len(children(server.proc.pid)) < workers and time.monotonic() < deadline:
        time.sleep(0.05)
    return server, port


# -- reload --------------------------------------------------------------

def reload_drill(name: str, churn: bool, duration: int = 10, reloads: int = 4) -> dict:
    server, port = start(name, 2)
    args = ("-t2", "-c32") + (("-H", "Connection: close") if churn else ())
    result: dict = {}

    def load() -> None:
        result.update(run_wrk("wrk", f"http://127.0.0.1:{port}/", duration, args))

    thread = threading.Thread(target=load)
    thread.start()
    try:
        for i in range(reloads):
            time.sleep(duration / (reloads + 1))
            server.proc.send_signal(signal.SIGHUP)
        thread.join(duration + 40)
    finally:
        server.stop()
    return result


def cmd_reload(args) -> None:
    print(f"{reloads_text(args)}: failed requests (wrk socket errors + non-2xx), 2 workers")
    print(f"{'server':10} {'load':10} {'requests/s':>11} {'errors':>7}")
    for churn in (False, True):
        for name in args.servers:
            r = reload_drill(name, churn)
            print(f"{name:10} {'churn' if churn else 'keep-alive':10} {r['rps']:11.0f} {r['errors']:7d}")


def reloads_text(args) -> str:
    return "4 SIGHUP reloads in 10 s under wrk -t2 -c32"


# -- herd ------------------------------------------------------------------

def voluntary_switches(pids: set[int]) -> int:
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/status") as handle:
                    for line in handle:
                        if line.startswith("voluntary_ctxt_switches"):
                            total += int(line.split()[1])
            except OSError:
                pass
    return total


def herd_drill(name: str, workers: int, connections: int) -> float:
    server, port = start(name, workers)
    try:
        pids = children(server.proc.pid)
        time.sleep(1.0)  # let boot-time activity settle
        held = []
        before = voluntary_switches(pids)
        for _ in range(connections):
            # Held open: what is counted is the accept, not the close.
            held.append(socket.create_connection(("127.0.0.1", port)))
            time.sleep(0.001)  # one at a time: every worker is idle when it arrives
        time.sleep(0.2)
        after = voluntary_switches(pids)
        for sock in held:
            sock.close()
    finally:
        server.stop()
    return (after - before) / connections


def cmd_herd(args) -> None:
    print(f"wakeups per accepted connection: voluntary context switches summed over all "
          f"{args.workers} idle workers' threads / {args.connections} connections (each connects and stays open)")
    for name in args.servers:
        print(f"{name:10} {herd_drill(name, args.workers, args.connections):6.2f}")


# -- respawn -----------------------------------------------------------------

def cmd_respawn(args) -> None:
    server, port = start("corral", 2)
    delays = []
    try:
        for _ in range(args.times):
            before = children(server.proc.pid)
            victim = min(before)
            killed = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            while True:  # a replacement is there and the service answers on it
                now = children(server.proc.pid)
                fresh = now - before
                if fresh and ready_in_log(server, fresh):
                    delays.append(time.monotonic() - killed)
                    break
                if time.monotonic() - killed > 20:
                    raise BenchError("no replacement worker within 20 s")
                time.sleep(0.002)
    finally:
        server.stop()
    delays.sort()
    print(f"respawn delay after kill -9 (kill -> replacement ready), {args.times} runs: "
          f"median {delays[len(delays) // 2] * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms")


def ready_in_log(server: Server, pids: set[int]) -> bool:
    server.log.seek(0)
    text = server.log.read().decode(errors="replace")
    return any(f"worker {pid} ready" in text for pid in pids)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("drill", choices=["reload", "herd", "respawn"])
    parser.add_argument("--servers", default="corral,uvicorn,granian", type=lambda s: s.split(","))
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--connections", type=int, default=800)
    parser.add_argument("--times", type=int, default=5)
    args = parser.parse_args()
    {"reload": cmd_reload, "herd": cmd_herd, "respawn": cmd_respawn}[args.drill](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
