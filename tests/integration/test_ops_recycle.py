"""--workers-max-rss and --workers-lifetime (issue 22): workers recycled through the
zero-loss reload path (a new worker ready before the old one drains), under load,
logged and counted in the metrics."""

from __future__ import annotations

import os
import threading

import pytest

from support import Load, wait_until

parser = pytest.importorskip("prometheus_client.parser")

MIB = 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE")


def exits(server, cause: str) -> float:
    """corral_worker_exits_total{cause=...} from a real scrape of the master's /metrics."""
    import urllib.request

    port = int(server.wait_log(r"Prometheus metrics at http://127\.0\.0\.1:(\d+)/metrics")[0].group(1))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in parser.text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "corral_worker_exits_total" and sample.labels.get("cause") == cause
    )


def rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * PAGE
    except (OSError, ValueError):
        return 0


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(n) for n in handle.read().split()]
    except OSError:
        return []


class PeakRSS:
    """The largest RSS any worker of ``master`` had, sampled every 20 ms."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            for pid in children(self.master):
                self.peak = max(self.peak, rss(pid))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


def test_a_leaking_app_is_recycled_under_load_without_a_failed_request(server_factory):
    # Each /leak request keeps 1 MiB; paced by 40 ms in the app, 2 clients: at most 50 MiB/s in
    # all. A worker over the cap is seen within a second (the heartbeat), and one recycle runs at
    # a time, so a worker can pass the cap by what it leaks in a second or two.
    first = server_factory("ops:app", workers=2)
    base = max(rss(pid) for pid in first.worker_pids())
    first.stop()
    cap = base // MIB + 40
    server = server_factory("ops:app", "--metrics-bind", "127.0.0.1:0", "--workers-max-rss", str(cap), workers=2)
    peak = PeakRSS(server.proc.pid)
    load = Load(server.port, threads=2, path="/leak?0.04", max_requests=400, max_seconds=60)
    try:
        load.wait_requests(400, timeout=60)
    finally:
        load.stop()
        highest = peak.stop()
    assert load.failures == [], load.failures[:5]
    assert load.ok >= 400
    recycled = server.wait_log(rf"master: recycling worker \d+: RSS (\d+) MiB over --workers-max-rss {cap} MiB after \d+ requests; a new worker first", count=3)
    assert all(int(m.group(1)) > cap for m in recycled)
    # 400 MiB leaked in all: without the cap each worker would reach base + 200 MiB.
    print(f"peak RSS {highest / MIB:.0f} MiB, cap {cap} MiB")
    assert highest < (cap + 100) * MIB, f"peak RSS {highest / MIB:.0f} MiB with --workers-max-rss {cap}"
    assert len(load.pids) >= 4  # the recycled workers' replacements served too
    wait_until(lambda: exits(server, "max_rss") >= 2, message="exits counted with cause max_rss")
    assert exits(server, "crash") == 0
    assert server.stop() == 0


def test_workers_recycled_by_age_with_jitter(server_factory):
    server = server_factory("ops:app", "--metrics-bind", "127.0.0.1:0", "--workers-lifetime", "2",
                            "--workers-lifetime-jitter", "1", workers=2)
    load = Load(server.port, threads=2, path="/leak?0.01", max_requests=100000, max_seconds=30)
    try:
        recycled = server.wait_log(r"master: recycling worker (\d+): ([\d.]+)s old \(--workers-lifetime 2s\); a new worker first", count=4, timeout=30)
    finally:
        load.stop()
    assert load.failures == [], load.failures[:5]
    ages = [float(m.group(2)) for m in recycled]
    assert all(2.0 <= age < 6.0 for age in ages), ages  # 2 s + up to 1 s of jitter, checked at the once-a-second heartbeat
    assert len({m.group(1) for m in recycled}) == 4  # four different workers, one at a time
    wait_until(lambda: exits(server, "lifetime") >= 3, message="exits counted with cause lifetime")
    assert server.stop() == 0
