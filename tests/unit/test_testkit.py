"""Who may import what: testkit is shared by tests, benchmarks and the simulator, so it imports
neither the backend nor the tests; benchmarks and the simulator import no tests."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_packages(package: str) -> dict[str, set[str]]:
    """{top-level package imported: files importing it} over every module of `package`,
    function-local imports included."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize(
    "package, forbidden",
    [("testkit", {"ml_backend", "tests"}), ("benchmarks", {"tests"}), ("simulate", {"tests"})],
)
def test_imports_stay_within_bounds(package, forbidden):
    imported = imported_packages(package)
    assert imported, f"no module found in {package}"
    assert {name: sorted(imported[name]) for name in forbidden & set(imported)} == {}
