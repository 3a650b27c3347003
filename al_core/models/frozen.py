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
from pathlib import Path

import numpy as np
from transformers import AutoModel

from al_core.config import TrainingConfig
from al_core.data import Example
from al_core.exceptions import ModelLoadError, NotFittedError
from al_core.inference import run_batched
from al_core.models.base import ModelOutputs, read_model_meta
from al_core.models.embedding_cache import EmbeddingCache, MemoryEmbeddingCache, encoder_prefix
from al_core.models.finetuned import mean_pool
from al_core.models.heads import HEAD_C, BinaryHeads, LinearHead

HEAD_FILE = "frozen_head.npz"
# Tasks tokenized and embedded at a time (and then cached): the tokenized features of a
# 100,000-task pool at once would take gigabytes.
EMBED_CHUNK = 2048


class FrozenEncoderModel:
    """What every frozen model shares; mixed in before the fine-tuned class of its kind, whose
    tokenization (`_encode`, the text cut), targets, head class and decoding it reuses.

    A text is one mean-pooled vector (classification, multi-label); a kind that reads its tasks
    otherwise (tagging: a vector per word) overrides the parts under "one vector per text".
    """

    mode = "frozen"
    scores_whole_pool = True
    # True for a head over a fine-tuned encoder (al_core.models.refresh_model): the encoder was trained
    # on most labeled tasks, so the quality estimate holds them out (not cross-validation), and a
    # round scores only the tasks whose vectors that encoder's fine-tune handed over (`embedded`)
    encoder_saw_labels = False

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

    def _module_from(self, source, fresh_head, head_options):
        return AutoModel.from_pretrained(source, use_safetensors=True)

    # -- vectors -------------------------------------------------------------------------
    def _require_encoder(self):
        if self.model_ is None:
            self._load(self.model_name_or_path, fresh_head=False)
        return self.model_

    def _key(self, example: Example) -> str:
        identity = f"{self.model_name_or_path}\x00{self.config.max_length}\x00{self.kind}\x00{self._content(example)}"
        return encoder_prefix(self.model_name_or_path) + hashlib.sha1(identity.encode("utf-8", "surrogatepass")).hexdigest()

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

    def task_vectors(self, examples: list[Example]) -> list[np.ndarray]:
        """One vector per example (the embedding `infer` gives: a tagger's is the mean over its
        words), for what compares whole tasks (al_core.ordering)."""
        return [self._summary(v) for v in self.vectors(examples)]

    def embedded(self, examples: list[Example]) -> list[Example]:
        """The examples whose vectors are in the cache (no forward pass needed)."""
        keys = [self._key(e) for e in examples]
        present = self.cache.present(list(dict.fromkeys(keys)))
        return [e for e, key in zip(examples, keys, strict=True) if key in present]

    def remember(self, examples: list[Example], vectors) -> None:
        """Caches vectors computed elsewhere as this model's: a fine-tuned model's embeddings of tasks,
        for the head over its encoder (they are the vectors this model would compute)."""
        self.cache.set_many({self._key(e): np.asarray(v, dtype=np.float32) for e, v in zip(examples, vectors, strict=True)})

    def forget(self, examples: list[Example]) -> None:
        """Drops this model's cached vectors of `examples` (a fine-tune's hand-over not taken up)."""
        self.cache.delete_many(dict.fromkeys(self._key(e) for e in examples))

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

    # -- one vector per text ------------------------------------------------------------
    def _content(self, example: Example) -> str:
        """What the vector is of (part of its cache key)."""
        return example.text

    def _pool_batch(self, hidden, mask, features) -> list[np.ndarray]:
        """One vector per row of a batch."""
        # One array per batch, its rows handed out as views: a small array per text, allocated
        # between the batches' large activations, fragmented the heap (about 200 KB kept per text,
        # 23 GB on a 100,000-task pool)
        return list(mean_pool(hidden, mask).cpu().numpy())

    def _rows(self, examples, vectors):
        """The head's training rows and their targets (the kind's `_target` of each example)."""
        return np.stack(vectors), np.array([self._target(e) for e in examples])

    def _probs_of(self, vector, head):
        return head.probs(vector[None, :], len(self.labels))[0]

    def _batch_probs(self, vectors):
        if not vectors:
            return self._empty_probs()
        return self.head_.probs(np.stack(vectors), len(self.labels))

    def _decode(self, probs):
        return self.task_kind.decode(probs, self.labels)

    def _summary(self, vector):
        """The vector `infer` gives as the task's embedding."""
        return vector

    # -- head ----------------------------------------------------------------------------
    def fit(self, examples: list[Example], on_checkpoint=None):
        """Trains the head on the labeled examples' vectors (the encoder stays as it is)."""
        if not examples:
            raise ValueError("no labeled examples to train on")
        vectors, targets = self._rows(examples, self.vectors(examples))
        self.head_ = self._head_class.fit(vectors, targets, self.head_c, self.config.seed, self._balanced())
        return self

    def cross_validated_predictions(self, examples: list[Example], folds: int) -> list:
        """Out-of-fold predictions (labels, or tag lists) for every example, from `folds` heads."""
        from sklearn.model_selection import KFold

        vectors = self.vectors(examples)
        predictions: list = [None] * len(examples)
        splitter = KFold(n_splits=folds, shuffle=True, random_state=self.config.seed)
        for train, held in splitter.split(np.arange(len(examples))):
            rows, targets = self._rows([examples[i] for i in train], [vectors[i] for i in train])
            head = self._head_class.fit(rows, targets, self.head_c, self.config.seed, self._balanced())
            for i in held:
                predictions[i] = self._decode(self._probs_of(vectors[i], head))
        return predictions

    def infer(self, examples: list[Example], probs: bool = True, embeddings: bool = False) -> ModelOutputs:
        if self.head_ is None:
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
