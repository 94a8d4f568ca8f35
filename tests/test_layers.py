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
