"""--user, --group (issue 22): bind as root, then the master and every worker run as a
real unprivileged user before any app code runs. Needs root: skipped otherwise."""

from __future__ import annotations

import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import tempfile

import pytest

from support import APPS, read_response

USER = "corral-test"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="--user/--group tests need root (they switch to a real unprivileged user)")


@pytest.fixture(scope="module")
def user():
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        made = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", USER],
            capture_output=True, text=True,
        )
        if made.returncode != 0:
            pytest.skip(f"cannot create the unprivileged user {USER}: {made.stderr.strip()}")
        entry = pwd.getpwnam(USER)
    # The workers import the app (and uvloop) after the switch: the user must be able to read them.
    import uvloop

    unreadable = as_user(entry, lambda: [path for path in (str(APPS / "ops.py"), uvloop.__file__) if not os.access(path, os.R_OK)])
    if unreadable:
        pytest.skip(f"{USER} cannot read {unreadable[0]} (this checkout or its virtualenv)")
    return entry


def as_user(entry, function):
    """``function()`` run in a forked child switched to ``entry``'s uid and gid (no exec:
    the interpreter may live where the user cannot read, as under /root); its repr back."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            os.setgroups([entry.pw_gid])
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            os.write(write_fd, repr(function()).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as handle:
        text = handle.read().decode()
    os.waitpid(pid, 0)
    import ast

    return ast.literal_eval(text)


def ids(pid: int) -> dict[str, list[int]]:
    with open(f"/proc/{pid}/status") as handle:
        fields = dict(line.split(":", 1) for line in handle if ":" in line)
    return {key: [int(n) for n in fields[key].split()] for key in ("Uid", "Gid", "Groups")}


def get(path: str, sock_path: str) -> bytes:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(sock_path)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        status, _, body = read_response(sock)
    assert status == b"HTTP/1.1 200 OK"
    return body


def test_bind_as_root_then_run_as_the_user(server_factory, user):
    uid, gid = user.pw_uid, user.pw_gid
    private = tempfile.mkdtemp(prefix="ops-root-")  # root's, 0700: the user could not bind here
    os.chmod(private, 0o700)
    sock_path = os.path.join(private, "corral.sock")
    server = server_factory("ops:app", "--user", USER, "--uds-mode", "660", workers=2, uds=sock_path)
    server.wait_log(rf"master \d+: running as user {USER} \(uid {uid}\), gid {gid}")
    expected = {"Uid": [uid] * 4, "Gid": [gid] * 4, "Groups": [gid]}
    assert ids(server.proc.pid) == expected
    workers = server.worker_pids()
    assert len(workers) == 2 and all(ids(pid) == expected for pid in workers)
    seen = json.loads(get("/ids", sock_path))
    assert (seen["uid"], seen["euid"], seen["gid"], seen["egid"], seen["groups"]) == (uid, uid, gid, gid, [gid])
    assert seen["home"] == user.pw_dir
    info = os.stat(sock_path)
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (uid, gid, 0o660)  # handed to the user, as gunicorn does
    # A reload forks new workers from the switched master: still the user.
    mark = server.mark()
    server.signal(signal.SIGHUP)
    server.wait_log(r"master: reload complete", start=mark, timeout=30)
    new_workers = server.worker_pids()
    assert new_workers and not (new_workers & workers)
    assert all(ids(pid) == expected for pid in new_workers)
    assert server.stop() == 0
    if os.path.exists(sock_path):  # the user cannot remove it from root's directory
        os.unlink(sock_path)
    os.rmdir(private)


def test_switching_user_needs_root(user):
    """Started as an unprivileged user, asking for another user is refused with one line."""
    from corral.supervisor.privileges import PrivilegeError, drop

    def attempt():
        try:
            drop("root", None, [])
        except PrivilegeError as exc:
            return str(exc)
        return "switched"

    assert as_user(user, attempt) == f"--user/--group: switching to uid 0, gid 0 needs root (corral runs as uid {user.pw_uid})"
    assert as_user(user, lambda: drop(USER, None, [])) is None  # already that user (a USR2's new master): nothing to do


def test_log_rotation_as_the_user(user, tmp_path):
    """--log-file opened as root is handed to the user; USR1 after a rotation reopens it
    where the user may (logrotate's "create MODE USER GROUP"), and where it may not the
    old file keeps the lines: no process dies."""
    import re

    from support import wait_until

    logs = tempfile.mkdtemp(prefix="ops-logs-")  # root's, 0755: the user cannot create files here
    os.chmod(logs, 0o755)
    log_file = os.path.join(logs, "corral.log")
    command = [sys.executable, "-m", "corral", "ops:app", "--app-dir", str(APPS), "--port", "0", "--workers", "2",
               "--user", USER, "--log-file", log_file, "--pid", os.path.join(logs, "corral.pid")]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)

    def text(path=log_file) -> str:
        try:
            with open(path) as handle:
                return handle.read()
        except FileNotFoundError:
            return ""

    try:
        wait_until(lambda: text().count("master: worker") >= 2 and "ready" in text(), timeout=20, message="workers ready")
        port = int(re.search(r"serving http://127\.0\.0\.1:(\d+)", text()).group(1))
        assert (os.stat(log_file).st_uid, os.stat(log_file).st_gid) == (user.pw_uid, user.pw_gid)

        def request(path: str) -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                assert read_response(sock)[0] == b"HTTP/1.1 200 OK"

        # 1. Rotated away with no new file: the user cannot create one in root's directory.
        os.rename(log_file, log_file + ".1")
        proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: text(log_file + ".1").count("still writing to the old one") >= 3, message="three warnings")
        request("/first")
        wait_until(lambda: '"GET /first' in text(log_file + ".1"), message="the access line in the old file")
        # 2. logrotate's way: the new file made for the user, then USR1.
        with open(log_file, "w"):
            pass
        os.chown(log_file, user.pw_uid, user.pw_gid)
        proc.send_signal(signal.SIGUSR1)
        # Requests until one's line lands in the new file (the reopen is asynchronous).
        wait_until(lambda: (request("/second") or True) and '"GET /second' in text(), message="the access line in the new file")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert "exit 0" in text()
        assert proc.stderr.read() == b""  # nothing escaped the log: no traceback
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for name in os.listdir(logs):
            os.unlink(os.path.join(logs, name))
        os.rmdir(logs)
