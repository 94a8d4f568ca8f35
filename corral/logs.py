"""Logging set-up shared by the master and the workers.

Logs go to stderr, or to ``--log-file`` which SIGUSR1 reopens (for logrotate).

``--log-format text`` (default) writes ``TIME [PID] [LEVEL] message``;
``--log-format json`` writes one JSON object per line: ``time`` (UTC,
RFC 3339), ``level``, ``pid`` (the process that logged: a worker's own pid),
``event`` (a stable dotted name such as ``master.worker_ready``), ``message``
and, after an exception, ``exc`` (the traceback). The event comes from
``extra={"event": ...}`` when a call gives one, else from the message's
format string (its words before the first parenthesis, comma or semicolon,
placeholders dropped), so it does not change with the values logged.

``--log-config PATH`` (``apply_config``) then applies a ``logging.config``
file over these defaults, as uvicorn does: JSON or YAML (``dictConfig``;
YAML needs PyYAML) or INI (``fileConfig``). corral's loggers are
``corral.error`` (the master's and workers' own lines, as gunicorn's
``gunicorn.error`` and uvicorn's ``uvicorn.error``) and ``corral.access``
(one line per request). A logger the file names is the file's; one it does
not name keeps corral's handler; loggers already made are not disabled
unless the file says ``disable_existing_loggers: true``. When the file gives
``corral.access`` handlers of its own (or makes it propagate), the access
lines go through ``logging`` (``access_routed``); otherwise they keep the
batched writes of ``io/access.py``, which bypass ``logging`` for speed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time

FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(message)s"
ACCESS_FORMAT = "%(asctime)s [%(process)d] %(message)s"

_handlers: list[logging.Handler] = []
# --log-config routes corral.access through its own handlers (io/access.py reads it).
access_routed = False


class LogConfigError(Exception):
    """--log-config cannot be applied; the message is one line."""

# Events whose format string says too little on its own.
EVENTS = {
    "corral master %d serving %s with %d worker%s (accept: %s)": "master.serving",
    "%s: %d %s": "http.error_response",
    "master: worker %d %s %s": "master.worker_exited",
    "master: %s; dumping its stack, then killing it": "master.worker_stuck",
    "master %d: all workers gone, sockets %s; exit %d": "master.exit",
}
NAMESPACES = {"master", "worker", "asgi", "websocket", "lifespan", "reload", "uvloop", "backlog"}
_PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]")
_CUT = re.compile(r"[(;,]| -> ")
_cache: dict[str, str] = {}


def event_name(template: object) -> str:
    """A stable event name for a log call's format string."""
    if not isinstance(template, str):
        return "server.message"
    name = _cache.get(template)
    if name is not None:
        return name
    name = EVENTS.get(template)
    if name is None:
        text = _CUT.split(_PLACEHOLDER.sub(" ", template), 1)[0]
        words = [w.lower() for w in re.findall(r"[A-Za-z][A-Za-z0-9]+", text)][:6]  # no units (%.1fs)
        namespace = "server"
        if words and words[0] in NAMESPACES:
            namespace = words.pop(0)
        name = namespace + "." + ("_".join(words) or "message")
    if len(_cache) < 4096:
        _cache[template] = name
    return name


class JSONFormatter(logging.Formatter):
    def __init__(self, access: bool = False) -> None:
        super().__init__()
        self.access = access

    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".%03dZ" % record.msecs,
            "level": record.levelname.lower(),
            "pid": record.process,
            "event": getattr(record, "event", None) or ("http.access" if self.access else event_name(record.msg)),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def setup(level: str = "info", log_file: str | None = None, fmt: str = "text") -> None:
    for handler in _handlers:
        for name in ("corral.error", "corral.access"):
            logging.getLogger(name).removeHandler(handler)
        handler.close()
    _handlers.clear()
    for name, text_format in (("corral.error", FORMAT), ("corral.access", ACCESS_FORMAT)):
        logger = logging.getLogger(name)
        handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
        if fmt == "json":
            handler.setFormatter(JSONFormatter(access=name == "corral.access"))
        else:
            handler.setFormatter(logging.Formatter(text_format))
        logger.addHandler(handler)
        logger.setLevel(level.upper())
        logger.propagate = False
        _handlers.append(handler)


def apply_config(path: str) -> None:
    """--log-config: apply a logging.config file (JSON, YAML or INI) over
    corral's defaults (``setup``); see the module docstring."""
    import logging.config

    global access_routed
    if not os.path.isfile(path):
        raise LogConfigError(f"--log-config: cannot read {path}: No such file or directory")
    kind = os.path.splitext(path)[1].lower()
    try:
        if kind in (".json", ".yaml", ".yml"):
            with open(path, encoding="utf-8") as handle:
                if kind == ".json":
                    config = json.load(handle)
                else:
                    try:
                        import yaml
                    except ImportError:
                        raise LogConfigError(
                            f"--log-config: {path} is YAML, which needs PyYAML: pip install 'corral[yaml]' (or pyyaml); "
                            "or give the same dictionary as JSON"
                        ) from None
                    config = yaml.safe_load(handle)
            if not isinstance(config, dict):
                raise LogConfigError(f"--log-config: {path} must hold a mapping (logging.config.dictConfig's schema)")
            config.setdefault("disable_existing_loggers", False)
            logging.config.dictConfig(config)
        else:  # .ini, .conf, .cfg, ...: logging.config.fileConfig's format
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except LogConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - json, yaml, configparser, dictConfig: each has its own
        reason = f"{type(exc).__name__}: {exc}"
        if exc.__cause__ is not None:
            reason += f" ({type(exc.__cause__).__name__}: {exc.__cause__})"
        raise LogConfigError(f"--log-config: {path}: " + " ".join(reason.split())) from None
    access = logging.getLogger("corral.access")
    access_routed = access.propagate or any(handler not in _handlers for handler in access.handlers)


def _file_handlers() -> list[logging.Handler]:
    """corral's own handlers, and the file handlers --log-config gave its loggers and the root."""
    handlers = list(_handlers)
    for name in ("corral.error", "corral.access", None):
        for handler in logging.getLogger(name).handlers:
            if handler not in handlers:
                handlers.append(handler)
    return handlers


def reopen() -> None:
    """SIGUSR1: reopen log files so rotated files are released."""
    failed = None
    for handler in _file_handlers():
        if isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                try:
                    stream = handler._open()  # the new file first: if it cannot be made, keep the old one
                except OSError as exc:
                    failed = (handler.baseFilename, exc.strerror)
                    continue
                old, handler.stream = handler.stream, stream
                if old is not None:
                    old.close()
            finally:
                handler.release()
    if failed:
        # e.g. --user without the right to create files in the log's directory:
        # logrotate's "create MODE USER GROUP" makes the new file for it.
        logging.getLogger("corral.error").warning(
            "cannot reopen the log file %s (%s); still writing to the old one", *failed
        )


def set_title(text: str) -> None:
    """What ``ps`` and ``top`` show for this process (``corral: master [app]``,
    ``corral: worker 2 [app]``), where setproctitle is installed (optional:
    ``pip install 'corral[proctitle]'``); without it, titles stay as they are."""
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    setproctitle(text)
