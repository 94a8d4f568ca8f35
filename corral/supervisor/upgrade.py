"""USR2: upgrade corral itself (new corral, new Python, new virtualenv) without dropping a connection.

The old master, on ``USR2``, forks a child that re-executes the command line
corral was started with (the console script again, whose path and shebang
are resolved afresh, or ``python -m corral`` with the same interpreter path),
so a new release behind the same path is what starts. The listening sockets
pass by inheritance: their descriptors, and the write end of a pipe, are
named in the ``CORRAL_UPGRADE`` environment variable (JSON).

The new master adopts those sockets instead of binding (``Sockets.bind``),
reads its options afresh (command line, environment, config file; the bind
options are moot), and starts its workers. Once every worker slot has a
ready worker it writes ``ready`` on the pipe. The old master then retires
all its workers (they drain as on a reload; the new workers serve the
kernel's queue all along) and exits 0 without closing, filtering or
unlinking the sockets: they are the new master's now.

The new master starts in the directory the old one was started in (before
``--chdir``), so relative paths on the command line mean what they meant,
and without the variables the old one loaded from ``--env-file``, so it
reads that file afresh. It writes ``--pid`` once it is ready, just before
it reports ``ready`` (``pidfile.py``).

If the new master exits before it is ready (an import error, five failed
boots, a command line that no longer parses), the pipe closes without
``ready``: the old master logs why and keeps serving.
"""

from __future__ import annotations

import json
import logging
import os
import sys

log = logging.getLogger("corral.error")

ENV = "CORRAL_UPGRADE"

start_cwd: str | None = None  # where corral was started, before --chdir (supervisor.prepare)
env_file_keys: set[str] = set()  # the variables --env-file added to this process's environment


def command_line() -> list[str]:
    """How this corral was started, to be started again."""
    script = sys.argv[0]
    if os.path.basename(script) != "__main__.py" and os.access(script, os.X_OK):
        return [script, *sys.argv[1:]]  # the console script: its shebang picks the (new) Python
    return [sys.executable, *sys.orig_argv[1:]]  # python -m corral ...


def launch(spec: dict) -> tuple[int, int]:
    """Fork and exec the new master with ``spec`` (the sockets' descriptors).
    Returns its pid and the read end of the pipe it reports ``ready`` on."""
    read_fd, write_fd = os.pipe()
    spec = dict(spec, notify=write_fd)
    argv = command_line()
    environ = {key: value for key, value in os.environ.items() if key not in env_file_keys}
    environ[ENV] = json.dumps(spec)
    inherited = [write_fd, *spec["shared"], *(fd for fds in spec["slots"].values() for fd in fds)]
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child: becomes the new master
        try:
            os.close(read_fd)
            if start_cwd:
                try:
                    os.chdir(start_cwd)
                except OSError as exc:  # e.g. no longer readable after --user
                    os.write(2, f"corral: upgrade: staying in {os.getcwd()}: cannot change to {start_cwd}: {exc.strerror}\n".encode())
            for fd in inherited:
                os.set_inheritable(fd, True)
            os.execvpe(argv[0], argv, environ)
        except BaseException as exc:  # noqa: BLE001 - report and leave
            os.write(2, f"corral: upgrade: cannot execute {argv[0]}: {exc}\n".encode())
        finally:
            os._exit(127)
    os.close(write_fd)
    return pid, read_fd


def take(environ=os.environ) -> dict | None:
    """In the new master: what the old one handed over, or None."""
    text = environ.pop(ENV, None)
    if not text:
        return None
    spec = json.loads(text)
    spec["slots"] = {int(slot): fds if isinstance(fds, list) else [fds] for slot, fds in spec["slots"].items()}
    return spec
