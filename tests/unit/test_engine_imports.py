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


def _imports_between(package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (at the top or inside a function), named
    relative to the package ("jobs.queue"; a subpackage's __init__ is the subpackage's name)."""
    import ast

    root = Path(__file__).resolve().parents[2] / package
    prefix = package + "."
    graph = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(prefix):
                found.add(node.module[len(prefix) :])
            elif isinstance(node, ast.Import):
                found.update(a.name[len(prefix) :] for a in node.names if a.name.startswith(prefix))
        if name:
            graph[name] = found
    return graph


def test_the_backend_modules_import_each_other_without_a_cycle():
    from graphlib import CycleError, TopologicalSorter

    graph = _imports_between("ml_backend")
    assert "jobs.run" in graph["jobs.queue"] and "jobs.status" in graph["jobs.run"]  # the graph is read, not empty
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as error:
        raise AssertionError(f"ml_backend modules import each other in a cycle: {error.args[1]}") from None
    assert order.index("jobs.run") < order.index("jobs.queue")  # the web side's queue runs the jobs, not the reverse


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
