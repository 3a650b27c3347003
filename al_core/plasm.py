"""PLASM: pseudo-labels from a teacher, filtered before a successor trains on them.

After annotation, a teacher trained on the gold labels labels the rest of the pool.
Its mistakes are then filtered out: `uncertainty` drops what the teacher is least sure
of, `tracin` drops the highest self-influence (Pruthi et al., 2020): the sum over saved
training checkpoints t of lr_t * ||grad loss(x, y_hat; theta_t)||^2, taken over the
model's last layer (its classification head), which is the practical version. How much
to drop: 1 - the teacher's held-out score, or a fraction the user gives.

The unit is the task: for tagging one confidence, one filter score, one keep/drop decision per
sentence; for multi-label classification per text, over all its classes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from al_core.config import TrainingConfig
from al_core.data import Example
from al_core.exceptions import ALError
from al_core.kinds import TaskKind, kind_of
from al_core.kinds.tagging import valid_iob2  # noqa: F401  (part of this module's interface)
from al_core.models.base import Predictor

# ---------------------------------------------------------------------------------------------
# Pseudo-labeling


@dataclass
class PseudoLabels:
    """The teacher's answer for each example, in input order.

    `labels`: each example's value in its kind's shape (a class, a set of classes, a tag list).
    `confidences`: the kind's confidence: the max probability (classification); the geometric
    mean of the decisions' max probabilities (multi-label: per class; tagging: per word), so one
    unsure decision lowers the whole task.
    """

    labels: list
    confidences: np.ndarray


def _predict_in_chunks(teacher: Predictor, examples: Sequence[Example], chunk_size: int, progress: bool):
    """predict_proba over chunks, so a long pool shows a progress bar."""
    from tqdm.auto import tqdm

    outputs: list = []
    starts = range(0, len(examples), chunk_size)
    for start in tqdm(starts, desc="pseudo-labeling", unit="chunk", disable=not progress or len(starts) < 2):
        probs = teacher.predict_proba(list(examples[start : start + chunk_size]))
        outputs.extend(list(probs))
    return outputs


def pseudo_label(
    teacher: Predictor, examples: Sequence[Example], chunk_size: int = 512, progress: bool = False
) -> PseudoLabels:
    """The teacher's labels and confidences for `examples` (a fitted model wrapper)."""
    if not examples:
        return PseudoLabels(labels=[], confidences=np.zeros(0))
    probs = _predict_in_chunks(teacher, examples, chunk_size, progress)
    kind = teacher.task_kind
    labels = [kind.decode(np.asarray(p, dtype=float), teacher.labels) for p in probs]
    confidences = np.array([kind.confidence(np.asarray(p, dtype=float)) for p in probs])
    return PseudoLabels(labels=labels, confidences=confidences)


def with_labels(examples: Sequence[Example], labels: Sequence, kind: TaskKind) -> list[Example]:
    """Copies of `examples` carrying `labels` (each in its kind's shape)."""
    return [kind.with_gold(e, y) for e, y in zip(examples, labels, strict=True)]


# ---------------------------------------------------------------------------------------------
# How much to drop


def drop_fraction_from_score(teacher_score: float) -> float:
    """The paper's rule: drop 1 - score (teacher accuracy 0.9 -> drop 10%), within [0, 1]."""
    if not math.isfinite(teacher_score):
        raise ALError(f"the teacher's held-out score is not a number: {teacher_score}")
    return float(min(1.0, max(0.0, 1.0 - teacher_score)))


def keep_mask(scores: np.ndarray, fraction: float) -> np.ndarray:
    """True for the rows kept once the `fraction` with the highest scores is dropped.

    round(fraction * n) rows are dropped; ties go to the earlier row (a stable order).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ALError(f"the drop fraction must be between 0 and 1, got {fraction}")
    scores = np.asarray(scores, dtype=float)
    n_drop = int(round(fraction * len(scores)))
    kept = np.ones(len(scores), dtype=bool)
    if n_drop:
        order = np.argsort(-scores, kind="stable")
        kept[order[:n_drop]] = False
    return kept


# ---------------------------------------------------------------------------------------------
# TracIn checkpoints


@dataclass(frozen=True)
class Checkpoint:
    path: str
    step: int
    learning_rate: float


class CheckpointRecorder:
    """An `on_checkpoint` callback for fit(): saves the model at the end of every epoch.

    The list is also written to `checkpoints.json` in `folder`, so a later run (or a
    resumed one) finds the checkpoints with their learning rates.
    """

    MANIFEST = "checkpoints.json"

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.checkpoints: list[Checkpoint] = []

    def __call__(self, model_wrapper, step: int, learning_rate: float) -> None:
        path = self.folder / f"step-{step:07d}"
        model_wrapper.save(path)
        self.checkpoints.append(Checkpoint(str(path), int(step), float(learning_rate)))
        self._write_manifest()

    def _write_manifest(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        rows = [
            {"path": Path(c.path).name, "step": c.step, "learning_rate": c.learning_rate}
            for c in self.checkpoints
        ]
        tmp = self.folder / (self.MANIFEST + ".tmp")
        tmp.write_text(json.dumps(rows, indent=1), encoding="utf-8")
        tmp.replace(self.folder / self.MANIFEST)

    @classmethod
    def read(cls, folder: str | Path) -> list[Checkpoint]:
        """The checkpoints listed in `folder`; an empty list when there are none."""
        folder = Path(folder)
        manifest = folder / cls.MANIFEST
        if not manifest.exists():
            return []
        rows = json.loads(manifest.read_text(encoding="utf-8"))
        found = [Checkpoint(str(folder / r["path"]), int(r["step"]), float(r["learning_rate"])) for r in rows]
        return [c for c in found if Path(c.path).is_dir()]


# ---------------------------------------------------------------------------------------------
# TracIn self-influence over the last layer


def classification_head(model: torch.nn.Module) -> torch.nn.Module:
    """The last layer(s) a *ForSequenceClassification / *ForTokenClassification model ends with."""
    for name in ("classifier", "score", "head", "out_proj"):
        module = getattr(model, name, None)
        if isinstance(module, torch.nn.Module) and any(True for _ in module.parameters()):
            return module
    children = [m for m in model.children() if any(True for _ in m.parameters())]
    if not children:
        raise ALError(f"cannot find the last layer of {type(model).__name__} for TracIn")
    return children[-1]


def _head_grad_norms(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> np.ndarray:
    """||grad of each row's loss w.r.t. the head's parameters||^2, one value per row.

    The body runs once for the batch without gradients; the head's input is caught by a
    hook, and then each row goes through the head alone, so backward is cheap.
    """
    head = classification_head(model)
    caught: list[torch.Tensor] = []

    def catch_input(_module, inputs, _output):
        caught.append(inputs[0].detach())

    hook = head.register_forward_hook(catch_input)
    try:
        with torch.no_grad():
            model(**{k: v for k, v in batch.items() if k != "labels"})
    finally:
        hook.remove()
    if not caught:
        raise ALError(f"the last layer of {type(model).__name__} was not called with an input TracIn can use")
    features = caught[-1]
    labels = batch["labels"]
    params = [p for p in head.parameters()]
    norms = np.zeros(len(labels))
    with torch.enable_grad():
        for i in range(len(labels)):
            logits = head(features[i : i + 1])
            target = labels[i : i + 1]
            if logits.dim() == 3:  # tagging: (1, length, K); padding and later sub-tokens are -100
                logits, target = logits.reshape(-1, logits.shape[-1]), target.reshape(-1)
                if not (target != -100).any():
                    continue
            if target.is_floating_point():  # multi-label: a 0/1 vector, a sigmoid per class
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), target.float())
            else:
                loss = torch.nn.functional.cross_entropy(logits.float(), target, ignore_index=-100)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            norms[i] = float(sum((g.float() ** 2).sum() for g in grads if g is not None))
    return norms


def self_influence(
    checkpoints: Sequence[Checkpoint],
    examples: Sequence[Example],
    targets: Sequence,
    load: Callable[[str], object] | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> np.ndarray:
    """TracIn self-influence of each (example, target): sum_t lr_t * ||grad_head loss||^2.

    `targets` are the labels to score (the pseudo-labels): class names or tag lists.
    `load(path)` turns a checkpoint folder into a model wrapper (default: al_core.models.load_model).
    Higher means more suspicious: mislabeled rows keep a large gradient through training.
    """
    from tqdm.auto import tqdm

    from al_core.inference import length_sorted_batches
    from al_core.training import pad_batch

    if not checkpoints:
        raise ALError("TracIn needs at least one checkpoint saved during the teacher's training")
    if load is None:
        from al_core.models import load_model as load
    total = np.zeros(len(examples))
    if not examples:
        return total
    bar = tqdm(total=len(checkpoints) * len(examples), desc="tracin", unit="ex", disable=not progress)
    for checkpoint in checkpoints:
        wrapper = load(checkpoint.path)
        model = wrapper.model_
        device = next(model.parameters()).device
        model.eval()
        # tokenized as the model reads a task (its text cut included), labeled with the targets
        features = wrapper.encode(with_labels(examples, targets, wrapper.task_kind), with_labels=True)
        pad_id = wrapper.tokenizer_.pad_token_id or 0
        for indices in length_sorted_batches([len(f["input_ids"]) for f in features], batch_size):
            batch = pad_batch([features[i] for i in indices], pad_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            total[indices] += checkpoint.learning_rate * _head_grad_norms(model, batch)
            bar.update(len(indices))
        del wrapper, model
    bar.close()
    return total


# ---------------------------------------------------------------------------------------------
# Filters: score the pseudo-labeled rows, higher = drop first


class PseudoLabelFilter:
    """Scores pseudo-labeled examples; the highest scores are dropped first."""

    name: str = ""
    drops: bool = True  # False: keeps everything whatever the fraction

    def score(self, examples: Sequence[Example], pseudo: PseudoLabels) -> np.ndarray:
        raise NotImplementedError


class NoFilter(PseudoLabelFilter):
    """Keeps every pseudo-label."""

    name = "none"
    drops = False

    def score(self, examples, pseudo):
        return np.zeros(len(examples))


class UncertaintyFilter(PseudoLabelFilter):
    """Drops what the teacher is least sure of: score = 1 - confidence."""

    name = "uncertainty"

    def score(self, examples, pseudo):
        return 1.0 - np.asarray(pseudo.confidences, dtype=float)


class TracInFilter(PseudoLabelFilter):
    """Drops the highest TracIn self-influence, from checkpoints saved while the teacher trained."""

    name = "tracin"

    def __init__(
        self, checkpoints: Sequence[Checkpoint], load=None, batch_size: int = 32, progress: bool = False
    ):
        self.checkpoints = list(checkpoints)
        self.load = load
        self.batch_size = batch_size
        self.progress = progress

    def score(self, examples, pseudo):
        return self_influence(
            self.checkpoints,
            examples,
            pseudo.labels,
            load=self.load,
            batch_size=self.batch_size,
            progress=self.progress,
        )


FILTERS: dict[str, type[PseudoLabelFilter]] = {f.name: f for f in (NoFilter, UncertaintyFilter, TracInFilter)}


def available_filters() -> list[str]:
    return list(FILTERS)


def get_filter(name: str, **options) -> PseudoLabelFilter:
    """The filter registered under `name`; `options` go to its constructor (tracin: checkpoints=...)."""
    if name not in FILTERS:
        raise ALError(f"unknown pseudo-label filter {name!r}; choose one of {', '.join(FILTERS)}")
    return FILTERS[name](**options)


# ---------------------------------------------------------------------------------------------
# One call for the whole step


@dataclass
class FilteredPseudoLabels:
    examples: list[Example]  # the pool, each with its pseudo-label
    confidences: np.ndarray
    scores: np.ndarray
    kept: np.ndarray  # bool per example
    drop_fraction: float

    @property
    def kept_examples(self) -> list[Example]:
        return [e for e, k in zip(self.examples, self.kept, strict=True) if k]


def filter_pseudo_labels(
    pool: Sequence[Example],
    pseudo: PseudoLabels,
    kind: str,
    label_filter: PseudoLabelFilter,
    drop_fraction: float,
) -> FilteredPseudoLabels:
    """Scores the pseudo-labeled pool with `label_filter` and drops `drop_fraction` of it."""
    labeled = with_labels(pool, pseudo.labels, kind_of(kind))  # an unknown kind raises here
    scores = np.asarray(label_filter.score(labeled, pseudo), dtype=float)
    fraction = drop_fraction if label_filter.drops else 0.0
    return FilteredPseudoLabels(
        labeled, np.asarray(pseudo.confidences), scores, keep_mask(scores, fraction), fraction
    )


# ---------------------------------------------------------------------------------------------
# The pipeline plasm-export and the simulator share: split the gold labels, train the teacher on
# one part and score it on the other, label the pool, filter by the teacher's score


def split_gold(
    gold: list[Example], kind: str, holdout: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """(train, held-out); stratified by class for classification when every class allows it."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < holdout < 1.0:
        raise ALError(f"the held-out share must be between 0 and 1, got {holdout}")
    if len(gold) < 2:
        raise ALError(
            f"only {len(gold)} annotated task: at least 2 are needed (one to train, one to measure)"
        )
    n_heldout = min(len(gold) - 1, max(1, round(holdout * len(gold))))
    stratify = None
    stratum = kind_of(kind).stratum
    labels = [stratum(e) for e in gold]
    if None not in labels:
        counts = {y: labels.count(y) for y in set(labels)}
        if min(counts.values()) >= 2 and n_heldout >= len(counts) and len(gold) - n_heldout >= len(counts):
            stratify = labels
    train, heldout = train_test_split(gold, test_size=n_heldout, random_state=seed, stratify=stratify)
    return list(train), list(heldout)


def teacher_report(teacher: Predictor, heldout: Sequence[Example]) -> dict:
    """The kind's report (`TaskKind.report`: headline, figures, per-label table) of the teacher on
    the held-out gold labels, over every label the teacher predicts."""
    from al_core.acquisition import score_predictions

    kind = teacher.task_kind
    predicted = teacher.predict([e.without_labels() for e in heldout])
    return score_predictions(kind, list(heldout), predicted, kind.config_labels(list(teacher.labels)))


def drop_score(report: dict, kind) -> float:
    """The score the drop rule reads from a teacher's report: its share of right decisions
    (`TaskKind.drop_metric`: accuracy, micro F1, span F1)."""
    return float(report["figures"][kind.drop_metric])


def score_teacher(teacher: Predictor, heldout: Sequence[Example]) -> float:
    """The teacher's held-out score that the drop rule reads (accuracy, micro F1, span F1)."""
    return drop_score(teacher_report(teacher, heldout), teacher.task_kind)


def label_pool(
    teacher,
    pool: Sequence[Example],
    label_filter: PseudoLabelFilter,
    score: float,
    drop_fraction: float | None = None,
    progress: bool = False,
) -> tuple[FilteredPseudoLabels, dict[str, float]]:
    """The teacher's pseudo-labels for the pool, the `drop_fraction` (default: 1 - its held-out
    `score`) with the highest filter scores dropped; and the seconds each step took."""
    import time

    fraction = drop_fraction_from_score(score) if drop_fraction is None else drop_fraction
    start = time.perf_counter()
    pseudo = pseudo_label(teacher, pool, progress=progress)
    timings = {"pseudo_label_s": time.perf_counter() - start}
    start = time.perf_counter()
    filtered = filter_pseudo_labels(pool, pseudo, teacher.kind, label_filter, fraction)
    timings["filter_s"] = time.perf_counter() - start
    return filtered, timings


def check_successor(
    successor: str,
    kind: str,
    labels: list[str],
    train: list[Example],
    heldout: list[Example],
    pseudo: list[Example],
    training: TrainingConfig,
    *,
    frozen: bool = False,
    margin: float = 0.0,
    say: Callable[[str], None] | None = None,
    fit: Callable[[object, list[Example]], None] | None = None,
    build: Callable[[], Predictor] | None = None,
) -> dict:
    """Trains the successor on gold alone and on gold + pseudo-labels; scores both on held-out gold.

    `frozen`: the successor is a logistic regression on the frozen, mean-pooled vectors of the
    `successor` encoder (a frozen tagger for NER), cheap enough to run by default. The verdict
    ("better") is with_pseudo only when it beats gold alone by more than `margin`. `say` hears a
    line per fit; `fit(model, examples)` fits a fine-tuned successor (default: model.fit);
    `build()` makes a fresh successor of another family (the simulator's classical models), which
    `successor` then only names.
    """
    import time

    from al_core.models import MemoryEmbeddingCache, build_model

    mode = "frozen" if frozen else "finetune"
    cache = MemoryEmbeddingCache() if frozen else None  # the two fits embed the gold once
    results: dict = {}
    runs = (("gold_only", train), ("with_pseudo", train + pseudo)) if pseudo else (("gold_only", train),)
    for name, examples in runs:
        if say is not None:
            say(f"successor check: training {successor} ({mode}) on {len(examples)} tasks ({name.replace('_', ' ')})")
        start = time.perf_counter()
        model = build() if build is not None else build_model(kind, successor, labels, training, mode, cache)
        if frozen or fit is None:
            model.fit(examples)
        else:
            fit(model, examples)
        fit_s = time.perf_counter() - start
        report = teacher_report(model, heldout)
        results[name] = {"score": report["value"], "quality": report, "n_train": len(examples), "fit_s": fit_s}
        del model
    if pseudo:
        wins = results["with_pseudo"]["score"] > results["gold_only"]["score"] + margin
    else:
        results["with_pseudo"] = None
        wins = False
    return {
        "model": successor,
        "mode": mode,
        "metric": kind_of(kind).metric,
        "n_heldout": len(heldout),
        "n_pseudo": len(pseudo),
        "margin": margin,
        **results,
        "better": "with_pseudo" if wins else "gold_only",
    }
