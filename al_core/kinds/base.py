"""What a task kind is: everything that differs between classification, multi-label classification
and tagging, behind one interface, so that the rest of the project never asks which kind it has.

A kind says which Label Studio control it reads, how an annotation becomes a gold label and a
gold label or a prediction becomes result regions, what a model predicts (its labels),
how predictions are decoded, measured and turned into pseudo-labels, and which query strategy and
file formats fit it. A new kind is one module with a `TaskKind` subclass plus its line in
`al_core.kinds.KINDS`, and its models: one module of al_core.models plus their lines in `MODEL_CLASSES`.

The "value" of an example is its gold answer in the kind's own shape: a class name
(classification), a list of class names (multi-label), a list of IOB2 tags (tagging).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from al_core.data import Example

# skip(reason, message): a lenient reader counts the reason, a strict one raises the message
# (a message of None is only counted, by both)
Skip = Callable[[str, "str | None"], None]


class TaskKind:
    name: str  # the kind's name in configs, saved models and reports
    control_tag: str  # the Label Studio control it reads: "Choices" or "Labels"
    result_key: str  # the key of a region's value holding the labels: "choices" or "labels"
    # the headline quality of a version, one that hides no class: "macro_f1" (classification,
    # multi-label), "span_f1" (tagging, the worst entity type reported beside it)
    metric: str
    metrics: tuple[str, ...]  # every measure `scores` gives, `metric` first
    # PLASM's drop rule (1 - score) reads the teacher's share of right decisions: "accuracy",
    # "micro_f1", "span_f1"
    drop_metric: str
    default_strategy: str  # the query strategy of STRATEGY=auto
    label_noun: str  # what one label is called in messages: "class", "entity type"
    mention_unit: str  # what per-label counts count: "tasks", "spans"
    unit: str  # what one pseudo-label covers, in plasm-export's report
    learning_rate: float  # fine-tuning's default rate for this kind's head
    formats: tuple[str, ...]  # plasm-export's output formats that fit the kind
    region_confidence: bool = False  # a predicted region carries the model's confidence as its score
    # auto mode refreshes between fine-tunes with a frozen head over the fine-tuned encoder: the
    # fine-tuned model's embedding of a task is then the frozen head's vector (one mean-pooled
    # vector per text), so a fine-tune's scoring pass hands its vectors over
    refreshes: bool = True

    # -- Label Studio ---------------------------------------------------------------------
    def reads(self, control_tag: str, multiple: bool) -> bool:
        """Whether a labeling config's control (its tag, and choice="multiple") is this kind's."""
        raise NotImplementedError

    def model_labels(self, labels: list[str]) -> list[str]:
        """The labels a model predicts for the config's labels (tagging: IOB2 tags)."""
        return list(labels)

    def config_labels(self, model_labels: list[str]) -> list[str]:
        """The config's labels (class names, entity types) of a model's labels."""
        return list(model_labels)

    def unlabeled(self, task_id: str, text: str, meta: dict) -> Example:
        """A task as an example with no label yet."""
        return Example(id=task_id, text=text, meta=meta)

    def labeled(self, example: Example, regions: list[dict], labels: list[str], skip: Skip, lenient: bool) -> Example:
        """`example` labeled by an annotation's regions of the config's control (labels: the config's)."""
        raise NotImplementedError

    def answer(self, values: list[dict]) -> tuple:
        """What an annotation says (the `value` of each of its regions), comparable between annotators."""
        return tuple(sorted(str(c) for value in values for c in value.get(self.result_key) or []))

    def label_config_xml(self, labels: list[str]) -> str:
        """A Label Studio labeling config of this kind over one text (`labels`: the model's)."""
        raise NotImplementedError

    def regions(self, example: Example, value, base: dict) -> list[dict]:
        """Label Studio result regions saying `value` for `example` (`base`: from_name, to_name, type)."""
        raise NotImplementedError

    # -- gold and predictions -------------------------------------------------------------
    def gold(self, example: Example):
        """The example's gold value, or None when it has none."""
        raise NotImplementedError

    def with_gold(self, example: Example, value) -> Example:
        """A copy of `example` carrying `value` as its label."""
        raise NotImplementedError

    def decode(self, probs: np.ndarray, labels: list[str]):
        """The value a model predicts from one example's probabilities."""
        raise NotImplementedError

    def confidence(self, probs: np.ndarray) -> float:
        """How sure the model is of its decoded value, in [0, 1] (PLASM's uncertainty filter)."""
        raise NotImplementedError

    def measures(self, gold: list, predicted: list, labels: list[str] | None) -> tuple[dict[str, float], dict]:
        """Every measure of `metrics` by name, and the per-label table {label: precision, recall,
        f1, support} over `labels` (the config's; None: those the values hold)."""
        raise NotImplementedError

    def resampled_headline(self, gold: list, predicted: list, labels: list[str] | None, draws: np.ndarray) -> np.ndarray:
        """The headline of each resample at once (a row of `draws`: indices into gold and predicted),
        for a bootstrap interval; a kind may compute it faster than one report per row."""
        return np.array(
            [self.measures([gold[i] for i in row], [predicted[i] for i in row], labels)[0][self.metric] for row in draws]
        )

    def report(self, gold: Sequence, predicted: Sequence, labels: list[str] | None = None) -> dict:
        """The whole quality report of predicted values against gold values: the headline (`metric`,
        `value`), every measure (`figures`, the headline first), the per-label table (`per_label`)
        and the label with the lowest F1 among those with gold examples (`worst`)."""
        from al_core.metrics import worst_label

        figures, per_label = self.measures(list(gold), list(predicted), labels)
        return {
            "metric": self.metric,
            "value": figures[self.metric],
            "figures": {name: figures[name] for name in self.metrics},
            "per_label": per_label,
            "worst": worst_label(per_label),
        }

    def score(self, gold: Sequence, predicted: Sequence) -> float:
        """The kind's headline metric of predicted values against gold values (`report`'s value)."""
        return self.report(gold, predicted)["value"]

    def scores(self, gold: Sequence, predicted: Sequence) -> dict[str, float]:
        """Every measure of the kind (`metrics`), the headline first (`report`'s figures)."""
        return self.report(gold, predicted)["figures"]

    def agrees(self, a, b) -> bool:
        """Whether two values say the same."""
        return a == b

    def value_labels(self, value) -> list[str]:
        """The config's labels a gold or predicted value names, one per occurrence."""
        raise NotImplementedError

    def label_mentions(self, example: Example) -> list[str]:
        """The labels a labeled example mentions, one per occurrence (per-label counts)."""
        raise NotImplementedError

    def stratum(self, example: Example) -> str | None:
        """The group a hold-out split keeps in proportion (classification: the class), or None."""
        return None

    def outcomes(self, n_labels: int) -> int:
        """How many outcomes each of the model's decisions has (the published score's K)."""
        return n_labels

    # -- models ---------------------------------------------------------------------------
    def frozen_below(self, config) -> int:
        """auto mode: the labeled tasks below which this kind's acquisition model is a frozen head."""
        return config.frozen_below_classification

    def json_fields(self, example: Example) -> dict:
        """The fields of plasm-export's JSONL record that carry the example's label."""
        raise NotImplementedError

    def csv_label(self, example: Example) -> str:
        """The label column of plasm-export's CSV (a kind without CSV output raises)."""
        raise NotImplementedError(f"{self.name} tasks have no CSV format")

    def __repr__(self) -> str:
        return f"<task kind {self.name}>"
