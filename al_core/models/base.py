"""What every acquisition model shares: its outputs, its saved metadata and the interface the engine calls.

`Predictor` is what a model that predicts offers (the simulator's successors and a PLASM teacher,
classical models included); `AcquisitionModel` adds what the active-learning loop, the query
strategies, the quality estimate and the backend call on the models of this package.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from al_core.data import Example
from al_core.exceptions import ModelLoadError
from al_core.kinds import KINDS, TaskKind

MODEL_META = "al_model.json"
# How an acquisition model learns: fine-tuning the whole transformer, or a head on frozen vectors.
MODES = ("finetune", "frozen")


@dataclasses.dataclass
class ModelOutputs:
    """What one pass over a set of examples gives: probabilities and/or embeddings, in input order.

    `probs` is an (n, K) array for classification, an (n, K, 2) array for multi-label
    classification (each class's [P(absent), P(present)]) and a list of (n_words, K) arrays for
    tagging.
    """

    n: int
    probs: np.ndarray | list[np.ndarray] | None = None
    embeddings: np.ndarray | None = None

    @classmethod
    def concat(cls, parts: list[ModelOutputs]) -> ModelOutputs:
        """The outputs of consecutive chunks of one pass, as one pass over all of them."""
        out = cls(n=sum(p.n for p in parts))
        if parts and parts[0].probs is not None:
            if isinstance(parts[0].probs, list):
                out.probs = [row for p in parts for row in p.probs]
            else:
                out.probs = np.concatenate([p.probs for p in parts])
        if parts and parts[0].embeddings is not None:
            out.embeddings = np.concatenate([p.embeddings for p in parts])
        return out

    def save(self, path: str | Path) -> None:
        """One .npz file (no pickle): tagging's per-sentence arrays are stored flat with their lengths."""
        arrays: dict[str, np.ndarray] = {"n": np.array(self.n)}
        if isinstance(self.probs, list):
            arrays["word_counts"] = np.array([len(p) for p in self.probs], dtype=np.int64)
            arrays["word_probs"] = np.concatenate(self.probs) if self.probs else np.zeros((0, 0), np.float32)
        elif self.probs is not None:
            arrays["probs"] = np.asarray(self.probs)
        if self.embeddings is not None:
            arrays["embeddings"] = np.asarray(self.embeddings)
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> ModelOutputs:
        with np.load(path, allow_pickle=False) as data:
            out = cls(n=int(data["n"]))
            if "word_counts" in data:
                bounds = np.cumsum(np.concatenate([[0], data["word_counts"]]))
                flat = data["word_probs"]
                out.probs = [flat[bounds[i] : bounds[i + 1]] for i in range(out.n)]
            elif "probs" in data:
                out.probs = data["probs"]
            if "embeddings" in data:
                out.embeddings = data["embeddings"]
        return out


def read_model_meta(folder: str | Path) -> dict:
    """The metadata a saved model folder holds (kind, labels, base model, training config, mode)."""
    path = Path(folder) / MODEL_META
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ModelLoadError(f"{folder} is not a saved model folder (no {MODEL_META})") from error
    except (OSError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"cannot read {path}: {error}") from error
    if not isinstance(meta, dict) or meta.get("kind") not in KINDS or not meta.get("labels"):
        raise ModelLoadError(f"{path} does not describe a model (kind and labels needed)")
    if meta.get("mode", "finetune") not in MODES:
        raise ModelLoadError(f"{path}: unknown model mode {meta.get('mode')!r}")
    return meta


class Predictor(Protocol):
    """A model that learns from labeled examples and predicts: a successor, a PLASM teacher."""

    kind: str  # the task kind's name, as saved and reported
    task_kind: TaskKind
    labels: list[str]  # what it predicts: class names, or IOB2 tags (tagging)

    def fit(self, examples: list[Example], on_checkpoint: Callable | None = None) -> Predictor: ...

    def infer(self, examples: list[Example], probs: bool = True, embeddings: bool = False) -> ModelOutputs: ...

    def predict_proba(self, examples: list[Example]) -> np.ndarray | list[np.ndarray]:
        """`ModelOutputs.probs` of `examples`."""
        ...

    def predict(self, examples: list[Example]) -> list:
        """Each example's value in its kind's shape: a class, a set of classes, a tag list."""
        ...


class AcquisitionModel(Predictor, Protocol):
    """What the loop (al_core.loop), the strategies, the quality estimate (al_core.acquisition) and the
    backend call on an acquisition model. A classical model that acquires in the simulator is a
    `Predictor` only: the loop reads `mode` and `scores_whole_pool` with their defaults (finetune, False).
    A model of mode frozen also gives `cross_validated_predictions(examples, folds)` (its quality
    estimate); TracIn (al_core.plasm) reads a fine-tuned model's `encode`, `model_` and `tokenizer_`."""

    mode: str  # one of MODES
    scores_whole_pool: bool  # scoring is cheap (cached vectors): every task is scored each round

    def embed(self, examples: list[Example]) -> np.ndarray:
        """One vector per example, (n, hidden) (the md strategy)."""
        ...

    def needs_forward(self, examples: list[Example]) -> list[Example]:
        """The examples `infer` would run the network on (the backend splits those over workers)."""
        ...

    def save(self, folder: str | Path) -> Path: ...

    @classmethod
    def load(cls, folder: str | Path, config=None) -> AcquisitionModel: ...
