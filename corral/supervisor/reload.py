"""--reload: a watcher process that tells the master which files changed.

The master forks the watcher once, before any worker, so the master itself
stays single-threaded (watchfiles runs a native thread; a thread in a process
that forks workers is asking for a deadlock). The watcher runs
``watchfiles.watch`` over ``--reload-dir`` (default: the current directory)
and writes one line per batch of changes to a pipe the master sleeps on:
``changed PATH[,PATH...]``. The master answers it exactly like ``SIGHUP``:
new workers import the app afresh, old ones drain once the new ones are
ready, and new code that fails to import leaves the old workers serving
(the next change tries again).

Filtering follows uvicorn: ``--reload-include`` (default ``*.py``) and
``--reload-exclude`` (default ``.*``, ``.py[cod]``, ``.sw.*``, ``~*``); an
exclude pattern also matches a directory on the way down (so ``.*`` ignores
``.git`` and ``.venv``).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import signal
import sys
from pathlib import Path

log = logging.getLogger("corral.error")

DEFAULT_INCLUDES = ("*.py",)
DEFAULT_EXCLUDES = (".*", ".py[cod]", ".sw.*", "~*")


class FileFilter:
    """Which changed paths trigger a reload (uvicorn's defaults)."""

    def __init__(self, dirs, includes=(), excludes=()) -> None:
        self.dirs = [Path(d).resolve() for d in dirs]
        self.includes = tuple(includes) or DEFAULT_INCLUDES
        self.excludes = tuple(excludes) or DEFAULT_EXCLUDES

    def _matches(self, name: str, path: Path, patterns) -> bool:
        for pattern in patterns:
            if "/" in pattern:
                if path.match(pattern):
                    return True
            elif fnmatch.fnmatch(name, pattern):
                return True
        return False

    def __call__(self, change, path: str) -> bool:
        path_obj = Path(path)
        if not self._matches(path_obj.name, path_obj, self.includes):
            return False
        if self._matches(path_obj.name, path_obj, self.excludes):
            return False
        for root in self.dirs:
            try:
                parts = path_obj.relative_to(root).parts[:-1]
            except ValueError:
                continue
            if any(self._matches(part, path_obj, [p for p in self.excludes if "/" not in p]) for part in parts):
                return False
        return True


def watch_dirs(config) -> list[str]:
    dirs = list(config.reload_dir) or [os.getcwd()]
    return [os.path.abspath(d) for d in dirs]


def check(config) -> str | None:
    """Why --reload cannot run (one line), or None."""
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        return "--reload needs watchfiles: pip install 'corral[reload]' (or watchfiles)"
    for directory in watch_dirs(config):
        if not os.path.isdir(directory):
            return f"--reload-dir: {directory} is not a directory"
    return None


def run_watcher(config, write_fd: int) -> int:
    """The watcher process's body: watch, report, until the master goes."""
    import watchfiles

    dirs = watch_dirs(config)
    file_filter = FileFilter(dirs, config.reload_include, config.reload_exclude)
    announced = False
    # yield_on_timeout: the first (empty) yield proves the watches are set,
    # so the "watching" line is only printed once an edit would be seen.
    for changes in watchfiles.watch(
        *dirs,
        watch_filter=file_filter,
        debounce=1600,
        step=50,
        rust_timeout=1000,
        yield_on_timeout=True,
        raise_interrupt=False,
    ):
        if not announced:
            announced = True
            log.info(
                "reload watcher %d: watching %s for %s (excluding %s)",
                os.getpid(),
                ", ".join(dirs),
                " ".join(file_filter.includes),
                " ".join(file_filter.excludes),
            )
        if not changes:
            continue
        paths = sorted({_shown(path, dirs) for _, path in changes})
        line = "changed " + ",".join(paths).replace("\n", " ")
        try:
            os.write(write_fd, line.encode("utf-8", "replace")[:4000] + b"\n")
        except OSError:
            return 0  # the master is gone
    return 0


def _shown(path: str, dirs) -> str:
    """A changed path relative to the watched directory it is in."""
    for directory in dirs:
        if path.startswith(directory.rstrip("/") + "/"):
            return os.path.relpath(path, directory)
    return path


def start_watcher(config, close_in_child) -> tuple[int, int]:
    """Fork the watcher; returns (pid, read end of its pipe)."""
    read_fd, write_fd = os.pipe()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(read_fd)
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGTERM, signal.SIGCHLD, signal.SIGUSR1, signal.SIGQUIT):
                signal.signal(signum, signal.SIG_DFL)
            for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
                signal.signal(signum, signal.SIG_IGN)
            _die_with_parent()
            close_in_child()
            from .. import logs

            logs.set_title(f"corral: reload watcher [{config.app}]")
            code = run_watcher(config, write_fd)
        except BaseException:
            log.exception("reload watcher crashed")
        finally:
            logging.shutdown()
            os._exit(code)
    os.close(write_fd)
    os.set_blocking(read_fd, False)
    return pid, read_fd


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
