"""Classification: one class per text, from a single-choice <Choices>."""

from __future__ import annotations

from dataclasses import replace
from xml.sax.saxutils import quoteattr

import numpy as np

from al_core.data import CLASSIFICATION
from al_core.kinds.base import TaskKind


def unknown_message(unknown: list, labels: list[str], task_id: str) -> str:
    return f"task {task_id}: label {unknown[0]!r} is not in the label config ({', '.join(labels)})"


class Classification(TaskKind):
    name = CLASSIFICATION
    control_tag = "Choices"
    result_key = "choices"
    metric = "macro_f1"
    metrics = ("macro_f1", "accuracy")
    drop_metric = "accuracy"
    default_strategy = "dlc-rare"  # dlc, preferring the classes with fewest labels (al_core.strategies; BENCHMARKS.md, labels saved)
    label_noun = "class"
    mention_unit = "tasks"
    unit = "task"
    learning_rate = 5e-5
    formats = ("jsonl", "csv", "ls")
    region_confidence = True

    def reads(self, control_tag, multiple):
        return control_tag == self.control_tag and not multiple

    def _choices(self, example, regions, labels, skip) -> list[str] | None:
        """The choices of the regions, or None when one is outside the config (a removed class
        cannot be learned: the task is not used for training)."""
        chosen = [c for r in regions for c in (r.get("value") or {}).get("choices") or []]
        unknown = [c for c in chosen if c not in labels]
        if unknown:
            skip("unknown_label", unknown_message(unknown, labels, example.id))
            return None
        return chosen

    def labeled(self, example, regions, labels, skip, lenient):
        chosen = self._choices(example, regions, labels, skip)
        if chosen:
            return replace(example, label=chosen[0])
        return example  # no choice: the task stays unlabeled

    choice = "single"

    def label_config_xml(self, labels):
        choices = "\n".join(f"    <Choice value={quoteattr(label)}/>" for label in labels)
        return (
            f'<View>\n  <Text name="text" value="$text"/>\n  <Choices name="label" toName="text" '
            f'choice="{self.choice}">\n{choices}\n  </Choices>\n</View>'
        )

    def regions(self, example, value, base):
        return [{**base, "value": {"choices": [value]}}]

    def gold(self, example):
        return example.label

    def with_gold(self, example, value):
        return replace(example, label=value, meta=dict(example.meta))

    def decode(self, probs, labels):
        return labels[int(np.argmax(probs))]

    def confidence(self, probs):
        return float(np.max(probs))

    def measures(self, gold, predicted, labels):
        from al_core.metrics import class_report

        report = class_report(gold, predicted, labels)
        return {"macro_f1": report["macro_f1"], "accuracy": report["accuracy"]}, report["per_label"]

    def resampled_headline(self, gold, predicted, labels, draws):
        from al_core.metrics import resampled_macro_f1

        return resampled_macro_f1(gold, predicted, labels, draws)

    def value_labels(self, value):
        return [value] if value is not None else []

    def label_mentions(self, example):
        return [example.label] if example.label is not None else []

    def stratum(self, example):
        return example.label

    def json_fields(self, example):
        return {"label": example.label}

    def csv_label(self, example):
        return example.label
