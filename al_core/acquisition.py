"""Which acquisition model a round trains, and the estimate of its quality that each version records.

`AcquisitionConfig` is the one source of these defaults (the backend's settings, the
simulator's config and the benchmarks start from it):
- mode `frozen`: a logistic regression on the frozen encoder's cached vectors (al_core.models.frozen);
- mode `finetune`: the whole transformer fine-tuned with TrainingConfig's schedule;
- mode `auto` (the default): `frozen` while a project has fewer labeled tasks than the
  threshold of its kind, `finetune` from then on, once every `finetune_every` labels, with
  `refresh` rounds in between (a frozen head over the last fine-tuned encoder, which fits and
  scores in seconds; classification kinds). In the background lane (`finetune_lane`, the default)
  a due fine-tune is not the round's: the round serves a refresh head (or the frozen head before
  the first fine-tune, `served_mode`) and the fine-tune runs beside it (al_core.loop.finetune_encoder),
  taken up only when a head over its encoder is not worse; it asks for its first fine-tune
  `finetune_head_start` labels before the threshold, so that it serves from about there. The
  thresholds come from the learning curves in BENCHMARKS.md: for classification, fine-tuning (its
  head started as the frozen head's regression) is the better of the two from 40 labels on, and
  below that the frozen head retrains in about a second; for tagging fine-tuning is far better
  from the first few dozen sentences, so its threshold is 0.

The quality estimate: k-fold cross-validation of the head in frozen mode (cheap: the
vectors are cached); in finetune mode a fixed share of the labeled tasks (chosen by a hash
of their ids, so the same tasks stay out across versions) is held out of training and the
version is measured on it. The headline is the kind's metric, one that hides no class (macro F1
for classification and multi-label classification, strict span F1 for tagging); the estimate also
carries the kind's other measures (accuracy, micro F1), the per-label precision, recall, F1 and
support over every label of the config, and the worst label (`TaskKind.report`).

Both estimates are measured on tasks active learning chose (the uncertain ones, in a class mix of
its own making), so they are biased. The audit sample is not: a task is an audit task when a hash
of (seed, task id) falls below `audit_share` (`is_audit_task`), a uniform random sample of the pool
that stays the same across versions. The backend serves the unlabeled ones among its queried tasks
(ml_backend.jobs.retrain_steps.served_order), in their own order at their own places only: neither
the strategy's ranking nor the cold-start order may pick one (`without_audit`), or the labeled audit
tasks would hold the hard (or the typical) ones those pick and the estimate would carry their bias.
Each version is then also measured on the labeled audit tasks, out of sample, with a 95% interval
(`AuditEstimate`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field
from pydantic.dataclasses import dataclass as pydantic_dataclass
from scipy.stats import binomtest

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
    audit_share: float = Field(
        0.04,
        ge=0,
        le=0.5,
        description="The audit sample: this share of the pool (by a hash of the seed and the task id), served "
        "among the queried tasks and used for an estimate active learning cannot bias; 0: off.",
    )
    team_size: int = Field(
        10,
        ge=1,
        description="Annotators' labels between two retrains: the served order keeps any this many consecutive "
        "tasks in different clusters of the encoder's vectors (al_core.ordering.diverse_order); 1: the "
        "strategy's ranking as it is.",
    )
    finetune_every: int = Field(
        20,
        ge=0,
        description="auto: labels between two fine-tunes. The rounds in between refresh the ordering in seconds: "
        "a logistic regression over the last fine-tuned encoder's vectors of every labeled task, scoring the tasks "
        "that encoder has embedded (the last fine-tune's scored subset); classification kinds; 0: fine-tune every "
        "round.",
    )
    finetune_lane: Literal["background", "inline"] = Field(
        "background",
        description="auto: where the fine-tunes run. background: the retrain that finds a fine-tune due serves a "
        "refresh round (or the frozen head before the first fine-tune) and asks for the fine-tune, which runs beside "
        "the retrains and is taken up only when a head over its encoder is not worse on the held-out labels than a "
        "head over the encoder served now (past the first fine-tune: not worse by more than "
        "finetune_replace_margin); inline: inside the retrain (annotators wait for it).",
    )
    finetune_replace_margin: float = Field(
        0.2,
        ge=0,
        le=1,
        description="background lane: a fine-tune that would replace an earlier fine-tune is rejected only when the "
        "held-out figure of a head over it is lower by more than this. On the 5-30 held-out tasks of 40-300 labels "
        "the difference between two fine-tunes' heads has an sd of 0.09-0.13, and a rejection keeps an encoder "
        "tuned on ever fewer of the labels; the switch from the pretrained encoder must not be worse at all.",
    )
    finetune_head_start: int = Field(
        20,
        ge=0,
        description="background lane: the first fine-tune is asked for this many labels before the kind's threshold "
        "(frozen_below_*), so that its encoder serves from about the threshold, as the inline lane's does: a "
        "fine-tune of minilm-l6 takes 45-130 s on 2 cores, 15-45 labels at one every 3 s; 0: at the threshold.",
    )
    finetune_min_held_out: int = Field(
        10,
        ge=0,
        description="background lane: held-out tasks a verdict needs before it can reject a fine-tune; with fewer it "
        "is taken up. At 40-70 labels the held-out share holds 4-9 tasks, on which a head's macro F1 reads 0.25 or "
        "0.49 by chance, and the first switch from the pretrained encoder gained in 5 of 6 simulated campaigns.",
    )
    cold_start_labels: int = Field(
        20,
        ge=0,
        description="The first labels, served in a cold-start order instead of import order or a model's "
        "ranking: one typical task per cluster of the encoder's vectors (al_core.ordering.cold_start_order), "
        "so that the first labels cover the data; 0: off.",
    )

    def frozen_below(self, kind: str) -> int:
        return kind_of(kind).frozen_below(self)


def in_background_lane(config: AcquisitionConfig, kind: str) -> bool:
    """auto's fine-tunes run beside the retrains: the background lane, with refresh rounds between
    fine-tunes, for a kind that refreshes."""
    return (
        config.mode == "auto"
        and config.finetune_lane == "background"
        and config.finetune_every > 0
        and kind_of(kind).refreshes
    )


def first_finetune_at(config: AcquisitionConfig, kind: str) -> int:
    """Labeled tasks from which auto fine-tunes: the kind's threshold; in the background lane
    `finetune_head_start` labels earlier, since its fine-tune serves only once it ends."""
    threshold = config.frozen_below(kind)
    return max(0, threshold - config.finetune_head_start) if in_background_lane(config, kind) else threshold


def resolve_mode(config: AcquisitionConfig, kind: str, n_labeled: int, finetuned_at: int | None = None) -> str:
    """`frozen`, `finetune` or `refresh` for a round with `n_labeled` labeled tasks. `finetuned_at`:
    the labeled tasks of the last fine-tune whose encoder a refresh round can read (None: none).

    auto: `frozen` below `first_finetune_at`; from there a fine-tune every `finetune_every` labels
    and, between two, `refresh` rounds (a frozen head over the last fine-tuned encoder,
    `al_core.models.refresh_model`), for the kinds whose fine-tuned vector is the frozen one."""
    if config.mode != "auto":
        return config.mode
    if n_labeled < first_finetune_at(config, kind):
        return "frozen"
    if (
        config.finetune_every > 0
        and finetuned_at is not None
        and kind_of(kind).refreshes
        and abs(n_labeled - finetuned_at) < config.finetune_every
    ):
        return "refresh"
    return "finetune"


def served_mode(config: AcquisitionConfig, kind: str, n_labeled: int, finetuned_at: int | None = None) -> str:
    """The mode of the model a retrain serves: `resolve_mode`'s, except that in the background lane a
    due fine-tune (`finetune_in_background`) is served as a refresh round over the last encoder, or
    the frozen head before the first fine-tune."""
    mode = resolve_mode(config, kind, n_labeled, finetuned_at)
    if finetune_in_background(config, kind, n_labeled, finetuned_at):
        return "refresh" if finetuned_at is not None else "frozen"
    return mode


def finetune_in_background(config: AcquisitionConfig, kind: str, n_labeled: int, finetuned_at: int | None) -> bool:
    """A fine-tune is due and runs beside the retrains (`in_background_lane`)."""
    return in_background_lane(config, kind) and resolve_mode(config, kind, n_labeled, finetuned_at) == "finetune"


@dataclass(frozen=True)
class QualityEstimate:
    metric: str  # the headline: macro_f1 | span_f1
    value: float | None
    method: str
    n: int  # labeled tasks the estimate is measured on
    figures: dict[str, float] = field(default_factory=dict)  # every measure of the kind, the headline first
    per_label: dict[str, dict] = field(default_factory=dict)  # label -> precision, recall, f1, support
    worst: str | None = None  # the label with the lowest F1 among those with examples
    audit: dict | None = None  # AuditEstimate.as_dict(): the estimate on the labeled audit tasks

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


# Fewest labeled audit tasks for an audit estimate (fewer: None, and the campaign page says so).
MIN_AUDIT_LABELS = 10
AUDIT_CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 1000


def hash_fraction(key: str) -> float:
    """A stable draw in [0, 1) for `key`: uniform over keys, independent of their order and labels."""
    digest = hashlib.sha1(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def audit_rank(task_id: str, seed: int) -> float:
    """A task's place in [0, 1) among the audit candidates: a hash of (seed, id)."""
    return hash_fraction(f"{seed}:{task_id}")


def is_audit_task(task_id: str, seed: int, share: float) -> bool:
    """Whether a task belongs to the audit sample (the same rule in the backend and the simulator)."""
    return share > 0 and audit_rank(str(task_id), seed) < share


def audit_ids(ids: Iterable[str], seed: int, share: float) -> list[str]:
    """The audit tasks among `ids`, in their serving order (by rank: stable across versions)."""
    chosen = [str(i) for i in ids if is_audit_task(str(i), seed, share)]
    return sorted(chosen, key=lambda i: audit_rank(i, seed))


def without_audit(tasks: Iterable, seed: int, share: float, keep: Collection[str] = ()) -> list:
    """The tasks (ids, or Examples) outside the audit sample, and those of `keep` (labeled ones, which
    the cold-start order reads as covered): what a ranking or the cold-start order may choose from
    (an audit task is served only at its audit place, in the audit sample's order)."""
    out = []
    for t in tasks:
        key = str(getattr(t, "id", t))
        if key in keep or not is_audit_task(key, seed, share):
            out.append(t)
    return out


def audit_step(share: float) -> int:
    """One audit task every this many served tasks."""
    return max(1, round(1 / share))


def audit_slots(size: int, share: float) -> int:
    """The audit tasks a window of `size` served tasks holds."""
    return math.ceil(size / audit_step(share)) if share > 0 else 0


def first_audit_place(n_labeled: int, labeled_audit: int, share: float) -> int:
    """The place (0-based) of the next audit task among the tasks served next: where it falls due,
    one every round(1/share) labels, however many labels come between two versions."""
    step = audit_step(share) if share > 0 else 1
    return min(step - 1, max(0, step * (labeled_audit + 1) - n_labeled - 1))


def interleave_audit(ordered: list[str], audit: list[str], share: float, first: int | None = None) -> list[str]:
    """`ordered` (the tasks to serve, first first) with the audit tasks `audit` (in their serving
    order) at every round(1/share)-th place from `first` (default: the step's last place); audit
    tasks left when `ordered` runs out follow it. The backend's window and the simulator's query."""
    if share <= 0 or not audit:
        return list(ordered)
    step = audit_step(share)
    first = step - 1 if first is None else first
    regular, queue, out = list(ordered), list(audit), []
    while regular or queue:
        if queue and ((len(out) >= first and (len(out) - first) % step == 0) or not regular):
            out.append(queue.pop(0))
        else:
            out.append(regular.pop(0))
    return out


def audited_query(selected: list[str], pool_ids: list[str], n_labeled: int, labeled_audit: int, seed: int, share: float) -> list[str]:
    """A batch query of len(selected) tasks: the non-audit tasks of `selected` with the unlabeled
    audit tasks of `pool_ids` in their places (`interleave_audit`): the simulator's counterpart of
    the backend's window. `selected` should hold no audit task (`without_audit`); one that does
    is dropped, so the query may then be shorter."""
    size = len(selected)
    queue = audit_ids(pool_ids, seed, share)[: audit_slots(size, share)]
    regular = without_audit(selected, seed, share)
    return interleave_audit(regular, queue, share, first_audit_place(n_labeled, labeled_audit, share))[:size]


def wilson_interval(k: int, n: int, confidence: float = AUDIT_CONFIDENCE) -> tuple[float, float]:
    interval = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def bootstrap_interval(
    statistic, n: int, seed: int = 0, confidence: float = AUDIT_CONFIDENCE, resamples: int = BOOTSTRAP_RESAMPLES
) -> tuple[float, float]:
    """Percentile bootstrap interval over n paired (gold, predicted) items: `statistic(draws)` gives
    the value of every resample at once, each row of `draws` (resamples, n) the indices of one."""
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(np.asarray(statistic(draws), dtype=float), [tail, 1.0 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class AuditEstimate:
    """A version's quality on the labeled audit tasks, from out-of-sample predictions only."""

    metric: str
    value: float | None  # None: fewer than MIN_AUDIT_LABELS labeled audit tasks
    low: float | None = None  # bootstrap percentile interval of `value`
    high: float | None = None
    accuracy: float | None = None  # tasks predicted exactly right, with a Wilson interval
    accuracy_low: float | None = None
    accuracy_high: float | None = None
    n: int = 0  # labeled audit tasks measured
    share: float = 0.0
    confidence: float = AUDIT_CONFIDENCE

    def as_dict(self) -> dict:
        return asdict(self)


def audit_estimate(
    kind: TaskKind, gold: list[Example], predicted: list, labels: list[str], share: float, seed: int = 0
) -> AuditEstimate:
    """The audit estimate of out-of-sample `predicted` values for the labeled audit tasks `gold`."""
    n = len(gold)
    if n < MIN_AUDIT_LABELS:
        return AuditEstimate(kind.metric, None, n=n, share=share)
    values = [kind.gold(e) for e in gold]
    right = sum(kind.agrees(g, p) for g, p in zip(values, predicted, strict=True))
    low, high = bootstrap_interval(lambda draws: kind.resampled_headline(values, predicted, labels, draws), n, seed)
    accuracy_low, accuracy_high = wilson_interval(right, n)
    return AuditEstimate(
        kind.metric,
        round(kind.measures(values, list(predicted), labels)[0][kind.metric], 4),
        round(low, 4),
        round(high, 4),
        round(right / n, 4),
        round(accuracy_low, 4),
        round(accuracy_high, 4),
        n,
        share,
    )


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
    return hash_fraction(str(example.id)) < share


def fit_with_estimate(
    model: Predictor, labeled: list[Example], config: AcquisitionConfig, seed: int = 0, held_out: bool = False
) -> QualityEstimate:
    """Fits `model` on `labeled` and estimates its quality (see the module's docstring); `seed`
    picks the audit sample (`is_audit_task`). `held_out`: a frozen head too is measured on the
    held-out share (not cross-validated), so that two heads are compared on the same tasks."""
    kind = model.task_kind
    metric = kind.metric
    labels = kind.config_labels(list(model.labels))
    audit = {e.id for e in labeled if is_audit_task(e.id, seed, config.audit_share)}

    def audited(examples: list[Example], predicted: list) -> dict:
        pairs = [(e, p) for e, p in zip(examples, predicted, strict=True) if e.id in audit]
        return audit_estimate(
            kind, [e for e, _ in pairs], [p for _, p in pairs], labels, config.audit_share, seed
        ).as_dict()

    if len(labeled) < config.min_estimate_labels:
        model.fit(labeled)
        none = audit_estimate(kind, [], [], labels, config.audit_share).as_dict() | {"n": len(audit)}
        return QualityEstimate(metric, None, f"none (fewer than {config.min_estimate_labels} labels)", 0, audit=none)
    frozen = getattr(model, "mode", "finetune") == "frozen"
    if frozen and not held_out and not getattr(model, "encoder_saw_labels", False):
        folds = min(config.cv_folds, len(labeled))
        predicted = model.cross_validated_predictions(labeled, folds)
        model.fit(labeled)  # the head a version keeps: every label, the audit tasks' too
        report = score_predictions(kind, labeled, predicted, labels)
        estimate = QualityEstimate.measured(report, f"{folds}-fold cross-validation", len(labeled))
        return dataclasses.replace(estimate, audit=audited(labeled, predicted))
    # A fine-tuned version is not trained on the labeled audit tasks: they join the held-out share,
    # so that its predictions for them are out of sample (the next frozen head uses them again).
    # A head over a fine-tuned encoder (a refresh round) is measured on the same tasks, which that
    # encoder never saw, then refit on every label (a head's fit costs milliseconds).
    held = [e for e in labeled if _held_out(e, config.holdout_share) or e.id in audit]
    train = [e for e in labeled if not (_held_out(e, config.holdout_share) or e.id in audit)]
    if not held or not train:
        model.fit(labeled)
        return QualityEstimate(metric, None, "none (no task fell in the held-out share)", 0)
    model.fit(train)
    predicted = model.predict([e.without_labels() for e in held])
    if frozen:
        model.fit(labeled)
    if config.holdout_share <= 0:
        return QualityEstimate(metric, None, "none (no held-out share)", 0, audit=audited(held, predicted))
    report = score_predictions(kind, held, predicted, labels)
    share = f"{config.holdout_share:.0%}"
    estimate = QualityEstimate.measured(report, f"held-out {share} of the labels", len(held))
    return dataclasses.replace(estimate, audit=audited(held, predicted))
