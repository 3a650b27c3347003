"""The acquisition models: for each task kind a fine-tuned transformer and a head on frozen vectors.

- `base`: `ModelOutputs`, the saved metadata (`read_model_meta`), the `AcquisitionModel` interface;
- `finetuned`: what the fine-tuned models share (`TransformerModel`);
- `frozen`: what the frozen-encoder models share (`FrozenEncoderModel`); `embedding_cache` keeps
  their vectors; `heads`: the logistic regressions of frozen heads and of a classifier's first head;
- `encoder_vectors` (here): a model folder's frozen-encoder vector per task, for al_core.ordering;
- `refresh_model` (here): a frozen head over a fine-tuned version's encoder (auto mode's refresh rounds);
- `classification`, `multilabel`, `tagging`: each kind's fine-tuned and frozen model.

A new model is one class in its kind's module plus its line in `MODEL_CLASSES`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from al_core.config import TrainingConfig
from al_core.data import Example
from al_core.models.base import MODEL_META, MODES, AcquisitionModel, ModelOutputs, Predictor, read_model_meta
from al_core.models.classification import FrozenClassifier, MeanPooledClassifier, TransformerClassifier
from al_core.models.embedding_cache import EmbeddingCache, MemoryEmbeddingCache, SqliteEmbeddingCache
from al_core.models.multilabel import FrozenMultiLabel, TransformerMultiLabel, multi_hot
from al_core.models.tagging import FrozenTagger, TransformerTagger

# (task kind name, mode) -> model class
MODEL_CLASSES: dict[tuple[str, str], type] = {
    (cls.kind, cls.mode): cls
    for cls in (
        TransformerClassifier, FrozenClassifier, TransformerMultiLabel, FrozenMultiLabel, TransformerTagger, FrozenTagger
    )
}


def model_class(kind: str, mode: str = "finetune") -> type:
    """The model class of a task kind and mode."""
    if mode not in MODES:
        raise ValueError(f"unknown model mode {mode!r}; expected one of {', '.join(MODES)}")
    try:
        return MODEL_CLASSES[kind, mode]
    except KeyError:
        kinds = sorted({k for k, _ in MODEL_CLASSES})
        raise ValueError(f"unknown task kind {kind!r}; expected one of {', '.join(kinds)}") from None


def build_model(
    kind: str,
    model_name_or_path: str | Path,
    labels: list[str],
    config: TrainingConfig | None = None,
    mode: str = "finetune",
    embedding_cache: EmbeddingCache | None = None,
) -> AcquisitionModel:
    """A new, unfitted model of the given task kind and mode (`embedding_cache`: frozen mode only)."""
    cls = model_class(kind, mode)
    if mode == "frozen":
        return cls(model_name_or_path, labels, config, embedding_cache)
    return cls(model_name_or_path, labels, config)


def encoder_vectors(
    kind: str,
    model_name_or_path: str | Path,
    labels: list[str],
    config: TrainingConfig | None = None,
    embedding_cache: EmbeddingCache | None = None,
) -> Callable[[list[Example]], list[np.ndarray]]:
    """`vectors_of(examples)`: one vector per task from the frozen encoder of a model folder (the
    frozen model's `task_vectors`), what the orders of al_core.ordering read, whichever way the
    acquisition model learns. With the cache and TrainingConfig of a frozen acquisition model of the
    same folder the keys are its own, so the vectors it has embedded are read, not computed again;
    the encoder loads on the first task the cache lacks."""
    return build_model(kind, model_name_or_path, labels, config, "frozen", embedding_cache).task_vectors


def refresh_model(
    kind: str,
    encoder_folder: str | Path,
    labels: list[str],
    config: TrainingConfig | None = None,
    embedding_cache: EmbeddingCache | None = None,
) -> AcquisitionModel:
    """The model of a refresh round (al_core.acquisition.resolve_mode): a frozen head over the encoder
    of a fine-tuned version's folder. It reads the vectors that version's fine-tune handed over
    (`FrozenEncoderModel.remember`, under the keys of this folder) and is saved as a frozen model
    whose encoder is that folder."""
    model = build_model(kind, encoder_folder, labels, config, "frozen", embedding_cache)
    model.encoder_saw_labels = True
    return model


def load_model(
    folder: str | Path, config: TrainingConfig | None = None, embedding_cache: EmbeddingCache | None = None
) -> AcquisitionModel:
    """Loads a model saved by `save`, of whichever kind and mode it is."""
    meta = read_model_meta(folder)
    mode = meta.get("mode", "finetune")
    cls = model_class(meta["kind"], mode)
    if mode == "frozen":
        return cls.load(folder, config, embedding_cache)
    return cls.load(folder, config)


__all__ = [
    "MODEL_CLASSES",
    "MODEL_META",
    "MODES",
    "AcquisitionModel",
    "EmbeddingCache",
    "FrozenClassifier",
    "FrozenMultiLabel",
    "FrozenTagger",
    "MeanPooledClassifier",
    "MemoryEmbeddingCache",
    "ModelOutputs",
    "Predictor",
    "SqliteEmbeddingCache",
    "TransformerClassifier",
    "TransformerMultiLabel",
    "TransformerTagger",
    "build_model",
    "encoder_vectors",
    "load_model",
    "model_class",
    "multi_hot",
    "read_model_meta",
    "refresh_model",
]
