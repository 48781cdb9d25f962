"""The sans-IO core imports only the standard library and itself; backends only their own seam."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "pyftps"
NO_IO = {"asyncio", "socket", "selectors", "threading", "concurrent"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted((SRC / "proto").glob("*.py")), ids=lambda p: p.name)
def test_proto_imports_only_the_stdlib_and_itself_and_does_no_io(path: Path) -> None:
    for name in _imports(path):
        top = name.split(".")[0]
        if top == "pyftps":
            assert name.startswith("pyftps.proto"), f"{path.name} imports {name}"
            continue
        assert top in sys.stdlib_module_names or top == "__future__", f"{path.name} imports {name}"
        assert top not in NO_IO, f"{path.name} imports {name}: the core does no I/O"


@pytest.mark.parametrize("path", sorted((SRC / "storage").glob("*.py")), ids=lambda p: p.name)
def test_storage_backends_import_no_other_pyftps_package(path: Path) -> None:
    for name in _imports(path):
        if name.startswith("pyftps."):
            assert name.startswith("pyftps.storage"), f"{path.name} imports {name}"
