#!/usr/bin/env python3
"""Rolling restarts behind haproxy: how many client requests each server breaks.

The drill of issue 10, the same for every server: two instances with two
workers each behind haproxy (``deploy/haproxy.cfg`` with its ports, a
200 ms check interval and ``option httpchk GET /``, since the peers have no
health path), ``wrk -t1 -c32`` through haproxy for 14 s while each instance
in turn gets SIGTERM, exits, and is started again on the same port (the next
restart waits until haproxy sees the new instance UP, then 2 s).

Reported per server, from one run: wrk's requests and errors (socket errors:
connect, read, write, timeout; and non-2xx answers) and haproxy's counters
per instance (connection errors, response errors, retries, redispatches).
A read error is a client connection closed by haproxy with no response: the
failure the issue is about. Usage (needs haproxy and wrk):

    python3 bench/rolling.py [--servers corral,uvicorn,granian,gunicorn] [--duration 14]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from run import BENCH_BIN, REPO, BenchError, Server, free_port

APP = "bench.apps:hello"


def corral_cmd(port: int) -> list[str]:
    return [os.path.join(REPO, ".venv", "bin", "corral"), APP, "--host", "127.0.0.1", "--port", str(port),
            "--workers", "2", "--no-access-log", "--app-dir", REPO]


def uvicorn_cmd(port: int) -> list[str]:
    return [os.path.join(BENCH_BIN, "uvicorn"), APP, "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
            "--no-access-log", "--loop", "uvloop", "--http", "httptools", "--log-level", "warning", "--app-dir", REPO]


def granian_cmd(port: int) -> list[str]:
    return [os.path.join(BENCH_BIN, "granian"), "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "2", "--loop", "uvloop", "--no-ws", "--no-access-log", "--log-level", "warning",
            "--working-dir", REPO, APP]


def gunicorn_cmd(port: int) -> list[str]:
    # gunicorn's own (sync) workers, WSGI: how gunicorn itself stops.
    return [os.path.join(BENCH_BIN, "gunicorn"), "--workers", "2", "--bind", f"127.0.0.1:{port}",
            "--chdir", REPO, "--log-level", "warning", "bench.apps:hello_wsgi"]


SERVERS = {"corral": corral_cmd, "uvicorn": uvicorn_cmd, "granian": granian_cmd, "gunicorn": gunicorn_cmd}


def haproxy_config(front: int, port_a: int, port_b: int, stats: str) -> str:
    with open(os.path.join(REPO, "deploy", "haproxy.cfg")) as handle:
        config = handle.read()
    for old, new in (
        ("bind :8080", f"bind 127.0.0.1:{front}"),
        ("127.0.0.1:8001", f"127.0.0.1:{port_a}"),
        ("127.0.0.1:8002", f"127.0.0.1:{port_b}"),
        ("inter 1s", "inter 200ms"),
        ("option httpchk GET /healthz", "option httpchk GET /"),
        ("global\n", f"global\n    stats socket {stats} level admin\n"),
    ):
        if old not in config:
            raise BenchError(f"deploy/haproxy.cfg no longer has {old!r}")
        config = config.replace(old, new, 1)
    return config


def haproxy_stats(stats: str) -> dict[str, dict[str, str]]:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(stats)
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    fields = lines[0].lstrip("# ").split(",")
    rows = (dict(zip(fields, line.split(","))) for line in lines[1:] if line)
    return {r["svname"]: r for r in rows if r.get("pxname") == "corral" and r["svname"] != "BACKEND"}


def wait_up(stats: str, name: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while haproxy_stats(stats)[name]["status"].split()[0] != "UP":
        if time.monotonic() > deadline:
            raise BenchError(f"{name} not UP in haproxy after {timeout:.0f}s")
        time.sleep(0.05)


def drill(name: str, wrk: str, haproxy: str, duration: int) -> dict:
    command = SERVERS[name]
    ports = {"app1": free_port(), "app2": free_port()}
    servers = {app: Server(f"{name}-{app}", command(port)) for app, port in ports.items()}
    workdir = tempfile.mkdtemp(prefix="corral-rolling-")
    stats = os.path.join(workdir, "stats.sock")
    cfg = os.path.join(workdir, "haproxy.cfg")
    front = free_port()
    with open(cfg, "w") as handle:
        handle.write(haproxy_config(front, ports["app1"], ports["app2"], stats))
    proxy = subprocess.Popen([haproxy, "-db", "-f", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    restarts = []
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(stats):
            if time.monotonic() > deadline or proxy.poll() is not None:
                raise BenchError("haproxy did not start")
            time.sleep(0.05)
        for app in ports:
            wait_up(stats, app)
        out = {}
        load = threading.Thread(target=lambda: out.update(text=subprocess.run(
            [wrk, "-t1", "-c32", f"-d{duration}s", f"http://127.0.0.1:{front}/"],
            capture_output=True, text=True, timeout=duration + 60).stdout))
        load.start()
        time.sleep(3)
        for app, port in ports.items():
            started = time.monotonic()
            old = servers[app]
            old.stop()  # SIGTERM, wait for the exit (SIGKILL after 10 s)
            servers[app] = Server(f"{name}-{app}", command(port))
            wait_up(stats, app)
            restarts.append(time.monotonic() - started)
            time.sleep(2)
        load.join()
        counters = haproxy_stats(stats)
    finally:
        proxy.terminate()
        proxy.wait()
        for server in servers.values():
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    text = out.get("text", "")
    requests = re.search(r"(\d+) requests in", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if not requests:
        raise BenchError(f"cannot parse wrk output:\n{text}")
    connect, read, write, timeout = map(int, sock.groups()) if sock else (0, 0, 0, 0)
    return {
        "requests": int(requests.group(1)),
        "connect": connect, "read": read, "write": write, "timeout": timeout,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "restart_s": restarts,
        "haproxy": {app: {k: int(row[k] or 0) for k in ("econ", "eresp", "wretr", "wredis")}
                    for app, row in counters.items()},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="corral,uvicorn,granian,gunicorn")
    parser.add_argument("--duration", type=int, default=14)
    args = parser.parse_args(argv)
    wrk, haproxy = shutil.which("wrk"), shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not wrk or not os.path.exists(haproxy):
        print("rolling.py needs wrk and haproxy (apt-get install wrk haproxy)", file=sys.stderr)
        return 2
    results = {}
    for name in args.servers.split(","):
        print(f"{name}: rolling restart drill ({args.duration} s)...", file=sys.stderr, flush=True)
        results[name] = drill(name, wrk, haproxy, args.duration)
    print(f"\nRolling restart behind haproxy: 2 instances x 2 workers, wrk -t1 -c32 -d{args.duration}s, "
          "each instance restarted once")
    print(f"{'server':10} {'requests':>9} {'read err':>8} {'connect':>7} {'write':>5} {'timeout':>7} {'non-2xx':>7}"
          "   haproxy per instance (econ/eresp/retries/redispatches)")
    for name, r in results.items():
        per = "  ".join(f"{app} {h['econ']}/{h['eresp']}/{h['wretr']}/{h['wredis']}" for app, h in r["haproxy"].items())
        print(f"{name:10} {r['requests']:>9} {r['read']:>8} {r['connect']:>7} {r['write']:>5} {r['timeout']:>7} "
              f"{r['non_2xx']:>7}   {per}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
