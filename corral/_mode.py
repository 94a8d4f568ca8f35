"""Compiled or pure: which build of the hot path this process runs.

``setup.py`` compiles the modules in ``COMPILED`` with Cython; the source of
both builds is the same ``.py`` file, and Python imports the extension module
beside it in preference. ``use_pure()`` (run by ``corral/__init__.py``)
installs a finder that imports the ``.py`` file instead:

* for every module, with ``CORRAL_PURE=1`` in the environment (``make test``
  runs the protocol and io tiers this way on the same installation);
* for one module whose ``.py`` is newer than its compiled build in a source
  checkout (its generated ``.c`` file is beside it): an edited file is what
  runs until ``make`` compiles it again, never a stale build.

``mode()`` says "compiled", "pure" or "mixed"; the worker's ready line shows it.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys

COMPILED = ("corral.proto.h1",)  # setup.py's list: what measures better compiled
_EXTENSIONS = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def _forced() -> bool:
    return os.environ.get("CORRAL_PURE", "") not in ("", "0")


class _PureFinder:
    """The source spec for a COMPILED module when it must run from its .py."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name not in COMPILED or not path:
            return None
        base = os.path.join(path[0], name.rsplit(".", 1)[1])
        source = base + ".py"
        if not os.path.exists(source):
            return None
        if not _forced() and not _stale(base, source):
            return None  # the compiled module, by the normal finders
        return importlib.util.spec_from_file_location(
            name, source, loader=importlib.machinery.SourceFileLoader(name, source)
        )


def _stale(base: str, source: str) -> bool:
    if not os.path.exists(base + ".c"):
        return False  # an installed build: .py and compiled module were shipped together
    built = [base + suffix for suffix in _EXTENSIONS if os.path.exists(base + suffix)]
    return bool(built) and os.stat(source).st_mtime > max(os.stat(b).st_mtime for b in built)


def use_pure() -> None:
    if _PureFinder not in sys.meta_path:
        sys.meta_path.insert(0, _PureFinder)


def mode() -> str:
    """"compiled", "pure" or "mixed" (some modules compiled), for the loaded modules."""
    import importlib

    compiled = [not importlib.import_module(name).__file__.endswith(".py") for name in COMPILED]
    return "compiled" if all(compiled) else "mixed" if any(compiled) else "pure"
