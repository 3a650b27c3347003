"""The installed console scripts on bad input: a message on stderr naming the problem, a
non-zero exit, no traceback, and no output left half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_or_skip

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]

LABELED_EXPORT = [
    {"id": 1, "data": {"text": "good film"}, "annotations": [{"id": 1, "result": [
        {"from_name": "s", "to_name": "text", "type": "choices", "value": {"choices": ["Pos"]}}]}]},
    {"id": 2, "data": {"text": "bad film"}, "annotations": [{"id": 2, "result": [
        {"from_name": "s", "to_name": "text", "type": "choices", "value": {"choices": ["Neg"]}}]}]},
    {"id": 3, "data": {"text": "a film"}},
]

SIMULATION = """name: unknown-model
output_dir: {out}
dataset:
  name: agnews
  pool_split: test
  test_split: null
  test_size: 20
  pool_size: 40
acquisition:
  model: {model}
successors:
- kind: acquisition
seed_set: {{count: 4}}
batch: {{count: 4}}
iterations: 1
seeds: [0]
"""


def files(folder: Path, model: Path) -> dict[str, str]:
    return {
        "export.json": json.dumps(LABELED_EXPORT),
        "bad.json": '[{"id": 1, "data": ',
        "not-a-list.json": '{"id": 1}',
        "no-labels.json": '[{"id": 1, "data": {"text": "a"}}]',
        "binary.json": "\udcff",  # written with surrogateescape: one byte 0xff, not UTF-8
        "bad.yaml": "name: [1,\n",
        "partial.yaml": "name: x\n",
        "unknown-model.yaml": SIMULATION.format(out=folder / "sim-out", model=folder / "no-such-model"),
        "unknown-strategy.yaml": SIMULATION.format(out=folder / "sim-out", model=model).replace(
            "iterations: 1", "iterations: 1\nstrategy: psychic"
        ),
    }


# (id, console script, arguments, extra environment, words the error message must hold)
CASES = [
    ("backend-port-text", "ml-backend", ["--port", "http"], {}, "AL_PORT"),
    ("backend-port-zero", "ml-backend", ["--port", "0"], {}, "AL_PORT"),
    ("backend-env-port", "ml-backend", [], {"AL_PORT": "99999"}, "AL_PORT"),
    ("backend-strategy", "ml-backend", ["--strategy", "psychic"], {}, "unknown strategy 'psychic'"),
    ("backend-gamma", "ml-backend", [], {"AL_UPS_GAMMA": "7"}, "AL_UPS_GAMMA"),
    ("backend-log-level", "ml-backend", [], {"LOG_LEVEL": "LOUD"}, "unknown log level"),
    ("backend-model-dir-file", "ml-backend", ["--model-dir", "export.json"], {}, "MODEL_DIR"),
    ("backend-model-dir-proc", "ml-backend", [], {"MODEL_DIR": "/proc/al-models"}, "MODEL_DIR"),
    ("backend-auth-half", "ml-backend", [], {"AL_BASIC_AUTH_USER": "ls"}, "AL_BASIC_AUTH_PASSWORD"),
    ("backend-request-size", "ml-backend", [], {"AL_MAX_REQUEST_MB": "-1"}, "AL_MAX_REQUEST_MB"),
    ("backend-unknown-option", "ml-backend", ["--colour", "red"], {}, "unrecognized arguments"),
    ("export-missing-file", "plasm-export", ["--export", "nope.json", "--teacher", "m", "--out", "out"], {}, "nope.json"),
    ("export-bad-json", "plasm-export", ["--export", "bad.json", "--teacher", "m", "--out", "out"], {}, "not valid JSON"),
    ("export-not-a-list", "plasm-export", ["--export", "not-a-list.json", "--teacher", "m", "--out", "out"], {}, "list"),
    ("export-not-utf8", "plasm-export", ["--export", "binary.json", "--teacher", "m", "--out", "out"], {}, "UTF-8"),
    ("export-no-labels", "plasm-export", ["--export", "no-labels.json", "--teacher", "m", "--out", "out"], {}, "label config"),
    ("export-unknown-teacher", "plasm-export", ["--export", "export.json", "--teacher", "./no-such-model", "--out", "out", "--no-progress"], {}, "no-such-model"),
    ("export-unknown-format", "plasm-export", ["--export", "export.json", "--teacher", "m", "--out", "out", "--format", "pdf"], {}, "pdf"),
    ("export-drop-fraction", "plasm-export", ["--export", "export.json", "--teacher", "m", "--out", "out", "--drop-fraction", "3"], {}, "--drop-fraction"),
    ("export-no-source", "plasm-export", ["--teacher", "m", "--out", "out"], {}, "--export"),
    ("export-unknown-filter", "plasm-export", ["--export", "export.json", "--teacher", "m", "--out", "out", "--filter", "magic"], {}, "magic"),
    ("simulate-missing-config", "al-simulate", ["run", "nope.yaml"], {}, "nope.yaml"),
    ("simulate-bad-yaml", "al-simulate", ["run", "bad.yaml"], {}, "bad.yaml"),
    ("simulate-partial-config", "al-simulate", ["run", "partial.yaml"], {}, "iterations"),
    ("simulate-unknown-model", "al-simulate", ["run", "unknown-model.yaml", "--no-progress"], {}, "no-such-model"),
    ("simulate-unknown-strategy", "al-simulate", ["run", "unknown-strategy.yaml", "--no-progress"], {}, "psychic"),
    ("simulate-report-nothing", "al-simulate", ["report", "nowhere", "--out", "out"], {}, "nowhere"),
    ("simulate-no-command", "al-simulate", [], {}, "required"),
]


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_cli_refuses_bad_input_clearly(tmp_path, tiny_model_dir, case):
    _, script, args, extra_env, words = case
    executable = BIN / script
    require_or_skip(executable.exists(), f"{executable} is not installed (pip install -e . --no-deps)")
    for name, text in files(tmp_path, tiny_model_dir).items():
        (tmp_path / name).write_bytes(text.encode("utf-8", "surrogateescape"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AL_") and k not in ("LOG_LEVEL", "MODEL_DIR")}
    env.update(extra_env, AL_SHARED_DATA=str(ROOT.parent / "shared" / "data"), OMP_NUM_THREADS="1")
    env["MODEL_DIR"] = env.get("MODEL_DIR", str(tmp_path / "store"))
    before = sorted(p.name for p in tmp_path.iterdir())

    done = subprocess.run(
        [str(executable), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )

    assert done.returncode not in (0, None), done.stderr
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr
    assert words.lower() in done.stderr.lower(), done.stderr
    assert any(line.startswith(f"{script}:") for line in done.stderr.splitlines()), done.stderr
    # nothing half-written: no output folder; a work folder, if any, holds no files
    assert not (tmp_path / "out").exists() and not (tmp_path / "sim-out").exists()
    work = tmp_path / "out.work"
    assert not work.exists() or not any(p.is_file() for p in work.rglob("*"))
    after = sorted(p.name for p in tmp_path.iterdir() if p.name not in ("out.work", "store"))
    assert after == before
