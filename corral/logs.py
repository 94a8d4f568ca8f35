"""Logging set-up shared by the master and the workers.

Logs go to stderr, or to ``--log-file`` which SIGUSR1 reopens (for logrotate).
"""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(message)s"
ACCESS_FORMAT = "%(asctime)s [%(process)d] %(message)s"

_handlers: list[logging.Handler] = []


def setup(level: str = "info", log_file: str | None = None) -> None:
    for handler in _handlers:
        for name in ("corral.error", "corral.access"):
            logging.getLogger(name).removeHandler(handler)
        handler.close()
    _handlers.clear()
    for name, fmt in (("corral.error", FORMAT), ("corral.access", ACCESS_FORMAT)):
        logger = logging.getLogger(name)
        handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(fmt))
        logger.addHandler(handler)
        logger.setLevel(level.upper())
        logger.propagate = False
        _handlers.append(handler)


def reopen() -> None:
    """SIGUSR1: reopen log files so rotated files are released."""
    for handler in _handlers:
        if isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                handler.close()
                handler.stream = handler._open()
            finally:
                handler.release()
