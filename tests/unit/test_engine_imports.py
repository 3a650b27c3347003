"""The engine must stay free of web, queue and Label Studio SDK code."""

import subprocess
import sys
from pathlib import Path

import al_core

FORBIDDEN = ("flask", "rq", "redis", "label_studio_sdk", "werkzeug", "gunicorn")


def test_engine_imports_no_web_queue_or_sdk_code():
    modules = sorted(p.stem for p in Path(al_core.__file__).parent.glob("*.py") if p.stem != "__init__")
    assert {"models", "strategies", "ups", "loop"} <= set(modules)
    code = (
        "import sys\n"
        + "".join(f"import al_core.{m}\n" for m in modules)
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
