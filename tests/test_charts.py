"""bench/charts.py draws the benchmark charts of the docs (docs/img/bench-*.svg)
from the committed results of the last runs (bench/results/*.json): valid SVG,
one chart per table, the same bytes every time, one-line errors."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import types
import xml.etree.ElementTree as ET

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = [os.path.join(ROOT, "bench", "results", name) for name in ("bench.json", "bench-h2.json")]
SVG = "{http://www.w3.org/2000/svg}"


def charts(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(ROOT, "bench", "charts.py"), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def module(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(ROOT, "bench", f"{name}.py"))
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    pytest.importorskip("matplotlib", reason="matplotlib is in the test extra: make test installs it")
    out = tmp_path_factory.mktemp("charts")
    result = charts(*RESULTS, "--out", str(out))
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return out, result.stdout


def texts(path) -> list[str]:
    root = ET.parse(path).getroot()  # valid XML, or this raises
    assert root.tag == f"{SVG}svg"
    assert float(root.get("width").removesuffix("pt")) > 300 and float(root.get("height").removesuffix("pt")) > 80
    return [" ".join("".join(node.itertext()).split()) for node in root.iter(f"{SVG}text")]


def test_one_svg_per_table(drawn):
    out, stdout = drawn
    assert sorted(os.listdir(out)) == ["bench-http1.svg", "bench-http2.svg", "bench-wsgi.svg"]
    assert stdout.count("wrote ") == 3


def test_the_charts_show_the_runs_scenarios_and_ratios(drawn):
    out, _ = drawn
    runs = [json.load(open(path)) for path in RESULTS]
    http1 = texts(out / "bench-http1.svg")
    wsgi = texts(out / "bench-wsgi.svg")
    http2 = texts(out / "bench-http2.svg")
    for data, shown_in in ((runs[0], None), (runs[1], http2)):
        for name, scenario in data["scenarios"].items():
            where = shown_in or (wsgi if name.startswith("wsgi-") else http1)
            assert scenario["title"] in where, (name, where)
            for key, ratio in scenario["ratios"].items():
                ours, peer = key.split("/")
                if ours == "corral" and peer != "minimal":  # the reference loops are not peers
                    assert any(text.startswith(f"{ratio:.2f}x vs ") for text in where), (name, key)
    assert "1.29x vs Granian (71.4k vs 55.4k req/s)" in http1  # the README's run of 2026-12-07
    assert "23.19x vs gunicorn (69.3k vs 3.0k req/s)" in wsgi
    assert "13.30x vs hypercorn (53.1k vs 4.0k req/s, 32,236 failed)" in http2
    assert not any("minimal" in text for text in http1)
    assert any(text.startswith("2026-12-07, 3 rounds of 5 s per server") for text in http1)


def test_the_svgs_are_deterministic(drawn, tmp_path):
    out, _ = drawn
    result = charts(*RESULTS, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for name in os.listdir(out):
        again = (tmp_path / name).read_bytes()
        assert again == (out / name).read_bytes(), name
        assert b"<dc:date>" not in again  # no date of drawing in the metadata


def test_the_committed_charts_are_there_and_valid():
    for name in ("bench-http1.svg", "bench-http2.svg", "bench-wsgi.svg"):
        path = os.path.join(ROOT, "docs", "img", name)
        assert any(text.endswith("x") or " vs " in text for text in texts(path)), name
    page = open(os.path.join(ROOT, "docs", "performance.md")).read()
    for name in ("bench-http1.svg", "bench-http2.svg", "bench-wsgi.svg"):
        assert f"](img/{name})" in page, name


def test_a_run_of_some_scenarios_redraws_only_its_chart(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is in the test extra: make test installs it")
    data = json.load(open(RESULTS[0]))
    data["scenarios"] = {"wsgi-hello": data["scenarios"]["wsgi-hello"]}
    path = tmp_path / "wsgi.json"
    path.write_text(json.dumps(data))
    result = charts(str(path), "--out", str(tmp_path / "img"))
    assert result.returncode == 0, result.stderr
    assert os.listdir(tmp_path / "img") == ["bench-wsgi.svg"]


def test_http2_json_as_charts_reads_it(tmp_path):
    """bench/http2.py --json writes what charts.py draws (no h2load needed: its writer is fed a run)."""
    http2 = module("http2")
    args = types.SimpleNamespace(scenarios="h2c,h1-tls", rounds=2, duration=5.0, json=str(tmp_path / "h2.json"))
    results = {("h2c", "corral"): (60000.0, 0), ("h2c", "granian"): (50000.0, 0), ("h2c", "hypercorn"): (3000.0, 12),
               ("h1-tls", "corral"): (40000.0, 0), ("h1-tls", "granian"): (0.0, 0), ("h1-tls", "hypercorn"): (4000.0, 0)}
    rounds = {key: [value[0], value[0] / 2] for key, value in results.items()}
    http2.write_json(args, ["corral", "granian", "hypercorn"], results, rounds)
    data = json.load(open(args.json))
    assert data["kind"] == "http2" and data["scenarios"]["h2c"]["ratios"] == {"corral/granian": 1.2, "corral/hypercorn": 20.0}
    assert "corral/granian" not in data["scenarios"]["h1-tls"]["ratios"]  # a server that served nothing: no ratio
    groups = module("charts").rows(data)["bench-http2.svg"]
    assert [g["title"] for g in groups] == ["h2c, prior knowledge (-c16 -m10)", "HTTP/1.1 over TLS (--h1 -c16)"]
    assert groups[0]["bars"][1] == {"peer": "hypercorn", "ratio": 20.0, "note": "60.0k vs 3.0k req/s, 12 failed"}
    assert [bar["peer"] for bar in groups[1]["bars"]] == ["hypercorn"]


@pytest.mark.parametrize("content, message", [
    (None, "charts.py: error: cannot read {path}: No such file or directory\n"),
    ("{not json", "charts.py: error: {path} is not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)\n"),
    ('{"rounds": 3}', "charts.py: error: {path} has no scenarios (is it bench/run.py's or bench/http2.py's --json?)\n"),
    ('{"scenarios": {}}', "charts.py: error: no scenario with corral and a peer in {path}\n"),
])
def test_a_bad_input_is_one_line(tmp_path, content, message):
    pytest.importorskip("matplotlib", reason="matplotlib is in the test extra: make test installs it")
    path = tmp_path / "run.json"
    if content is not None:
        path.write_text(content)
    result = charts(str(path), "--out", str(tmp_path / "img"))
    assert (result.returncode, result.stdout, result.stderr) == (2, "", message.format(path=path))
    assert not (tmp_path / "img").exists()


def test_the_paced_scenario_is_latency_and_the_reference_loops_are_left_out():
    data = {"scenarios": {"paced": {"title": "p99 at half Granian's hello rate", "summary": {
        "corral": {"median_rps": 50243.0, "p99_ms": 1.0}, "granian": {"median_rps": 40295.0, "p99_ms": 12.29}},
        "ratios": {"corral/granian": 12.29}}, "hello": {"title": "hello", "summary": {
            "corral": {"median_rps": 2000.0}, "minimal": {"median_rps": 3000.0}},
        "ratios": {"corral/minimal": 0.67, "minimal/granian": 2.0}}}}
    groups = module("charts").rows(data)
    assert groups == {"bench-http1.svg": [{"title": "p99 at half Granian's hello rate", "bars": [
        {"peer": "granian", "ratio": 12.29, "note": "p99 12.29 ms vs 1.00 ms"}]}]}
