"""Frozen-encoder acquisition models: the pretrained encoder embeds each task once, a light head learns.

While labels are few, fine-tuning a transformer on a CPU costs tens of seconds per retrain
and still learns little; a logistic regression on the pretrained encoder's vectors learns
about as much for classification and costs milliseconds (BENCHMARKS.md, learning curves).

- `FrozenClassifier`: the mean of the last hidden layer over the text's sub-tokens, a
  multinomial logistic regression over the labels seen so far.
- `FrozenMultiLabel`: the same vectors, one binary logistic regression per class.
- `FrozenTagger`: the last hidden layer at each word's first sub-token, one logistic
  regression over the words of the labeled sentences (one tag per word).

Vectors are kept in an `EmbeddingCache` under a key made of the encoder, the length limit
and the task's text, so a retrain embeds only the tasks that are new or whose text changed,
and scoring the whole pool is one matrix product (`scores_whole_pool`). A saved version is
the head alone (a few KB) plus the name of the encoder it reads.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
from transformers import AutoModel

from al_core.data import Example
from al_core.exceptions import ModelLoadError
from al_core.heads import HEAD_C, BinaryHeads, LinearHead
from al_core.inference import run_batched
from al_core.kinds import kind_of
from al_core.models import (
    ModelOutputs,
    TransformerClassifier,
    TransformerMultiLabel,
    TransformerTagger,
    mean_pool,
    multi_hot,
    read_model_meta,
)
from al_core.training import TrainingConfig

HEAD_FILE = "frozen_head.npz"
# Tasks tokenized and embedded at a time (and then cached): the tokenized features of a
# 100,000-task pool at once would take gigabytes.
EMBED_CHUNK = 2048


class EmbeddingCache(Protocol):
    """Vectors by key: a (hidden,) array per text, or an (n_words, hidden) array per sentence."""

    def get_many(self, keys: Iterable[str]) -> dict[str, np.ndarray]: ...

    def set_many(self, entries: Mapping[str, np.ndarray]) -> None: ...

    def present(self, keys: Iterable[str]) -> set[str]:
        """The keys that have a vector (without reading the vectors)."""
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

    def set_many(self, entries):
        rows = [
            (key, "x".join(str(d) for d in value.shape), np.asarray(value, dtype=np.float16).tobytes())
            for key, value in entries.items()
        ]
        with self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", rows)

    def __len__(self) -> int:
        return int(self._connect().execute("SELECT COUNT(*) FROM vectors").fetchone()[0])


class _FrozenEncoderModel:
    """What both frozen kinds share; mixed in before the transformer class of their kind, whose
    tokenization (`_encode`, the text cut) they reuse."""

    mode = "frozen"
    scores_whole_pool = True
    _auto_class = AutoModel
    _head_class: type = LinearHead

    def __init__(
        self,
        model_name_or_path: str | Path,
        labels: list[str],
        config: TrainingConfig | None = None,
        embedding_cache: EmbeddingCache | None = None,
        head_c: float = HEAD_C,
    ):
        super().__init__(model_name_or_path, labels, config)
        self.cache = embedding_cache if embedding_cache is not None else MemoryEmbeddingCache()
        self.head_c = head_c
        self.head_: LinearHead | BinaryHeads | None = None
        self.rows_embedded_ = 0  # tasks the encoder ran on (the rest came from the cache)

    # -- vectors -------------------------------------------------------------------------
    def _require_encoder(self):
        if self.model_ is None:
            self._load(self.model_name_or_path, fresh_head=False)
        return self.model_

    def _key(self, example: Example) -> str:
        identity = f"{self.model_name_or_path}\x00{self.config.max_length}\x00{self.kind}\x00{self._content(example)}"
        return hashlib.sha1(identity.encode("utf-8", "surrogatepass")).hexdigest()

    def vectors(self, examples: list[Example]) -> list[np.ndarray]:
        """Each example's vector(s): from the cache, else embedded now and cached."""
        keys = [self._key(e) for e in examples]
        found = self.cache.get_many(list(dict.fromkeys(keys)))
        missing: dict[str, Example] = {}
        for key, example in zip(keys, examples, strict=True):
            if key not in found and key not in missing:
                missing[key] = example
        pending = list(missing.items())
        for start in range(0, len(pending), EMBED_CHUNK):  # tokenized features of one chunk at a time
            part = dict(pending[start : start + EMBED_CHUNK])
            fresh = dict(zip(part, self._embed(list(part.values())), strict=True))
            self.cache.set_many(fresh)
            found.update(fresh)
        return [found[k] for k in keys]

    def needs_forward(self, examples: list[Example]) -> list[Example]:
        """The examples the encoder has not embedded yet (one per distinct content)."""
        keys: dict[str, Example] = {}
        for example in examples:
            keys.setdefault(self._key(example), example)
        present = self.cache.present(list(keys))
        return [e for k, e in keys.items() if k not in present]

    def _embed(self, examples: list[Example]) -> list[np.ndarray]:
        encoder = self._require_encoder()
        features = self._encode(examples, with_labels=False)

        def per_batch(outputs, batch, indices):
            hidden = outputs.last_hidden_state.float()
            return self._pool_batch(hidden, batch["attention_mask"], [features[i] for i in indices])

        rows = run_batched(
            encoder, features, self.config.eval_batch_size, self.tokenizer_.pad_token_id, self.device_,
            per_batch, use_amp=self.config.mixed_precision,
        )
        self.rows_embedded_ += len(examples)
        return rows

    def _pool_batch(self, hidden, mask, features) -> list[np.ndarray]:
        """One vector (classification) or matrix (tagging) per row of a batch."""
        raise NotImplementedError

    # -- head ----------------------------------------------------------------------------
    def fit(self, examples: list[Example], on_checkpoint=None):
        """Trains the head on the labeled examples' vectors (the encoder stays as it is)."""
        if not examples:
            raise ValueError("no labeled examples to train on")
        vectors, targets = self._rows(examples, self.vectors(examples))
        self.head_ = self._head_class.fit(vectors, targets, self.head_c, self.config.seed)
        return self

    def cross_validated_predictions(self, examples: list[Example], folds: int) -> list:
        """Out-of-fold predictions (labels, or tag lists) for every example, from `folds` heads."""
        from sklearn.model_selection import KFold

        vectors = self.vectors(examples)
        predictions: list = [None] * len(examples)
        splitter = KFold(n_splits=folds, shuffle=True, random_state=self.config.seed)
        for train, held in splitter.split(np.arange(len(examples))):
            rows, targets = self._rows([examples[i] for i in train], [vectors[i] for i in train])
            head = self._head_class.fit(rows, targets, self.head_c, self.config.seed)
            for i in held:
                predictions[i] = self._decode(self._probs_of(vectors[i], head))
        return predictions

    def infer(self, examples: list[Example], probs: bool = True, embeddings: bool = False) -> ModelOutputs:
        if self.head_ is None:
            from al_core.exceptions import NotFittedError

            raise NotFittedError(f"{type(self).__name__} is used before fit() or load()")
        out = ModelOutputs(n=len(examples))
        vectors = self.vectors(examples) if examples else []
        if probs:
            out.probs = self._batch_probs(vectors)
        if embeddings:
            out.embeddings = np.stack([self._summary(v) for v in vectors]) if vectors else np.zeros((0, 0))
        return out

    # -- persistence ---------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        if self.head_ is None:
            raise ValueError("nothing to save: the head is not trained")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / HEAD_FILE, classes=self.head_.classes, coef=self.head_.coef, intercept=self.head_.intercept)
        self._write_meta(folder, mode=self.mode, head_c=self.head_c)
        return folder

    @classmethod
    def load(cls, folder: str | Path, config: TrainingConfig | None = None, embedding_cache=None):
        meta = read_model_meta(folder)
        if meta["kind"] != cls.kind or meta.get("mode") != cls.mode:
            raise ModelLoadError(f"{folder} holds a {meta['kind']} {meta.get('mode', 'finetune')} model")
        config = config or TrainingConfig(**meta.get("training", {}))
        model = cls(meta["base_model"], meta["labels"], config, embedding_cache, meta.get("head_c", HEAD_C))
        try:
            with np.load(Path(folder) / HEAD_FILE) as head:
                model.head_ = cls._head_class(head["classes"], head["coef"], head["intercept"])
        except (OSError, KeyError, ValueError) as error:
            raise ModelLoadError(f"cannot read the head in {folder}: {error}") from error
        model._require_encoder()  # a loaded version serves new tasks, which need the encoder
        return model


class FrozenClassifier(_FrozenEncoderModel, TransformerClassifier):
    """Mean-pooled encoder vectors and a logistic regression: one label per text."""

    def _content(self, example: Example) -> str:
        return example.text

    def _pool_batch(self, hidden, mask, features) -> list[np.ndarray]:
        # One array per batch, its rows handed out as views: a small array per text, allocated
        # between the batches' large activations, fragmented the heap (about 200 KB kept per text,
        # 23 GB on a 100,000-task pool)
        return list(mean_pool(hidden, mask).cpu().numpy())

    def _rows(self, examples, vectors):
        for example in examples:
            if example.label not in self.label_to_id:
                raise ValueError(f"example {example.id}: label {example.label!r} is not one of {self.labels}")
        return np.stack(vectors), np.array([self.label_to_id[e.label] for e in examples])

    def _probs_of(self, vector, head):
        return head.probs(vector[None, :], len(self.labels))[0]

    def _batch_probs(self, vectors):
        if not vectors:
            return self._empty_probs()
        return self.head_.probs(np.stack(vectors), len(self.labels))

    def _decode(self, probs):
        return kind_of(self.kind).decode(probs, self.labels)

    def _summary(self, vector):
        return vector


class FrozenMultiLabel(FrozenClassifier, TransformerMultiLabel):
    """Mean-pooled encoder vectors and a binary logistic regression per class: a set of labels per text."""

    _head_class = BinaryHeads

    def _rows(self, examples, vectors):
        return np.stack(vectors), np.stack([multi_hot(e, self.labels, self.label_to_id) for e in examples])


class FrozenTagger(_FrozenEncoderModel, TransformerTagger):
    """Encoder vectors at each word's first sub-token and a logistic regression: one tag per word.

    A word with no sub-token (cut by max_length) gets probability 1 on "O", as in
    TransformerTagger; its row is NaN in the cache and never reaches the head.
    """

    def _content(self, example: Example) -> str:
        return "\x1f".join(self.words_of(example))

    def _pool_batch(self, hidden, mask, features) -> list[np.ndarray]:
        # the batch's words in one array, each sentence's rows a view of it (see FrozenClassifier)
        counts = [len(f["first_token"]) for f in features]
        out = np.full((sum(counts), hidden.shape[-1]), np.nan, dtype=np.float32)
        matrices, start = [], 0
        for k, (feature, count) in enumerate(zip(features, counts, strict=True)):
            first = feature["first_token"]
            block = out[start : start + count]
            seen = [w for w, p in enumerate(first) if p >= 0]
            if seen:
                block[seen] = hidden[k][[first[w] for w in seen]].cpu().numpy()
            matrices.append(block)
            start += count
        return matrices

    def _rows(self, examples, vectors):
        rows, targets = [], []
        for example, matrix in zip(examples, vectors, strict=True):
            tags = example.tags or []
            if len(tags) != len(matrix):
                raise ValueError(f"example {example.id}: {len(matrix)} words but {len(tags)} tags")
            for tag, row in zip(tags, matrix, strict=True):
                if tag not in self.label_to_id:
                    raise ValueError(f"example {example.id}: tag {tag!r} is not one of {self.labels}")
                if not np.isnan(row[0]):
                    rows.append(row)
                    targets.append(self.label_to_id[tag])
        if not rows:
            raise ValueError("the labeled sentences have no word the encoder can read")
        return np.stack(rows), np.array(targets)

    def _probs_of(self, matrix, head):
        k = len(self.labels)
        probs = np.tile(self._fallback(), (len(matrix), 1))
        seen = ~np.isnan(matrix[:, 0]) if len(matrix) else np.zeros(0, dtype=bool)
        if seen.any():
            probs[seen] = head.probs(matrix[seen], k)
        return probs

    def _batch_probs(self, vectors):
        if not vectors:
            return []
        stacked = np.concatenate(vectors) if any(len(v) for v in vectors) else np.zeros((0, 1))
        flat = self._probs_of(stacked, self.head_) if len(stacked) else np.zeros((0, len(self.labels)))
        bounds = np.cumsum([0] + [len(v) for v in vectors])
        return [flat[bounds[i] : bounds[i + 1]] for i in range(len(vectors))]

    def _decode(self, probs) -> list[str]:
        return [self.labels[i] for i in np.asarray(probs).argmax(axis=1)] if len(probs) else []

    def _summary(self, matrix):
        seen = matrix[~np.isnan(matrix[:, 0])] if len(matrix) else matrix
        return seen.mean(axis=0) if len(seen) else np.zeros(matrix.shape[-1], dtype=np.float32)
