"""Build corral, its hot path compiled with Cython where a compiler is.

The modules in ``COMPILED`` are plain Python; Cython compiles the same files
into extension modules, which Python imports in preference to the ``.py``
files beside them. There is one source for both builds: an augmenting
``.pxd`` beside a module (``corral/proto/h1.pxd``) gives the compiled build
its C types, and the pure build never reads it.

Only what measures better compiled is compiled (bench/hotpath.py --callgrind):
``proto/h1.py``, whose parser is an extension type with C fields there. The
other hot modules, compiled as plain Python, measured slower than CPython
3.11's specializing interpreter (77.9k against 64.2k instructions per hello
request) and stay pure.

The build never fails because of compiling: without Cython, without a working
C compiler (``CC=false``), or with ``CORRAL_PURE=1``, it warns and installs
the pure-Python package (and removes extension modules an earlier build left
in a source checkout). ``CORRAL_PURE=1`` at run time also makes an installed
compiled build import the ``.py`` files (``corral/_mode.py``). The worker's
ready line says which mode runs.
"""

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

# What measures better compiled (bench/hotpath.py --callgrind); corral/_mode.py
# keeps the same list.
COMPILED = [
    "corral/proto/h1.py",
]
# Compiled by earlier builds (CORRAL_COMPILE=1): their extension modules, left
# in a source checkout, would be imported in preference to the .py files.
NO_LONGER_COMPILED = [
    "corral/io/h1.py",
    "corral/io/stepper.py",
    "corral/io/access.py",
    "corral/interfaces/asgi.py",
    "corral/interfaces/wsgi.py",
]


def warn(message: str) -> None:
    print(f"\n*** corral: {message}; installing the pure-Python build ***\n", file=sys.stderr)


def _remove_inplace_builds(sources) -> None:
    import glob

    for source in sources:
        base = source[:-3]
        for path in glob.glob(base + ".*.so") + glob.glob(base + ".*.pyd") + [base + ".c"]:
            if os.path.exists(path):
                os.remove(path)


def extensions():
    _remove_inplace_builds(NO_LONGER_COMPILED)
    if os.environ.get("CORRAL_PURE", "") not in ("", "0"):
        _remove_inplace_builds(COMPILED)
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


class BuildPy(build_py):
    """Cython's .c files stay out of the wheel: corral/_mode.py takes a .c
    beside a module for a source checkout, where an edited .py wins."""

    def find_data_files(self, package, src_dir):
        return [name for name in super().find_data_files(package, src_dir) if not name.endswith(".c")]


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt, "build_py": BuildPy})
