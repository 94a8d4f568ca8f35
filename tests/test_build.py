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


def build_wheel(tmp_path, **env_changes):
    """A wheel built from a fresh copy of the sources (no build products): (wheel, build output, mode)."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE", "MANIFEST.in"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "corral", source / "corral",
                    ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__"))
    env = dict(os.environ, **env_changes)
    env.pop("CORRAL_PURE", None)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, env=env, timeout=240,
    )
    if result.returncode != 0 and "Could not find a version" in result.stdout + result.stderr:
        pytest.skip("the build requirements (setuptools, Cython) cannot be installed here")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [wheel] = (tmp_path / "dist").glob("corral-*.whl")
    site = tmp_path / "site"  # installed as pip would (an extension module does not import from a zip)
    zipfile.ZipFile(wheel).extractall(site)
    env = {k: v for k, v in os.environ.items() if k != "CORRAL_PURE"}
    env["PYTHONPATH"] = str(site)
    mode = subprocess.run([sys.executable, "-c", "from corral._mode import mode; print(mode())"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout.strip()
    return wheel, result.stdout + result.stderr, mode


def test_without_a_compiler_the_build_installs_pure_python(tmp_path):
    """CC=false: the wheel builds, with a warning, and holds no extension module."""
    wheel, output, mode = build_wheel(tmp_path, CC="false")
    assert "installing the pure-Python build" in output
    names = zipfile.ZipFile(wheel).namelist()
    assert "corral/proto/h1.py" in names
    assert not [n for n in names if n.endswith((".so", ".pyd"))]
    assert mode == "pure"


@pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler here")
def test_with_a_compiler_the_build_compiles_the_parser_by_default(tmp_path):
    """No variable to set: the wheel holds the compiled parser beside its .py, and imports it."""
    wheel, output, mode = build_wheel(tmp_path)
    assert "installing the pure-Python build" not in output
    names = zipfile.ZipFile(wheel).namelist()
    assert "corral/proto/h1.py" in names
    assert [n for n in names if n.startswith("corral/proto/h1.") and n.endswith((".so", ".pyd"))]
    assert mode == "compiled"


def test_an_edited_module_runs_from_source_until_rebuilt(tmp_path):
    """In a source checkout, a .py newer than its compiled module is what is imported."""
    if build_mode(env_pure=False) != "compiled":
        pytest.skip("the compiled build is not built here")
    shutil.copytree(ROOT / "corral", tmp_path / "corral", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "CORRAL_PURE"}
    env["PYTHONPATH"] = str(tmp_path)

    def imported():
        return subprocess.run(
            [sys.executable, "-c", "import corral.proto.h1 as p; from corral._mode import mode; "
                                   "print(p.__file__.endswith('.py'), mode())"],
            capture_output=True, text=True, env=env, cwd=tmp_path, check=True,
        ).stdout.split()

    assert imported() == ["False", "compiled"]
    source = tmp_path / "corral" / "proto" / "h1.py"
    later = max(p.stat().st_mtime for p in (tmp_path / "corral" / "proto").glob("h1.*")) + 10
    os.utime(source, (later, later))
    assert imported() == ["True", "pure"]
