"""--pid FILE: the pid of the master in charge, for ``kill -HUP $(cat FILE)``.

* Before binding, ``check`` looks at what the file holds: nothing or a pid
  whose process is gone (or is not a corral: a pid reused after a crash or a
  container restart) is stale and will be replaced; a running corral master
  refuses the start with one line; anything that is not a pid refuses it too
  (corral does not overwrite a file it did not write).
* Once the sockets are bound, ``write`` puts the pid in a temporary file in
  the same directory and renames it over FILE, so a reader sees the old pid
  or the new one, never a partial file.
* A new master started by ``USR2`` skips the check (the file names the old
  master, its parent) and writes the file when all its workers are ready,
  just before it tells the old master to go: until then the old master is the
  one in charge, and if the new one fails the file never changed.
* At exit the master removes the file only if it still holds its own pid
  (after an upgrade it names the new master).
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("corral.error")


class PidFileError(Exception):
    """The start is refused; the message is one line."""


def _running_corral(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            if handle.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"corral" in handle.read()
    except OSError:
        return True  # no /proc to ask: take it as running


class PidFile:
    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.written = False

    def read(self) -> int | None:
        """The pid in the file; None if there is no file or it is empty."""
        try:
            with open(self.path) as handle:
                text = handle.read().strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise PidFileError(f"--pid: cannot read {self.path}: {exc.strerror}") from None
        if not text:
            return None
        if not text.isdigit():
            raise PidFileError(f"--pid: {self.path} exists and does not hold a pid; remove it or choose another path")
        return int(text)

    def check(self) -> None:
        """Refuse the start if a running master owns the file."""
        pid = self.read()
        if pid is None or pid == os.getpid():
            return
        if _running_corral(pid):
            raise PidFileError(f"--pid: corral master {pid} is running ({self.path}); stop it, or send it USR2 to upgrade it")
        log.info("--pid: %s names pid %d, which is not running; replacing it", self.path, pid)

    def write(self) -> None:
        directory, name = os.path.split(self.path)
        temporary = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, f"{os.getpid()}\n".encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, self.path)
        except OSError as exc:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise PidFileError(f"--pid: cannot write {self.path}: {exc.strerror}") from None
        self.written = True

    def remove(self) -> None:
        """At exit: remove the file if it still names this process."""
        if not self.written:
            return
        self.written = False
        try:
            if self.read() != os.getpid():
                return  # a new master's (USR2) now
            os.unlink(self.path)
        except (OSError, PidFileError) as exc:
            log.warning("master: cannot remove --pid %s: %s", self.path, getattr(exc, "strerror", None) or exc)
