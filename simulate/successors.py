"""Models the simulator trains: any transformer (through al_core.models) and classical ones.

Every model is an `al_core.models.Predictor` (kind and task kind, labels, fit, infer, predict_proba,
predict), so a classical model can also acquire (a TF-IDF model acquiring for itself is the
classical "matched pair").

Classical models:
- TfidfLogisticRegression (classification): word and bigram TF-IDF + logistic regression.
- GloveBiLSTMTagger (tagging): frozen GloVe vectors plus word-shape features, a BiLSTM and a
  per-word softmax (no CRF), trained from scratch with Adam.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from al_core.data import CLASSIFICATION, TAGGING, Example
from al_core.exceptions import ModelLoadError, NotFittedError
from al_core.kinds import kind_of

DEFAULT_GLOVE_DIR = (
    Path(os.environ.get("AL_MODELS_DIR", Path.home() / ".cache" / "al-models")) / "glove-6b-50d"
)


class _ClassicalModel:
    """The engine's `infer` on top of predict_proba (classical models have no embeddings)."""

    def infer(self, examples: list[Example], probs: bool = True, embeddings: bool = False):
        from al_core.models.base import ModelOutputs

        if embeddings:
            raise ValueError(f"{type(self).__name__} has no embeddings; use a probability strategy (not md)")
        return ModelOutputs(n=len(examples), probs=self.predict_proba(examples) if probs else None)


class TfidfLogisticRegression(_ClassicalModel):
    """TF-IDF features (words and bigrams) and a multinomial logistic regression."""

    kind = CLASSIFICATION
    task_kind = kind_of(CLASSIFICATION)

    def __init__(
        self,
        labels: list[str],
        C: float = 10.0,
        ngram_max: int = 2,
        max_features: int = 100_000,
        class_weight: str | None = "balanced",
        seed: int = 0,
    ):
        self.labels = list(labels)
        self.C = C
        self.ngram_max = ngram_max
        self.max_features = max_features
        self.class_weight = class_weight  # AL queries are often skewed towards a few classes
        self.seed = seed

    def fit(self, examples: list[Example], on_checkpoint=None) -> TfidfLogisticRegression:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        texts = [e.text for e in examples]
        y = [e.label for e in examples]
        self.vectorizer_ = TfidfVectorizer(
            ngram_range=(1, self.ngram_max), max_features=self.max_features, sublinear_tf=True
        )
        features = self.vectorizer_.fit_transform(texts)
        self.classes_ = sorted(set(y))
        # One class in the labeled set (a tiny seed can have that): predict it with certainty.
        self.classifier_ = None
        if len(self.classes_) > 1:
            self.classifier_ = LogisticRegression(
                C=self.C, max_iter=2000, class_weight=self.class_weight, random_state=self.seed
            )
            self.classifier_.fit(features, y)
        return self

    def predict_proba(self, examples: list[Example]) -> np.ndarray:
        if not hasattr(self, "vectorizer_"):
            raise NotFittedError("TfidfLogisticRegression.predict_proba called before fit()")
        probs = np.zeros((len(examples), len(self.labels)), dtype=np.float64)
        if not examples:
            return probs
        column = {label: i for i, label in enumerate(self.labels)}
        if self.classifier_ is None:
            probs[:, column[self.classes_[0]]] = 1.0
            return probs
        fitted = self.classifier_.predict_proba(self.vectorizer_.transform([e.text for e in examples]))
        for j, label in enumerate(self.classifier_.classes_):
            probs[:, column[label]] = fitted[:, j]
        return probs

    def predict(self, examples: list[Example]) -> list[str]:
        return [self.labels[i] for i in self.predict_proba(examples).argmax(axis=1)]


@functools.lru_cache(maxsize=2)
def load_glove(folder: str) -> tuple[dict[str, int], np.ndarray]:
    """GloVe vocabulary (word -> row) and vectors from vectors.npy + vocab.txt, read once per process."""
    path = Path(folder)
    vectors_file, vocab_file = path / "vectors.npy", path / "vocab.txt"
    if not vectors_file.is_file() or not vocab_file.is_file():
        raise ModelLoadError(
            f"GloVe vectors not found in {path} (expected vectors.npy and vocab.txt; "
            "install them with ../shared/models/fetch-models.sh or set params.vectors_dir)"
        )
    words = vocab_file.read_text(encoding="utf-8").splitlines()
    vectors = np.load(vectors_file, mmap_mode="r")
    if vectors.shape[0] != len(words):
        raise ModelLoadError(f"{path}: {vectors.shape[0]} vectors but {len(words)} words in vocab.txt")
    return {w: i for i, w in enumerate(words)}, vectors


def _shape_features(word: str) -> list[float]:
    """Case and digit features: GloVe 6B is lower-cased, and capitals matter for names."""
    return [float(word[:1].isupper()), float(word.isupper()), float(any(c.isdigit() for c in word))]


class GloveBiLSTMTagger(_ClassicalModel):
    """Frozen GloVe vectors + shape features -> BiLSTM -> per-word softmax over IOB2 tags."""

    kind = TAGGING
    task_kind = kind_of(TAGGING)

    def __init__(
        self,
        labels: list[str],
        vectors_dir: str | Path = DEFAULT_GLOVE_DIR,
        hidden: int = 128,
        epochs: int = 15,
        learning_rate: float = 2e-3,
        batch_size: int = 16,
        dropout: float = 0.3,
        min_steps: int = 0,
        seed: int = 0,
    ):
        self.labels = list(labels)
        self.vectors_dir = str(vectors_dir)
        self.hidden = hidden
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.dropout = dropout
        self.min_steps = min_steps
        self.seed = seed

    def _features(self, example: Example):
        import torch

        index, vectors = load_glove(self.vectors_dir)
        words = example.words if example.words is not None else example.text.split()
        rows = [index.get(w.lower(), -1) for w in words]
        emb = np.zeros((len(words), vectors.shape[1] + 4), dtype=np.float32)
        for i, (word, row) in enumerate(zip(words, rows)):
            if row >= 0:
                emb[i, : vectors.shape[1]] = vectors[row]
            emb[i, vectors.shape[1] :] = [*_shape_features(word), float(row < 0)]
        return torch.from_numpy(emb)

    def _network(self, n_inputs: int):
        import torch
        from torch import nn

        class Network(nn.Module):
            def __init__(self, hidden, n_tags, dropout):
                super().__init__()
                self.lstm = nn.LSTM(n_inputs, hidden, batch_first=True, bidirectional=True)
                self.dropout = nn.Dropout(dropout)
                self.out = nn.Linear(2 * hidden, n_tags)

            def forward(self, inputs, lengths):
                packed = nn.utils.rnn.pack_padded_sequence(
                    inputs, lengths, batch_first=True, enforce_sorted=False
                )
                hidden, _ = self.lstm(packed)
                hidden, _ = nn.utils.rnn.pad_packed_sequence(
                    hidden, batch_first=True, total_length=inputs.shape[1]
                )
                return self.out(self.dropout(hidden))

        torch.manual_seed(self.seed)
        return Network(self.hidden, len(self.labels), self.dropout)

    @staticmethod
    def _batch(features):
        import torch
        from torch.nn.utils.rnn import pad_sequence

        lengths = torch.tensor([max(1, len(f)) for f in features])
        padded = pad_sequence(
            [f if len(f) else torch.zeros(1, features[0].shape[1]) for f in features], batch_first=True
        )
        return padded, lengths

    def fit(self, examples: list[Example], on_checkpoint=None) -> GloveBiLSTMTagger:
        import torch
        from torch import nn
        from torch.nn.utils.rnn import pad_sequence

        tag_id = {t: i for i, t in enumerate(self.labels)}
        data = [(self._features(e), torch.tensor([tag_id[t] for t in e.tags])) for e in examples if e.tags]
        self.network_ = self._network(data[0][0].shape[1] if data else 54)
        optimizer = torch.optim.Adam(self.network_.parameters(), lr=self.learning_rate)
        loss_fn = nn.CrossEntropyLoss(ignore_index=-100)
        generator = np.random.default_rng(self.seed)
        steps_per_epoch = max(1, -(-len(data) // self.batch_size))
        epochs = max(self.epochs, -(-self.min_steps // steps_per_epoch)) if data else 0
        self.network_.train()
        for _ in range(epochs):
            order = generator.permutation(len(data))
            for start in range(0, len(data), self.batch_size):
                chunk = [data[i] for i in order[start : start + self.batch_size]]
                inputs, lengths = self._batch([f for f, _ in chunk])
                targets = pad_sequence([t for _, t in chunk], batch_first=True, padding_value=-100)
                logits = self.network_(inputs, lengths)[:, : targets.shape[1]]
                loss = loss_fn(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.network_.parameters(), 1.0)
                optimizer.step()
        self.network_.eval()
        return self

    def predict_proba(self, examples: list[Example]) -> list[np.ndarray]:
        import torch

        if not hasattr(self, "network_"):
            raise NotFittedError("GloveBiLSTMTagger.predict_proba called before fit()")
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(examples), 64):
                chunk = examples[start : start + 64]
                features = [self._features(e) for e in chunk]
                inputs, lengths = self._batch(features)
                probs = torch.softmax(self.network_(inputs, lengths), dim=-1).numpy()
                out.extend(probs[i, : len(f)].astype(np.float64) for i, f in enumerate(features))
        return out

    def predict(self, examples: list[Example]) -> list[list[str]]:
        return [[self.labels[i] for i in p.argmax(axis=1)] for p in self.predict_proba(examples)]


CLASSICAL = {
    "tfidf_lr": (TfidfLogisticRegression, CLASSIFICATION),
    "glove_bilstm": (GloveBiLSTMTagger, TAGGING),
}


def training_config(spec, training: dict, seed: int):
    """The engine's TrainingConfig defaults with the config-wide overrides, then the spec's own."""
    from al_core.config import TrainingConfig

    return TrainingConfig().replace(**{**training, **spec.training, "seed": seed})


def build(
    spec, task_kind: str, labels: list[str], training: dict, seed: int, mode: str = "finetune", embedding_cache=None
):
    """A fresh, unfitted model for a config's ModelSpec.

    `training` is the config-wide TrainingConfig overrides; the spec's own `training` wins.
    `mode` (finetune or frozen) applies to transformers; a classical model has one way to learn.
    """
    from simulate.config import expand_path

    if spec.kind == "transformer":
        from al_core.models import build_model

        config = training_config(spec, training, seed)
        return build_model(task_kind, expand_path(spec.model), labels, config, mode, embedding_cache)
    if spec.kind not in CLASSICAL:
        raise ValueError(f"no model of kind {spec.kind!r}")
    cls, kind = CLASSICAL[spec.kind]
    if kind != task_kind:
        raise ValueError(f"{spec.kind} is a {kind} model, but the dataset is {task_kind}")
    params = dict(spec.params)
    if "vectors_dir" in params:
        params["vectors_dir"] = expand_path(params["vectors_dir"])
    return cls(labels, seed=seed, **params)
