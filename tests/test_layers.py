"""Layers you can see: each package imports only what sits below it."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "corral"

# package -> corral packages and stdlib modules it must not import
FORBIDDEN = {
    "proto": {"corral.io", "corral.interfaces", "corral.worker", "corral.supervisor", "asyncio", "socket", "selectors"},
    "io": {"corral.interfaces", "corral.worker", "corral.supervisor"},
    "interfaces": {"corral.worker", "corral.supervisor"},
    "worker": {"corral.supervisor"},
}


def imports(path: Path, package: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against corral.<package>
                base = ["corral", package][: 3 - node.level] if node.level <= 2 else ["corral"]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_nothing_above_it(package):
    for path in sorted((PACKAGE / package).glob("*.py")):
        found = imports(path, package)
        bad = {name for name in found for forbidden in FORBIDDEN[package] if name == forbidden or name.startswith(forbidden + ".")}
        assert not bad, f"{path.relative_to(PACKAGE.parent)} imports {sorted(bad)}"


# Top-level modules: the shared base (config, logs, loader, _mode) sits below
# every package but proto; cli, __init__ and __main__ are entry points and
# may start the supervisor (only it).
TOP_LEVEL = {
    "config.py": {"corral.io", "corral.interfaces", "corral.worker", "corral.supervisor", "corral.cli", "asyncio"},
    "logs.py": {"corral.proto", "corral.io", "corral.interfaces", "corral.worker", "corral.supervisor", "corral.config"},
    "loader.py": {"corral.proto", "corral.io", "corral.interfaces", "corral.worker", "corral.supervisor"},
    "_mode.py": {"corral.proto", "corral.io", "corral.interfaces", "corral.worker", "corral.supervisor"},
    "cli.py": {"corral.proto", "corral.io", "corral.interfaces", "corral.worker"},
    "__init__.py": {"corral.io", "corral.interfaces", "corral.worker"},
    "__main__.py": {"corral.io", "corral.interfaces", "corral.worker", "corral.supervisor"},
}


# Known exceptions, each a lazy import inside a function: config validates
# --access-log-format with the formatter that will run it (io/access.py).
ALLOWED = {"config.py": {"corral.io.access"}}


def top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative to corral itself
                names.add(".".join(["corral"] + ([node.module] if node.module else [])))
                names.update(f"corral.{alias.name}" for alias in node.names if not node.module)
            else:
                names.add(node.module or "")
    return names


def test_every_top_level_module_is_covered():
    assert {path.name for path in PACKAGE.glob("*.py")} == set(TOP_LEVEL)


@pytest.mark.parametrize("name", sorted(TOP_LEVEL))
def test_top_level_module_imports_nothing_above_it(name):
    found = top_level_imports(PACKAGE / name)
    bad = {n for n in found for forbidden in TOP_LEVEL[name] if n == forbidden or n.startswith(forbidden + ".")}
    bad -= ALLOWED.get(name, set())
    assert not bad, f"corral/{name} imports {sorted(bad)}"
