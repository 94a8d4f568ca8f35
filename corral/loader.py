"""Import the application named MODULE:ATTR and tell ASGI from WSGI.

What is certain to fail on every request is refused at boot, in one line
(``AppLoadError``; the worker exits 2 and the master with it on a first
boot): a callable that cannot take an interface's arguments (a factory
passed without ``--factory``), an ``async def`` app under ``--interface
wsgi``, a two-argument function under ``--interface asgi``. What cannot be
told from the signature (a sync callable object that may return an
awaitable, a C callable without a signature) is left to run.
"""

from __future__ import annotations

import importlib
import inspect
import sys


class AppLoadError(Exception):
    """The application cannot be loaded; the message is one line."""


class FactoryError(Exception):
    """The ``--factory`` callable raised; ``__cause__`` is what it raised."""


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
        if _takes(app, 0) is False:
            raise AppLoadError(
                f"--factory: {spec} cannot be called without arguments{_shown(app)}: it looks like the application "
                "itself, not a factory; drop --factory"
            )
        try:
            app = app()
        except Exception as exc:  # noqa: BLE001 - the app's code: anything
            raise FactoryError(f"{spec} raised {type(exc).__name__} while calling the factory: {exc}") from exc
        spec = f"{spec}() (the factory's result)"
    if not callable(app):
        raise AppLoadError(f"{spec} is not callable (got {type(app).__name__}); an ASGI or WSGI app is")
    if not factory and _takes(app, 2) is False and _takes(app, 3) is False:
        if _takes(app, 0):
            raise AppLoadError(f"{spec} takes no arguments{_shown(app)}: it looks like an application factory; pass --factory")
        raise AppLoadError(
            f"{spec} cannot be called as an application{_shown(app)}: an ASGI app takes (scope, receive, send), "
            "a WSGI app (environ, start_response)"
        )
    return app


def _takes(app, count: int) -> bool | None:
    """Whether ``app`` accepts ``count`` positional arguments; None when its
    signature cannot be read (C callables, some builtins) or it is a class
    (calling it makes an instance)."""
    if inspect.isclass(app):
        return None
    try:
        signature = inspect.signature(app)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*range(count))
    except TypeError:
        return False
    return True


def _shown(app) -> str:
    try:
        return f" (signature {inspect.signature(app)})"
    except (TypeError, ValueError):
        return ""


def _is_async(app) -> bool:
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else getattr(app, "__call__", app)
    return inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(call)


def detect_interface(app, requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    if _is_async(app):
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


def check_interface(app, interface: str, requested: str, spec: str) -> str | None:
    """The one line refusing ``app`` under ``interface`` when it certainly
    cannot serve a request that way, else None. ``requested`` is what
    --interface said (auto: detected)."""
    given = "--interface " + interface if requested != "auto" else f"detected as {interface.upper()}"
    if interface == "wsgi":
        if _is_async(app):
            return (
                f"{given}: {spec} is an ASGI app (its call is a coroutine function); "
                "serve it with --interface asgi (or auto)"
            )
        if _takes(app, 2) is False:
            return f"{given}: {spec} cannot take (environ, start_response){_shown(app)}"
    elif _takes(app, 3) is False:
        if not _is_async(app) and _takes(app, 2):
            return (
                f"{given}: {spec} is a WSGI app{_shown(app)}; "
                "serve it with --interface wsgi (or auto)"
            )
        return f"{given}: {spec} cannot take (scope, receive, send){_shown(app)}"
    return None
