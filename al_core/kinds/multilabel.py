"""Multi-label classification: any set of classes per text, from <Choices choice="multiple">.

Each class is its own yes/no decision (a sigmoid per class, not a softmax over classes), so a
model's probabilities for one text are a (K, 2) array: for each class [P(absent), P(present)].
The probability strategies (lc, margin, entropy) score each decision as they would a two-class
task and a text scores the mean over its classes: a text is worth asking about when the model
is unsure about many of its classes. A class is predicted when P(present) >= 0.5; a text may get
none. An annotation that selects no choice says "none of these classes" (a labeled empty set).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from al_core.data import MULTILABEL
from al_core.kinds.classification import Classification

THRESHOLD = 0.5


class MultiLabel(Classification):
    name = MULTILABEL
    metric = "macro_f1"
    metrics = ("macro_f1", "micro_f1")
    drop_metric = "micro_f1"
    default_strategy = "lc"
    formats = ("jsonl", "csv", "ls")

    choice = "multiple"

    def reads(self, control_tag, multiple):
        return control_tag == self.control_tag and multiple

    def labeled(self, example, regions, labels, skip, lenient):
        chosen = self._choices(example, regions, labels, skip)
        if chosen is None:
            return example
        return replace(example, choices=list(dict.fromkeys(chosen)))

    def regions(self, example, value, base):
        return [{**base, "value": {"choices": list(value)}}] if value else []

    def gold(self, example):
        return example.choices

    def with_gold(self, example, value):
        return replace(example, choices=list(value), meta=dict(example.meta))

    def decode(self, probs, labels):
        present = np.asarray(probs)[:, 1]
        return [label for label, p in zip(labels, present, strict=True) if p >= THRESHOLD]

    def confidence(self, probs):
        # the geometric mean of the decisions' confidences: one unsure class lowers the text
        sure = np.clip(np.asarray(probs).max(axis=1), 1e-12, 1.0)
        return float(np.exp(np.log(sure).mean())) if len(sure) else 1.0

    def measures(self, gold, predicted, labels):
        from al_core.metrics import multilabel_report

        report = multilabel_report(gold, predicted, labels)
        return {"macro_f1": report["macro_f1"], "micro_f1": report["micro_f1"]}, report["per_label"]

    def value_labels(self, value):
        return list(value or [])

    def agrees(self, a, b):
        return set(a) == set(b)

    def label_mentions(self, example):
        return list(example.choices or [])

    def stratum(self, example):
        return None

    def outcomes(self, n_labels):
        return 2

    def json_fields(self, example):
        return {"labels": list(example.choices or [])}

    def csv_label(self, example):
        return "|".join(example.choices or [])

