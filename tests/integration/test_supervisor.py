"""Master and workers: real processes, real signals (issue 3)."""

import os
import re
import signal
import socket
import subprocess
import sys

import httpx
import pytest

from support import APPS, EPOLLEXCLUSIVE, ROOT, Load, Server, epoll_entries, listening_inode, pid_alive, read_response, wait_until

def get_pid(server) -> int:
    with server.connect() as sock:
        sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return int(read_response(sock)[2])


def reload_under(load: Load, server, reloads: int) -> None:
    """SIGHUP the master ``reloads`` times, each once the load has made 200
    more requests, and wait for each reload to complete."""
    load.wait_requests(200)
    for _ in range(reloads):
        mark = server.mark()
        before = load.ok
        server.signal(signal.SIGHUP)
        server.wait_log(r"master: reload complete", start=mark, timeout=20)
        load.wait_requests(before + 200)


def test_n_workers_serve(server_factory, tmp_path):
    """Each of the 3 workers accepts: a worker whose loop is blocked cannot
    accept, so with two blocked the third connection goes to the third worker."""
    server = server_factory(workers=3)
    pids = server.worker_pids()
    assert len(pids) == 3
    release = tmp_path / "release"
    socks = []
    try:
        for n in range(1, 4):
            sock = server.connect()
            sock.sendall(b"GET /block-until?" + str(release).encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            socks.append(sock)
            server.wait_log(r"block start (\d+)", count=n)
        blocked = {int(m.group(1)) for m in server.wait_log(r"block start (\d+)", count=3)}
        assert blocked == pids  # three connections, three different workers
        release.touch()
        for sock in socks:
            assert read_response(sock)[2] == b"blocked\n"
    finally:
        for sock in socks:
            sock.close()


def test_listener_is_exclusive_in_every_worker(server_factory):
    """One connection wakes one idle worker: in each worker, the epoll entry
    for the shared listening socket (and no other) is EPOLLEXCLUSIVE."""
    server = server_factory(workers=3)
    inode = listening_inode(server.port)
    for pid in server.worker_pids():
        listener_entries, others = epoll_entries(pid, inode)
        assert listener_entries, (pid, others)
        assert all(events & EPOLLEXCLUSIVE for _, events, _ in listener_entries), (pid, listener_entries)
        exclusive_others = [e for e in others if e[1] & EPOLLEXCLUSIVE]
        assert not exclusive_others, (pid, exclusive_others)  # nothing else is exclusive


def test_kill_9_worker_is_replaced(server_factory):
    server = server_factory(workers=2)
    victim = min(server.worker_pids())
    mark = server.mark()
    os.kill(victim, signal.SIGKILL)
    server.wait_log(rf"worker {victim} was killed by SIGKILL while ready", start=mark)
    server.wait_log(r"master: worker \d+ ready", start=mark)
    pids = wait_until(lambda: (p := server.worker_pids()) and len(p) == 2 and p, message="2 workers")
    assert victim not in pids
    assert get_pid(server) in pids


@pytest.mark.parametrize("keep_alive", [True, False], ids=["keep-alive", "churn"])
def test_hup_under_load_loses_nothing(server_factory, keep_alive):
    server = server_factory(workers=2)
    old = server.worker_pids()
    load = Load(server.port, threads=4, keep_alive=keep_alive, max_seconds=30)
    try:
        reload_under(load, server, reloads=2)
    finally:
        load.stop()
    assert load.failures == []
    assert load.ok > 600
    new = server.worker_pids()
    assert len(new) == 2
    assert not (new & old), "every worker pid is replaced"
    assert not any(pid_alive(pid) for pid in old)


def test_reload_with_broken_app_keeps_old_workers(server_factory, tmp_path):
    app_file = tmp_path / "flip.py"
    app_file.write_text((APPS / "basic.py").read_text())
    server = server_factory("flip:app", "--app-dir", str(tmp_path), workers=2)
    old = server.worker_pids()
    app_file.write_text("raise SyntaxError('broken deploy')\n")
    mark = server.mark()
    server.signal(signal.SIGHUP)
    server.wait_log(r"reload failed; the previous workers keep serving", start=mark)
    wait_until(lambda: server.worker_pids() == old, message="the new workers to be gone")
    assert get_pid(server) in old


def test_term_with_slow_requests_answers_all(server_factory):
    server = server_factory(workers=2)
    workers = server.worker_pids()
    socks = [server.connect() for _ in range(4)]
    for sock in socks:
        sock.sendall(b"GET /sleep?1.0 HTTP/1.1\r\nHost: x\r\n\r\n")
    server.wait_log(r"sleep start", count=4)
    server.signal(signal.SIGTERM)
    for sock in socks:
        status, headers, body = read_response(sock)
        assert status == b"HTTP/1.1 200 OK"
        assert body == b"slept\n"
        assert headers[b"connection"] == b"close"  # draining: no keep-alive
        sock.close()
    assert server.proc.wait(20) == 0
    for pid in workers:
        assert not pid_alive(pid)
    in_flight = server.wait_log(r"draining (\d+) requests in flight", count=2)
    assert sum(int(m.group(1)) for m in in_flight) == 4
    server.wait_log(r"lifespan shutdown ran", count=2)


def test_stuck_worker_is_killed_and_replaced(server_factory):
    server = server_factory("basic:app", "--timeout-worker", "1.5", workers=1)
    victim = server.worker_pids().pop()
    sock = server.connect()
    sock.sendall(b"GET /block?60 HTTP/1.1\r\nHost: x\r\n\r\n")
    mark = server.mark()
    server.wait_log(rf"worker {victim} loop blocked", start=mark)
    server.wait_log(r"most recent call first", start=mark)  # faulthandler stack dump
    server.wait_log(rf"worker {victim} was killed by SIGKILL", start=mark)
    server.wait_log(r"master: worker \d+ ready", start=mark)
    sock.close()
    new = server.worker_pids()
    assert victim not in new and len(new) == 1
    assert get_pid(server) in new


def test_ttin_ttou_change_worker_count(server_factory):
    server = server_factory(workers=2)
    server.signal(signal.SIGTTIN)
    wait_until(lambda: len(server.worker_pids()) == 3, message="3 workers")
    server.wait_log(r"master: worker \d+ ready", count=3)
    mark = server.mark()
    server.signal(signal.SIGTTOU)
    server.wait_log(r"worker count lowered", start=mark)
    wait_until(lambda: len(server.worker_pids()) == 2, message="2 workers")


def test_max_requests_recycles_without_loss(server_factory):
    server = server_factory("basic:app", "--limit-max-requests", "50", "--max-requests-jitter", "10", workers=2)
    old = server.worker_pids()
    load = Load(server.port, threads=2, keep_alive=True, max_requests=400, max_seconds=30)
    try:
        # Which worker the keep-alive connections land on is the kernel's
        # choice (both may go to one): only the first recycle is certain.
        server.wait_log(r"recycling worker", count=1, timeout=30)
        load.wait_requests(load.ok + 100, timeout=30)  # the load goes on across the recycle
    finally:
        load.stop()
    assert load.failures == []
    wait_until(lambda: server.worker_pids() - old, message="a new worker")


def run_corral(*args, timeout=30, env=None):
    return subprocess.run(
        [sys.executable, "-m", "corral", *args, "--app-dir", str(APPS), "--port", "0"],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env,
    )


def test_boot_failure_exits_cleanly():
    result = run_corral("boot_fail:app", "--workers", "2")
    assert result.returncode == 3
    assert result.stderr.strip().splitlines()[-1] == (
        "corral: error: boot_fail:app raised RuntimeError while importing: this app cannot be imported"
    )


def test_worker_hung_in_boot_is_killed_then_corral_exits_3():
    result = run_corral("boot_hang:app", "--timeout-boot", "0.3")
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert re.fullmatch(r"corral: error: worker \d+ not ready after 0.3s \(--timeout-boot\)", lines[-1])
    assert len(re.findall(r"not ready after 0.3s \(--timeout-boot\); dumping its stack", result.stderr)) == 5
    assert "boot_hang.py" in result.stderr  # the stack dump shows where it hangs


def test_reload_whose_workers_hang_in_boot_keeps_old_workers(server_factory, tmp_path):
    app_file = tmp_path / "flip_hang.py"
    app_file.write_text((APPS / "basic.py").read_text())
    server = server_factory("flip_hang:app", "--app-dir", str(tmp_path), "--timeout-boot", "0.5", workers=2)
    old = server.worker_pids()
    app_file.write_text((APPS / "boot_hang.py").read_text())
    mark = server.mark()
    server.signal(signal.SIGHUP)
    server.wait_log(r"not ready after 0.5s \(--timeout-boot\)", start=mark)
    server.wait_log(r"reload failed; the previous workers keep serving", start=mark)
    wait_until(lambda: server.worker_pids() == old, message="the hung workers to be gone")
    assert get_pid(server) in old


def test_lifespan_startup_failure_exits_nonzero():
    result = run_corral("lifespan_fail:app")
    assert result.returncode == 3
    assert "corral: error: lifespan startup failed: database unreachable" in result.stderr


def test_missing_module_exits_2_without_traceback():
    result = run_corral("no_such_module:app")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "corral: error: cannot import module 'no_such_module': no module named 'no_such_module'"
    assert "Traceback" not in result.stderr


def test_unix_socket_with_mode(server_factory, tmp_path):
    path = str(tmp_path / "corral.sock")
    server = server_factory("basic:app", "--uds-mode", "600", uds=path, workers=2)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_response(sock)[2] == b"Hello, world!"
    server.stop()
    assert not os.path.exists(path)


def test_inherited_fd_and_systemd_activation(server_factory):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    os.set_inheritable(fd, True)
    server = Server("basic:app", "--fd", str(fd), wait_ready=False, pass_fds=(fd,))
    try:
        server.wait_log(r"master: worker \d+ ready")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert read_response(sock)[2] == b"Hello, world!"
    finally:
        server.stop()
        listener.close()


def pids_of_fresh_connections(server, count: int = 40) -> set[int]:
    """The workers that answer ``count`` new connections. The kernel hashes
    each new connection (its source port) onto a reuseport slot: 40 of them
    all on one of 2 slots happens once in 2**39."""
    return {get_pid(server) for _ in range(count)}


def test_reuseport_mode_serves_and_reloads(server_factory):
    server = server_factory("basic:app", "--accept", "reuseport", workers=2)
    before = server.worker_pids()
    assert pids_of_fresh_connections(server) == before  # both slots serve
    load = Load(server.port, threads=4, keep_alive=True, max_seconds=20)
    try:
        reload_under(load, server, reloads=1)
    finally:
        load.stop()
    assert load.failures == []
    after = pids_of_fresh_connections(server)
    assert len(after) == 2 and not after & before  # both slots served by the new workers
def test_systemd_socket_activation():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    # As systemd does: the socket as fd 3, LISTEN_PID = the server's own pid.
    activate = (
        f"import os, sys; os.dup2({fd}, 3); os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    server = Server("basic:app", wait_ready=False, pass_fds=(fd,), prefix=[sys.executable, "-c", activate])
    try:
        server.wait_log(rf"serving http://127.0.0.1:{port}")
        server.wait_log(r"master: worker \d+ ready")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert read_response(sock)[2] == b"Hello, world!"
    finally:
        server.stop()
        listener.close()


def test_usr1_reopens_log_files(server_factory, tmp_path):
    log_file = tmp_path / "corral.log"
    server = server_factory("basic:app", "--log-file", str(log_file), wait_ready=False)
    wait_until(lambda: "ready" in log_file.read_text() if log_file.exists() else False, message="ready in the log file")
    server.port = int(re.search(r"serving http://127.0.0.1:(\d+)", log_file.read_text()).group(1))
    rotated = tmp_path / "corral.log.1"
    log_file.rename(rotated)
    server.signal(signal.SIGUSR1)
    wait_until(log_file.exists, message="the log file to be reopened")
    get_pid(server)  # an access log line, written by the worker
    wait_until(lambda: '"GET /pid HTTP/1.1" 200' in log_file.read_text(), message="the access line in the new file")
    assert '"GET /pid' not in rotated.read_text()


def test_reuseport_ttou_closes_the_slot_socket(server_factory):
    server = server_factory("basic:app", "--accept", "reuseport", workers=2)

    def listening_sockets() -> int:
        """LISTEN entries for the port, whoever holds them."""
        with open("/proc/net/tcp") as table:
            return sum(
                1
                for line in table
                if line.split()[3] == "0A" and int(line.split()[1].split(":")[1], 16) == server.port
            )

    assert listening_sockets() == 2
    server.signal(signal.SIGTTOU)
    server.wait_log(r"worker count lowered")
    wait_until(lambda: listening_sockets() == 1, message="the slot's socket to close")
    for _ in range(20):  # every connection still lands on a served socket
        get_pid(server)
