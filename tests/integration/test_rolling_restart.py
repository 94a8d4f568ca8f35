"""Rolling restarts behind a real haproxy lose nothing (issue 10).

Two corral instances (2 workers each) behind haproxy configured by
``deploy/haproxy.cfg`` (the recipe users copy; only its ports and check
interval are changed here). A bounded keep-alive load runs through haproxy:
first without restarts (the control), then while each instance in turn gets
SIGTERM and is started again on the same port. Every request must get a 200
and no client connection may be broken.
"""

from __future__ import annotations

import re
import signal
import socket

from proxies import Haproxy, needs_haproxy
from support import ROOT, Load, Server, wait_until

RECIPE = ROOT / "deploy" / "haproxy.cfg"


def haproxy_config(port_a: int, port_b: int) -> str:
    config = RECIPE.read_text()
    for old, new in (
        ("bind :8080", "bind 127.0.0.1:{port}"),
        ("127.0.0.1:8001", f"127.0.0.1:{port_a}"),
        ("127.0.0.1:8002", f"127.0.0.1:{port_b}"),
        ("inter 1s", "inter 200ms"),
        ("global\n", "global\n    stats socket {dir}/stats.sock level admin\n"),
    ):
        assert old in config, f"deploy/haproxy.cfg no longer has {old!r}"
        config = config.replace(old, new, 1)
    return config


def server_stats(proxy: Haproxy) -> dict[str, dict[str, str]]:
    """haproxy's counters for each corral instance (runtime API ``show stat``)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(f"{proxy.dir}/stats.sock")
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    fields = lines[0].lstrip("# ").split(",")
    states = {}
    for line in lines[1:]:
        row = dict(zip(fields, line.split(",")))
        if row.get("pxname") == "corral" and row.get("svname") not in ("BACKEND", None):
            states[row["svname"]] = row
    return states


def server_states(proxy: Haproxy) -> dict[str, str]:
    """haproxy's view of each corral instance: 'UP', 'DOWN', ..."""
    return {name: row["status"].split()[0] for name, row in server_stats(proxy).items()}


def start(port: int = 0) -> Server:
    """An instance on ``port`` (0: a free one, picked by the kernel at bind)."""
    return Server("basic:app", "--port", str(port), "--health-path", "/healthz", workers=2)


@needs_haproxy
def test_rolling_restart_behind_haproxy_loses_nothing():
    servers = {"app1": start(), "app2": start()}
    # Each instance's workers, per generation: which worker accepts is the
    # kernel's choice, but haproxy's round robin reaches every instance.
    generations = [server.worker_pids() for server in servers.values()]
    ports = {name: server.port for name, server in servers.items()}
    proxy = Haproxy(haproxy_config(ports["app1"], ports["app2"]))
    load = None
    try:
        wait_until(lambda: set(server_states(proxy).values()) == {"UP"}, message="both instances UP in haproxy")
        # Control: the same load, no restarts.
        control = Load(proxy.port, threads=8, max_seconds=3, max_requests=10**9)
        control._threads[0].join(10)
        control.stop()
        assert control.failures == []
        assert control.ok > 500
        assert all(workers & control.pids for workers in generations)  # both instances
        load = Load(proxy.port, threads=8, max_seconds=20, max_requests=10**9)
        for name, port in [*ports.items()] * 2:  # two rounds
            before = load.ok
            load.wait_requests(before + 300)
            old = servers[name]
            old.signal(signal.SIGTERM)
            assert old.proc.wait(20) == 0
            servers[name] = start(port)
            generations.append(servers[name].worker_pids())
            wait_until(lambda: server_states(proxy)[name] == "UP", message=f"{name} UP again in haproxy")
        load.wait_requests(load.ok + 300)
        load.stop()
        print(f"\ncontrol: {control.ok} requests; rolling restart: {load.ok} requests, {len(load.failures)} failed")
        for name, row in server_stats(proxy).items():
            print(f"haproxy {name}: connection errors {row['econ']}, response errors {row['eresp']}, "
                  f"retries {row['wretr']}, redispatches {row['wredis']}")
        assert load.failures == [], load.failures[:10]
        # Every instance served in each of its three lives: the first, and after each restart.
        assert len(generations) == 6 and all(len(workers) == 2 for workers in generations)
        assert all(workers & load.pids for workers in generations)
        for server in servers.values():
            errors = [line for line in server.lines if re.search(r"ERROR|Traceback|recycling", line)]
            assert errors == []  # recycling: haproxy's health checks once recycled the workers
    finally:
        if load is not None:
            load.stop()
        proxy.stop()
        for server in servers.values():
            server.stop()
