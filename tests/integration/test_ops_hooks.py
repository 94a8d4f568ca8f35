"""A Python config file with hooks (issue 22): options as module variables, gunicorn's
hooks as functions; post_fork opens a per-worker resource, the OpenTelemetry way."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from support import APPS, ROOT, read_response, wait_until

HOOKS_FILE = '''
import os
import sys

health_path = "/healthz"  # an option, as a module variable
_dir = {directory!r}  # the file's own: a leading _
_resource = None


def _mark(name, text=""):
    with open(os.path.join(_dir, name), "a") as handle:
        handle.write(text + "\\n")


def on_starting(server):
    _mark("on_starting", str(server.pid))


def when_ready(server):
    _mark("when_ready", f"{{server.pid}} {{server.target}}")


def post_fork(worker):
    # One exporter connection, pool or file per worker, opened after the fork
    # and before the app is imported: what OpenTelemetry's docs ask of gunicorn users.
    global _resource
    path = os.path.join(_dir, f"resource-{{worker.pid}}")
    _resource = open(path, "w")
    _resource.write(f"opened by {{worker.pid}} slot {{worker.slot}} app imported {{'ops' in sys.modules}}\\n")
    _resource.flush()
    os.environ["OPS_RESOURCE"] = path


def worker_exit(worker):
    _resource.write("closed\\n")
    _resource.close()


def on_reload(server):
    _mark("on_reload")


def on_exit(server):
    _mark("on_exit", str(server.pid))
'''


def get(server, path: str) -> tuple[bytes, bytes]:
    with server.connect() as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        status, _, body = read_response(sock)
        return status, body


def corral(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "corral", "ops:app", "--app-dir", str(APPS), "--port", "0", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=30)


def test_hooks_run_where_they_say(server_factory, tmp_path):
    config = tmp_path / "corral.conf.py"
    config.write_text(HOOKS_FILE.format(directory=str(tmp_path)))
    server = server_factory("ops:app", "-c", str(config), workers=2)
    master = server.proc.pid
    assert (tmp_path / "on_starting").read_text() == f"{master}\n"
    server.wait_log(r"master: worker \d+ ready", count=2)
    assert get(server, "/healthz") == (b"HTTP/1.1 200 OK", b"ok\n")  # the option from the file
    workers = server.worker_pids()
    for pid in workers:
        text = (tmp_path / f"resource-{pid}").read_text()
        assert text.startswith(f"opened by {pid} slot ") and text.endswith("app imported False\n")
    seen = json.loads(get(server, "/ids")[1])
    assert seen["resource"] == str(tmp_path / f"resource-{seen['pid']}")  # the app sees its own worker's
    when_ready = tmp_path / "when_ready"
    wait_until(lambda: when_ready.exists() and when_ready.read_text(), message="the when_ready hook")  # runs after the log line
    assert when_ready.read_text() == f"{master} 2\n"
    mark = server.mark()
    server.signal(signal.SIGHUP)
    server.wait_log(r"master: reload complete", start=mark, timeout=30)
    assert (tmp_path / "on_reload").read_text() == "\n"
    assert (tmp_path / "when_ready").read_text() == f"{master} 2\n"  # once, not at each reload
    for pid in workers:  # the old workers closed theirs as they exited
        assert (tmp_path / f"resource-{pid}").read_text().endswith("closed\n")
    new_workers = server.worker_pids()
    assert server.stop() == 0
    for pid in new_workers:
        assert (tmp_path / f"resource-{pid}").read_text().endswith("closed\n")
    assert (tmp_path / "on_exit").read_text() == f"{master}\n"


def test_a_post_fork_that_raises_fails_the_boot(tmp_path):
    config = tmp_path / "corral.conf.py"
    config.write_text("def post_fork(worker):\n    raise RuntimeError('no collector at localhost:4317')\n")
    result = corral("--config", str(config))
    assert result.returncode == 3  # five failed boots in a row
    assert result.stderr.splitlines()[-1] == "corral: error: post_fork hook raised RuntimeError: no collector at localhost:4317"
    assert "Traceback" in result.stderr  # the hook's traceback is logged


def test_an_on_starting_that_raises_stops_the_start(tmp_path):
    config = tmp_path / "corral.conf.py"
    config.write_text("def on_starting(server):\n    raise ValueError('missing secret')\n")
    result = corral("--config", str(config))
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == "corral: error: on_starting hook raised ValueError: missing secret"


def test_mistakes_in_the_file_are_one_line(tmp_path):
    config = tmp_path / "corral.conf.py"
    config.write_text("import os\nworkers = 2\npost_forks = None\n")
    result = corral("--config", str(config))
    assert (result.returncode, result.stderr) == (
        2, f"corral: error: --config: {config}: unknown option or hook 'post_forks' (did you mean hook 'post_fork'? name the file's own helpers with a leading _)\n"
    )
    config.write_text("workers = 'many'\n")
    result = corral("--config", str(config))
    assert (result.returncode, result.stderr) == (2, f"corral: error: {config}: workers: must be an integer (got 'many')\n")
    config.write_text("workers = = 2\n")
    result = corral("--config", str(config))
    assert result.returncode == 2
    assert result.stderr.startswith(f"corral: error: --config: {config} raised SyntaxError (line 1): ")
    assert result.stderr.count("\n") == 1
