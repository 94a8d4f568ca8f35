"""corral: a production application server for ASGI and WSGI apps.

Public API: ``run(app_spec, **options)`` and ``Config``.
"""

__version__ = "0.1.0"

from ._mode import use_pure  # noqa: E402

use_pure()  # CORRAL_PURE=1: the .py files even where the compiled build is installed

from .config import Config  # noqa: E402


def run(app: str, **options) -> int:
    """Serve ``app`` ("MODULE:ATTR") with the given options; returns the exit code."""
    from . import logs
    from .supervisor import serve

    config = Config(app=app, **options)
    logs.setup(config.log_level, config.log_file, config.log_format)
    return serve(config)


__all__ = ["Config", "run", "__version__"]
