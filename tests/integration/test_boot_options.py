"""Options given the wrong way: no prefix matching, and the closest real
option suggested (issue 20). Real corral processes."""

import subprocess
import sys

import pytest

from support import APPS, ROOT, Reader


def corral(*args, env=None, timeout=30):
    return subprocess.run([sys.executable, "-m", "corral", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=env)


@pytest.mark.parametrize(
    "args, line",
    [
        # gunicorn's --max-requests was taken as --max-requests-jitter (a prefix of it)
        (("--max-requests", "3"), "unknown option --max-requests (did you mean --limit-max-requests?)"),
        (("--max-requests=3",), "unknown option --max-requests (did you mean --limit-max-requests?)"),
        (("--work", "2"), "unknown option --work (did you mean --workers?)"),  # a prefix: no longer --workers
        (("--worker", "2"), "unknown option --worker (did you mean --workers?)"),
        (("--binds", "unix:/run/app.sock"), "unknown option --binds (did you mean --bind?)"),
        (("-t", "30"), "unknown option -t (did you mean --timeout-worker?)"),
        (("--graceful-timeout", "30"), "unknown option --graceful-timeout (did you mean --timeout-graceful?)"),
        (("--keep-alive", "5"), "unknown option --keep-alive (did you mean --timeout-keep-alive?)"),
        (("--timeout-graceful-shutdown", "5"), "unknown option --timeout-graceful-shutdown (did you mean --timeout-graceful?)"),
        (("--no-acess-log",), "unknown option --no-acess-log (did you mean --no-access-log?)"),
        (("--zzzqqq",), "unknown option --zzzqqq"),
        (("second:app",), "unrecognized arguments: second:app"),
    ],
)
def test_unknown_option_is_one_line_with_the_closest(args, line):
    result = corral("basic:app", "--app-dir", str(APPS), *args)
    assert (result.returncode, result.stderr) == (2, f"corral: error: {line}\n")


def test_full_names_still_parse(server_factory):
    """--limit-max-requests spelt out recycles after that many requests, with
    --max-requests-jitter 0 given in full beside it."""
    server = server_factory("basic:app", "--limit-max-requests", "3", "--max-requests-jitter", "0")
    (pid,) = server.worker_pids()
    for _ in range(3):
        with server.connect() as sock:
            sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert Reader(sock).response().code == 200
    server.wait_log(rf"master: recycling worker {pid}: 3 requests served \(--limit-max-requests\)")


def test_environment_typo_is_warned(tmp_path):
    import os

    env = dict(os.environ, CORRAL_WORKER="2", CORRAL_MY_APP_SETTING="x")
    result = corral("basic:app", "--app-dir", str(APPS), "--pid", str(tmp_path / "missing" / "corral.pid"),
                    "--port", "0", env=env)
    lines = result.stderr.splitlines()
    assert lines[0] == "corral: warning: CORRAL_WORKER is not an option (did you mean CORRAL_WORKERS?); ignored"
    assert not [line for line in lines if "CORRAL_MY_APP_SETTING" in line]


@pytest.mark.parametrize("where", ["missing", "file"])
def test_app_dir_pointing_nowhere_is_refused(tmp_path, where):
    path = tmp_path / where
    if where == "file":
        path.write_text("")
    result = corral("basic:app", "--app-dir", str(path), "--port", "0")
    why = "no such directory" if where == "missing" else "not a directory"
    assert (result.returncode, result.stderr) == (2, f"corral: error: --app-dir {path}: {why}\n")


def test_app_dir_is_taken_from_chdir(tmp_path):
    """A relative --app-dir is checked after --chdir (the app's own directory)."""
    (tmp_path / "src").mkdir()
    result = corral("basic:app", "--chdir", str(tmp_path), "--app-dir", "nope", "--port", "0")
    assert (result.returncode, result.stderr) == (2, "corral: error: --app-dir nope: no such directory\n")
