#!/usr/bin/env python3
"""Charts of a benchmark run: corral's ratio to each peer, as SVG.

Reads the JSON that ``bench/run.py --json`` and ``bench/http2.py --json``
write (``make bench`` and ``make bench-h2`` keep them in bench/results/) and
draws one chart per table of the docs' Performance page:

* ``bench-http1.svg``: the ASGI scenarios of run.py, corral against Granian
  and uvicorn (and hypercorn or gunicorn where the run had them);
* ``bench-wsgi.svg``: run.py's WSGI scenarios, against Granian and gunicorn;
* ``bench-http2.svg``: http2.py's TLS and HTTP/2 scenarios, against Granian
  and hypercorn.

A chart is written only when its input has scenarios for it, so a run of a
few scenarios redraws its own chart and leaves the others alone. Each bar is
corral's requests/s over the peer's (for the ``paced`` scenario: the peer's
p99 latency over corral's), on a log scale around 1x, so 2x faster and 2x
slower are bars of one length; above 1x corral is ahead. The SVGs are
deterministic (fixed ids, no date, text as text), so a new run diffs as its
figures do.

    python bench/charts.py bench/results/bench.json bench/results/bench-h2.json --out docs/img

Needs matplotlib (``pip install 'corral[bench]'``; ``make bench`` installs it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

PEERS = ("granian", "uvicorn", "gunicorn", "hypercorn")  # the order of bars in a group
PEER_NAMES = {"granian": "Granian", "uvicorn": "uvicorn", "gunicorn": "gunicorn", "hypercorn": "hypercorn"}
COLORS = {"granian": "#d95f02", "uvicorn": "#7570b3", "gunicorn": "#1b9e77", "hypercorn": "#e7298a"}
CHARTS = {  # file name -> title
    "bench-http1.svg": "HTTP/1.1 (ASGI): corral's requests/s over each server's",
    "bench-wsgi.svg": "WSGI: corral's requests/s over each server's",
    "bench-http2.svg": "TLS and HTTP/2: corral's requests/s over each server's",
}


class ChartError(Exception):
    """A bad input file: one line, exit 2."""


def load(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise ChartError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ChartError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), dict):
        raise ChartError(f"{path} has no scenarios (is it bench/run.py's or bench/http2.py's --json?)")
    return data


def _rps(summary: dict) -> float | None:
    return summary.get("median_rps", summary.get("best_rps"))


def _short(rps: float) -> str:
    return f"{rps / 1000:.1f}k" if rps >= 1000 else f"{rps:.0f}"


def rows(data: dict) -> dict[str, list[dict]]:
    """chart file -> its groups: {title, bars: [{peer, ratio, note}]}, in the file's order."""
    charts: dict[str, list[dict]] = {}
    http2 = data.get("kind") == "http2"
    for name, scenario in data["scenarios"].items():
        interface = scenario.get("interface") or ("wsgi" if name.startswith("wsgi-") else "asgi")
        chart = "bench-http2.svg" if http2 else "bench-wsgi.svg" if interface == "wsgi" else "bench-http1.svg"
        paced = scenario.get("paced", name == "paced")
        summary, ratios = scenario.get("summary", {}), scenario.get("ratios", {})
        bars = []
        for peer in PEERS:
            ratio = ratios.get(f"corral/{peer}")
            if not ratio:  # not in this scenario (or no figure: a server that failed)
                continue
            ours, theirs = summary.get("corral", {}), summary.get(peer, {})
            if paced:
                note = f"p99 {theirs.get('p99_ms', 0):.2f} ms vs {ours.get('p99_ms', 0):.2f} ms"
            elif _rps(ours) and _rps(theirs):
                note = f"{_short(_rps(ours))} vs {_short(_rps(theirs))} req/s"
            else:
                note = ""
            failed = theirs.get("failed") or theirs.get("errors")
            if failed:
                note += f", {failed:,} failed" if note else f"{failed:,} failed"
            bars.append({"peer": peer, "ratio": float(ratio), "note": note})
        if bars:
            title = scenario.get("title") or name
            charts.setdefault(chart, []).append({"title": title, "bars": bars})
    return charts


def caption(data: dict) -> str:
    parts = []
    if data.get("date"):
        parts.append(str(data["date"]))
    if data.get("kind") == "http2":
        parts.append("h2load, the best of")
    if data.get("rounds"):
        parts.append(f"{data['rounds']} rounds of {data.get('duration', '?'):g} s per server"
                     + (", medians" if data.get("kind") != "http2" else ""))
    if data.get("cpus"):
        parts.append(f"{data['cpus']} CPUs")
    parts.append("one worker unless the scenario says; above 1x corral is ahead")
    return ", ".join(parts).replace("best of, ", "best of ")


def draw(groups: list[dict], title: str, note: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    plt.rcParams.update({
        "svg.hashsalt": "corral-bench",  # the ids of clip paths etc.: fixed, so two runs of one JSON are equal
        "svg.fonttype": "none",  # text stays text: smaller, searchable, and diffs as words
        "font.family": "sans-serif",
        "font.sans-serif": ["DejaVu Sans", "Helvetica", "Arial"],
        "font.size": 10,
    })
    if "svg.id" in plt.rcParams:  # matplotlib >= 3.7: the root element's id
        plt.rcParams["svg.id"] = os.path.splitext(os.path.basename(path))[0]
    bar_height, gap = 0.8, 0.7
    positions, y, ticks = [], 0.0, []
    for group in groups:
        start = y
        for bar in group["bars"]:
            positions.append((y, group, bar))
            y += bar_height
        ticks.append(((start + y - bar_height) / 2, group["title"]))
        y += gap
    ratios = [bar["ratio"] for _, _, bar in positions]
    low = min(0.5, 2 ** math.floor(math.log2(min(ratios))))
    high = max(2.0, 2 ** math.ceil(math.log2(max(ratios))))
    fig, ax = plt.subplots(figsize=(9.5, 1.0 + 0.27 * len(positions) + 0.2 * len(groups)))
    fig.patch.set_facecolor("white")  # readable on the docs' dark theme too
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    ax.set_ylim(y - gap + 0.1, -0.6)
    for ypos, _, bar in positions:  # a bar from 1x to the ratio; its figures in a column right of the axes
        ratio, peer = bar["ratio"], bar["peer"]
        ax.barh(ypos, ratio - 1, left=1, height=bar_height * 0.85, color=COLORS[peer], zorder=2)
        text = f"{ratio:.2f}x vs {PEER_NAMES[peer]}" + (f"  ({bar['note']})" if bar["note"] else "")
        ax.text(1.02, ypos, text, va="center", ha="left", fontsize=8.5, color="#222222",
                transform=ax.get_yaxis_transform())
    ax.axvline(1, color="#333333", linewidth=1, zorder=3)
    ax.set_yticks([t for t, _ in ticks], [label for _, label in ticks])
    ax.tick_params(axis="y", length=0)
    steps = [2.0 ** k for k in range(-6, 8) if low <= 2.0 ** k <= high]
    ax.xaxis.set_major_locator(FixedLocator(steps))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(steps, [f"{s:g}x" for s in steps])
    ax.grid(axis="x", color="#dddddd", linewidth=0.8, zorder=0)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
    fig.text(0.01, 0.01, note, fontsize=7.5, color="#555555", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, format="svg", metadata={"Date": None, "Creator": "corral bench/charts.py"})
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", metavar="JSON", help="bench/run.py's or bench/http2.py's --json file")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                      "docs", "img"), help="directory of the SVGs (default: docs/img)")
    args = parser.parse_args(argv)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("charts.py: error: needs matplotlib: pip install 'corral[bench]' (make bench installs it)",
              file=sys.stderr)
        return 2
    try:
        charts: dict[str, tuple[list[dict], str]] = {}
        for path in args.results:
            data = load(path)
            for chart, groups in rows(data).items():
                if chart in charts:
                    raise ChartError(f"two inputs have scenarios for {chart}: give one run of each kind")
                charts[chart] = (groups, caption(data))
    except ChartError as exc:
        print(f"charts.py: error: {exc}", file=sys.stderr)
        return 2
    if not charts:
        print("charts.py: error: no scenario with corral and a peer in " + ", ".join(args.results), file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    for chart, (groups, note) in charts.items():
        path = os.path.join(args.out, chart)
        draw(groups, CHARTS[chart], note, path)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
