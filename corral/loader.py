"""Import the application named MODULE:ATTR and tell ASGI from WSGI."""

from __future__ import annotations

import importlib
import inspect
import sys


class AppLoadError(Exception):
    """The application cannot be loaded; the message is one line."""


def import_app(spec: str, *, factory: bool = False, app_dir: str = "."):
    module_name, _, attrs = spec.partition(":")
    if not module_name or not attrs:
        raise AppLoadError(f"application must be given as MODULE:ATTR, got {spec!r}")
    if app_dir is not None:
        path = app_dir or "."
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise AppLoadError(f"cannot import module {module_name!r}: no module named {exc.name!r}") from None
        raise
    app = module
    for attr in attrs.split("."):
        try:
            app = getattr(app, attr)
        except AttributeError:
            raise AppLoadError(f"attribute {attrs!r} not found in module {module_name!r}") from None
    if factory:
        if not callable(app):
            raise AppLoadError(f"--factory: {spec} is not callable")
        app = app()
    if not callable(app):
        raise AppLoadError(f"{spec} is not callable (got {type(app).__name__}); an ASGI or WSGI app is")
    return app


def detect_interface(app, requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else getattr(app, "__call__", app)
    if inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(call):
        return "asgi"
    try:
        params = [
            p
            for p in inspect.signature(app).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return "asgi"
    return "wsgi" if len(params) == 2 else "asgi"
