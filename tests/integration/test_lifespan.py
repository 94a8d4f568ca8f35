"""ASGI lifespan against a real corral process."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from support import APPS, ROOT

# Boot failures are retried by the master with a backoff (about 2 s in all):
# the three failing runs are started together, each test waits for its own.
FAILING = {
    "startup-failed": ("lifespan_fail:app",),
    "startup-raises-on": ("lifespan_apps:startup_raises", "--lifespan", "on"),
    "no-lifespan-on": ("lifespan_apps:no_lifespan", "--lifespan", "on"),
}


def start_corral(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "corral", *args, "--app-dir", str(APPS), "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )


@pytest.fixture(scope="module")
def failing_runs():
    procs = {name: start_corral(*args) for name, args in FAILING.items()}
    results = {}

    def result(name: str) -> subprocess.CompletedProcess:
        if name not in results:
            proc = procs[name]
            out, err = proc.communicate(timeout=30)
            results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        return results[name]

    yield result
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def assert_one_line_error(result: subprocess.CompletedProcess, message: str, code: int) -> None:
    assert result.returncode == code, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("corral: error:")]
    assert errors == [f"corral: error: {message}"]
    assert result.stderr.splitlines()[-1] == errors[0]
    assert "Traceback" not in result.stderr


def test_startup_and_shutdown_run(server_factory):
    server = server_factory("basic:app")
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/scope").json()["state"] == {"started": True}
    mark = server.mark()
    assert server.stop() == 0
    server.wait_log(r"^lifespan shutdown ran$", start=mark)
    shutdown = server.wait_log(r"worker \d+: lifespan shutdown complete; exiting", start=mark)
    assert shutdown
    lines = server.lines[mark:]
    assert lines.index("lifespan shutdown ran") < next(i for i, line in enumerate(lines) if "lifespan shutdown complete" in line)
    # A clean exit: no asyncio complaints about pending tasks, no tracebacks.
    assert not [line for line in server.lines if "Task was destroyed" in line or "Traceback" in line]


def test_startup_failure_exits_nonzero_with_one_line(failing_runs):
    result = failing_runs("startup-failed")
    assert_one_line_error(result, "lifespan startup failed: database unreachable", 3)


def test_startup_raising_with_lifespan_on_exits_nonzero(failing_runs):
    result = failing_runs("startup-raises-on")
    assert_one_line_error(result, "lifespan startup raised RuntimeError: startup exploded", 3)


def test_lifespan_on_requires_support(failing_runs):
    result = failing_runs("no-lifespan-on")
    assert_one_line_error(result, "lifespan startup raised AssertionError: this app only speaks http", 3)


def test_app_without_lifespan_support_still_runs(server_factory):
    server = server_factory("lifespan_apps:no_lifespan")
    server.wait_log(r"\[INFO\] ASGI lifespan unsupported by the app \(AssertionError: this app only speaks http\); continuing without it$")
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/").content == b"no lifespan here"
    assert server.stop() == 0
    assert not [line for line in server.lines if "Traceback" in line]


def test_app_returning_from_lifespan_still_runs(server_factory):
    server = server_factory("lifespan_apps:returns_early")
    server.wait_log(r"ASGI lifespan unsupported by the app \(the app returned from the lifespan scope\)")
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/").content == b"returned early"
    assert server.stop() == 0


def test_startup_raising_in_auto_mode_is_taken_as_unsupported(server_factory):
    server = server_factory("lifespan_apps:startup_raises")
    server.wait_log(r"ASGI lifespan unsupported by the app \(RuntimeError: startup exploded\)")
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/").content == b"served anyway"


def test_lifespan_off_skips_it(server_factory):
    server = server_factory("basic:app", "--lifespan", "off")
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/scope").json()["state"] == {}
    assert server.stop() == 0
    assert "lifespan shutdown ran" not in server.lines


def test_shutdown_failure_is_logged_and_the_worker_still_exits(server_factory):
    server = server_factory("lifespan_apps:shutdown_fails")
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/").content == b"started"
    assert server.stop() == 0
    server.wait_log(r"\[ERROR\] lifespan shutdown failed: cleanup broke$")


def test_shutdown_raising_is_logged_and_the_worker_still_exits(server_factory):
    server = server_factory("lifespan_apps:shutdown_raises")
    assert server.stop() == 0
    server.wait_log(r"\[ERROR\] lifespan shutdown raised ValueError: shutdown exploded$")
