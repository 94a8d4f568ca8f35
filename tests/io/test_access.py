"""The access log (io/access.py): formats byte by byte, batching, no lost lines."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time

import pytest

from corral.io.access import AccessLog, check_format
from corral.proto.h1 import Request

CLIENT = ("127.0.0.2", 40000)
BROWSER = [
    (b"host", b"example.com"),
    (b"user-agent", b'Mozilla/5.0 "quoted"'),
    (b"referer", b"https://example.com/from"),
    (b"x-request-id", b"abc-123"),
]


def request(target=b"/path?q=1", headers=BROWSER, method="GET"):
    path, _, query = target.partition(b"?")
    return Request(method, target, path, query, "1.1", list(headers), True)


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def make(loop, tmp_path, fmt="default"):
    path = tmp_path / "access.log"
    return AccessLog(loop, fmt, str(path)), path


def run_once(loop):
    loop.run_until_complete(asyncio.sleep(0))


def test_default_format(loop, tmp_path):
    log, path = make(loop, tmp_path)
    log.record(request(), CLIENT, 200, 13, time.perf_counter())
    log.close()
    line = path.read_text()
    assert re.fullmatch(
        rf'\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d{{3}} \[{os.getpid()}\] 127\.0\.0\.2:40000 - "GET /path\?q=1 HTTP/1\.1" 200\n',
        line,
    ), line


def test_common_format(loop, tmp_path):
    log, path = make(loop, tmp_path, "common")
    log.record(request(), CLIENT, 404, 0, time.perf_counter())
    log.record(request(), None, 200, 1234, time.perf_counter())
    log.close()
    first, second = path.read_text().splitlines()
    stamp = r"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]"
    assert re.fullmatch(rf'127\.0\.0\.2 - - {stamp} "GET /path\?q=1 HTTP/1\.1" 404 -', first), first
    assert re.fullmatch(rf'- - - {stamp} "GET /path\?q=1 HTTP/1\.1" 200 1234', second), second


def test_combined_format_escapes_quotes_and_has_the_request_time(loop, tmp_path):
    log, path = make(loop, tmp_path, "combined")
    log.record(request(), CLIENT, 200, 13, time.perf_counter() - 0.25)
    log.record(request(headers=[(b"host", b"x")]), CLIENT, 200, 13, time.perf_counter())
    log.close()
    first, second = path.read_text().splitlines()
    match = re.fullmatch(
        r'127\.0\.0\.2 - - \[[^]]+\] "GET /path\?q=1 HTTP/1\.1" 200 13 '
        r'"https://example\.com/from" "Mozilla/5\.0 \\x22quoted\\x22" (\d+\.\d{6})',
        first,
    )
    assert match, first
    assert 0.25 <= float(match.group(1)) < 5
    assert second.endswith('200 13 "-" "-" ' + second.rsplit(" ", 1)[1])


def test_json_format(loop, tmp_path):
    log, path = make(loop, tmp_path, "json")
    log.record(request(b"/a\"b?x=\xff"), CLIENT, 201, 7, time.perf_counter())
    log.record(request(headers=[]), None, 500, 0, time.perf_counter())
    log.close()
    first, second = [json.loads(line) for line in path.read_text().splitlines()]
    assert set(first) == {
        "time", "remote_addr", "remote_port", "request_method", "request_uri", "server_protocol",
        "status", "body_bytes_sent", "request_time", "http_referer", "http_user_agent", "pid",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", first["time"])
    assert first["remote_addr"] == "127.0.0.2" and first["remote_port"] == 40000
    assert first["request_method"] == "GET" and first["request_uri"] == '/a"b?x=\xff'
    assert first["server_protocol"] == "HTTP/1.1" and first["status"] == 201 and first["body_bytes_sent"] == 7
    assert first["http_referer"] == "https://example.com/from"
    assert first["http_user_agent"] == 'Mozilla/5.0 "quoted"'
    assert first["pid"] == os.getpid() and 0 <= first["request_time"] < 5
    assert second["remote_addr"] is None and second["remote_port"] is None
    assert second["http_referer"] == "" and second["status"] == 500


def test_template_with_gunicorn_atoms(loop, tmp_path):
    fmt = '%(h)s %(l)s %(u)s "%(r)s" %(m)s %(U)s %(q)s %(H)s %(s)s %(B)s %(b)s "%(f)s" "%(a)s" %(p)s %({x-request-id}i)s %({missing}i)s'
    log, path = make(loop, tmp_path, fmt)
    log.record(request(), CLIENT, 200, 0, time.perf_counter())
    log.close()
    assert path.read_text() == (
        '127.0.0.2 - - "GET /path?q=1 HTTP/1.1" GET /path q=1 HTTP/1.1 200 0 - '
        f'"https://example.com/from" "Mozilla/5.0 \\x22quoted\\x22" {os.getpid()} abc-123 -\n'
    )


def test_template_request_times(loop, tmp_path):
    log, path = make(loop, tmp_path, "%(T)s %(M)s %(D)s %(L)s %(t)s")
    log.record(request(), CLIENT, 200, 0, time.perf_counter() - 1.5)
    log.close()
    seconds, millis, micros, decimal, stamp = path.read_text().split(" ", 4)
    assert int(seconds) >= 1 and int(millis) >= 1500 and int(micros) >= 1_500_000 and float(decimal) >= 1.5
    assert re.fullmatch(r"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]\n", stamp)


@pytest.mark.parametrize("value", ["", "nginx", "%(zz)s", "%(h)d", "%({ua}o)s"])
def test_bad_formats_are_refused(value):
    with pytest.raises(ValueError):
        check_format(value)


@pytest.mark.parametrize("value", ["default", "common", "combined", "json", "%(h)s %({User-Agent}i)s"])
def test_good_formats(value):
    assert check_format(value) == value


def test_one_write_per_loop_pass(loop, tmp_path, monkeypatch):
    log, path = make(loop, tmp_path)
    writes = []
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: writes.append(bytes(data)) or real(fd, data))
    for _ in range(50):
        log.record(request(), CLIENT, 200, 13, time.perf_counter())
    assert writes == []  # nothing written inside the pass
    run_once(loop)
    assert len(writes) == 1 and writes[0].count(b"\n") == 50
    log.record(request(), CLIENT, 200, 13, time.perf_counter())
    run_once(loop)
    assert len(writes) == 2
    log.close()
    assert path.read_text().count("\n") == 51


def test_close_writes_what_is_buffered(loop, tmp_path):
    log, path = make(loop, tmp_path)
    for _ in range(3):
        log.record(request(), CLIENT, 200, 13, time.perf_counter())
    assert path.read_text() == ""
    log.close()  # the worker's exit: the loop never ran again
    assert path.read_text().count('"GET /path?q=1 HTTP/1.1" 200\n') == 3


def test_reopen_flushes_to_the_old_file_first(loop, tmp_path):
    log, path = make(loop, tmp_path)
    log.record(request(b"/before"), CLIENT, 200, 0, time.perf_counter())
    rotated = tmp_path / "access.log.1"
    path.rename(rotated)
    log.reopen()
    log.record(request(b"/after"), CLIENT, 200, 0, time.perf_counter())
    log.close()
    assert "/before" in rotated.read_text() and "/after" not in rotated.read_text()
    assert "/after" in path.read_text() and "/before" not in path.read_text()


def test_watchdog_writes_lines_of_a_blocked_loop(loop, tmp_path):
    log, path = make(loop, tmp_path)
    log.start_watchdog()
    log.record(request(), CLIENT, 200, 13, time.perf_counter())
    # The loop never runs its flush (as if the app blocked it): the watchdog writes.
    deadline = time.monotonic() + 10
    while path.read_text() == "" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert path.read_text().count("\n") == 1
    run_once(loop)  # the scheduled flush finds nothing left: no line twice
    log.close()
    assert path.read_text().count("\n") == 1


def test_default_under_log_format_json_is_the_log_envelope(loop, tmp_path):
    path = tmp_path / "access.log"
    log = AccessLog(loop, "default", str(path), log_format="json")
    log.record(request(), CLIENT, 200, 13, time.perf_counter())
    log.close()
    entry = json.loads(path.read_text())
    assert set(entry) == {"time", "level", "pid", "event", "message"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
    assert (entry["level"], entry["pid"], entry["event"]) == ("info", os.getpid(), "http.access")
    assert entry["message"] == '127.0.0.2:40000 - "GET /path?q=1 HTTP/1.1" 200'
