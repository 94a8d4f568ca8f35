"""``corral top``: a live terminal view of a running corral, read from its /metrics.

Data enters by HTTP: every ``--interval`` seconds a GET of the master's
``--metrics-bind`` endpoint, parsed by ``parse`` (the Prometheus text format,
no client library). Two scrapes make a frame: rates and the p50/p99 latency
of each worker come from the difference between them (its histogram
buckets), so they describe the last interval, not the worker's life.
Data leaves as a ``rich`` table on the terminal; keys sort it and, for the
server's owner, send HUP / TTIN / TTOU to the master (``corral_master_pid``).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import select
import signal
import sys
import time
import urllib.request

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
SORTS = {"p": "pid", "r": "req/s", "m": "rss", "l": "lag", "a": "age", "i": "in flight"}
KEYS = "p r m l a i sort · h HUP (reload) · + TTIN · - TTOU · q quit"


def parse(text: str) -> list[tuple[str, dict, float]]:
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        if match:
            name, labels, value = match.groups()
            samples.append((name, dict(LABEL.findall(labels or "")), float(value)))
    return samples


def scrape(url: str, timeout: float = 3.0) -> list[tuple[str, dict, float]]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return parse(response.read().decode("utf-8", "replace"))


def _sum(samples, name, **want) -> float:
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in want.items()))


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """From cumulative (le, count) pairs, Prometheus' histogram_quantile."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    previous_le, previous_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return previous_le
            span = count - previous_count
            return previous_le + (le - previous_le) * ((rank - previous_count) / span if span else 1.0)
        previous_le, previous_count = le, count
    return None


class Frame:
    """What one refresh shows: totals and one row per worker."""

    def __init__(self, now, before, then_time, now_time) -> None:
        dt = max(now_time - then_time, 1e-6) if before else None
        self.master_pid = int(_sum(now, "corral_master_pid"))
        self.target = int(_sum(now, "corral_workers_target"))
        self.requests = _sum(now, "corral_requests_total")
        self.rate = (self.requests - _sum(before, "corral_requests_total")) / dt if dt else None
        self.in_flight = int(_sum(now, "corral_requests_in_flight"))
        self.connections = int(_sum(now, "corral_connections_open"))
        self.queue = int(_sum(now, "corral_accept_queue_length"))
        self.queue_peak = int(_sum(now, "corral_accept_queue_peak"))
        self.shed = int(_sum(now, "corral_requests_shed_total"))
        shed_before = _sum(before, "corral_requests_shed_total") if before else None
        self.shed_rate = (self.shed - shed_before) / dt if dt else None
        self.reloads = int(_sum(now, "corral_reloads_total"))
        self.exits = int(_sum(now, "corral_worker_exits_total"))
        build = next((lab for n, lab, _ in now if n == "corral_build_info"), {})
        self.build = " ".join(f"{build[k]}" for k in ("version", "python", "loop", "build") if k in build)
        wall = time.time()
        rows: dict[str, dict] = {}
        for name, labels, value in now:
            pid = labels.get("pid")
            if pid is None:
                continue
            row = rows.setdefault(pid, {"pid": int(pid), "slot": labels.get("slot", "")})
            if name == "corral_worker_state" and value == 1:
                row["state"] = labels["state"]
            elif name == "corral_worker_start_time_seconds":
                row["age"] = wall - value
            elif name == "corral_worker_rss_bytes":
                row["rss"] = value
            elif name == "corral_worker_loop_lag_seconds":
                row["lag"] = value
            elif name == "corral_worker_requests_in_flight":
                row["in flight"] = int(value)
            elif name == "corral_worker_connections_open":
                row["conns"] = int(value)
            elif name == "corral_worker_requests_total":
                row["requests"] = value
        for pid, row in rows.items():
            old = _sum(before, "corral_worker_requests_total", pid=pid) if before else None
            known = before and any(n == "corral_worker_requests_total" and lab.get("pid") == pid for n, lab, _ in before)
            row["req/s"] = (row.get("requests", 0) - old) / dt if dt and known else None
            buckets = self._buckets(now, pid)
            if before and known:
                old_buckets = dict(self._buckets(before, pid))
                buckets = [(le, c - old_buckets.get(le, 0)) for le, c in buckets]
            row["p50"] = _quantile(buckets, 0.5)
            row["p99"] = _quantile(buckets, 0.99)
        self.rows = list(rows.values())

    @staticmethod
    def _buckets(samples, pid) -> list[tuple[float, float]]:
        return sorted(
            (float(lab["le"]), v)
            for n, lab, v in samples
            if n == "corral_worker_request_duration_seconds_bucket" and lab.get("pid") == pid
        )


def _ms(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def _age(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def render(frame: Frame, sort: str, message: str):
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    rate = "-" if frame.rate is None else f"{frame.rate:,.0f}"
    shed = "-" if frame.shed_rate is None else f"{frame.shed_rate:,.0f}"
    header = Text.assemble(
        ("corral top", "bold"), f"  master {frame.master_pid}  {frame.build}\n",
        f"workers {len(frame.rows)}/{frame.target}   req/s {rate}   requests {frame.requests:,.0f}   "
        f"in flight {frame.in_flight}   connections {frame.connections}\n",
        ("accept queue ", ""), (f"{frame.queue}", "bold red" if frame.queue else "bold"),
        f" (peak {frame.queue_peak})   ",
        ("shed 503/s ", ""), (shed, "bold red" if frame.shed_rate else "bold"),
        f" (total {frame.shed:,})   reloads {frame.reloads}   worker exits {frame.exits}",
    )
    table = Table(expand=True, box=None, header_style="bold reverse")
    columns = ("pid", "slot", "state", "req/s", "in flight", "conns", "p50 ms", "p99 ms", "rss MB", "lag ms", "age")
    for column in columns:
        table.add_column(column + (" ▾" if column.split()[0] == sort else ""), justify="left" if column == "state" else "right",
                         no_wrap=True, min_width=8 if column == "state" else None)
    key = sort
    reverse = sort not in ("pid",)
    rows = sorted(frame.rows, key=lambda r: (r.get(key) is not None, r.get(key) or 0), reverse=reverse)
    styles = {"serving": "green", "booting": "yellow", "draining": "magenta", "stuck": "bold red"}
    for r in rows:
        state = r.get("state", "?")
        table.add_row(
            str(r["pid"]), str(r["slot"]), Text(state, style=styles.get(state, "")),
            "-" if r.get("req/s") is None else f"{r['req/s']:,.0f}",
            str(r.get("in flight", "-")), str(r.get("conns", "-")),
            _ms(r.get("p50")), _ms(r.get("p99")),
            "-" if r.get("rss") is None else f"{r['rss'] / 1e6:.1f}",
            _ms(r.get("lag")), _age(r.get("age")),
        )
    footer = Text(f"{KEYS}   {message}", style="dim")
    return Group(header, table, footer)


def owns(pid: int) -> bool:
    """May this user signal the master? (root, or the same uid)"""
    if os.geteuid() == 0:
        return True
    try:
        return os.stat(f"/proc/{pid}").st_uid == os.geteuid()
    except OSError:
        return False


def send(pid: int, signum: int) -> str:
    name = signal.Signals(signum).name
    if not pid or not owns(pid):
        return f"{name} not sent: you are not the owner of master {pid}"
    try:
        os.kill(pid, signum)
    except OSError as exc:
        return f"{name} not sent: {exc.strerror}"
    return f"{name} sent to master {pid}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="corral top", description="Live view of a corral server (reads --metrics-bind).")
    parser.add_argument("url", nargs="?", default=os.environ.get("CORRAL_METRICS_BIND", "127.0.0.1:9100"),
                        help="the server's --metrics-bind HOST:PORT or a /metrics URL (default: $CORRAL_METRICS_BIND or 127.0.0.1:9100)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    parser.add_argument("--svg", metavar="FILE", help="write two refreshes' view to FILE as SVG and exit")
    args = parser.parse_args(argv)
    url = args.url if "://" in args.url else f"http://{args.url}/metrics"
    try:
        from rich.console import Console
        from rich.live import Live
    except ImportError:
        print("corral top: needs rich: pip install 'corral[top]'", file=sys.stderr)
        return 2
    try:
        before, then = scrape(url), time.monotonic()
    except OSError as exc:
        print(f"corral top: cannot read {url}: {exc}", file=sys.stderr)
        return 1
    sort, message = "pid", ""
    if args.svg:
        time.sleep(args.interval)
        frame = Frame(scrape(url), before, then, time.monotonic())
        console = Console(record=True, width=110, file=open(os.devnull, "w"))
        console.print(render(frame, sort, f"scraped {url}"))
        console.save_svg(args.svg, title="corral top")
        return 0
    with _Keys() as keys, Live(auto_refresh=False, screen=True) as live:
        frame = Frame(before, None, then, then)
        while True:
            live.update(render(frame, sort, message), refresh=True)
            key = keys.read(args.interval)
            if key == "q":
                return 0
            if key in SORTS:
                sort = SORTS[key]
            elif key == "h":
                message = send(frame.master_pid, signal.SIGHUP)
            elif key == "+":
                message = send(frame.master_pid, signal.SIGTTIN)
            elif key == "-":
                message = send(frame.master_pid, signal.SIGTTOU)
            if key is None or time.monotonic() - then >= args.interval:
                try:
                    now, now_time = scrape(url), time.monotonic()
                except OSError as exc:
                    message = f"cannot read {url}: {exc}"
                    continue
                frame = Frame(now, before, then, now_time)
                before, then = now, now_time


class _Keys:
    """Single keys from the terminal (cbreak mode), or nothing when stdin is not one."""

    def __enter__(self):
        self.fd = sys.stdin.fileno() if sys.stdin and sys.stdin.isatty() else None
        if self.fd is not None:
            import termios
            import tty

            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        return self

    def read(self, timeout: float) -> str | None:
        if self.fd is None:
            time.sleep(timeout)
            return None
        ready, _, _ = select.select([self.fd], [], [], timeout)
        return os.read(self.fd, 1).decode("utf-8", "replace") if ready else None

    def __exit__(self, *exc):
        if self.fd is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
