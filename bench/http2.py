"""TLS and HTTP/2: corral vs Granian vs hypercorn, hello world, 1 worker, same run.

Scenarios, each measured with h2load (Debian nghttp2-client):

* ``h2-tls``: HTTP/2 over TLS (ALPN h2), ``h2load -c16 -m10``;
* ``h2c``: HTTP/2 in cleartext with prior knowledge, ``-c16 -m10``;
* ``h1-tls``: HTTP/1.1 over TLS, ``h2load --h1 -c16 -m1`` (keep-alive).

Each server runs alone, one scenario at a time, ``--rounds`` rounds in
turn; the best round counts. Reported: the best round's requests/s, failed requests over all rounds, and
corral's ratios to each peer. Certificates come from ``trustme``.

    python bench/http2.py --corral .venv/bin/corral --peers-venv .venv-bench

(Not ``h2.py``: the servers run with bench/ on PYTHONPATH, where such a
file would shadow the ``h2`` package that hypercorn imports.)
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
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, proc, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def command(server: str, port: int, tls: bool, certs: dict, args) -> list[str]:
    if server == "corral":
        cmd = [args.corral, "apps:hello", "--app-dir", str(HERE), "--port", str(port), "--workers", "1",
               "--no-access-log", "--log-level", "warning"]
        if tls:
            cmd += ["--ssl-certfile", certs["cert"], "--ssl-keyfile", certs["key"]]
        return cmd
    if server == "granian":
        cmd = [str(Path(args.peers_venv) / "bin/granian"), "--interface", "asgi", "--port", str(port), "--workers",
               "1", "--http", "auto", "--no-ws", "--log-level", "warning", "--working-dir", str(HERE)]
        if tls:
            cmd += ["--ssl-certificate", certs["cert"], "--ssl-keyfile", certs["key"]]
        return cmd + ["apps:hello"]
    if server == "hypercorn":
        cmd = [str(Path(args.peers_venv) / "bin/hypercorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1",
               "--log-level", "warning"]
        if tls:
            cmd += ["--certfile", certs["cert"], "--keyfile", certs["key"]]
        return cmd + ["apps:hello"]
    raise ValueError(server)


SCENARIOS = {
    "h2-tls": (True, ["-c16", "-m10"]),
    "h2c": (False, ["-c16", "-m10"]),
    "h1-tls": (True, ["--h1", "-c16", "-m1"]),
}


def h2load(port: int, tls: bool, flags: list[str], duration: float) -> tuple[float, int, int]:
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/"
    out = subprocess.run(["h2load", *flags, "-D", f"{duration:g}", "--warm-up-time", "1", url],
                         capture_output=True, text=True, timeout=duration + 60).stdout
    rate = re.search(r"finished in .*?, ([\d.]+) req/s", out)
    counts = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", out)
    if not rate or not counts:
        raise RuntimeError("h2load said:\n" + out)
    return float(rate.group(1)), int(counts.group(2)), int(counts.group(3))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corral", default=str(Path(sys.executable).parent / "corral"))
    parser.add_argument("--peers-venv", default=".venv-bench")
    parser.add_argument("--servers", default="corral,granian,hypercorn")
    parser.add_argument("--scenarios", default="h2-tls,h2c,h1-tls")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--json", metavar="FILE", help="also write the results to FILE (make bench-h2: "
                        "bench/results/bench-h2.json, which bench/charts.py draws)")
    args = parser.parse_args()
    args.corral = os.path.abspath(args.corral)
    args.peers_venv = os.path.abspath(args.peers_venv)
    if shutil.which("h2load") is None:
        print("h2load is not installed (apt-get install nghttp2-client)")
        return 2
    import trustme

    tmp = tempfile.mkdtemp(prefix="corral-bench-h2-")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certs = {"cert": os.path.join(tmp, "cert.pem"), "key": os.path.join(tmp, "key.pem")}
    cert.cert_chain_pems[0].write_to_path(certs["cert"])
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    with open(certs["key"], "wb") as handle:  # PKCS#8: Granian reads no other format
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    servers = args.servers.split(",")
    results: dict = {}
    rounds_rps: dict = {}
    for scenario in args.scenarios.split(","):
        tls, flags = SCENARIOS[scenario]
        for round_ in range(args.rounds):
            for server in servers:
                port = free_port()
                env = dict(os.environ, PYTHONPATH=str(HERE))
                proc = subprocess.Popen(command(server, port, tls, certs, args), cwd=HERE, env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    wait_port(port, proc)
                    rate, ok, failed = h2load(port, tls, flags, args.duration)
                except Exception as exc:  # noqa: BLE001 - reported in the table
                    rate, ok, failed = 0.0, 0, -1
                    print(f"{scenario} {server}: {exc}", file=sys.stderr)
                finally:
                    proc.terminate()
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                best, failures = results.get((scenario, server), (0.0, 0))
                results[(scenario, server)] = (max(best, rate), failures + max(failed, 0))
                rounds_rps.setdefault((scenario, server), []).append(rate)
                print(f"{scenario:7} round {round_ + 1} {server:10} {rate:10.0f} req/s  failed {failed}", flush=True)
    print("\n| scenario | " + " | ".join(servers) + " | " + " | ".join(f"corral / {s}" for s in servers[1:]) + " |")
    print("|---" * (2 * len(servers)) + "|")
    for scenario in args.scenarios.split(","):
        row = [f"{results[(scenario, s)][0]:,.0f} ({results[(scenario, s)][1]} failed)" for s in servers]
        base = results[(scenario, servers[0])][0]
        ratios = [f"{base / results[(scenario, s)][0]:.2f}x" if results[(scenario, s)][0] else "-" for s in servers[1:]]
        print(f"| {scenario} | " + " | ".join(row) + " | " + " | ".join(ratios) + " |")
    if args.json:
        write_json(args, servers, results, rounds_rps)
    return 0


TITLES = {"h2-tls": "HTTP/2 over TLS (-c16 -m10)", "h2c": "h2c, prior knowledge (-c16 -m10)",
          "h1-tls": "HTTP/1.1 over TLS (--h1 -c16)"}


def write_json(args, servers: list[str], results: dict, rounds_rps: dict) -> None:
    """The run as bench/charts.py reads it ("kind": "http2"): per scenario each
    server's best round, its failed requests, and corral's ratio to each peer."""
    import json
    import platform

    scenarios = {}
    for scenario in args.scenarios.split(","):
        summary = {s: {"best_rps": results[(scenario, s)][0], "failed": results[(scenario, s)][1],
                       "rounds_rps": rounds_rps[(scenario, s)]} for s in servers}
        base = summary.get("corral", {}).get("best_rps")
        ratios = {f"corral/{s}": base / summary[s]["best_rps"] for s in servers
                  if s != "corral" and base and summary[s]["best_rps"]}
        scenarios[scenario] = {"title": TITLES.get(scenario, scenario), "tls": SCENARIOS[scenario][0],
                               "h2load_args": SCENARIOS[scenario][1], "summary": summary, "ratios": ratios}
    with open(args.json, "w") as handle:
        json.dump({"kind": "http2", "date": time.strftime("%Y-%m-%d", time.gmtime()), "rounds": args.rounds,
                   "duration": args.duration, "machine": platform.platform(), "cpus": os.cpu_count(),
                   "scenarios": scenarios}, handle, indent=2)
        handle.write("\n")


if __name__ == "__main__":
    sys.exit(main())
