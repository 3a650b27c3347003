"""The engine must stay free of web, queue and Label Studio SDK code, and no module of the project may
import itself through a cycle of imports (those inside functions counted)."""

import subprocess
import sys
from pathlib import Path

FORBIDDEN = ("flask", "rq", "redis", "label_studio_sdk", "werkzeug", "gunicorn")


def test_engine_imports_no_web_queue_or_sdk_code():
    modules = sorted(m for m in _project_modules() if m.split(".")[0] == "al_core")
    assert {"al_core.models.frozen", "al_core.strategies", "al_core.ups", "al_core.loop"} <= set(modules)
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        + "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"al_core pulled in: {out.stdout.strip()}"


def _rooms_of_the_backend() -> dict[str, set[str]]:
    """ml_backend's subpackages and top-level modules -> those of them each imports (any import of one of
    its modules, at the top or inside a function)."""

    def room(module: str) -> str | None:
        parts = module.split(".")
        return ".".join(parts[:2]) if parts[0] == "ml_backend" and len(parts) > 1 else None

    rooms: dict[str, set[str]] = {}
    for module, imported in import_graph().items():
        if here := room(module):
            rooms.setdefault(here, set()).update(r for r in map(room, imported) if r and r != here)
    return rooms


def test_the_backends_rooms_import_downwards_only():
    """The web side queues jobs; the jobs read and publish through labelstudio and keep their files through
    storage; nothing below the web imports it, and no two rooms import each other through a cycle."""
    from graphlib import CycleError, TopologicalSorter

    rooms = _rooms_of_the_backend()
    assert {"ml_backend.jobs", "ml_backend.storage"} <= rooms["ml_backend.web"]  # the graph is read, not empty
    try:
        list(TopologicalSorter(rooms).static_order())
    except CycleError as error:
        raise AssertionError(f"ml_backend's rooms import each other in a cycle: {error.args[1]}") from None
    for room in ("ml_backend.jobs", "ml_backend.labelstudio", "ml_backend.storage", "ml_backend.campaign"):
        assert "ml_backend.web" not in rooms.get(room, set()), f"{room} imports the web side"
    for room in ("ml_backend.labelstudio", "ml_backend.storage", "ml_backend.predictor"):
        assert "ml_backend.jobs" not in rooms.get(room, set()), f"{room} imports the jobs"


# -- no import cycle in the project, function-local imports counted ---------------------------

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("al_core", "ml_backend", "plasm_export", "simulate", "fake_label_studio", "benchmarks", "testkit")


def _project_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every .py of the project's packages (a package is its __init__)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _imported(node, module: str, is_package: bool, modules) -> set[str]:
    """The project modules one import statement names (`from a.b import c`: a.b.c when c is a module,
    else a.b)."""
    import ast

    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in modules}
    base = node.module or ""
    if node.level:  # relative: from the module's package, one level up per extra dot
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    found = set()
    for alias in node.names:
        if f"{base}.{alias.name}" in modules:
            found.add(f"{base}.{alias.name}")
        elif base in modules:
            found.add(base)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, at the top or inside a function."""
    import ast

    modules = _project_modules()
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                edges |= _imported(node, name, is_package, modules)
        graph[name] = edges - {name}
    return graph


def test_no_module_of_the_project_imports_itself_through_a_cycle():
    from graphlib import CycleError, TopologicalSorter

    graph = import_graph()
    assert {"al_core.strategies", "al_core.ups"} <= graph["al_core.loop"]  # the graph is read, not empty
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as error:
        # graphlib names the cycle from importer's dependency back to it: reversed, each imports the next
        cycle = " -> ".join(reversed(error.args[1]))
        raise AssertionError(f"modules import each other in a cycle: {cycle}") from None


def test_the_graph_sees_imports_inside_functions_and_relative_ones(tmp_path):
    import ast

    modules = {"pkg": None, "pkg.a": None, "pkg.b": None, "pkg.sub": None, "pkg.sub.c": None}
    source = "def f():\n    from pkg import b\n    from .sub import c\n    from pkg.sub import thing\n"
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            found |= _imported(node, "pkg.a", False, modules)
    assert found == {"pkg.b", "pkg.sub.c", "pkg.sub"}
