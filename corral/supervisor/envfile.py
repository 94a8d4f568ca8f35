"""--env-file: the dotenv file's variables in the master's environment, which
every worker inherits; read at the start and again on each reload (HUP,
--reload), so new workers see rotated secrets.

The real environment wins: a variable that was set before corral loaded the
file is never replaced. A variable the file set and no longer has is removed
on the next reload. A file that cannot be read or parsed at a reload is
logged, and the variables stay as they were. ``keys`` (the variables that
came from the file) is what a USR2 upgrade leaves out of the new master's
environment, so it reads the file afresh (``upgrade.py``).
"""

from __future__ import annotations

import os

from ..config import read_env_file


class EnvFile:
    def __init__(self, path: str, keys: set[str]) -> None:
        self.path = os.path.abspath(path)
        self.keys = keys  # the variables this file set (shared with upgrade.env_file_keys)

    def load(self) -> int:
        """(Re)apply the file to os.environ; returns how many variables it sets.
        Raises ConfigError (one line) if it cannot be read or parsed."""
        values = read_env_file(self.path)
        for key in [key for key in self.keys if key not in values]:
            os.environ.pop(key, None)
            self.keys.discard(key)
        for key, value in values.items():
            if key in os.environ and key not in self.keys:
                continue  # set before corral read the file: the real environment wins
            os.environ[key] = value
            self.keys.add(key)
        return len(values)
