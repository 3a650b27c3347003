"""Quality metrics: accuracy, and strict span-level F1 in the CoNLL style (seqeval)."""

from __future__ import annotations

from collections.abc import Sequence

from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2


def accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    if not len(y_true):
        raise ValueError("accuracy of an empty set is undefined")
    return sum(t == p for t, p in zip(y_true, y_pred)) / len(y_true)


def span_f1(true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> dict:
    """Strict IOB2 span F1: micro precision, recall and F1, and F1 per entity type."""
    true_tags, pred_tags = [list(t) for t in true_tags], [list(p) for p in pred_tags]
    if len(true_tags) != len(pred_tags) or any(len(t) != len(p) for t, p in zip(true_tags, pred_tags)):
        raise ValueError("true and predicted tags must have the same sentences and lengths")
    options = dict(mode="strict", scheme=IOB2, zero_division=0)
    report = classification_report(true_tags, pred_tags, output_dict=True, **options)
    per_type = {name: row["f1-score"] for name, row in report.items() if not name.endswith(" avg")}
    return {
        "f1": float(f1_score(true_tags, pred_tags, **options)),
        "precision": float(precision_score(true_tags, pred_tags, **options)),
        "recall": float(recall_score(true_tags, pred_tags, **options)),
        "per_type": {k: float(v) for k, v in per_type.items()},
    }
