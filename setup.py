"""Build corral, compiling its hot path with Cython where a compiler is there.

The modules in ``COMPILED`` are plain Python; Cython compiles the same files
into extension modules, which Python imports in preference to the ``.py``
files beside them. There is one source for both builds.

The build never fails because of this: without Cython, without a working C
compiler (``CC=false``), or with ``CORRAL_PURE=1`` in the environment, it
warns and installs the pure-Python package. ``CORRAL_PURE=1`` at run time
also makes an installed compiled build import the ``.py`` files
(``corral/_mode.py``). The worker's ready line says which mode runs.
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


def extensions():
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
