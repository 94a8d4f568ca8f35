"""corral top in a real terminal (tmux) against a running two-worker server (issue 15)."""

import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from support import ROOT, read_response, wait_until

pytest.importorskip("rich")
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (make test installs it)")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=10).stdout


def test_top_shows_workers_and_reloads_on_a_key(server_factory):
    server = server_factory("basic:app", "--metrics-bind", "127.0.0.1:0", "--no-access-log", workers=2)
    port = int(server.wait_log(r"metrics at http://127\.0\.0\.1:(\d+)/metrics")[0].group(1))
    for _ in range(20):
        with server.connect() as sock:
            sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            read_response(sock)
    session = f"corral-top-{os.getpid()}"
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "24",
         f"cd {ROOT} && env -u COLUMNS -u LINES {sys.executable} -m corral top 127.0.0.1:{port} --interval 0.5")
    try:
        screen = lambda: tmux("capture-pane", "-p", "-t", session)  # noqa: E731
        old = server.worker_pids()
        text = wait_until(lambda: (s := screen()) and all(str(p) in s for p in old) and "requests 20" in s and s,
                          message="two workers on screen")
        assert f"master {server.proc.pid}" in text
        assert "workers 2/2" in text
        assert len(re.findall(r"^\s*\d+\s+[01]\s+serving\s", text, re.M)) == 2, text
        mark = server.mark()
        tmux("send-keys", "-t", session, "h")  # HUP: a rolling reload
        server.wait_log(r"SIGHUP: reloading 2 workers", start=mark)
        server.wait_log(r"master: reload complete", start=mark, timeout=20)
        new = server.worker_pids()
        assert not (new & old)
        text = wait_until(lambda: (s := screen()) and "reloads 1" in s and all(str(p) in s for p in new) and s,
                          message="the new workers on screen")
        assert f"SIGHUP sent to master {server.proc.pid}" in text
        tmux("send-keys", "-t", session, "q")
        wait_until(lambda: subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode,
                   message="corral top to quit on q")
    finally:
        tmux("kill-session", "-t", session)


def test_top_cannot_reach_the_server():
    result = subprocess.run([sys.executable, "-m", "corral", "top", "127.0.0.1:1"], capture_output=True, text=True,
                            timeout=30, cwd=ROOT)
    assert result.returncode == 1
    assert result.stderr.startswith("corral top: cannot read http://127.0.0.1:1/metrics:")
