"""The release files and the package's metadata.

``make dist`` builds the sdist and a wheel and checks them with twine; the
sdist installs in a fresh virtual environment with no C compiler on PATH (the
pure build, with its warning), the wheel in another, and each serves a
request from its console script (a real process on port 0).

Cost: about 35 s on this machine (2 cores), two thirds of it ``make dist`` (two isolated
build environments and compiling the parser) and the sdist's pure build.
pip's cache is reused (the runtime dependencies are downloaded once per
machine); the fresh environments are made without pip (``venv --without-pip``,
then ``pip --python``), which saves seeding pip into each.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import HeaderParser

import pytest

from support import APPS, ROOT, Server

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

import corral

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
OFFLINE = ("Could not find a version", "No matching distribution", "Network is unreachable",
           "Temporary failure in name resolution")


def clean_env(**changes) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("CORRAL_PURE", "PYTHONPATH", "CC")}
    env.update(changes)
    return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """``make dist`` into a temporary directory: (sdist, wheel, its output)."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(["make", "--no-print-directory", "dist", f"DIST_DIR={out}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, env=clean_env(COLUMNS="1000"))  # twine: no wrapping
    output = result.stdout + result.stderr
    if result.returncode != 0 and any(sign in output for sign in OFFLINE):
        pytest.skip("make dist: the build requirements (setuptools, Cython) cannot be installed here")
    assert result.returncode == 0, output[-4000:]
    [sdist] = out.glob("corral-*.tar.gz")
    [wheel] = out.glob("corral-*.whl")
    return sdist, wheel, output


def fresh_env(path, pip_args, path_env: str) -> tuple[str, str]:
    """A new virtual environment at ``path`` with ``pip_args`` installed:
    (its bin directory, pip's output)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    bin_dir = path / "bin"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "-v", *pip_args],
        capture_output=True, text=True, timeout=600, env=clean_env(PATH=path_env),
    )
    output = result.stdout + result.stderr
    if result.returncode != 0 and any(sign in output for sign in OFFLINE):
        pytest.skip("corral's runtime dependencies cannot be installed here (no index reachable)")
    assert result.returncode == 0, output[-4000:]
    return str(bin_dir), output


def serves(bin_dir: str, cwd, mode: str) -> None:
    """The environment's ``corral`` console script serves a request and stops on TERM."""
    server = Server("basic:app", corral=(os.path.join(bin_dir, "corral"),), cwd=cwd, env=clean_env())
    try:
        server.wait_log(rf"worker \d+ ready \(asgi, uvloop, {mode}\)")
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/pid")
        response = conn.getresponse()
        assert response.status == 200
        assert int(response.read()) in server.worker_pids()
        conn.close()
        assert server.stop() == 0
    finally:
        server.kill()


def test_make_dist_builds_and_checks_both(dist):
    sdist, wheel, output = dist
    assert f"Checking {wheel}: PASSED" in re.sub(r"\x1b\[[0-9;]*m", "", output)
    assert f"Checking {sdist}: PASSED" in re.sub(r"\x1b\[[0-9;]*m", "", output)
    version = corral.__version__
    assert sdist.name == f"corral-{version}.tar.gz"
    assert wheel.name.startswith(f"corral-{version}-")

    names = {name.split("/", 1)[1] for name in tarfile.open(sdist).getnames() if "/" in name}
    for needed in ("LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "setup.py",
                   "corral/proto/h1.py", "corral/proto/h1.pxd", "corral/cli.py"):
        assert needed in names, needed
    assert not [n for n in names if n.endswith((".so", ".c", ".pyc")) or n.startswith("tests/")], names

    with zipfile.ZipFile(wheel) as archive:
        wheel_names = archive.namelist()
        metadata = HeaderParser().parsestr(archive.read(f"corral-{version}.dist-info/METADATA").decode())
    assert f"corral-{version}.dist-info/licenses/LICENSE" in wheel_names
    assert not [n for n in wheel_names if n.endswith(".c")]
    assert metadata["Version"] == version
    assert metadata["License-Expression"] == "MIT"
    assert metadata["Requires-Python"] == ">=3.10"
    assert set(metadata.get_all("Classifier")) == set(PYPROJECT["project"]["classifiers"])
    assert metadata["Description-Content-Type"] == "text/markdown"


def test_the_sdist_installs_pure_without_a_compiler_and_serves(dist, tmp_path):
    """No cc or gcc on PATH: the install warns, goes on, and corral runs as pure Python."""
    sdist, _, _ = dist
    bare = tmp_path / "path"  # a PATH with no compiler (the build runs its Python by absolute path)
    bare.mkdir()
    for tool in ("cc", "gcc"):
        assert shutil.which(tool, path=str(bare)) is None
    bin_dir, output = fresh_env(tmp_path / "env", [str(sdist)], path_env=str(bare))
    assert "*** corral: compiling" in output and "installing the pure-Python build ***" in output, output[-4000:]
    serves(bin_dir, tmp_path, "pure")


def test_the_wheel_installs_and_serves_compiled(dist, tmp_path):
    _, wheel, _ = dist
    bin_dir, _ = fresh_env(tmp_path / "env", [str(wheel)], path_env=os.environ["PATH"])
    version = subprocess.run([os.path.join(bin_dir, "corral"), "--version"], capture_output=True, text=True,
                             check=True, cwd=tmp_path).stdout
    assert version == f"corral {corral.__version__}\n"
    serves(bin_dir, tmp_path, "compiled")


def test_the_version_is_written_in_one_place():
    assert "version" in PYPROJECT["project"]["dynamic"] and "version" not in PYPROJECT["project"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "corral.__version__"}
    for name in ("pyproject.toml", "setup.py"):
        assert corral.__version__ not in (ROOT / name).read_text(), name
    assert re.fullmatch(r"\d+\.\d+\.\d+", corral.__version__)


def test_classifiers_are_known_and_name_the_tested_pythons():
    from trove_classifiers import classifiers as known

    ours = PYPROJECT["project"]["classifiers"]
    assert not [c for c in ours if c not in known]
    assert "Operating System :: POSIX :: Linux" in ours
    versions = [c.rsplit(" ", 1)[1] for c in ours if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert versions == ["3.10", "3.11", "3.12", "3.13"]
    assert PYPROJECT["project"]["requires-python"] == f">={versions[0]}"


@pytest.mark.parametrize("platform", ["darwin", "win32", "freebsd14"])
def test_a_platform_other_than_linux_exits_with_one_line(platform):
    def run(*argv):
        code = f"import sys; sys.platform = {platform!r}; from corral.cli import main; sys.exit(main({list(argv)!r}))"
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=APPS,
                              env=clean_env(), timeout=60)

    refused = run("basic:app", "--port", "0")
    assert refused.returncode == 2
    assert refused.stderr == f"corral: error: corral runs on Linux only; this is {platform}\n"
    assert refused.stdout == ""
    version = run("--version")  # --help and --version still answer
    assert (version.returncode, version.stdout) == (0, f"corral {corral.__version__}\n")


def test_the_test_versions_extra_is_a_subset_of_test():
    """make test-versions installs the lighter extra; its lines are test's own."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert set(extras["test-versions"]) <= set(extras["test"])
