"""USR2: corral re-executes itself and hands the sockets over without losing a request (issue 10)."""

from __future__ import annotations

import os
import signal

import pytest

from support import APPS, Load, pid_alive, read_response, wait_until

NEW_MASTER = r"SIGUSR2: upgrading: new master (\d+) started"


def get_pid(server) -> int:
    with server.connect() as sock:
        sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return int(read_response(sock)[2])


def stop_new_master(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    wait_until(lambda: not pid_alive(pid), timeout=20, message=f"new master {pid} to exit")


@pytest.mark.parametrize("keep_alive", [True, False], ids=["keep-alive", "churn"])
def test_usr2_under_load_loses_nothing(server_factory, tmp_path, keep_alive):
    config = tmp_path / "corral.toml"
    config.write_text('health-path = "/before"\n')
    server = server_factory("basic:app", "--config", str(config), workers=2)
    old_master = server.proc.pid
    old_workers = server.worker_pids()
    load = Load(server.port, threads=4, keep_alive=keep_alive, max_seconds=30)
    new_master = 0
    try:
        load.wait_requests(300)
        config.write_text('health-path = "/after"\n')  # the new master reads its options afresh
        mark = server.mark()
        server.signal(signal.SIGUSR2)
        new_master = int(server.wait_log(NEW_MASTER, start=mark)[0].group(1))
        server.wait_log(r"upgrade: every worker ready", start=mark, timeout=30)
        assert server.proc.wait(30) == 0  # the old master drained and left
        server.wait_log(rf"master {old_master}: all workers gone, sockets handed over to new master {new_master}; exit 0",
                        start=mark)
        before = load.ok
        load.wait_requests(before + 300)
    finally:
        load.stop()
        try:
            assert load.failures == [], load.failures[:5]
            assert pid_alive(new_master)
            new_workers = {pid for pid in load.pids if pid not in old_workers}
            assert len(new_workers) >= 1
            with open(f"/proc/{new_master}/task/{new_master}/children") as handle:
                children = {int(pid) for pid in handle.read().split()}
            assert len(children) == 2 and not (children & old_workers)
            assert get_pid(server) in children
            with server.connect() as sock:
                sock.sendall(b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert read_response(sock)[2] == b"ok\n"
            assert new_master != old_master
        finally:
            if new_master:
                stop_new_master(new_master)
    # The new master owned the port: stopping it released it.
    server.wait_log(r"master: new connections are refused")


def test_usr2_with_a_broken_app_keeps_the_old_master_serving(server_factory, tmp_path):
    app_file = tmp_path / "flip.py"
    app_file.write_text((APPS / "basic.py").read_text())
    server = server_factory("flip:app", "--app-dir", str(tmp_path), workers=1)
    workers = server.worker_pids()
    app_file.write_text("import no_such_module_for_corral\n")
    mark = server.mark()
    server.signal(signal.SIGUSR2)
    server.wait_log(NEW_MASTER, start=mark)
    server.wait_log(r"upgrade failed: new master \d+ exited before it was ready; this one keeps serving", start=mark)
    assert server.proc.poll() is None
    wait_until(lambda: server.worker_pids() == workers, message="the failed new master to be reaped")
    assert get_pid(server) in workers
    # And a later USR2, once the code is fixed, goes through.
    app_file.write_text((APPS / "basic.py").read_text())
    mark = server.mark()
    server.signal(signal.SIGUSR2)
    new_master = int(server.wait_log(NEW_MASTER, start=mark)[0].group(1))
    try:
        assert server.proc.wait(30) == 0
        assert get_pid(server) not in workers
    finally:
        stop_new_master(new_master)


def test_usr2_over_a_unix_socket(server_factory, tmp_path):
    path = str(tmp_path / "corral.sock")
    server = server_factory("basic:app", workers=1, uds=path)
    mark = server.mark()
    server.signal(signal.SIGUSR2)
    new_master = int(server.wait_log(NEW_MASTER, start=mark)[0].group(1))
    try:
        assert server.proc.wait(30) == 0
        assert os.path.exists(path)  # the old master left the file to the new one
        assert get_pid(server) not in (server.proc.pid,)
    finally:
        stop_new_master(new_master)
    wait_until(lambda: not os.path.exists(path), message="the new master to remove its socket file")
