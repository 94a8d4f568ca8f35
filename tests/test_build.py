"""The two builds: Cython-compiled hot path, or pure Python (setup.py, corral/_mode.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from support import ROOT, Server


def build_mode(env_pure: bool) -> str:
    env = {k: v for k, v in os.environ.items() if k != "CORRAL_PURE"}
    if env_pure:
        env["CORRAL_PURE"] = "1"
    return subprocess.run(
        [sys.executable, "-c", "from corral._mode import mode; print(mode())"],
        capture_output=True, text=True, check=True, env=env, cwd=ROOT,
    ).stdout.strip()


def test_corral_pure_forces_the_pure_modules():
    assert build_mode(env_pure=True) == "pure"
    assert build_mode(env_pure=False) in ("compiled", "pure")  # compiled where `make` built it


def test_ready_line_names_the_mode(server_factory):
    expected = build_mode(env_pure=False)
    server = server_factory("basic:app", env={k: v for k, v in os.environ.items() if k != "CORRAL_PURE"})
    server.wait_log(rf"worker \d+ ready \(asgi, uvloop, {expected}\)")
    pure = server_factory("basic:app", extra_env={"CORRAL_PURE": "1"})
    pure.wait_log(r"worker \d+ ready \(asgi, uvloop, pure\)")


def test_without_a_compiler_the_build_installs_pure_python(tmp_path):
    """CC=false: the wheel builds, with a warning, and holds no extension module."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "corral", source / "corral",
                    ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__"))
    env = dict(os.environ, CC="false", CORRAL_COMPILE="1")
    env.pop("CORRAL_PURE", None)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, env=env, timeout=240,
    )
    if result.returncode != 0 and "Could not find a version" in result.stdout + result.stderr:
        pytest.skip("the build requirements (setuptools, Cython) cannot be installed here")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "installing the pure-Python build" in result.stdout + result.stderr
    [wheel] = (tmp_path / "dist").glob("corral-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "corral/proto/h1.py" in names
    assert not [n for n in names if n.endswith((".so", ".pyd"))]
    env = {k: v for k, v in os.environ.items() if k != "CORRAL_PURE"}
    env["PYTHONPATH"] = str(wheel)
    mode = subprocess.run([sys.executable, "-c", "from corral._mode import mode; print(mode())"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout.strip()
    assert mode == "pure"


def test_an_edited_module_runs_from_source_until_rebuilt(tmp_path):
    """In a source checkout, a .py newer than its compiled module is what is imported."""
    if build_mode(env_pure=False) != "compiled":
        pytest.skip("the compiled build is not built here")
    shutil.copytree(ROOT / "corral", tmp_path / "corral", ignore=shutil.ignore_patterns("__pycache__"))
    source = tmp_path / "corral" / "io" / "h1.py"
    later = max(p.stat().st_mtime for p in (tmp_path / "corral" / "io").glob("h1.*")) + 10
    os.utime(source, (later, later))
    env = {k: v for k, v in os.environ.items() if k != "CORRAL_PURE"}
    env["PYTHONPATH"] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", "import corral.io.h1 as m, corral.proto.h1 as p; from corral._mode import mode; "
                               "print(m.__file__.endswith('.py'), p.__file__.endswith('.py'), mode())"],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=True,
    ).stdout.split()
    assert out == ["True", "False", "mixed"]
