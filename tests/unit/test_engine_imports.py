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
