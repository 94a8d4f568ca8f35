"""The master process: binds sockets once, then supervises the workers.

``serve`` runs the start in order: ``--chdir``, ``--env-file``,
``--umask``; ``--app-dir`` must be a directory; logging; the checks that need no socket (``--reload``, TLS
files, a running master's ``--pid``); the ``on_starting`` hook; binding (or
adopting a USR2 handover); ``--metrics-bind``; writing ``--pid``; dropping
to ``--user``/``--group``; then the master loop. Each refusal is one line
(``corral: error: ...``) and exit 2.
"""

from __future__ import annotations

import logging
import os
import sys

from .. import logs
from ..config import ConfigError, env_file_path
from ..io.tls import TLSConfigError, build_context
from . import upgrade
from .envfile import EnvFile
from .master import Master
from .pidfile import PidFile, PidFileError
from .privileges import PrivilegeError, drop
from .sockets import BindError, Sockets

log = logging.getLogger("corral.error")


def _error(message: str) -> int:
    print(f"corral: error: {message}", file=sys.stderr, flush=True)
    return 2


def prepare(config) -> EnvFile | None:
    """--chdir, --env-file, --umask: before anything reads a path or the environment."""
    upgrade.start_cwd = os.getcwd()  # a USR2 re-executes the command line from here
    env_file = None
    if config.env_file:  # its path is taken from --chdir, made absolute before the change
        env_file = EnvFile(env_file_path(config.env_file, config.chdir), upgrade.env_file_keys)
    if config.chdir:
        try:
            os.chdir(config.chdir)
        except OSError as exc:
            raise ConfigError(f"--chdir: cannot change to {config.chdir}: {exc.strerror}") from None
    if env_file is not None:
        env_file.load()  # the real environment wins, as with python-dotenv's load_dotenv
    if config.umask is not None:
        os.umask(config.umask)
    return env_file


def serve(config) -> int:
    try:
        env_file = prepare(config)
    except ConfigError as exc:
        return _error(str(exc))
    if config.app_dir and not os.path.isdir(config.app_dir):  # after --chdir: relative to it
        why = "not a directory" if os.path.exists(config.app_dir) else "no such directory"
        return _error(f"--app-dir {config.app_dir}: {why}")
    try:
        logs.setup(config.log_level, config.log_file, config.log_format)
    except OSError as exc:
        return _error(f"--log-file: cannot open {config.log_file}: {exc.strerror}")
    if config.log_config:
        try:
            logs.apply_config(config.log_config)
        except logs.LogConfigError as exc:
            return _error(str(exc))
    if config.reload:
        from .reload import check

        problem = check(config)
        if problem:
            return _error(problem)
    try:
        build_context(config)  # each worker builds its own after the fork
    except TLSConfigError as exc:
        return _error(str(exc))
    if config.static_path_mount:  # the directories, once --chdir is done
        from ..io.static import check_mounts
        from ..proto.static import MountError

        try:
            check_mounts(config.static_path_mount)
        except MountError as exc:
            return _error(f"--static-path-mount: {exc}")
    handover = upgrade.take()  # started by an old master's USR2
    pidfile = PidFile(config.pid) if config.pid else None
    if pidfile is not None and handover is None:  # after a USR2 the file names the old master, our parent
        try:
            pidfile.check()
        except PidFileError as exc:
            return _error(str(exc))
    sockets = Sockets(config, handover)
    master = Master(config, sockets)
    master.pidfile = pidfile
    master.env_file = env_file
    failed = config.run_hook("on_starting", master)
    if failed is not None:
        return _error(f"on_starting hook raised {type(failed).__name__}: {failed}")
    try:
        sockets.bind()
    except BindError as exc:
        return _error(str(exc))
    try:
        if handover is not None:
            master.upgrade_notify = handover["notify"]
        if config.metrics_bind:
            from .metrics import bind

            try:
                master.metrics_socket = bind(config.metrics_bind)
            except OSError as exc:
                sockets.close()
                return _error(f"--metrics-bind {config.metrics_bind}: {exc.strerror or exc}")
        try:
            if pidfile is not None and handover is None:
                pidfile.write()  # the new master of a USR2 writes it once it is ready (Master._upgrade_ready)
            if config.user or config.group:
                own = [path for path in (*sockets.uds, config.log_file) if path and handover is None]
                done = drop(config.user, config.group, own)
                if done:
                    log.info("master %d: %s", os.getpid(), done)
                    build_context(config)  # the workers read the TLS files as this user
        except (PidFileError, PrivilegeError) as exc:
            sockets.close()
            return _error(str(exc))
        except TLSConfigError as exc:
            sockets.close()
            return _error(f"{exc} (as --user {config.user or '-'}, --group {config.group or '-'})")
        if config.preload:
            problem = master.preload()  # as --user: no app code runs as root
            if problem:
                sockets.close()
                return _error(problem)
        logs.set_title(f"corral: master [{config.app}]")
        return master.run()
    finally:
        if pidfile is not None:
            pidfile.remove()
