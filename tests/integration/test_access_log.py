"""The access log of a real worker: formats, and no line lost when a worker is killed."""

from __future__ import annotations

import json
import re
import signal

from support import read_response, wait_until
from test_cli import assert_usage_error, corral


def get_pid(server) -> int:
    with server.connect() as sock:
        sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return int(read_response(sock)[2])


def test_json_lines_from_a_real_worker(server_factory):
    server = server_factory("basic:app", "--access-log-format", "json")
    mark = server.mark()
    sock = server.connect()
    with sock:
        port = sock.getsockname()[1]
        sock.sendall(b"GET /pid?x=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: test/1.0\r\nReferer: http://r/\r\n\r\n")
        status, _, body = read_response(sock)
    assert status.startswith(b"HTTP/1.1 200")
    line = server.wait_log(r'^\{"time": .*"request_uri": "/pid\?x=1"', start=mark)[0].string
    entry = json.loads(line)
    assert (entry["remote_addr"], entry["remote_port"]) == ("127.0.0.1", port)
    assert (entry["request_method"], entry["server_protocol"], entry["status"]) == ("GET", "HTTP/1.1", 200)
    assert entry["body_bytes_sent"] == len(body)
    assert (entry["http_user_agent"], entry["http_referer"]) == ("test/1.0", "http://r/")
    assert entry["pid"] == int(body)


def test_lines_before_a_blocked_loop_are_written_before_its_stack_dump(server_factory):
    server = server_factory("basic:app", "--timeout-worker", "1.5", workers=1)
    victim = server.worker_pids().pop()
    mark = server.mark()
    sock = server.connect()
    # One segment: /pid is answered and logged, then /block blocks the loop in
    # the same pass, before the batched write of that pass.
    sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\nGET /block?60 HTTP/1.1\r\nHost: x\r\n\r\n")
    server.wait_log(rf"worker {victim} was killed by SIGKILL", start=mark)
    sock.close()
    lines = server.lines[mark:]
    logged = [i for i, line in enumerate(lines) if re.search(rf'\[{victim}\] .* "GET /pid HTTP/1\.1" 200$', line)]
    dump = [i for i, line in enumerate(lines) if "most recent call first" in line]
    assert len(logged) == 1 and dump, "\n".join(lines)
    assert logged[0] < dump[0]


def test_usr1_and_a_custom_template(server_factory, tmp_path):
    log_file = tmp_path / "corral.log"
    server = server_factory("basic:app", "--log-file", str(log_file), "--access-log-format", "%(m)s %(U)s %(s)s %(b)s",
                            wait_ready=False)
    wait_until(lambda: log_file.exists() and "ready" in log_file.read_text(), message="ready in the log file")
    server.port = int(re.search(r"serving http://127.0.0.1:(\d+)", log_file.read_text()).group(1))
    pid = get_pid(server)
    wait_until(lambda: re.search(rf"^GET /pid 200 {len(str(pid))}$", log_file.read_text(), re.M), message="the line")
    log_file.rename(tmp_path / "old.log")
    server.signal(signal.SIGUSR1)
    wait_until(log_file.exists, message="the log file to be reopened")
    get_pid(server)
    wait_until(lambda: "GET /pid 200" in log_file.read_text(), message="the line in the new file")
    assert (tmp_path / "old.log").read_text().count("GET /pid 200") == 1


def test_bad_format_is_a_usage_error():
    assert_usage_error(
        corral("basic:app", "--access-log-format", "%(nope)s"),
        "--access-log-format: unknown access log atom %(nope)s (got '%(nope)s')",
    )
