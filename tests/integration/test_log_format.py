"""--log-format json: every line of corral's own log is one JSON object (issue 15)."""

import json

from support import read_response


def test_every_line_is_json_with_pid_and_event(server_factory):
    server = server_factory("basic:app", "--log-format", "json", workers=2)
    workers = server.worker_pids()
    for request in (b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    b"GET /raise HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    b"GET / HTTP/1.1\r\n\r\n"):  # no Host: 400
        with server.connect() as sock:
            sock.sendall(request)
            read_response(sock)
    server.wait_log(r'"event": "http.error_response"')
    assert server.stop() == 0
    app_lines = {"lifespan shutdown ran"}  # the test app's own prints
    entries = [json.loads(line) for line in server.lines if line not in app_lines]  # every other line parses
    master = server.proc.pid
    for entry in entries:
        assert set(entry) >= {"time", "level", "pid", "event", "message"}, entry
        assert entry["time"].endswith("Z") and entry["level"] in ("info", "warning", "error")
        assert entry["pid"] in workers | {master}, entry
        assert entry["event"].count(".") == 1 and entry["event"].split(".")[1], entry
    events = {(e["event"], e["pid"]) for e in entries}
    assert ("master.serving", master) in events
    assert {pid for event, pid in events if event == "worker.ready"} == workers
    assert {pid for event, pid in events if event == "master.worker_ready"} == {master}
    [access] = [e for e in entries if e["event"] == "http.access" and "/pid" in e["message"]]
    assert access["pid"] in workers
    [crash] = [e for e in entries if e["event"] == "server.exception_in_asgi_application"]
    assert crash["level"] == "error" and "Traceback" in crash["exc"] and "RuntimeError" in crash["exc"]
    [bad] = [e for e in entries if e["event"] == "http.error_response"]
    assert "400" in bad["message"]
    assert any(e["event"] == "master.exit" and e["pid"] == master for e in entries)
