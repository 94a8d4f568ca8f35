#!/usr/bin/env python3
"""Benchmark corral against uvicorn and Granian with wrk (stdlib only).

Each server runs the same ASGI app with one worker on a free 127.0.0.1 port.
Servers are benchmarked one at a time, alternating in rounds
(corral, uvicorn, granian, corral, ...), so slow drift of the machine hits
all of them alike. See bench/README.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_BIN = os.path.join(REPO, ".venv-bench", "bin")

WARMUP_SECONDS = 2
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
BASELINE = "corral"


@dataclass(frozen=True)
class Scenario:
    app: str  # MODULE:ATTR, importable from REPO
    title: str = ""
    path: str = "/"
    wrk_args: tuple[str, ...] = ("-t1", "-c64")
    expect_body: bytes = b"Hello, world!"  # what a GET of ``path`` answers
    workers: int = 1
    # True: every server with its own default logging (corral's and uvicorn's
    # access logs are on by default, Granian's is off); False: access logs off.
    defaults: bool = False
    references: bool = False  # the reference loops (bench/reference.py) can serve it
    interface: str = "asgi"  # wsgi: served by corral, Granian (--interface wsgi) and gunicorn gthread
    threads: int = 0  # WSGI threads per worker (corral --threads, Granian --blocking-threads); 0: defaults
    # Latency at a fixed offered load instead of throughput: half of Granian's
    # hello rate in the same run (the hello scenario must run first); the
    # ratio is then Granian's (uvicorn's) p99 over corral's.
    paced: bool = False


# What a browser sends with a GET: 11 fields besides Host.
BROWSER_HEADERS = (
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    "Accept-Language: en-US,en;q=0.9,de;q=0.8",
    "Accept-Encoding: gzip, deflate, br, zstd",
    "Cookie: session=6f1c2a9e4b7d4e0f9a3b8c1d2e5f6a7b; theme=dark; _ga=GA1.1.123456789.1700000000",
    "Referer: https://www.example.com/products/list?page=2",
    "Sec-Fetch-Dest: document",
    "Sec-Fetch-Mode: navigate",
    "Sec-Fetch-Site: same-origin",
    "Sec-Fetch-User: ?1",
    "Upgrade-Insecure-Requests: 1",
)
_BROWSER_ARGS = tuple(arg for header in BROWSER_HEADERS for arg in ("-H", header))
_CLOSE_ARGS = ("-t1", "-c32", "-H", "Connection: close")
FASTAPI_BODY = b'{"item_id":42,"q":"x","name":"widget","price":9.99,"tags":["a","b"]}'

SCENARIOS = {
    "hello": Scenario(app="bench.apps:hello", title="hello, access log off", references=True),
    "hello-defaults": Scenario(app="bench.apps:hello", title="hello, defaults on both sides", defaults=True),
    "browser": Scenario(app="bench.apps:hello", title="GET with 11 browser headers",
                        wrk_args=("-t1", "-c64", *_BROWSER_ARGS)),
    "close": Scenario(app="bench.apps:hello", title="new connection per request", wrk_args=_CLOSE_ARGS),
    "post10k": Scenario(app="bench.apps:echo", title="POST echo 10 KB", expect_body=b"",
                        wrk_args=("-t1", "-c64", "-s", os.path.join(REPO, "bench", "wrk", "post10k.lua"))),
    "get100k": Scenario(app="bench.apps:big", title="GET 100 KB", expect_body=b"x" * 102400),
    "fastapi": Scenario(app="bench.apps:fastapi_json", title="FastAPI JSON endpoint", path="/items/42?q=x",
                        expect_body=FASTAPI_BODY),
    # Behind a proxy: every request names its client (corral and uvicorn read
    # these headers by default, from 127.0.0.1; Granian does not).
    "forwarded": Scenario(app="bench.apps:hello", title="hello with X-Forwarded-For/-Proto",
                          wrk_args=("-t1", "-c64", "-H", "X-Forwarded-For: 203.0.113.7", "-H", "X-Forwarded-Proto: https")),
    "paced": Scenario(app="bench.apps:hello", title="p99 at half Granian's hello rate", paced=True,
                      wrk_args=("-t1", "-s", os.path.join(REPO, "bench", "wrk", "paced.lua"))),
    "hello-2w": Scenario(app="bench.apps:hello", title="2 workers: hello", workers=2),
    "close-2w": Scenario(app="bench.apps:hello", title="2 workers: new connection per request",
                         workers=2, wrk_args=_CLOSE_ARGS),
    # WSGI (bench/wsgi_apps.py): corral's native cycle with --threads 1 unless
    # the scenario sets threads; gunicorn is always gthread with 8 threads.
    "wsgi-hello": Scenario(app="bench.wsgi_apps:hello", title="WSGI hello", interface="wsgi"),
    "wsgi-flask": Scenario(app="bench.wsgi_apps:flask_app", title="WSGI Flask JSON (jsonify)", path="/json",
                           expect_body=b'{"items":[1,2,3],"message":"Hello, world!"}\n', interface="wsgi"),
    "wsgi-post10k": Scenario(app="bench.wsgi_apps:echo", title="WSGI POST echo 10 KB", expect_body=b"",
                             wrk_args=("-t1", "-c64", "-s", os.path.join(REPO, "bench", "wrk", "post10k.lua")),
                             interface="wsgi"),
    "wsgi-django": Scenario(app="bench.wsgi_apps:django_app", title="WSGI Django template view", interface="wsgi"),
    "wsgi-sleep": Scenario(app="bench.wsgi_apps:sleep", title="WSGI sleeps 10 ms, 8 threads", interface="wsgi",
                           threads=8),
}


def corral_cmd(exe: str, app: str, port: int, scenario: Scenario) -> list[str]:
    quiet = [] if scenario.defaults else ["--no-access-log"]
    threads = ["--threads", str(scenario.threads)] if scenario.threads else []
    return [exe, app, "--host", "127.0.0.1", "--port", str(port), "--workers", str(scenario.workers),
            *quiet, *threads, "--app-dir", REPO]


def corral_no_proxy_headers_cmd(exe: str, app: str, port: int, scenario: Scenario) -> list[str]:
    return [*corral_cmd(exe, app, port, scenario), "--no-proxy-headers"]


def corral_metrics_cmd(exe: str, app: str, port: int, scenario: Scenario) -> list[str]:
    """corral with --metrics-bind: the cost of counting (issue 15)."""
    return [*corral_cmd(exe, app, port, scenario), "--metrics-bind", f"127.0.0.1:{free_port()}"]


def uvicorn_cmd(exe: str, app: str, port: int, scenario: Scenario) -> list[str]:
    quiet = [] if scenario.defaults else ["--no-access-log", "--log-level", "warning"]
    return [exe, app, "--host", "127.0.0.1", "--port", str(port), "--workers", str(scenario.workers),
            *quiet, "--loop", "uvloop", "--http", "httptools", "--app-dir", REPO]


def granian_cmd(exe: str, app: str, port: int, scenario: Scenario) -> list[str]:
    quiet = [] if scenario.defaults else ["--no-access-log", "--log-level", "warning"]
    threads = ["--blocking-threads", str(scenario.threads)] if scenario.threads else []
    return [exe, "--interface", scenario.interface, "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(scenario.workers), "--loop", "uvloop", "--no-ws", *quiet, *threads,
            "--working-dir", REPO, app]


def gunicorn_cmd(exe: str, app: str, port: int, scenario: Scenario) -> list[str]:
    """gunicorn's threaded worker with 8 threads (WSGI scenarios only)."""
    quiet = ["--access-logfile", "-"] if scenario.defaults else ["--log-level", "warning"]
    return [exe, "--worker-class", "gthread", "--threads", "8", "--workers", str(scenario.workers),
            "--bind", f"127.0.0.1:{port}", *quiet, "--chdir", REPO, app]


def reference_cmd(mode: str):
    def cmd(exe: str, app: str, port: int, scenario: Scenario) -> list[str]:
        return [exe, os.path.join(REPO, "bench", "reference.py"), mode, str(port), app]
    return cmd


# name -> (default executable, argv builder)
SERVERS = {
    "corral": (os.path.join(REPO, ".venv", "bin", "corral"), corral_cmd),
    # corral --no-proxy-headers: what reading forwarding headers costs (issue 13).
    "corral-nph": (os.path.join(REPO, ".venv", "bin", "corral"), corral_no_proxy_headers_cmd),
    "corral-metrics": (os.path.join(REPO, ".venv", "bin", "corral"), corral_metrics_cmd),
    "uvicorn": (os.path.join(BENCH_BIN, "uvicorn"), uvicorn_cmd),
    "granian": (os.path.join(BENCH_BIN, "granian"), granian_cmd),
    "gunicorn": (os.path.join(BENCH_BIN, "gunicorn"), gunicorn_cmd),
    # The machine's ceiling (bench/reference.py): not servers, measuring sticks.
    "minimal": (os.path.join(REPO, ".venv", "bin", "python"), reference_cmd("minimal")),
    "bare": (os.path.join(REPO, ".venv", "bin", "python"), reference_cmd("bare")),
}
DEFAULT_SERVERS = ("corral", "uvicorn", "granian", "gunicorn", "minimal")
REFERENCES = ("minimal", "bare")
# The interfaces each server is benchmarked with (a scenario skips the others).
INTERFACES = {"uvicorn": ("asgi",), "gunicorn": ("wsgi",), "minimal": ("asgi",), "bare": ("asgi",)}


class BenchError(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process in its own session, stderr kept in a temp file."""

    def __init__(self, name: str, argv: list[str]):
        self.name = name
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def log_tail(self, lines: int = 20) -> str:
        self.log.seek(0)
        return "\n".join(self.log.read().decode(errors="replace").splitlines()[-lines:])

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"{self.name} exited with code {self.proc.returncode}:\n"
                             f"{self.log_tail()}")

    def wait_ready(self, port: int, scenario: Scenario) -> None:
        """Poll with real GET requests until one answers; check the response."""
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            self.check_alive()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                conn.request("GET", scenario.path)
                resp = conn.getresponse()
                status, body = resp.status, resp.read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError(f"{self.name} not answering on port {port} "
                                     f"after {READY_TIMEOUT:.0f}s:\n{self.log_tail()}")
                time.sleep(0.05)
            finally:
                conn.close()
        if status != 200 or body != scenario.expect_body:
            raise BenchError(f"{self.name} answered {status} {body[:100]!r}, "
                             f"expected 200 {scenario.expect_body!r}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL the whole process group after a bounded wait."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"  {self.name} ignored SIGTERM for {STOP_TIMEOUT:.0f}s, killing",
                      file=sys.stderr)
        try:  # also reaps worker processes left behind by the main one
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.log.close()


PACE_MS = 2  # paced scenario: each connection's pause between a response and its next request


def run_wrk(wrk: str, url: str, duration: int, wrk_args: tuple[str, ...]) -> dict:
    argv = [wrk, *wrk_args, f"-d{duration}s", url]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "WRK_PACE_MS": str(PACE_MS)},
                             timeout=duration + 30, check=True).stdout
    except subprocess.CalledProcessError as e:
        raise BenchError(f"wrk failed ({e.returncode}): {e.stderr.strip()}") from e
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if not rps:
        raise BenchError(f"cannot parse wrk output:\n{out}")
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = sum(map(int, sock.groups())) if sock else 0
    non_2xx = int(non2xx.group(1)) if non2xx else 0
    p99_ms = float(p99.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)] if p99 else None
    return {"rps": float(rps.group(1)), "socket_errors": socket_errors,
            "non_2xx": non_2xx, "errors": socket_errors + non_2xx, "p99_ms": p99_ms}


def bench_once(name: str, exe: str, scenario: Scenario, wrk: str, duration: int) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}{scenario.path}"
    server = Server(name, SERVERS[name][1](exe, scenario.app, port, scenario))
    try:
        server.wait_ready(port, scenario)
        run_wrk(wrk, url, WARMUP_SECONDS, scenario.wrk_args)
        result = run_wrk(wrk, url, duration, ("--latency", *scenario.wrk_args))
        server.check_alive()
        return result
    finally:
        server.stop()


def paced_args(scenario: Scenario, results: dict, exes: dict, wrk: str) -> tuple[Scenario, int]:
    """The paced scenario's wrk arguments: as many connections as offer half
    of Granian's hello rate (this run). wrk's delay() fires a millisecond or
    so late, so one calibration run against Granian scales the first guess
    (PACE_MS plus nothing) to the rate it actually offered."""
    try:
        target = results["hello"]["summary"]["granian"]["median_rps"] / 2
    except KeyError:
        raise BenchError("the paced scenario needs the hello scenario with granian earlier in the same run") from None

    def with_connections(n: int) -> Scenario:
        return Scenario(**{**scenario.__dict__, "wrk_args": (*scenario.wrk_args, f"-c{max(1, n)}")})

    guess = round(target * PACE_MS / 1000)
    offered = bench_once("granian", exes["granian"], with_connections(guess), wrk, 3)["rps"]
    return with_connections(round(guess * target / offered)), round(target)


def summarize(runs: dict[str, list[dict]], paced: bool = False) -> tuple[dict, dict]:
    summary = {
        name: {"median_rps": statistics.median(r["rps"] for r in rs),
               "min_rps": min(r["rps"] for r in rs),
               "max_rps": max(r["rps"] for r in rs),
               "errors": sum(r["errors"] for r in rs),
               "p99_ms": statistics.median(r["p99_ms"] for r in rs) if all(r["p99_ms"] for r in rs) else None}
        for name, rs in runs.items()
    }
    ratios = {}
    if BASELINE in summary:
        for name in summary:
            if name == BASELINE:
                continue
            if paced:  # latency: theirs over ours, so above 1.00 corral is better here too
                ours, theirs = summary[BASELINE]["p99_ms"], summary[name]["p99_ms"]
                if ours and theirs:
                    ratios[f"{BASELINE}/{name}"] = theirs / ours
            else:
                ratios[f"{BASELINE}/{name}"] = (summary[BASELINE]["median_rps"]
                                                / summary[name]["median_rps"])
    # Where the ceiling is: how far the reference loops get against Granian.
    for ref in REFERENCES:
        if ref in summary and "granian" in summary:
            ratios[f"{ref}/granian"] = summary[ref]["median_rps"] / summary["granian"]["median_rps"]
    return summary, ratios


def print_table(summary: dict, ratios: dict) -> None:
    print(f"\n{'server':<10} {'median req/s':>13} {'min':>10} {'max':>10} {'errors':>8} {'p99 ms':>8}")
    for name, s in summary.items():
        p99 = f"{s['p99_ms']:8.2f}" if s.get("p99_ms") else f"{'-':>8}"
        print(f"{name:<10} {s['median_rps']:>13.0f} {s['min_rps']:>10.0f} "
              f"{s['max_rps']:>10.0f} {s['errors']:>8} {p99}")
    if ratios:
        print()
        for label, ratio in ratios.items():
            print(f"{label:<22} {ratio:6.2f}")


def print_overview(results: dict) -> None:
    """Every scenario's ratios of one run, as a table and as a bar chart."""
    peers = [p for p in ("granian", "uvicorn", "gunicorn") if any(f"corral/{p}" in r["ratios"] for r in results.values())]
    if not peers:
        return
    print("\n" + f"{'scenario':<40}" + "".join(f"{'corral/' + p:>16}" for p in peers))
    for name, r in results.items():
        cells = "".join(f"{r['ratios'][f'corral/{p}']:>16.2f}" if f"corral/{p}" in r["ratios"] else f"{'-':>16}"
                        for p in peers)
        print(f"{SCENARIOS[name].title:<40}{cells}")
    print("\n" + chart(results, peers))


def chart(results: dict, peers: list[str], width: int = 40) -> str:
    """Text bars of corral's ratio to each peer; '|' marks 1.0 (as fast)."""
    top = max([r["ratios"][f"corral/{p}"] for r in results.values() for p in peers if f"corral/{p}" in r["ratios"]]
              + [2.0])
    top = min(top, 4.0)  # a far larger ratio (a latency one) would flatten every other bar: it is cut, marked ▶
    scale = width / top
    one = round(scale)
    lines = []
    for name, r in results.items():
        lines.append(SCENARIOS[name].title)
        for p in peers:
            ratio = r["ratios"].get(f"corral/{p}")
            if ratio is None:
                continue
            n = round(ratio * scale)
            bar = "█" * n if n <= width else "█" * (width - 1) + "▶"
            if n < one:
                bar += " " * (one - 1 - n) + "|"  # where 1.00 would end
            bar = bar.ljust(width)
            lines.append(f"  vs {p:<8} {bar} {ratio:.2f}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default=",".join(DEFAULT_SERVERS),
                   help=f"comma-separated subset of: {', '.join(SERVERS)} (default: %(default)s)")
    p.add_argument("--scenario", default="all",
                   help=f"comma-separated subset of: {', '.join(SCENARIOS)}, or all, or wsgi "
                        "(every WSGI scenario) (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=5, help="seconds of wrk per measurement")
    p.add_argument("--json", metavar="FILE", help="also write results to FILE (make bench: bench/results/bench.json, "
                   "which bench/charts.py draws)")
    p.add_argument("--wrk", default="wrk", help="wrk executable (default: from PATH)")
    for name, (default, _) in SERVERS.items():
        p.add_argument(f"--{name}", metavar="PATH", default=default,
                       help=f"{name} executable (default: %(default)s)")
    args = p.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = set(args.servers) - set(SERVERS)
    if unknown or not args.servers:
        p.error(f"--servers must name some of {', '.join(SERVERS)}")
    if args.scenario in ("all", "wsgi"):
        args.scenarios = [n for n in SCENARIOS if args.scenario == "all" or SCENARIOS[n].interface == "wsgi"]
    else:
        args.scenarios = [s.strip() for s in args.scenario.split(",")]
    if set(args.scenarios) - set(SCENARIOS) or not args.scenarios:
        p.error(f"--scenario must name some of {', '.join(SCENARIOS)}, or all")
    if args.rounds < 1 or args.duration < 1:
        p.error("--rounds and --duration must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = shutil.which(args.wrk)
    exes = {name: getattr(args, name.replace("-", "_")) for name in args.servers}
    missing = [f"{n}: {e}" for n, e in exes.items() if not os.access(e, os.X_OK)]
    if not wrk:
        missing.append(f"wrk: {args.wrk}")
    if missing:
        print("missing executables:\n  " + "\n  ".join(missing) + "\n`make bench` installs"
              " them; or pass --servers, --wrk or --<server> PATH", file=sys.stderr)
        return 2

    results = {}
    for scenario_name in args.scenarios:
        scenario = SCENARIOS[scenario_name]
        servers = [n for n in args.servers if (scenario.references or n not in REFERENCES)
                   and scenario.interface in INTERFACES.get(n, ("asgi", "wsgi"))]
        runs: dict[str, list[dict]] = {name: [] for name in servers}
        try:
            if scenario.paced:
                scenario, offered = paced_args(scenario, results, exes, wrk)
                print(f"{scenario_name}: offered about {offered} req/s ({scenario.wrk_args[-1]}, one request per "
                      f"connection every {PACE_MS} ms plus its latency)", file=sys.stderr, flush=True)
            for rnd in range(1, args.rounds + 1):
                for name in servers:
                    result = bench_once(name, exes[name], scenario, wrk, args.duration)
                    runs[name].append(result)
                    print(f"{scenario_name} round {rnd}/{args.rounds} {name:<8} {result['rps']:>10.0f} req/s"
                          f"  errors {result['errors']}", file=sys.stderr, flush=True)
        except BenchError as e:
            print(f"error: {scenario_name}: {e}", file=sys.stderr)
            return 1
        summary, ratios = summarize(runs, scenario.paced)
        print(f"\nscenario {scenario_name} ({scenario.title}): {scenario.workers} worker(s), "
              f"wrk {' '.join(scenario.wrk_args[:2])}{' (+ headers)' if '-H' in scenario.wrk_args else ''}{' (+ script)' if '-s' in scenario.wrk_args else ''} "
              f"-d{args.duration}s, {args.rounds} round(s)")
        print_table(summary, ratios)
        results[scenario_name] = {"title": scenario.title, "app": scenario.app, "workers": scenario.workers,
                                  "interface": scenario.interface, "paced": scenario.paced,
                                  "wrk_args": [*scenario.wrk_args, f"-d{args.duration}s"],
                                  "runs": runs, "summary": summary, "ratios": ratios}
    if len(results) > 1:
        print_overview(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%d", time.gmtime()), "rounds": args.rounds,
                       "duration": args.duration, "machine": platform.platform(),
                       "cpus": os.cpu_count(), "scenarios": results}, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
