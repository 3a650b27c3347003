"""`python -m benchmarks.bench_gpu --tiny`: every part's retrain runs on a real `rq worker` against real
Redis and lands in the section it writes, with a time and a quality figure, leaving BENCHMARKS.md alone."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from testkit.gold import SHARED_DATA
from tests.conftest import ROOT, require_or_skip
from tests.integration.conftest import RQ

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("AL_TEST_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
NUMBER = r"([0-9]+(?:\.[0-9]+)?)"


def _section(text: str) -> str:
    found = re.search(r"<!-- gpu:start -->\n(.*?)\n<!-- gpu:end -->", text, re.S)
    assert found, text
    return found.group(1)


def test_tiny_run_writes_every_part(tmp_path):
    from redis import Redis
    from redis.exceptions import RedisError

    try:
        Redis.from_url(REDIS_URL).ping()
    except RedisError as error:
        require_or_skip(False, f"no Redis at {REDIS_URL}: {error}")
    require_or_skip(RQ.exists(), f"no rq executable beside {sys.executable}")
    require_or_skip((SHARED_DATA / "agnews" / "test.csv").is_file(), f"AG News is not in {SHARED_DATA}")
    benchmarks_md = (ROOT / "BENCHMARKS.md").read_bytes()
    out, work = tmp_path / "gpu.md", tmp_path / "work"

    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_gpu", "--tiny", "--out", str(out), "--work-dir", str(work),
         "--redis", REDIS_URL],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=240,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert (ROOT / "BENCHMARKS.md").read_bytes() == benchmarks_md
    section = _section(out.read_text(encoding="utf-8"))
    device = re.search(r"^Device: (.+)$", section, re.M)
    assert device and (device.group(1).startswith("cpu") or "CUDA" in device.group(1)), section
    if device.group(1).startswith("cpu"):
        assert "CPU run at tiny sizes" in section
    rows = [line.split(" | ") for line in section.splitlines() if re.match(r"\| (finetune|frozen|split|teacher) \|", line)]
    assert sorted(r[0].lstrip("| ") for r in rows) == ["finetune", "finetune", "frozen", "split", "teacher"], section
    assert {r[2] for r in rows if r[0] == "| finetune"} == {"tiny-bert (as minilm-l6)", "tiny-bert (as mpnet-base)"}
    for row in rows:
        fit, scoring, accuracy, macro_f1 = row[5], row[6], row[8], row[9]
        assert re.fullmatch(NUMBER + " s", fit) and re.fullmatch(NUMBER + " s", scoring), row
        assert 0 <= float(accuracy) <= 1 and 0 <= float(macro_f1) <= 1, row
        if row[0] == "| teacher":
            continue
        version = row[-1].rstrip(" |")
        # the worker saved the version in the MODEL_DIR of its part
        assert [p for p in work.glob(f"*/store/**/{version}") if (p / "version.json").is_file()], (version, row)
    log = (work / "logs" / "worker-0.log").read_text(encoding="utf-8")
    assert log.count("retrain project") >= 4, log
