"""Quality metrics: accuracy, macro F1 and per-class precision/recall/F1 (scikit-learn), and strict
span-level F1 in the CoNLL style, overall and per entity type (seqeval).

Every per-label table holds every label it is given (the config's), a label never predicted
included with F1 0. A macro mean is taken over the labels that occur in the gold values or the
predictions: a label absent from both (a class with no example in a small held-out share) has
no F1 to average.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2


def accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    if not len(y_true):
        raise ValueError("accuracy of an empty set is undefined")
    return sum(t == p for t, p in zip(y_true, y_pred)) / len(y_true)


def _table(labels: list[str], precision, recall, f1, support) -> dict[str, dict]:
    return {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    }


def _macro(table: dict[str, dict], occurring: set[str]) -> float:
    values = [row["f1"] for label, row in table.items() if label in occurring]
    return float(np.mean(values)) if values else 1.0


def class_report(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] | None = None) -> dict:
    """Single-label classification: accuracy, macro F1 and {label: precision, recall, f1, support}
    over `labels` (default: those in y_true or y_pred) and any other label the values hold."""
    from sklearn.metrics import precision_recall_fscore_support

    y_true, y_pred = [str(y) for y in y_true], [str(y) for y in y_pred]
    value = accuracy(y_true, y_pred)
    occurring = set(y_true) | set(y_pred)
    labels = list(dict.fromkeys(list(labels or []) + sorted(occurring)))
    table = _table(labels, *precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0))
    return {"accuracy": float(value), "macro_f1": _macro(table, occurring), "per_label": table}


def resampled_macro_f1(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] | None, draws: np.ndarray
) -> np.ndarray:
    """class_report's macro F1 of many resamples at once (each row of `draws`: indices into y_true and
    y_pred), from per-class counts: F1 = 2 tp / (support + predicted), over the classes that occur in
    the resample, 1.0 where none does. A bootstrap's thousand resamples cost one array pass instead of
    a thousand reports."""
    y_true, y_pred = [str(y) for y in y_true], [str(y) for y in y_pred]
    names = list(dict.fromkeys(list(labels or []) + sorted(set(y_true) | set(y_pred))))
    index = {name: i for i, name in enumerate(names)}
    k, rows = len(names), len(draws)
    offsets = np.arange(rows)[:, None] * k
    gold = np.array([index[y] for y in y_true])[draws] + offsets
    guess = np.array([index[y] for y in y_pred])[draws] + offsets

    def counts(cells):
        return np.bincount(cells, minlength=rows * k).reshape(rows, k)

    hits, seen = counts(gold[gold == guess]), counts(gold.ravel()) + counts(guess.ravel())
    f1 = 2 * hits / np.maximum(seen, 1)
    occurring = seen > 0
    return np.where(occurring.any(axis=1), (f1 * occurring).sum(axis=1) / np.maximum(occurring.sum(axis=1), 1), 1.0)


def multilabel_report(
    gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], labels: Sequence[str] | None = None
) -> dict:
    """Label sets: micro F1 (every (text, class) decision counts once), macro F1 and the per-class table."""
    from sklearn.metrics import f1_score as sk_f1
    from sklearn.metrics import precision_recall_fscore_support
    from sklearn.preprocessing import MultiLabelBinarizer

    gold, predicted = [[str(c) for c in g] for g in gold], [[str(c) for c in p] for p in predicted]
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold label sets but {len(predicted)} predictions")
    if not gold:
        raise ValueError("F1 of an empty set is undefined")
    occurring = {c for row in gold + predicted for c in row}
    labels = list(dict.fromkeys(list(labels or []) + sorted(occurring)))
    if not labels:  # no class anywhere: every decision was a correct "no"
        return {"micro_f1": 1.0, "macro_f1": 1.0, "per_label": {}}
    binarizer = MultiLabelBinarizer(classes=labels).fit([])
    y_true, y_pred = binarizer.transform(gold), binarizer.transform(predicted)
    table = _table(labels, *precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0))
    micro = float(sk_f1(y_true, y_pred, average="micro", zero_division=0)) if occurring else 1.0
    return {"micro_f1": micro, "macro_f1": _macro(table, occurring), "per_label": table}


def span_f1(
    true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]], types: Sequence[str] | None = None
) -> dict:
    """Strict IOB2 span F1: micro precision, recall and F1, F1 per entity type (`per_type`), and
    precision, recall, F1 and support (gold spans) per type (`per_label`, every type of `types` too)."""
    true_tags, pred_tags = [list(t) for t in true_tags], [list(p) for p in pred_tags]
    if len(true_tags) != len(pred_tags) or any(len(t) != len(p) for t, p in zip(true_tags, pred_tags)):
        raise ValueError("true and predicted tags must have the same sentences and lengths")
    options = dict(mode="strict", scheme=IOB2, zero_division=0)
    report = classification_report(true_tags, pred_tags, output_dict=True, **options)
    rows = {name: row for name, row in report.items() if not name.endswith(" avg")}
    empty = {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0}
    per_label = {
        name: {
            "precision": float(row["precision"]),
            "recall": float(row["recall"]),
            "f1": float(row["f1-score"]),
            "support": int(row["support"]),
        }
        for name, row in ((n, rows.get(n, empty)) for n in dict.fromkeys(list(types or []) + sorted(rows)))
    }
    return {
        "f1": float(f1_score(true_tags, pred_tags, **options)),
        "precision": float(precision_score(true_tags, pred_tags, **options)),
        "recall": float(recall_score(true_tags, pred_tags, **options)),
        "per_type": {name: float(row["f1-score"]) for name, row in rows.items()},
        "per_label": per_label,
    }


def worst_label(per_label: dict[str, dict]) -> str | None:
    """The label with the lowest F1 among those with gold examples (ties: the one with most support)."""
    present = [(row["f1"], -row["support"], label) for label, row in per_label.items() if row.get("support")]
    return min(present)[2] if present else None
