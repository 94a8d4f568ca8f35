"""Build corral; with ``CORRAL_COMPILE=1``, its hot path compiled with Cython.

The modules in ``COMPILED`` are plain Python; Cython compiles the same files
into extension modules, which Python imports in preference to the ``.py``
files beside them. There is one source for both builds.

Compiling is opt-in: compiled as they are, these modules measured slower
than the pure build on CPython 3.11 (bench/hotpath.py: 77.9k against 64.2k
instructions per hello request; CPython's specializing interpreter beats
Cython's generic attribute access on this code). Without ``CORRAL_COMPILE=1``
the pure package is built, and extension modules left in a source checkout
by an earlier compiled build are removed.

The build never fails because of compiling: without Cython, without a working
C compiler (``CC=false``), or with ``CORRAL_PURE=1``, it warns and installs
the pure-Python package. ``CORRAL_PURE=1`` at run time also makes an
installed compiled build import the ``.py`` files (``corral/_mode.py``). The
worker's ready line says which mode runs.
"""

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

# What the profile points at (bench/hotpath.py): the request's whole path.
COMPILED = [
    "corral/proto/h1.py",
    "corral/io/h1.py",
    "corral/io/stepper.py",
    "corral/io/access.py",
    "corral/interfaces/asgi.py",
    "corral/interfaces/wsgi.py",
]


def warn(message: str) -> None:
    print(f"\n*** corral: {message}; installing the pure-Python build ***\n", file=sys.stderr)


def _remove_inplace_builds() -> None:
    import glob

    for source in COMPILED:
        base = source[:-3]
        for path in glob.glob(base + ".*.so") + glob.glob(base + ".*.pyd") + [base + ".c"]:
            if os.path.exists(path):
                os.remove(path)


def extensions():
    if os.environ.get("CORRAL_COMPILE", "") in ("", "0"):
        _remove_inplace_builds()
        return []
    if os.environ.get("CORRAL_PURE", "") not in ("", "0"):
        warn("CORRAL_PURE is set")
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        warn("Cython is not installed")
        return []
    try:
        return cythonize(
            COMPILED,
            compiler_directives={
                "language_level": 3,
                "annotation_typing": False,  # annotations document; they do not type-check
                "binding": True,
                "embedsignature": True,
            },
            quiet=True,
        )
    except Exception as exc:  # noqa: BLE001 - any failure means the pure build
        warn(f"Cython failed ({exc})")
        return []


class OptionalBuildExt(build_ext):
    """Each module compiles or stays pure; a missing compiler is not an error."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001
            warn(f"compiling failed ({exc})")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            warn(f"compiling {ext.name} failed ({exc})")


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
