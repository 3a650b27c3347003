"""Writes benchmark figures into BENCHMARKS.md, one named section per benchmark.

Each script replaces only its own section (between markers), so scripts can be re-run
one at a time without touching the figures of the others.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nFigures written by the scripts in `benchmarks/`; each section names its command.\n"


def machine_line() -> str:
    """Machine, versions and the command that produced the figures."""
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"Machine: {os.cpu_count()} cores ({cpu}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), transformers {transformers.__version__}, "
        f"Python {platform.python_version()}. Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.\n"
        f"Command: `{shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])}`\n"
    )


def write_section(name: str, markdown: str, path: Path = BENCHMARKS_MD) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")
