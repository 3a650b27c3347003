"""Where a frozen encoder's vectors are kept between retrains, by a key of encoder, length limit and text.

Every key starts with its encoder's prefix (`encoder_prefix`), so that the vectors of an encoder
that is deleted (a pruned fine-tune) can be deleted with it.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np


def encoder_prefix(model_name_or_path: str | Path) -> str:
    """The start of every key of one encoder's vectors (its folder or id as the model names it)."""
    return hashlib.sha1(str(model_name_or_path).encode("utf-8", "surrogatepass")).hexdigest()[:16] + ":"


def _after(prefix: str) -> str:
    """The smallest string above every key that starts with `prefix` (which ends with ':')."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class EmbeddingCache(Protocol):
    """Vectors by key: a (hidden,) array per text, or an (n_words, hidden) array per sentence."""

    def get_many(self, keys: Iterable[str]) -> dict[str, np.ndarray]: ...

    def set_many(self, entries: Mapping[str, np.ndarray]) -> None: ...

    def present(self, keys: Iterable[str]) -> set[str]:
        """The keys that have a vector (without reading the vectors)."""
        ...

    def delete_many(self, keys: Iterable[str]) -> None: ...

    def delete_prefix(self, prefix: str) -> int:
        """Deletes every vector whose key starts with `prefix` (an encoder's); how many there were."""
        ...


class MemoryEmbeddingCache:
    """An EmbeddingCache in a dict (the simulator, tests)."""

    def __init__(self) -> None:
        self._vectors: dict[str, np.ndarray] = {}

    def get_many(self, keys):
        return {k: self._vectors[k] for k in keys if k in self._vectors}

    def set_many(self, entries):
        self._vectors.update(entries)

    def present(self, keys):
        return {k for k in keys if k in self._vectors}

    def delete_many(self, keys):
        for k in keys:
            self._vectors.pop(k, None)

    def delete_prefix(self, prefix):
        doomed = [k for k in self._vectors if k.startswith(prefix)]
        self.delete_many(doomed)
        return len(doomed)

    def __len__(self) -> int:
        return len(self._vectors)


class SqliteEmbeddingCache:
    """An EmbeddingCache in one SQLite file (float16), shared by the processes that open it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._local = threading.local()  # a connection per thread (sqlite3's rule)

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:  # the file is made on first use, so a model that never embeds leaves none
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = self._local.db = sqlite3.connect(self.path, timeout=60)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, shape TEXT, data BLOB)")
        return db

    def _select(self, columns: str, keys):
        """The rows of `keys`, 500 keys per query (below SQLite's limit on bound parameters)."""
        keys = list(keys)
        db = self._connect()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            yield from db.execute(f"SELECT {columns} FROM vectors WHERE key IN ({marks})", chunk)

    def get_many(self, keys):
        out: dict[str, np.ndarray] = {}
        for key, shape, data in self._select("key, shape, data", keys):
            dims = tuple(int(d) for d in shape.split("x"))
            out[key] = np.frombuffer(data, dtype=np.float16).reshape(dims).astype(np.float32)
        return out

    def present(self, keys):
        return {key for (key,) in self._select("key", keys)}

    def delete_many(self, keys):
        keys = list(keys)
        with self._connect() as db:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                db.execute(f"DELETE FROM vectors WHERE key IN ({','.join('?' * len(chunk))})", chunk)

    def delete_prefix(self, prefix):
        with self._connect() as db:  # a range over the primary key's index
            return db.execute("DELETE FROM vectors WHERE key >= ? AND key < ?", (prefix, _after(prefix))).rowcount

    def set_many(self, entries):
        rows = [
            (key, "x".join(str(d) for d in value.shape), np.asarray(value, dtype=np.float16).tobytes())
            for key, value in entries.items()
        ]
        with self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", rows)

    def __len__(self) -> int:
        return int(self._connect().execute("SELECT COUNT(*) FROM vectors").fetchone()[0])
