"""The retrain history: one JSON line per retrain in MODEL_DIR/<project>/history.jsonl.

Model versions are pruned to the last AL_KEEP_VERSIONS, so the campaign page cannot read old
versions' folders; each retrain appends a small record instead (written by the retrain job after
publishing, read by the web process: MODEL_DIR is shared by both). Retrains of a project run one
at a time (the run lock), so there is one writer per file; each record is written with a single
append, and a reader skips a line it cannot parse (a write cut short).

A view reads at most the last `limit` records (default 500), from the end of the file, so its
work does not grow with the length of the campaign.

Record fields: version, iteration, started_at, created_at, finished_at, kind, strategy,
acquisition_mode, classes (class names or entity types), n_labeled, n_pool, n_scored,
n_published, label_counts (class -> labeled tasks, or entity type -> labeled spans), quality
(the version meta's estimate, or None: metric and value, the headline; method, n; figures, every
measure of the kind; per_label, label -> precision, recall, f1, support; worst, the label of
lowest F1; audit, the estimate on the labeled audit tasks with its interval, al_core.acquisition.AuditEstimate),
audit (the audit sample's share, and the audit tasks served in the window and labeled; records
of older versions lack it), predicted_counts (label -> scored pool tasks the version predicts it for),
n_predicted (the scored pool tasks counted; records of older versions lack these), timings (the summary's, plus stability_s), publish
({"ok": bool, ...}), stability ({"labels": [...], "predictions": {task id: label index or
list of word-tag indices}, "kappa": vs the previous record or None, "n_compared": tasks}).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from cachetools import LRUCache

from al_core.ls_format import label_counts
from al_core.stopping import agreement, stability_sample
from ml_backend.storage.layout import ModelDirLayout

log = logging.getLogger(__name__)

READ_LIMIT = 500
MAX_WORDS_PER_TASK = 200  # keeps a tagging record small whatever the length of a text
_BLOCK = 1 << 16


def history_path(model_dir: str | Path, project: int | str) -> Path:
    return ModelDirLayout(model_dir).history_file(project)


def append_record(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)  # one write: a concurrent reader sees the whole line or none of it
    finally:
        os.close(fd)


def read_last(path: Path, limit: int = READ_LIMIT) -> list[dict]:
    """The last `limit` records, oldest first, reading the file backwards block by block."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return []
    with handle:
        handle.seek(0, os.SEEK_END)
        position = handle.tell()
        data = b""
        while position > 0 and data.count(b"\n") <= limit:
            step = min(_BLOCK, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    lines = data.split(b"\n")
    if position > 0:
        lines = lines[1:]  # the first piece may be the tail of a longer line
    records = []
    for line in lines[-(limit + 1) :]:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash mid-write
        if isinstance(record, dict):
            records.append(record)
    return records[-limit:]


class HistoryCache:
    """Parsed histories by project, reread only when the file changed (size or mtime); the least
    recently viewed of more than `projects` are dropped."""

    def __init__(self, model_dir: str | Path, limit: int = READ_LIMIT, projects: int = 64):
        self.model_dir = model_dir
        self.limit = limit
        self.projects = projects
        self._lock = threading.Lock()  # views run in several threads
        self._cache: LRUCache[str, tuple[tuple, list[dict]]] = LRUCache(maxsize=projects)

    def key(self, project: str) -> tuple:
        try:
            stat = history_path(self.model_dir, project).stat()
        except FileNotFoundError:
            return (0, 0)
        return (stat.st_size, stat.st_mtime_ns)

    def records(self, project: str) -> tuple[tuple, list[dict]]:
        """(file key, last records): the key changes whenever the history does."""
        key = self.key(project)
        with self._lock:
            cached = self._cache.get(project)
        if cached and cached[0] == key:
            return cached
        records = read_last(history_path(self.model_dir, project), self.limit) if key != (0, 0) else []
        with self._lock:
            self._cache[project] = (key, records)
        return key, records


# --- writing a record (the retrain job) ------------------------------------------------------


def sample_predictions(model, pool, probs: dict, size: int) -> dict[str, Any]:
    """Label indices the model predicts on the stability sample: reuses this round's fresh
    probabilities, predicts the rest of the sample (a few hundred tasks at most)."""
    ids = set(stability_sample([e.id for e in pool], size))
    sample = [e for e in pool if e.id in ids]
    missing = [e for e in sample if e.id not in probs]
    found = dict(probs)
    if missing:
        found.update(zip([e.id for e in missing], model.predict_proba(missing), strict=True))
    out: dict[str, Any] = {}
    for example in sample:
        argmax = np.asarray(found[example.id]).argmax(axis=-1)
        out[example.id] = int(argmax) if argmax.ndim == 0 else [int(i) for i in argmax[:MAX_WORDS_PER_TASK]]
    return out


def _named(stability: dict | None) -> dict:
    """A record's sample predictions with label names instead of indices."""
    if not stability:
        return {}
    labels = stability.get("labels") or []

    def name(i):
        return labels[i] if isinstance(i, int) and 0 <= i < len(labels) else str(i)

    return {
        task: (name(p) if isinstance(p, int) else [name(i) for i in p])
        for task, p in (stability.get("predictions") or {}).items()
    }


def build_record(settings, summary: dict, meta: dict, model, labeled, pool, probs: dict, config) -> dict:
    path = history_path(settings.model_dir, meta["project"])
    clock = time.perf_counter()
    stability = None
    if settings.stability_sample and pool and model is not None:  # a cold-start version has no model
        stability = {
            "labels": list(meta["labels"]),
            "predictions": sample_predictions(model, pool, probs, settings.stability_sample),
        }
        previous = read_last(path, 1)
        if previous and previous[-1].get("stability"):
            value, compared = agreement(_named(previous[-1]["stability"]), _named(stability))
            stability.update(kappa=None if np.isnan(value) else round(value, 6), n_compared=compared)
        else:
            stability.update(kappa=None, n_compared=0)
    timings = dict(summary.get("timings") or {}, stability_s=round(time.perf_counter() - clock, 3))
    publish = summary.get("publish")
    return {
        "version": summary["version"],
        "iteration": summary["iteration"],
        "started_at": summary.get("started_at"),
        "created_at": meta.get("created_at"),
        "finished_at": time.time(),
        "kind": config.kind,
        "strategy": meta.get("strategy"),
        "acquisition_mode": meta.get("acquisition_mode"),
        "classes": list(config.labels),
        "n_labeled": summary.get("n_labeled"),
        "n_pool": summary.get("n_pool"),
        "n_scored": summary.get("n_scored"),
        "n_published": summary.get("n_published"),
        "label_counts": meta.get("label_counts") or label_counts(labeled, config),
        "quality": meta.get("quality"),
        "audit": meta.get("audit"),
        "predicted_counts": summary.get("predicted_counts"),
        "n_predicted": summary.get("n_predicted"),
        "timings": timings,
        "publish": publish if isinstance(publish, dict) else {"ok": True},
        "stability": stability,
    }


def record_retrain(settings, summary: dict, meta: dict, model, labeled, pool, probs: dict, config) -> None:
    """Appends the retrain's record; called by the retrain job once its version is published.
    Never fails the retrain: the version is already serving, the page is secondary."""
    try:
        record = build_record(settings, summary, meta, model, labeled, pool, probs, config)
        append_record(history_path(settings.model_dir, meta["project"]), record)
    except Exception:
        log.exception("project %s: could not write the retrain history", meta.get("project"))
