"""The backend's own copy of a project's tasks, so that a retrain reads only what changed.

A retrain needs each task's data and annotations, never the predictions Label Studio stores
for it. The mirror keeps them in MODEL_DIR/<project>/mirror.sqlite (shared by the web
process and every worker). Label Studio stays the source of truth: webhooks only mark tasks
to read again (their bodies are not authenticated, so nothing they carry is trusted), and
`sync` brings the mirror up to date at the start of each retrain:

- a full read (Label Studio's JSON export: data and annotations, prediction ids only) on first
  contact, after a label-config change, or when the mirror was marked untrusted;
- otherwise the tasks marked by webhooks plus those Label Studio lists as updated since the last
  sync (annotations bump a task's `updated_at`) whose `updated_at` differs from the copy here,
  read again by id; then the project's counters
  (tasks, annotations, skipped annotations) are compared with the mirror's, and any mismatch (a
  missed event) falls back to a full read.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ml_backend.storage.layout import ModelDirLayout

log = logging.getLogger(__name__)

LS_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"  # Label Studio's Datetime filter format
# re-read what changed slightly before the last sync's newest change: cheap, and it covers a
# task updated while the previous sync was reading
OVERLAP = timedelta(seconds=2)
# the fields of an exported task a retrain reads (al_core.ls_format.task_to_example)
KEPT_FIELDS = ("id", "data", "annotations", "updated_at", "created_at")


@dataclass
class SyncReport:
    mode: str = "incremental"  # or "full"
    reason: str = ""  # why a full read
    reread: int = 0  # tasks read again by id
    removed: int = 0  # tasks gone from Label Studio
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, "reread": self.reread, "removed": self.removed}
        if self.reason:
            out["reason"] = self.reason
        return out


class TaskMirror:
    """One project's tasks (data and annotations) in SQLite, plus the tasks to read again."""

    def __init__(self, path: Path | str, overlap: timedelta = OVERLAP):
        self.path = Path(path)
        self.overlap = overlap
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(
                """
                CREATE TABLE IF NOT EXISTS tasks (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS annotations (id INTEGER PRIMARY KEY, task INTEGER NOT NULL,
                                                        cancelled INTEGER NOT NULL);
                CREATE TABLE IF NOT EXISTS dirty (id INTEGER PRIMARY KEY);
                CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT);
                CREATE TABLE IF NOT EXISTS published (task INTEGER PRIMARY KEY, result TEXT NOT NULL);
                """
            )

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    # --- state ---
    def _get(self, key: str) -> str | None:
        with self._connect() as db:
            row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set(self, db: sqlite3.Connection, **values: str | None) -> None:
        db.executemany("INSERT OR REPLACE INTO state VALUES (?, ?)", list(values.items()))

    def distrust(self, reason: str) -> None:
        """The next sync reads the whole project."""
        with self._connect() as db:
            self._set(db, trusted=None, distrust_reason=reason)

    # --- webhooks (fast: the web process answers Label Studio within a second) ---
    def mark(self, task_ids: Iterable[int]) -> None:
        """These tasks changed (created, annotated, deleted): the next sync reads them again."""
        with self._connect() as db:
            db.executemany("INSERT OR IGNORE INTO dirty VALUES (?)", [(int(t),) for t in task_ids])

    def mark_annotations(self, annotation_ids: Iterable[int]) -> None:
        """Annotations were deleted (Label Studio names only the annotations): their tasks are read
        again; an annotation the mirror does not know makes the next sync a full read."""
        ids = [int(a) for a in annotation_ids]
        with self._connect() as db:
            rows = db.execute(
                f"SELECT id, task FROM annotations WHERE id IN ({','.join('?' * len(ids))})", ids
            ).fetchall() if ids else []
            db.executemany("INSERT OR IGNORE INTO dirty VALUES (?)", [(task,) for _, task in rows])
        if len(rows) < len(ids):
            self.distrust("a deleted annotation the mirror did not hold")

    # --- reading ---
    def tasks(self) -> list[dict[str, Any]]:
        with self._connect() as db:
            return [json.loads(body) for (body,) in db.execute("SELECT body FROM tasks ORDER BY id")]

    def counts(self) -> tuple[int, int, int]:
        """(tasks, annotations not cancelled, cancelled annotations), as Label Studio counts them."""
        with self._connect() as db:
            tasks = db.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
            done, skipped = db.execute(
                "SELECT COALESCE(SUM(1 - cancelled), 0), COALESCE(SUM(cancelled), 0) FROM annotations"
            ).fetchone()
        return int(tasks), int(done), int(skipped)

    def published_results(self, task_ids: Iterable[str] | None = None) -> dict[str, list]:
        """Each task's regions as last published (of `task_ids` only, when given): what a version
        republishes for a task whose score came from the cache, so that it keeps a pre-annotation."""
        with self._connect() as db:
            if task_ids is None:
                rows = db.execute("SELECT task, result FROM published").fetchall()
            else:
                ids, rows = [int(t) for t in task_ids], []
                for start in range(0, len(ids), 500):  # SQLite's bound on one statement's parameters
                    chunk = ids[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    rows += db.execute(f"SELECT task, result FROM published WHERE task IN ({marks})", chunk).fetchall()
            return {str(task): json.loads(result) for task, result in rows}

    def record_published(self, predictions: Iterable[dict]) -> None:
        with self._connect() as db:
            db.executemany(
                "INSERT OR REPLACE INTO published VALUES (?, ?)",
                [(int(p["task"]), json.dumps(p["result"])) for p in predictions if p.get("result")],
            )

    # --- writing what Label Studio said ---
    def _store(self, db: sqlite3.Connection, tasks: list[dict]) -> None:
        ids = [int(t["id"]) for t in tasks]
        self._remove(db, ids, tables=("tasks", "annotations"))
        db.executemany(
            "INSERT INTO tasks VALUES (?, ?)",
            [(int(t["id"]), json.dumps({k: t.get(k) for k in KEPT_FIELDS})) for t in tasks],
        )
        db.executemany(
            "INSERT INTO annotations VALUES (?, ?, ?)",
            [
                (int(a["id"]), int(t["id"]), int(bool(a.get("was_cancelled"))))
                for t in tasks
                for a in t.get("annotations") or []
                if isinstance(a, dict) and a.get("id") is not None
            ],
        )

    @staticmethod
    def _remove(db: sqlite3.Connection, ids: list[int], tables=("tasks", "annotations", "published")) -> None:
        column = {"tasks": "id", "annotations": "task", "published": "task"}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for table in tables:
                db.execute(f"DELETE FROM {table} WHERE {column[table]} IN ({marks})", chunk)

    def replace_all(self, tasks: list[dict], config_hash: str) -> None:
        with self._connect() as db:
            for table in ("tasks", "annotations", "dirty"):
                db.execute(f"DELETE FROM {table}")
            self._store(db, tasks)
            db.execute("DELETE FROM published WHERE task NOT IN (SELECT id FROM tasks)")
            self._set(db, trusted="1", distrust_reason=None, config_hash=config_hash, watermark=_newest(tasks))

    def update(self, asked: list[int], found: list[dict], changed_seen: list[dict]) -> int:
        """Stores the tasks read again by id; those of `asked` that Label Studio no longer has are
        removed (returned: their count). The dirty marks read are cleared."""
        found_ids = {int(t["id"]) for t in found}
        gone = [t for t in asked if t not in found_ids]
        with self._connect() as db:
            self._store(db, found)
            self._remove(db, gone)
            for start in range(0, len(asked), 500):
                chunk = asked[start : start + 500]
                db.execute(f"DELETE FROM dirty WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            watermark = max(filter(None, [self._get("watermark"), _newest(found), _newest(changed_seen)]), default=None)
            self._set(db, watermark=watermark)
        return len(gone)

    def untrusted_reason(self, config_hash: str) -> str | None:
        if self._get("trusted") != "1":
            return self._get("distrust_reason") or "first read of the project"
        if self._get("config_hash") != config_hash:
            return "the label config changed"
        return None

    def dirty(self) -> list[int]:
        with self._connect() as db:
            return [int(t) for (t,) in db.execute("SELECT id FROM dirty")]

    def outdated(self, listed: list[dict]) -> list[int]:
        """The listed tasks (id, `updated_at`) whose copy here is older or missing. The overlap of
        `since` lists again the tasks of the last sync's newest second (after an import, every
        task of it): those already held as they are need no second read."""
        held: dict[int, str | None] = {}
        ids = [int(t["id"]) for t in listed]
        with self._connect() as db:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                held.update(db.execute(
                    f"SELECT id, json_extract(body, '$.updated_at') FROM tasks WHERE id IN ({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall())
        return [
            int(t["id"])
            for t in listed
            if not (t.get("updated_at") and held.get(int(t["id"])) and _parse(held[int(t["id"])]) == _parse(t["updated_at"]))
        ]

    def since(self) -> str:
        """The `updated_at` from which the next sync asks for changed tasks."""
        watermark = self._get("watermark")
        if not watermark:
            return datetime(2000, 1, 1).strftime(LS_TIME)
        return (_parse(watermark) - self.overlap).strftime(LS_TIME)


def task_mirror(settings, project: int | str, create: bool = True) -> TaskMirror | None:
    """A project's mirror, in its MODEL_DIR folder; with `create=False`, None until a retrain has
    made it (a webhook has nothing to mark before)."""
    path = ModelDirLayout(settings.model_dir).mirror_file(project)
    return TaskMirror(path) if create or path.exists() else None


def _parse(value: str) -> datetime:
    """Label Studio's timestamps (ISO 8601, 'Z' or an offset) as naive UTC."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.astimezone(timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed


def _newest(tasks: list[dict]) -> str | None:
    stamps = [_parse(t["updated_at"]) for t in tasks if t.get("updated_at")]
    return max(stamps).strftime(LS_TIME) if stamps else None


def project_counts(project_info: dict) -> tuple[int, int, int] | None:
    """(tasks, annotations not cancelled, skipped annotations) from a Label Studio project."""
    keys = ("task_number", "total_annotations_number", "skipped_annotations_number")
    if not all(isinstance(project_info.get(k), int) for k in keys):
        return None
    return tuple(int(project_info[k]) for k in keys)  # type: ignore[return-value]


def sync(mirror: TaskMirror, gateway, project_id: int, config_hash: str) -> tuple[list[dict], SyncReport]:
    """Brings the mirror up to date with Label Studio and returns the project's tasks.

    The counters are read after the changed tasks; an annotation made between the two reads
    shows as a mismatch, so one more incremental pass runs before a mismatch means a full read.
    """
    report = SyncReport()
    clock = time.perf_counter()
    reason = mirror.untrusted_reason(config_hash)
    passes = 0
    while reason is None:
        passes += 1
        changed = gateway.changed_tasks(project_id, mirror.since())
        asked = sorted(set(mirror.outdated(changed)) | set(mirror.dirty()))
        found = gateway.export_tasks(project_id, asked) if asked else []
        report.removed += mirror.update(asked, found, changed)
        report.reread += len(found)
        expected, held = project_counts(gateway.get_project(project_id)), mirror.counts()
        if expected is None or expected == held:
            break
        if passes == 2:
            reason = f"counts differ (tasks, annotations, skipped: Label Studio {expected}, mirror {held})"
    if reason is not None:
        log.info("project %s: reading every task (%s)", project_id, reason)
        report.mode, report.reason = "full", reason
        tasks = full_read(gateway, project_id)
        mirror.replace_all(tasks, config_hash)
        report.reread = len(tasks)
    report.timings["read_s"] = round(time.perf_counter() - clock, 3)
    return mirror.tasks(), report


def full_read(gateway, project_id: int) -> list[dict]:
    """Every task: its data from the task list (pages, no annotations or predictions), the
    annotations of the annotated ones from the export (a task created meanwhile and already
    annotated comes from the export alone)."""
    tasks = {int(t["id"]): dict(t, annotations=[]) for t in gateway.list_tasks(project_id, with_annotations=False)}
    for task in gateway.export_tasks(project_id):
        tasks[int(task["id"])] = task
    return [tasks[t] for t in sorted(tasks)]
