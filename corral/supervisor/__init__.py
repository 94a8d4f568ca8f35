"""The master process: binds sockets once, then supervises the workers."""

from __future__ import annotations

import sys

from ..io.tls import TLSConfigError, build_context
from . import upgrade
from .master import Master
from .sockets import BindError, Sockets


def serve(config) -> int:
    if config.reload:
        from .reload import check

        problem = check(config)
        if problem:
            print(f"corral: error: {problem}", file=sys.stderr)
            return 2
    try:
        build_context(config)  # each worker builds its own after the fork
    except TLSConfigError as exc:
        print(f"corral: error: {exc}", file=sys.stderr)
        return 2
    handover = upgrade.take()  # started by an old master's USR2
    sockets = Sockets(config, handover)
    try:
        sockets.bind()
    except BindError as exc:
        print(f"corral: error: {exc}", file=sys.stderr)
        return 2
    master = Master(config, sockets)
    if handover is not None:
        master.upgrade_notify = handover["notify"]
    if config.metrics_bind:
        from .metrics import bind

        try:
            master.metrics_socket = bind(config.metrics_bind)
        except OSError as exc:
            sockets.close()
            print(f"corral: error: --metrics-bind {config.metrics_bind}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    return master.run()
