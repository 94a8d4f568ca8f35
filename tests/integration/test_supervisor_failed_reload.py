"""After a reload whose new code does not boot, the old workers keep serving,
and the next worker exit does not become a respawn storm (issue 20, defect 1)."""

import re
import signal
import time

from support import APPS, Load, wait_until


def starts(server, mark: int) -> int:
    return sum(1 for line in server.lines[mark:] if re.search(r"master: started worker \d+", line))


def test_recycle_after_a_failed_reload_backs_off(server_factory, tmp_path):
    app_file = tmp_path / "flip.py"
    app_file.write_text((APPS / "basic.py").read_text())
    server = server_factory("flip:app", "--app-dir", str(tmp_path), "--limit-max-requests", "20")
    (old,) = server.worker_pids()
    app_file.write_text("import no_such_module_of_the_new_release  # noqa\n")
    mark = server.mark()
    server.signal(signal.SIGHUP)
    server.wait_log(r"reload failed; the previous workers keep serving", start=mark)
    wait_until(lambda: server.worker_pids() == {old}, message="the new worker to be gone")
    # The old worker reaches --limit-max-requests: its replacement is of the
    # failed code and cannot boot. A few bounded requests, none may fail.
    mark = server.mark()
    load = Load(server.port, threads=2, max_requests=60, max_seconds=20)
    server.wait_log(r"recycling worker %d" % old, start=mark)
    window = time.monotonic() + 3.0
    while time.monotonic() < window:
        time.sleep(0.1)  # the window in which the defect made hundreds of starts
    load.stop()
    assert load.failures == []
    assert load.ok >= 60
    assert load.pids == {old}  # the worker that works served every request
    assert starts(server, mark) <= 5, "\n".join(server.lines[mark:][-40:])
    server.wait_log(r"master: next boot attempt in \d+\.\ds", start=mark)
    # The fix deployed and HUP: the new code boots, the old worker is retired.
    app_file.write_text((APPS / "basic.py").read_text())
    mark = server.mark()
    server.signal(signal.SIGHUP)
    server.wait_log(r"master: reload complete", start=mark, timeout=10)  # no backoff left over
    wait_until(lambda: len(server.worker_pids()) == 1 and old not in server.worker_pids(), timeout=30,
               message="the old worker replaced")


def test_crash_after_a_failed_reload_backs_off(server_factory, tmp_path):
    """A worker killed after a failed reload: its slot's replacements fail
    with backoff while the other worker serves every request."""
    app_file = tmp_path / "flip.py"
    app_file.write_text((APPS / "basic.py").read_text())
    server = server_factory("flip:app", "--app-dir", str(tmp_path), workers=2)
    old = server.worker_pids()
    app_file.write_text("raise SyntaxError('broken deploy')\n")
    mark = server.mark()
    server.signal(signal.SIGHUP)
    server.wait_log(r"reload failed; the previous workers keep serving", start=mark)
    wait_until(lambda: server.worker_pids() == old, message="the new workers to be gone")
    victim, survivor = sorted(old)
    mark = server.mark()
    import os

    os.kill(victim, signal.SIGKILL)
    server.wait_log(r"master: worker %d was killed by SIGKILL" % victim, start=mark)
    load = Load(server.port, threads=2, max_requests=40, max_seconds=20)
    window = time.monotonic() + 3.0
    while time.monotonic() < window:
        time.sleep(0.1)
    load.stop()
    assert load.failures == [] and load.ok >= 40
    assert load.pids == {survivor}
    assert starts(server, mark) <= 5, "\n".join(server.lines[mark:][-40:])
    server.wait_log(r"next boot attempt in \d+\.\ds \(\d+ consecutive failures\) \(the code of the failed reload", start=mark)
