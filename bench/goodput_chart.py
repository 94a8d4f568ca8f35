#!/usr/bin/env python3
"""The picture of `bench/overload.py goodput`: goodput and p99 against offered load.

One row per app (cpu, io, wsgi) and worker count, two panels: goodput (the
responses within the deadline per second, over the server's capacity) and
the p99 of the served requests, against the offered load (a multiple of the
capacity measured in the same run), one line per server. Deterministic SVG
(fixed ids, no date), as bench/charts.py writes.

    python bench/goodput_chart.py bench/results/goodput.json --out docs/img/overload-goodput.svg
"""

from __future__ import annotations

import argparse
import json
import os
import sys

COLORS = {"corral": "#1f78b4", "granian": "#d95f02", "uvicorn": "#7570b3", "gunicorn": "#1b9e77"}
APPS = {"cpu": "2 ms of CPU (ASGI)", "io": "await 20 ms, 1 ms of CPU (ASGI)", "wsgi": "2 ms of CPU (WSGI, 4 threads)"}


def draw(rows: list[dict], path: str, note: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "corral-goodput", "svg.fonttype": "none", "font.family": "sans-serif",
                         "font.sans-serif": ["DejaVu Sans", "Helvetica", "Arial"], "font.size": 9})
    if "svg.id" in plt.rcParams:
        plt.rcParams["svg.id"] = os.path.splitext(os.path.basename(path))[0]
    groups = sorted({(r["app"], r["workers"]) for r in rows}, key=lambda g: (list(APPS).index(g[0]), g[1]))
    fig, axes = plt.subplots(len(groups), 2, figsize=(9.5, 2.3 * len(groups) + 0.6), squeeze=False)
    fig.patch.set_facecolor("white")
    for (app, workers), (left, right) in zip(groups, axes):
        servers = [s for s in COLORS if any(r["server"] == s and r["app"] == app and r["workers"] == workers for r in rows)]
        for server in servers:
            mine = sorted((r for r in rows if r["server"] == server and r["app"] == app and r["workers"] == workers),
                          key=lambda r: r["load"])
            loads = [r["load"] for r in mine]
            style = {"color": COLORS[server], "marker": "o", "linewidth": 2.2 if server == "corral" else 1.3,
                     "label": server}
            left.plot(loads, [r["goodput"] for r in mine], **style)
            right.plot(loads, [r["p99_ms"] or 0 for r in mine], **style)
        title = f"{APPS.get(app, app)}, {workers} worker{'s' if workers > 1 else ''}"
        left.set_title(f"goodput: {title}", loc="left", fontsize=9, fontweight="bold")
        right.set_title("p99 of the served requests (ms)", loc="left", fontsize=9)
        for ax in (left, right):
            ax.set_xscale("log", base=2)
            ax.set_xticks([0.8, 2, 4, 8], ["0.8x", "2x", "4x", "8x"])
            ax.minorticks_off()
            ax.grid(color="#dddddd", linewidth=0.7)
            for side in ("top", "right"):
                ax.spines[side].set_visible(False)
        left.set_ylim(0, max(1.2, max(r["goodput"] for r in rows) * 1.05))
        left.axhline(1.0, color="#999999", linewidth=0.8, linestyle="--")
        right.set_ylim(0, 1050)
        left.legend(fontsize=7.5, frameon=False, loc="lower left")
    axes[-1][0].set_xlabel("offered load (x capacity)")
    axes[-1][1].set_xlabel("offered load (x capacity)")
    fig.text(0.01, 0.005, note, fontsize=7.5, color="#555555", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, format="svg", metadata={"Date": None, "Creator": "corral bench/goodput_chart.py"})
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", nargs="+", help="rows written by bench/overload.py goodput --json")
    parser.add_argument("--out", default="docs/img/overload-goodput.svg")
    parser.add_argument("--note", default="bench/overload.py goodput: open-loop Poisson arrivals, a new connection "
                        "each, 1 s deadline; goodput = answers within it per second / capacity (same run)")
    args = parser.parse_args(argv)
    rows = []
    for path in args.json:
        try:
            with open(path, encoding="utf-8") as handle:
                rows += json.load(handle)
        except (OSError, ValueError) as exc:
            print(f"goodput_chart.py: error: {path}: {exc}", file=sys.stderr)
            return 2
    if not rows:
        print("goodput_chart.py: error: no rows", file=sys.stderr)
        return 2
    draw(rows, args.out, args.note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
