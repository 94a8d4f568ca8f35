"""The master reads a worker's last words before it judges the exit
(supervisor/master.py ``_reap``): a worker that fails to boot writes its
"error" and "tb" lines and exits; when the master reaps it before its loop
has read the pipe, the lines are still read, and the app's traceback is
logged once. A real child process and a real pipe; the reap is called
directly once the child has exited (CI caught the race: a 3-worker boot
failure logged no traceback)."""

from __future__ import annotations

import logging
import os

from corral.config import Config
from corral.supervisor.master import Master, WorkerProc


class Sockets:
    uds: dict = {}

    def refuse_new(self) -> bool:
        return True

    def release_slot(self, slot) -> None:
        pass


def exited_worker(lines: bytes, code: int) -> tuple[int, int]:
    """A child that writes ``lines`` to its pipe and exits with ``code``,
    waited for without being reaped (the master reaps it)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        os.close(read_end)
        os.write(write_end, lines)
        os._exit(code)
    os.close(write_end)
    os.set_blocking(read_end, False)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited, still there to reap
    return pid, read_end


def test_a_boot_failure_read_only_at_the_reap_logs_its_traceback_once(caplog):
    master = Master(Config(app="x:y", workers=3), Sockets())
    lines = (b"error ImportError: No module named 'missing_dependency'\n"
             b"tb Traceback (most recent call last):\n"
             b"tb   File \"import_inside.py\", line 1, in <module>\n"
             b"tb ImportError: No module named 'missing_dependency'\n")
    pid, fd = exited_worker(lines, 2)
    worker = master.workers[pid] = WorkerProc(pid, 0, fd, 0)
    caplog.set_level(logging.INFO, "corral.error")
    master._reap()
    failed = [r for r in caplog.records if "failed to boot" in r.getMessage()]
    assert len(failed) == 1
    assert failed[0].getMessage() == f"master: worker {pid} failed to boot: ImportError: No module named 'missing_dependency'"
    assert failed[0].exc_text.splitlines() == [
        "Traceback (most recent call last):",
        '  File "import_inside.py", line 1, in <module>',
        "ImportError: No module named 'missing_dependency'",
    ]
    assert worker.fd == -1 and pid not in master.workers
    assert master.exit_code == 2 and master.stopping == "fast"  # a user's mistake: one line, no retries


def test_an_exited_workers_ready_and_heartbeats_are_not_acted_on(caplog):
    master = Master(Config(app="x:y", workers=1), Sockets())
    pid, fd = exited_worker(b"ready\nhb 0 0 5\n", 1)
    worker = master.workers[pid] = WorkerProc(pid, 0, fd, 0)
    caplog.set_level(logging.INFO, "corral.error")
    master._reap()
    assert not master.ever_ready and worker.requests == 0
    assert not any("ready" in r.getMessage() for r in caplog.records)
    assert any(f"worker {pid} failed to boot" in r.getMessage() for r in caplog.records)
