"""--preload (issue 22): the app is imported once, in the master, before the
fork (gc.freeze()); lifespan still runs per worker; HUP re-executes the master
(as USR2) so new code is served; an import error is one line, exit 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from support import ROOT, Load, pid_alive, read_response, wait_until

NEW_MASTER = r"SIGUSR2: upgrading: new master (\d+) started"

APP = '''
import gc
import os

IMPORTED_IN = os.getpid()
VERSION = "{version}"
os.write(2, f"app imported in {{IMPORTED_IN}}\\n".encode())


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                os.write(2, f"lifespan startup in {{os.getpid()}}\\n".encode())
                await send({{"type": "lifespan.startup.complete"}})
            elif message["type"] == "lifespan.shutdown":
                await send({{"type": "lifespan.shutdown.complete"}})
                return
    body = f"{{VERSION}} {{IMPORTED_IN}} {{os.getpid()}} {{gc.get_freeze_count()}}".encode()
    await send({{"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]}})
    await send({{"type": "http.response.body", "body": body}})
'''


def write_app(path, version: str) -> None:
    path.write_text(APP.format(version=version))


def ask(server) -> tuple[str, int, int, int]:
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, _, body = read_response(sock)
    assert status == b"HTTP/1.1 200 OK"
    version, imported_in, pid, frozen = body.decode().split()
    return version, int(imported_in), int(pid), int(frozen)


def test_imported_once_in_the_master_lifespan_in_each_worker(server_factory, tmp_path):
    write_app(tmp_path / "pre.py", "v1")
    server = server_factory("pre:app", "--app-dir", str(tmp_path), "--preload", workers=3)
    master = server.proc.pid
    assert len(server.wait_log(r"app imported in (\d+)")) == 1
    assert server.wait_log(r"app imported in (\d+)")[0].group(1) == str(master)
    server.wait_log(rf"master {master}: --preload: pre:app imported; \d+ objects frozen")
    workers = server.worker_pids()
    starts = {int(m.group(1)) for m in server.wait_log(r"lifespan startup in (\d+)", count=3)}
    assert starts == workers  # lifespan ran in every worker, not in the master
    for _ in range(6):
        version, imported_in, pid, frozen = ask(server)
        assert (version, imported_in) == ("v1", master) and pid in workers
        assert frozen > 0  # the master's objects are in the permanent generation
    assert len([line for line in server.lines if "app imported in" in line]) == 1  # no worker imported it


def test_without_preload_each_worker_imports(server_factory, tmp_path):
    write_app(tmp_path / "pre.py", "v1")
    server = server_factory("pre:app", "--app-dir", str(tmp_path), workers=2)
    imported = {int(m.group(1)) for m in server.wait_log(r"app imported in (\d+)", count=2)}
    assert imported == server.worker_pids()
    _, imported_in, pid, frozen = ask(server)
    assert imported_in == pid and frozen == 0


def test_hup_re_executes_the_master_and_serves_the_new_code_without_loss(server_factory, tmp_path):
    app_file = tmp_path / "pre.py"
    write_app(app_file, "v1")
    pidfile = tmp_path / "corral.pid"
    server = server_factory("pre:app", "--app-dir", str(tmp_path), "--preload", "--pid", str(pidfile), workers=2)
    old_master = server.proc.pid
    load = Load(server.port, threads=4, path="/", max_seconds=40)
    new_master = 0
    try:
        load.wait_requests(200)
        write_app(app_file, "v2")
        mark = server.mark()
        server.signal(signal.SIGHUP)
        server.wait_log(r"master: SIGHUP with --preload: this master cannot import the app again; "
                        r"re-executing it as on USR2", start=mark)
        new_master = int(server.wait_log(NEW_MASTER, start=mark)[0].group(1))
        server.wait_log(r"upgrade: every worker ready", start=mark, timeout=30)
        assert server.proc.wait(30) == 0  # the old master drained and left
        before = load.ok
        load.wait_requests(before + 200)
    finally:
        load.stop()
        try:
            assert load.failures == [], load.failures[:5]
            version, imported_in, _, _ = ask(server)
            assert (version, imported_in) == ("v2", new_master) and new_master != old_master
            assert pidfile.read_text() == f"{new_master}\n"
        finally:
            if new_master:
                os.kill(new_master, signal.SIGTERM)
                wait_until(lambda: not pid_alive(new_master), timeout=20, message="the new master to exit")


def corral(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "corral", *args, "--port", "0"]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def test_an_import_error_at_preload_is_one_line_exit_2(tmp_path):
    (tmp_path / "broken.py").write_text("import no_such_module_for_corral\n")
    (tmp_path / "raises.py").write_text("raise RuntimeError('no database')\n")
    pidfile = tmp_path / "corral.pid"
    sock = tmp_path / "corral.sock"
    cases = {
        "no_such_app_module:app": "--preload: cannot import module 'no_such_app_module'",
        "broken:app": "--preload: broken:app raised ModuleNotFoundError while importing: "
                      "No module named 'no_such_module_for_corral'",
        "raises:app": "--preload: raises:app raised RuntimeError while importing: no database",
    }
    for app, message in cases.items():
        result = corral(app, "--app-dir", str(tmp_path), "--preload", "--pid", str(pidfile), "-b", f"unix:{sock}")
        assert result.returncode == 2, result.stderr
        errors = [line for line in result.stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
        assert len(errors) == 1 and errors[0].startswith(f"corral: error: {message}"), result.stderr
        assert result.stderr.splitlines()[-1] == errors[0]
        assert not pidfile.exists() and not sock.exists()  # cleaned up
