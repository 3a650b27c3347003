"""Multi-label classification models: a yes/no decision per class, fine-tuned (`TransformerMultiLabel`,
a sigmoid per class trained with binary cross-entropy) or binary heads on frozen vectors
(`FrozenMultiLabel`). Probabilities are (n, K, 2): each class's [P(absent), P(present)].

Everything else is the classifiers' (al_core.models.classification): the multi-label specifics
are the attributes and methods of `TransformerMultiLabel`, which the frozen model inherits.
"""

from __future__ import annotations

import numpy as np
import torch

from al_core.data import MULTILABEL, Example
from al_core.kinds import kind_of
from al_core.models.classification import TransformerClassifier
from al_core.models.frozen import FrozenEncoderModel
from al_core.models.heads import BinaryHeads


def multi_hot(example: Example, labels: list[str], label_to_id: dict[str, int]) -> np.ndarray:
    """A multi-label example's classes as a 0/1 float vector over `labels`."""
    if example.choices is None:
        raise ValueError(f"example {example.id} has no label set")
    target = np.zeros(len(labels), dtype=np.float32)
    for label in example.choices:
        if label not in label_to_id:
            raise ValueError(f"example {example.id}: label {label!r} is not one of {labels}")
        target[label_to_id[label]] = 1.0
    return target


class TransformerMultiLabel(TransformerClassifier):
    """Multi-label sequence classification: a sigmoid per class, trained with binary cross-entropy."""

    kind = MULTILABEL
    task_kind = kind_of(MULTILABEL)
    _head_options = {"problem_type": "multi_label_classification"}
    _multi_label = True  # the head's loss: binary cross-entropy per class
    _balances_classes = False
    _head_class = BinaryHeads

    def _target(self, example):
        return multi_hot(example, self.labels, self.label_to_id)

    @staticmethod
    def _activate(logits):
        present = torch.sigmoid(logits)
        return torch.stack([1.0 - present, present], dim=-1)

    def _empty_probs(self):
        return np.zeros((0, len(self.labels), 2), dtype=np.float32)


class FrozenMultiLabel(FrozenEncoderModel, TransformerMultiLabel):
    """Mean-pooled encoder vectors and a binary logistic regression per class: a set of labels per text."""
