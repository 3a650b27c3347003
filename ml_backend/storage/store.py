"""Model versions on disk and the UPS score caches (Redis, or a file for the embedded mode).

A version is written into a temporary folder beside versions/ (where: ml_backend.storage.layout),
renamed into place, and only then named in current.json (itself replaced atomically), so a
reader never sees half a model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from al_core.ups import CachedScore
from ml_backend.storage.layout import ENCODER_RE, VERSION_RE, ModelDirLayout, check_project

UNTRAINED = "untrained"
# The acquisition mode of a version without a model: the cold-start order published before the
# project has the labels to train on (ml_backend.jobs.retrain_steps.publish_cold_start).
COLD_START = "cold_start"


def has_model(meta: dict | None) -> bool:
    """Whether a version's metadata describes a saved model (a cold-start version has none)."""
    return bool(meta) and meta.get("acquisition_mode") != COLD_START


def version_name(project: int | str, number: int, now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
    return f"{check_project(project)}-v{number}-{stamp}"


def version_number(project: int | str, name: str) -> int | None:
    """The number of a version this backend named for `project` (`version_name`), else None."""
    match = re.fullmatch(rf"{check_project(project)}-v(\d+)-\d{{8}}T\d{{6}}Z", str(name))
    return int(match[1]) if match else None


def _write_json_atomic(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _named_folders(folder: Path, pattern: re.Pattern, order: str) -> list[str]:
    """The sub-folders of `folder` whose names match `pattern`, by the number in its group `order`."""
    if not folder.is_dir():
        return []
    names = [p.name for p in folder.iterdir() if p.is_dir() and pattern.match(p.name)]
    return sorted(names, key=lambda n: int(pattern.match(n)[order]))


class VersionStore:
    """Model versions of every project, promoted atomically, the last `keep` of them kept."""

    def __init__(self, model_dir: str | Path, keep: int = 3):
        self.layout = ModelDirLayout(model_dir)
        self.keep = keep
        self._current_cache: dict[str, tuple[float, dict]] = {}
        self._lock = threading.Lock()

    def version_dir(self, project: int | str, version: str) -> Path:
        return self.layout.version_dir(project, version)

    # --- reading ---
    def current(self, project: int | str) -> dict | None:
        """{"version", "iteration"} of the promoted version, or None before the first one.

        Cheap enough for /setup: a stat, and a small read only when the file changed.
        """
        path = self.layout.current_file(project)
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        key = str(path)
        cached = self._current_cache.get(key)
        if cached and cached[0] == mtime:
            return cached[1]
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        self._current_cache[key] = (mtime, data)
        return data

    def current_version(self, project: int | str) -> str | None:
        current = self.current(project)
        return current["version"] if current else None

    def versions(self, project: int | str) -> list[str]:
        """Versions on disk, oldest first."""
        return _named_folders(self.layout.versions_dir(project), VERSION_RE, "number")

    def projects(self) -> list[str]:
        return self.layout.projects()

    def meta(self, project: int | str, version: str) -> dict:
        with open(self.version_dir(project, version) / "version.json", encoding="utf-8") as handle:
            return json.load(handle)

    def _meta_or_empty(self, project: int | str, version: str) -> dict:
        try:
            return self.meta(project, version)
        except (OSError, ValueError):
            return {}

    def next_iteration(self, project: int | str) -> int:
        """Number of versions trained so far for the project (0 before the first)."""
        current = self.current(project)
        return int(current["iteration"]) + 1 if current else 0

    # --- writing ---
    def save_version(
        self, project: int | str, version: str, iteration: int, write: Callable[[Path], None], meta: dict
    ) -> Path:
        """Write a version aside with `write(folder)`, rename it into place, promote it, prune old ones."""
        final = self.version_dir(project, version)
        self._write_aside(project, final, write, "version.json", dict(meta, version=version, iteration=iteration))
        with self._lock:
            _write_json_atomic(self.layout.current_file(project), {"version": version, "iteration": iteration})
        self.prune(project)
        return final

    def prune(self, project: int | str) -> list[str]:
        """Delete all but the last `keep` versions (never the promoted one, nor the fine-tuned version
        whose encoder a kept one reads: its `encoder`, al_core.models.refresh_model), and the encoders
        of the background lane that no kept version reads but the two newest (the newest is the one
        the next retrain reads; the one before, what a retrain that started before it reads). The
        vectors a deleted folder's encoder handed over to the embedding cache go with it."""
        current = self.current_version(project)
        names = self.versions(project)
        kept = names[max(0, len(names) - self.keep) :] + [current]
        encoders = [self._meta_or_empty(project, name).get("encoder") or {} for name in kept if name]
        needed = {e.get("version") for e in encoders}
        removed, folders = [], []
        for name in names[: max(0, len(names) - self.keep)]:
            if name != current and name not in needed:
                folders.append(self.version_dir(project, name))
                removed.append(name)
        tuned = self.encoders(project)
        read = {e.get("encoder") for e in encoders} | set(tuned[-2:])
        for name in tuned:
            if name not in read:
                folders.append(self.layout.encoder_dir(project, name))
                removed.append(name)
        cache_file, cache = self.layout.embeddings_file(project), None
        if folders and cache_file.exists():
            from al_core.models.embedding_cache import SqliteEmbeddingCache, encoder_prefix

            cache = SqliteEmbeddingCache(cache_file)
        for folder in folders:
            if cache is not None:  # keyed by the absolute folder, as retrain_steps.encoder_folder names it
                cache.delete_prefix(encoder_prefix(folder.resolve()))
            shutil.rmtree(folder, ignore_errors=True)
        return removed

    # --- the background lane's encoders ---
    def encoders(self, project: int | str) -> list[str]:
        """The encoders the background lane took up, oldest first."""
        return _named_folders(self.layout.encoders_dir(project), ENCODER_RE, "stamp")

    def encoder_meta(self, project: int | str, name: str) -> dict:
        with open(self.layout.encoder_dir(project, name) / "encoder.json", encoding="utf-8") as handle:
            return json.load(handle)

    def save_encoder(self, project: int | str, name: str, write: Callable[[Path], None], meta: dict) -> Path:
        """Write a fine-tuned encoder aside with `write(folder)` and rename it into place (nothing is
        promoted: the next retrain reads it), then prune."""
        final = self.layout.encoder_dir(project, name)
        self._write_aside(project, final, write, "encoder.json", dict(meta, encoder=name))
        self.prune(project)
        return final

    def _write_aside(self, project, final: Path, write: Callable[[Path], None], meta_file: str, meta: dict) -> None:
        """`write(folder)` and `meta_file` in a staging folder of the project, renamed to `final` in one step."""
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.layout.project_dir(project), prefix=".staging-"))
        try:
            write(staging)
            _write_json_atomic(staging / meta_file, meta)
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


# --- score caches (al_core.ups.ScoreCache) ---------------------------------------------------


def _encode(entry: CachedScore) -> str:
    return json.dumps([float(entry.score), entry.model_version, int(entry.iteration)])


def _decode(raw: str | bytes) -> CachedScore:
    score, version, iteration = json.loads(raw)
    return CachedScore(score=float(score), model_version=version, iteration=int(iteration))


def _chunks(items: list, size: int = 500) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class RedisScoreCache:
    """One Redis hash per project: task id -> [score, model_version, iteration]."""

    def __init__(self, redis, project: int | str, prefix: str = "al"):
        self.redis = redis
        self.key = f"{prefix}:{check_project(project)}:scores"

    def get_many(self, ids: Iterable[str]) -> dict[str, CachedScore]:
        ids = [str(i) for i in ids]
        found: dict[str, CachedScore] = {}
        for chunk in _chunks(ids, 5000):
            for task_id, raw in zip(chunk, self.redis.hmget(self.key, chunk)):
                if raw is not None:
                    found[task_id] = _decode(raw)
        return found

    def set_many(self, entries: Mapping[str, CachedScore]) -> None:
        items = [(str(k), _encode(v)) for k, v in entries.items()]
        pipe = self.redis.pipeline(transaction=False)
        for chunk in _chunks(items, 5000):
            pipe.hset(self.key, mapping=dict(chunk))
        pipe.execute()

    def delete_many(self, ids: Iterable[str]) -> None:
        ids = [str(i) for i in ids]
        for chunk in _chunks(ids, 5000):
            self.redis.hdel(self.key, *chunk)

    def all(self) -> dict[str, CachedScore]:
        return {
            (k.decode() if isinstance(k, bytes) else k): _decode(v)
            for k, v in self.redis.hgetall(self.key).items()
        }


class FileScoreCache:
    """A SQLite file per project, for the embedded mode: survives a restart, safe across threads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS scores (task_id TEXT PRIMARY KEY, score REAL NOT NULL, "
                "model_version TEXT NOT NULL, iteration INTEGER NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def get_many(self, ids: Iterable[str]) -> dict[str, CachedScore]:
        ids = [str(i) for i in ids]
        found: dict[str, CachedScore] = {}
        with self._connect() as db:
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT task_id, score, model_version, iteration FROM scores WHERE task_id IN ({marks})",
                    chunk,
                )
                for task_id, score, version, iteration in rows:
                    found[task_id] = CachedScore(score=score, model_version=version, iteration=iteration)
        return found

    def set_many(self, entries: Mapping[str, CachedScore]) -> None:
        rows = [(str(k), float(v.score), v.model_version, int(v.iteration)) for k, v in entries.items()]
        with self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)", rows)

    def delete_many(self, ids: Iterable[str]) -> None:
        with self._connect() as db:
            db.executemany("DELETE FROM scores WHERE task_id = ?", [(str(i),) for i in ids])

    def all(self) -> dict[str, CachedScore]:
        with self._connect() as db:
            rows = db.execute("SELECT task_id, score, model_version, iteration FROM scores").fetchall()
        return {t: CachedScore(score=s, model_version=v, iteration=i) for t, s, v, i in rows}


def score_cache(settings, project: int | str, redis=None):
    """The cache for a project: Redis-backed when a Redis connection is given, else the file cache."""
    if redis is not None:
        return RedisScoreCache(redis, project)
    return FileScoreCache(ModelDirLayout(settings.model_dir).scores_file(project))


def embedding_cache(settings, project: int | str | None):
    """The frozen-encoder vectors of a project's tasks, in one file beside its versions (shared
    by the web process and every worker, like the rest of MODEL_DIR)."""
    from al_core.models.embedding_cache import MemoryEmbeddingCache, SqliteEmbeddingCache

    if project is None:
        return MemoryEmbeddingCache()
    return SqliteEmbeddingCache(ModelDirLayout(settings.model_dir).embeddings_file(project))
