"""The output files: JSONL (every task), CSV or CoNLL (the training set), Label Studio import JSON.

Everything is written into a hidden folder beside the output folder and renamed into place
at the end, so a failed or killed run leaves no half-written output behind.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from al_core.exceptions import ALError
from al_core.kinds import kind_of
from al_core.ls_format import prediction_result
from al_core.readers import write_conll
from plasm_export.pipeline import ExportResult

FILE_NAMES = {
    "jsonl": "all_tasks.jsonl",
    "csv": "train.csv",
    "conll": "train.conll",
    "ls": "label_studio_import.json",
}


def check_formats(formats: list[str], kind: str) -> list[str]:
    """The formats to write; "all" means every one that fits the task kind. Raises on a misfit."""
    fits = kind_of(kind).formats
    if "all" in formats:
        return list(fits)
    unknown = [f for f in formats if f not in FILE_NAMES]
    if unknown:
        raise ALError(f"unknown output format {unknown[0]!r}; choose from {', '.join(FILE_NAMES)}, all")
    misfit = [f for f in formats if f not in fits]
    if misfit:
        raise ALError(f"format {misfit[0]!r} does not fit a {kind} project; use {', '.join(fits)}")
    return list(dict.fromkeys(formats))


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 8)


def jsonl_text(result: ExportResult) -> str:
    kind = result.task_kind
    lines = []
    for row in result.rows:
        e = row.example
        record: dict = {"id": e.id, "text": e.text, **kind.json_fields(e)}
        record.update(
            source=row.source,
            teacher_confidence=_rounded(row.teacher_confidence),
            filter_score=_rounded(row.filter_score),
            kept=row.kept,
            heldout=row.heldout,
            teacher_model=result.settings.teacher,
            teacher_version=result.teacher_version,
        )
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    return "".join(lines)


def csv_text(result: ExportResult) -> str:
    """The training rows; a multi-label row's classes are joined by "|"."""
    kind = result.task_kind
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "text", "label", "source", "teacher_confidence", "filter_score"])
    for row in result.training_rows:
        writer.writerow(
            [
                row.example.id,
                row.example.text,
                kind.csv_label(row.example),
                row.source,
                "" if row.teacher_confidence is None else f"{row.teacher_confidence:.6f}",
                "" if row.filter_score is None else f"{row.filter_score:.6g}",
            ]
        )
    return buffer.getvalue()


def label_studio_tasks(result: ExportResult) -> list[dict]:
    """Tasks to import into a Label Studio project with the same label config.

    Gold labels come as annotations, pseudo-labels (kept and dropped) as predictions of the
    teacher's version; data carries plasm_* fields to filter on in the Data Manager.
    """
    config = result.project.config
    tasks = []
    for row in result.rows:
        e = row.example
        task = {
            "id": int(e.id) if e.id.isdigit() else e.id,  # Label Studio assigns new ids on import
            "data": {
                config.value_key: e.text,
                "plasm_task_id": e.id,
                "plasm_source": row.source,
                "plasm_kept": row.kept,
                "plasm_filter_score": _rounded(row.filter_score),
            },
        }
        result_regions = prediction_result(e, config)
        if row.source == "gold":
            task["annotations"] = [{"result": result_regions}]
        else:
            task["predictions"] = [
                {
                    "model_version": result.teacher_version,
                    "score": _rounded(row.teacher_confidence),
                    "result": result_regions,
                }
            ]
        tasks.append(task)
    return tasks


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text, encoding="utf-8")


def write_outputs(
    result: ExportResult, out: Path, formats: list[str], report_files: dict[str, str], overwrite: bool = False
) -> list[Path]:
    """Writes the chosen formats and the report files into `out`, all at once."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise ALError(f"{out} already exists; pass --overwrite to replace it")
    writers: dict[str, Callable[[Path], None]] = {
        "jsonl": lambda folder: _write(folder, FILE_NAMES["jsonl"], jsonl_text(result)),
        "csv": lambda folder: _write(folder, FILE_NAMES["csv"], csv_text(result)),
        "conll": lambda folder: write_conll(
            [r.example for r in result.training_rows], folder / FILE_NAMES["conll"]
        ),
        "ls": lambda folder: _write(
            folder, FILE_NAMES["ls"], json.dumps(label_studio_tasks(result), ensure_ascii=False, indent=1)
        ),
    }
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        for fmt in formats:
            writers[fmt](partial)
        for name, text in report_files.items():
            _write(partial, name, text)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            partial.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return sorted(out.iterdir())
