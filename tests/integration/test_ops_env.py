"""--env-file, --chdir, --umask and process titles (issue 22), with real processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from support import APPS, ROOT, read_response


def get(server, path: str) -> bytes:
    with server.connect() as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        status, _, body = read_response(sock)
        assert status == b"HTTP/1.1 200 OK"
        return body


def corral(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "corral", "ops:app", "--app-dir", str(APPS), "--port", "0", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=20)


def test_env_file_chdir_and_umask(server_factory, tmp_path):
    (tmp_path / "prod.env").write_text(
        '# comments and export are fine\nexport GREETING="hello, world"\nOPS_SHADOWED=from-file\nCORRAL_WORKERS=2\n'
    )
    server = server_factory(
        "ops:app", "--chdir", str(tmp_path), "--env-file", "prod.env", "--umask", "027", "--pid", "corral.pid",
        workers=2, extra_env={"OPS_SHADOWED": "from-environment"},
    )
    server.wait_log(r"serving \S+ with 2 workers")  # CORRAL_WORKERS from the file
    ids = json.loads(get(server, "/ids"))
    assert ids["greeting"] == "hello, world"
    assert ids["shadowed"] == "from-environment"  # the real environment wins
    assert ids["cwd"] == str(tmp_path)
    assert ids["umask"] == 0o027
    assert (tmp_path / "corral.pid").read_text() == f"{server.proc.pid}\n"  # relative to --chdir
    assert (tmp_path / "corral.pid").stat().st_mode & 0o777 == 0o640  # 644 under the umask
    assert server.stop() == 0


def test_process_titles(server_factory):
    pytest.importorskip("setproctitle", reason="setproctitle is optional (corral[proctitle]); the test extras install it")
    server = server_factory("ops:app", workers=2)

    def title(pid: int) -> str:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().rstrip(b"\0").decode()

    assert title(server.proc.pid) == "corral: master [ops:app]"
    assert sorted(title(pid) for pid in server.worker_pids()) == ["corral: worker 0 [ops:app]", "corral: worker 1 [ops:app]"]
    ps = subprocess.run(["ps", "-o", "args=", "-p", str(server.proc.pid)], capture_output=True, text=True)
    if ps.returncode == 0:
        assert ps.stdout.strip() == "corral: master [ops:app]"


@pytest.mark.parametrize(
    "args, message",
    [
        (("--chdir", "/no/such/dir"), "corral: error: --chdir: cannot change to /no/such/dir: No such file or directory\n"),
        (("--env-file", "/no/such.env"), "corral: error: --env-file: cannot read /no/such.env: No such file or directory\n"),
        (("--user", "no-such-user-for-corral"), "corral: error: --user: no such user on this system (got 'no-such-user-for-corral')\n"),
        (("--umask", "8"), "corral: error: --umask: must be an octal file mode such as 660 (got '8')\n"),
    ],
)
def test_startup_mistakes_are_one_line(args, message):
    result = corral(*args)
    assert (result.returncode, result.stderr) == (2, message)


def test_bad_env_file_line(tmp_path):
    (tmp_path / "bad.env").write_text("A=1\nnot a variable\n")
    result = corral("--env-file", str(tmp_path / "bad.env"))
    assert result.returncode == 2
    assert result.stderr == f"corral: error: --env-file {tmp_path / 'bad.env'}: line 2 is not KEY=VALUE: 'not a variable'\n"


def test_a_reload_reads_the_env_file_again(server_factory, tmp_path):
    env_file = tmp_path / "app.env"
    env_file.write_text("GREETING=first\nOPS_SHADOWED=from-file\n")
    server = server_factory("ops:app", "--env-file", str(env_file), extra_env={"OPS_SHADOWED": "from-environment"})
    assert json.loads(get(server, "/ids"))["greeting"] == "first"
    env_file.write_text("GREETING=rotated\nOPS_SHADOWED=from-file-2\n")
    mark = server.mark()
    server.signal(signal.SIGHUP)
    server.wait_log(rf"master: SIGHUP: --env-file {env_file} read again \(2 variables\)", start=mark)
    server.wait_log(r"master: reload complete", start=mark, timeout=30)
    ids = json.loads(get(server, "/ids"))
    assert (ids["greeting"], ids["shadowed"]) == ("rotated", "from-environment")
    # A variable gone from the file is gone; a broken file keeps the variables as they were.
    env_file.write_text("OTHER=1\n")
    mark = server.mark()
    server.signal(signal.SIGHUP)
    server.wait_log(r"master: reload complete", start=mark, timeout=30)
    assert json.loads(get(server, "/ids"))["greeting"] is None
    env_file.write_text("GREETING=broken\nnot a line\n")
    mark = server.mark()
    server.signal(signal.SIGHUP)
    server.wait_log(rf"master: SIGHUP: --env-file {env_file}: line 2 is not KEY=VALUE: 'not a line'; the new workers get the variables as they were", start=mark)
    server.wait_log(r"master: reload complete", start=mark, timeout=30)
    assert json.loads(get(server, "/ids"))["greeting"] is None
    assert server.stop() == 0
