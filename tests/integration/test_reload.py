"""--reload: watchfiles -> the master's zero-loss reload path (issue 15)."""

import pytest

from support import Load, pid_alive, wait_until

pytest.importorskip("watchfiles")

APP = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": b"{version}"}})
'''


def get(server) -> bytes:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read()
    finally:
        conn.close()


def test_reload_picks_up_an_edit_survives_a_syntax_error_and_recovers(server_factory, tmp_path):
    code = tmp_path / "reloaded.py"
    code.write_text(APP.format(version="one"))
    server = server_factory("reloaded:app", "--app-dir", str(tmp_path), "--reload", "--reload-dir", str(tmp_path), "--no-access-log",
                            workers=2)
    watcher = int(server.wait_log(r"reload watcher (\d+): watching " + str(tmp_path))[0].group(1))
    assert get(server) == b"one"
    workers = lambda: server.worker_pids() - {watcher}  # noqa: E731 - the watcher is the master's child too
    old = workers()

    # An edit, under load: the same zero-loss path as HUP.
    load = Load(server.port, threads=2, path="/", max_seconds=30)
    try:
        load.wait_requests(50)
        mark = server.mark()
        (tmp_path / "notes.txt").write_text("not watched")  # only *.py by default
        code.write_text(APP.format(version="two, edited"))
        server.wait_log(r"--reload: reloaded\.py changed: reloading 2 workers", start=mark)
        server.wait_log(r"master: reload complete", start=mark, timeout=20)
        before = load.ok
        load.wait_requests(before + 50)
    finally:
        load.stop()
    assert load.failures == []
    assert not any("notes.txt" in line for line in server.lines)
    assert get(server) == b"two, edited"
    new = workers()
    assert len(new) == 2 and not (new & old)

    # A syntax error: the old workers keep serving, and the error is shown.
    mark = server.mark()
    code.write_text(APP.format(version="three") + "\nbroken = (\n")
    server.wait_log(r"reload failed; the previous workers keep serving .*SyntaxError", start=mark)
    server.wait_log(r"SyntaxError: '\(' was never closed", start=mark)
    wait_until(lambda: workers() == new, message="the failed workers to be gone")
    assert get(server) == b"two, edited"

    # Fixing the file recovers, without a restart.
    mark = server.mark()
    code.write_text(APP.format(version="four"))
    server.wait_log(r"master: reload complete", start=mark, timeout=20)
    assert get(server) == b"four"
    assert server.proc.poll() is None
    assert server.stop() == 0
    assert not pid_alive(watcher)


def test_reload_exclude_and_include(server_factory, tmp_path):
    (tmp_path / "app.py").write_text(APP.format(version="one"))
    (tmp_path / "templates").mkdir()
    server = server_factory("app:app", "--app-dir", str(tmp_path), "--reload", "--reload-dir", str(tmp_path), "--no-access-log",
                            "--reload-include", "*.html", "--reload-exclude", "skip_*")
    server.wait_log(r"reload watcher \d+: watching .* for \*\.html \(excluding skip_\*\)")
    mark = server.mark()
    (tmp_path / "templates" / "skip_me.html").write_text("<p>no</p>")
    (tmp_path / "templates" / "page.html").write_text("<p>yes</p>")
    server.wait_log(r"--reload: templates/page\.html changed", start=mark)
    server.wait_log(r"master: reload complete", start=mark, timeout=20)
    assert not any("skip_me" in line for line in server.lines)


def test_reload_dir_must_exist(tmp_path):
    import subprocess
    import sys

    from support import APPS, ROOT

    result = subprocess.run([sys.executable, "-m", "corral", "basic:app", "--app-dir", str(APPS), "--reload",
                             "--reload-dir", str(tmp_path / "missing")], capture_output=True, text=True, cwd=ROOT,
                            timeout=30)
    assert result.returncode == 2
    assert result.stderr == f"corral: error: --reload-dir: {tmp_path / 'missing'} is not a directory\n"
