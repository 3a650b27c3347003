"""Which acquisition model a round trains, and the estimate of its quality that each version records.

`AcquisitionConfig` is the one source of these defaults (the backend's settings, the
simulator's config and the benchmarks start from it):
- mode `frozen`: a logistic regression on the frozen encoder's cached vectors (al_core.models.frozen);
- mode `finetune`: the whole transformer fine-tuned with TrainingConfig's schedule;
- mode `auto` (the default): `frozen` while a project has fewer labeled tasks than the
  threshold of its kind, `finetune` from then on. The thresholds come from the learning
  curves in BENCHMARKS.md: for classification, fine-tuning (its head started as the frozen
  head's regression) is the better of the two from 40 labels on, and below that the frozen
  head retrains in about a second; for tagging fine-tuning is far better from the first few
  dozen sentences, so its threshold is 0.

The quality estimate: k-fold cross-validation of the head in frozen mode (cheap: the
vectors are cached); in finetune mode a fixed share of the labeled tasks (chosen by a hash
of their ids, so the same tasks stay out across versions) is held out of training and the
version is measured on it. The headline is the kind's metric, one that hides no class (macro F1
for classification and multi-label classification, strict span F1 for tagging); the estimate also
carries the kind's other measures (accuracy, micro F1), the per-label precision, recall, F1 and
support over every label of the config, and the worst label (`TaskKind.report`).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal

from pydantic import Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from al_core.config import STRICT
from al_core.data import Example
from al_core.kinds import TaskKind, kind_of

if TYPE_CHECKING:  # the models' module loads torch; settings that read AcquisitionConfig need not
    from al_core.models.base import Predictor

Mode = Literal["auto", "frozen", "finetune"]


@pydantic_dataclass(frozen=True, config=STRICT)
class AcquisitionConfig:
    mode: Mode = Field(
        "auto",
        description="frozen: a logistic regression on the encoder's cached vectors (retrains in milliseconds, "
        "every task scored each time); finetune: the whole model fine-tuned; auto: frozen below "
        "frozen_below_classification / frozen_below_tagging labeled tasks, finetune from there on.",
    )
    frozen_below_classification: int = Field(40, ge=0, description="auto: classification labels before fine-tuning.")
    frozen_below_tagging: int = Field(0, ge=0, description="auto: tagging labels before fine-tuning.")
    cv_folds: int = Field(5, ge=2, description="Quality estimate of a frozen head: k-fold cross-validation.")
    holdout_share: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Quality estimate of a fine-tuned version: the share of labeled tasks held out of its "
        "training (the same tasks every version, by a hash of their ids); 0: no estimate.",
    )
    min_estimate_labels: int = Field(
        10, ge=0, description="Fewest labeled tasks for a quality estimate (fewer: none, and nothing held out)."
    )

    def frozen_below(self, kind: str) -> int:
        return kind_of(kind).frozen_below(self)


def resolve_mode(config: AcquisitionConfig, kind: str, n_labeled: int) -> str:
    """`frozen` or `finetune` for a round with `n_labeled` labeled tasks."""
    if config.mode != "auto":
        return config.mode
    return "frozen" if n_labeled < config.frozen_below(kind) else "finetune"


@dataclass(frozen=True)
class QualityEstimate:
    metric: str  # the headline: macro_f1 | span_f1
    value: float | None
    method: str
    n: int  # labeled tasks the estimate is measured on
    figures: dict[str, float] = field(default_factory=dict)  # every measure of the kind, the headline first
    per_label: dict[str, dict] = field(default_factory=dict)  # label -> precision, recall, f1, support
    worst: str | None = None  # the label with the lowest F1 among those with examples

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def measured(cls, report: dict, method: str, n: int) -> QualityEstimate:
        """An estimate from a kind's report (`TaskKind.report`), its figures rounded to 4 places."""
        per_label = {
            label: {k: (v if k == "support" else round(v, 4)) for k, v in row.items()}
            for label, row in report["per_label"].items()
        }
        figures = {name: round(value, 4) for name, value in report["figures"].items()}
        return cls(report["metric"], round(report["value"], 4), method, n, figures, per_label, report["worst"])


def score_predictions(kind: TaskKind, gold: list[Example], predicted: list, labels: list[str] | None = None) -> dict:
    """The kind's report (headline, figures, per-label table) of predictions against gold examples;
    `labels`: the config's (every one appears in the table)."""
    return kind.report([kind.gold(e) for e in gold], predicted, labels)


def label_table(
    quality: dict | None, label_counts: dict[str, int] | None, predicted: dict[str, int] | None = None
) -> list[dict]:
    """One row per label of a saved estimate (`QualityEstimate.as_dict`) and its version's label
    counts: label, labels (given), precision, recall, f1, support (examples measured) and
    predicted (scored pool tasks the version predicts it for; None where unknown). An estimate
    saved before it had a per-label table, or none at all, gives None for the measures."""
    per_label = (quality or {}).get("per_label") or {}
    label_counts, predicted = label_counts or {}, predicted or {}
    rows = []
    for label in dict.fromkeys(list(label_counts) + list(per_label)):
        row = per_label.get(label) or {}
        rows.append(
            {
                "label": label,
                "labels": label_counts.get(label, 0),
                **{k: row.get(k) for k in ("precision", "recall", "f1", "support")},
                "predicted": predicted.get(label),
            }
        )
    return rows


def predicted_counts(kind: TaskKind, probs, model_labels: list[str]) -> dict[str, int]:
    """For every label of the config, how many of the tasks whose probabilities are given (a
    round's scored pool) the model's decoded prediction names (each task counted once a label)."""
    counts = dict.fromkeys(kind.config_labels(list(model_labels)), 0)
    for task_probs in probs:
        for label in set(kind.value_labels(kind.decode(task_probs, model_labels))):
            counts[label] = counts.get(label, 0) + 1
    return counts


def _held_out(example: Example, share: float) -> bool:
    digest = hashlib.sha1(str(example.id).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < share


def fit_with_estimate(model: Predictor, labeled: list[Example], config: AcquisitionConfig) -> QualityEstimate:
    """Fits `model` on `labeled` and estimates its quality (see the module's docstring)."""
    kind = model.task_kind
    metric = kind.metric
    labels = kind.config_labels(list(model.labels))
    if len(labeled) < config.min_estimate_labels:
        model.fit(labeled)
        return QualityEstimate(metric, None, f"none (fewer than {config.min_estimate_labels} labels)", 0)
    if getattr(model, "mode", "finetune") == "frozen":
        folds = min(config.cv_folds, len(labeled))
        predicted = model.cross_validated_predictions(labeled, folds)
        model.fit(labeled)
        report = score_predictions(kind, labeled, predicted, labels)
        return QualityEstimate.measured(report, f"{folds}-fold cross-validation", len(labeled))
    held = [e for e in labeled if _held_out(e, config.holdout_share)]
    train = [e for e in labeled if not _held_out(e, config.holdout_share)]
    if not held or not train:
        model.fit(labeled)
        return QualityEstimate(metric, None, "none (no task fell in the held-out share)", 0)
    model.fit(train)
    report = score_predictions(kind, held, model.predict([e.without_labels() for e in held]), labels)
    share = f"{config.holdout_share:.0%}"
    return QualityEstimate.measured(report, f"held-out {share} of the labels", len(held))
