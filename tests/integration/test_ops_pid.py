"""--pid FILE (issue 22): written once bound, refused while a master runs, stale replaced,
rewritten by a USR2 upgrade's new master, removed at exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from support import APPS, ROOT, pid_alive, wait_until

NEW_MASTER = r"SIGUSR2: upgrading: new master (\d+) started"


def corral(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "corral", "basic:app", "--app-dir", str(APPS), "--port", "0", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def test_written_once_bound_and_removed_at_exit(server_factory, tmp_path):
    path = tmp_path / "corral.pid"
    server = server_factory("basic:app", "--pid", str(path), workers=2)
    assert path.read_text() == f"{server.proc.pid}\n"
    assert os.listdir(tmp_path) == ["corral.pid"]  # the temporary file was renamed over it
    assert server.stop() == 0
    assert not path.exists()


def test_a_stale_file_is_replaced(server_factory, tmp_path):
    path = tmp_path / "corral.pid"
    dead = subprocess.Popen(["true"])
    dead.wait()
    path.write_text(f"{dead.pid}\n")
    server = server_factory("basic:app", "--pid", str(path))
    server.wait_log(rf"names pid {dead.pid}, which is not running; replacing it")
    assert path.read_text() == f"{server.proc.pid}\n"
    server.stop()
    # A live process that is not a corral (a pid reused after a crash) is stale too.
    with subprocess.Popen(["sleep", "60"]) as other:
        try:
            path.write_text(f"{other.pid}\n")
            server = server_factory("basic:app", "--pid", str(path))
            assert path.read_text() == f"{server.proc.pid}\n"
            server.stop()
        finally:
            other.kill()


def test_a_running_master_refuses_the_start_with_one_line(server_factory, tmp_path):
    path = tmp_path / "corral.pid"
    server = server_factory("basic:app", "--pid", str(path))
    result = corral("--pid", str(path))
    assert result.returncode == 2
    assert result.stderr == (
        f"corral: error: --pid: corral master {server.proc.pid} is running ({path}); stop it, or send it USR2 to upgrade it\n"
    )
    assert path.read_text() == f"{server.proc.pid}\n"
    assert server.stop() == 0
    assert not path.exists()


def test_a_file_that_is_not_a_pid_is_never_overwritten(tmp_path):
    path = tmp_path / "important.conf"
    path.write_text("keep = me\n")
    result = corral("--pid", str(path))
    assert (result.returncode, result.stderr) == (
        2,
        f"corral: error: --pid: {path} exists and does not hold a pid; remove it or choose another path\n",
    )
    assert path.read_text() == "keep = me\n"
    result = corral("--pid", str(tmp_path / "no-such-dir" / "corral.pid"))
    assert result.returncode == 2
    assert result.stderr == f"corral: error: --pid: cannot write {tmp_path / 'no-such-dir' / 'corral.pid'}: No such file or directory\n"


def test_usr2_new_master_rewrites_it(server_factory, tmp_path):
    path = tmp_path / "corral.pid"
    server = server_factory("basic:app", "--pid", str(path), workers=2)
    old_master = server.proc.pid
    mark = server.mark()
    server.signal(signal.SIGUSR2)
    new_master = int(server.wait_log(NEW_MASTER, start=mark)[0].group(1))
    try:
        server.wait_log(rf"upgrade: --pid {path} now names {new_master}", start=mark, timeout=30)
        assert server.proc.wait(30) == 0  # the old master left, and left the file alone
        assert path.read_text() == f"{new_master}\n"
        assert new_master != old_master
        # The file works for what it is for: HUP the master in charge.
        os.kill(int(path.read_text()), signal.SIGHUP)
        server.wait_log(r"master: reload complete", start=mark, timeout=30)
    finally:
        os.kill(new_master, signal.SIGTERM)
        wait_until(lambda: not pid_alive(new_master), timeout=20, message="the new master to exit")
    assert not path.exists()
