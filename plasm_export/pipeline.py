"""The PLASM run behind plasm-export: teacher, held-out score, pseudo-labels, filter, successor check.

The teacher is trained twice: on the gold labels minus a held-out part, to score it (the
score reported, and the drop fraction's), then refit on all the gold, which pseudo-labels
the pool (with TracIn's checkpoints). Both are saved under the work folder with a hash of
the inputs; a run killed later (refitting, pseudo-labeling, filtering, checking) loads what
was saved instead of training again. TracIn's scores are kept there too.

The successor check trains a successor on the non-held-out gold alone and with the kept
pseudo-labels, both scored on the held-out gold; the check's pseudo-labels are the scored
teacher's (it never saw the held-out gold, so nothing of it leaks into the comparison).
The better set is the one written: pseudo-labels are used only when they win by more than
the margin.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from al_core import plasm
from al_core.data import Example
from al_core.kinds import TaskKind
from al_core.plasm import (
    CheckpointRecorder,
    FilteredPseudoLabels,
    TracInFilter,
    drop_score,
    get_filter,
    label_pool,
    split_gold,
    teacher_report,
)
from al_core.training import TrainingConfig
from plasm_export.source import AnnotatedProject

STATE_FILE = "state.json"


@dataclass
class ExportSettings:
    teacher: str
    filter: str = "tracin"
    drop_fraction: float | None = None  # None: 1 - the teacher's held-out score
    holdout: float = 0.2
    training: TrainingConfig = field(default_factory=TrainingConfig)
    successor: str | None = None  # --check-successor MODEL; None: a frozen head over the teacher's encoder
    check: bool = True  # False: --no-check, the kept pseudo-labels are used unchecked
    check_margin: float = 0.005  # pseudo-labels are used when they win the check by more than this
    progress: bool = True


@dataclass
class Row:
    """One task of the output: a gold label or a pseudo-label with its scores."""

    example: Example
    source: str  # "gold" or "pseudo"
    teacher_confidence: float | None = None
    filter_score: float | None = None
    kept: bool = True  # in the training set: gold, or a pseudo-label the filter kept and the check let in
    heldout: bool = False  # a gold row kept aside to measure the teacher (and the successors)
    passed_filter: bool = True


@dataclass
class ExportResult:
    project: AnnotatedProject
    settings: ExportSettings
    rows: list[Row]
    teacher_metric: str  # the kind's metric: "accuracy", "micro_f1" or "span_f1"
    teacher_score: float
    drop_fraction: float
    teacher_version: str
    timings: dict[str, float]
    resumed: bool
    successor: dict | None = None  # the successor check; None with --no-check
    n_refit: int = 0  # gold tasks the final teacher (the one that pseudo-labels) was fit on
    # the teacher's held-out report (TaskKind.report: the kind's headline, figures, per-label table);
    # None for a teacher resumed from a work folder that did not save it
    teacher_quality: dict | None = None

    @property
    def uses_pseudo_labels(self) -> bool:
        return self.successor is None or self.successor["better"] == "with_pseudo"

    @property
    def kind(self) -> str:
        return self.project.config.kind

    @property
    def task_kind(self) -> TaskKind:
        return self.project.config.task_kind

    @property
    def training_rows(self) -> list[Row]:
        """What a successor trains on: every gold row and the kept pseudo-labels."""
        return [r for r in self.rows if r.kept]


def inputs_hash(project: AnnotatedProject, settings: ExportSettings, train, heldout) -> str:
    """What the teacher depends on; the saved teacher is reused only when this matches."""
    training = dataclasses.asdict(settings.training)
    training.pop("device", None)
    payload = {
        "kind": project.config.kind,
        "labels": project.dataset.labels,
        "teacher": settings.teacher,
        "training": training,
        "holdout": settings.holdout,
        "train": [(e.id, e.text, e.label, e.choices, e.tags) for e in train],
        "heldout": [e.id for e in heldout],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class WorkFolder:
    """<out>.work: the scored and the refit teacher, TracIn's checkpoints and cached filter scores."""

    def __init__(self, path: Path, digest: str):
        self.path = Path(path)
        self.digest = digest
        self.scored = self.path / "teacher-scored"  # fit on the gold minus the held-out part
        self.teacher = self.path / "teacher"  # refit on all the gold
        self.checkpoints = self.path / "checkpoints"

    def state(self) -> dict | None:
        try:
            state = json.loads((self.path / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return state if state.get("inputs_hash") == self.digest and self.scored.is_dir() else None

    def reset(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True)

    def save_model(self, model, folder: Path, state: dict) -> None:
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        model.save(partial)
        shutil.rmtree(folder, ignore_errors=True)
        partial.replace(folder)
        self._write_json(STATE_FILE, {**state, "inputs_hash": self.digest})

    def cached_scores(self, name: str, ids: list[str]) -> np.ndarray | None:
        try:
            cached = json.loads((self.path / f"scores-{name}.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return np.asarray(cached["scores"], dtype=float) if cached.get("ids") == ids else None

    def save_scores(self, name: str, ids: list[str], scores: np.ndarray) -> None:
        self._write_json(f"scores-{name}.json", {"ids": ids, "scores": [float(s) for s in scores]})

    def _write_json(self, name: str, data: dict) -> None:
        partial = self.path / f"{name}.partial"
        partial.write_text(json.dumps(data, indent=1), encoding="utf-8")
        partial.replace(self.path / name)


class EpochProgress:
    """An on_checkpoint callback showing a bar over the epochs of one fit, passing the call on."""

    def __init__(self, n_examples: int, training: TrainingConfig, desc: str, enabled: bool, then=None):
        from tqdm.auto import tqdm

        from al_core.training import total_steps

        steps_per_epoch = max(1, -(-n_examples // training.batch_size))
        n_epochs = -(-total_steps(n_examples, training) // steps_per_epoch)
        self.bar = tqdm(total=n_epochs, desc=desc, unit="epoch", disable=not enabled)
        self.then = then

    def __call__(self, model_wrapper, step: int, learning_rate: float) -> None:
        if self.then is not None:
            self.then(model_wrapper, step, learning_rate)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _say(message: str, progress: bool) -> None:
    import sys

    if progress:
        print(message, file=sys.stderr, flush=True)


@dataclass
class Teacher:
    model: object  # refit on all the gold: it pseudo-labels the pool
    score: float  # the held-out metric of the teacher fit without the held-out part
    checkpoints: list  # TracIn's, from the refit, when the filter is tracin
    resumed: bool  # both loaded from the work folder of an earlier run on the same inputs
    timings: dict[str, float]
    scored_path: Path  # the scored teacher, saved
    report: dict | None = None  # its held-out report (TaskKind.report)


def run_plasm(project: AnnotatedProject, settings: ExportSettings, work_path: Path) -> ExportResult:
    """Trains (or reloads) the teacher, pseudo-labels and filters the pool, checks a successor."""
    kind = project.config.kind
    metric = project.config.task_kind.drop_metric
    progress = settings.progress
    pool = project.dataset.unlabeled()
    gold = project.dataset.labeled()
    train, heldout = split_gold(gold, kind, settings.holdout, settings.training.seed)
    work = WorkFolder(work_path, inputs_hash(project, settings, train, heldout))
    teacher = _teacher(project, settings, work, train, heldout)
    timings = dict(teacher.timings)
    _say(f"teacher held-out {metric}: {teacher.score:.4f} ({len(heldout)} tasks)", progress)
    if not pool:
        _say(
            "no unlabeled task: the output holds the gold labels only "
            "(export the project with all tasks to include the unlabeled ones)",
            True,
        )
    filtered = _filtered_pool(settings, work, teacher, pool, timings)
    successor = None
    if settings.check:
        start = time.perf_counter()
        kept = filtered.kept_examples
        if kept:  # the check's pseudo-labels: the scored teacher's, on the tasks the filter kept
            from al_core.models import load_model

            scored = load_model(teacher.scored_path, settings.training)
            kept = plasm.with_labels(kept, plasm.pseudo_label(scored, kept).labels, project.config.task_kind)
            del scored
        successor = check_successor(
            settings.successor or settings.teacher, kind, project.dataset.labels, train, heldout, kept,
            settings.training, progress, frozen=settings.successor is None, margin=settings.check_margin,
        )
        timings["successor_check_s"] = time.perf_counter() - start
    rows = _rows(project.dataset.examples, train, heldout, filtered)
    if successor is not None and successor["better"] == "gold_only":
        for row in rows:
            if row.source == "pseudo":
                row.kept = False
    return ExportResult(
        project,
        settings,
        rows,
        metric,
        teacher.score,
        filtered.drop_fraction,
        f"plasm-teacher-{Path(settings.teacher.rstrip('/')).name}-{work.digest[:8]}",
        timings,
        teacher.resumed,
        successor,
        len(gold),
        teacher.report,
    )


def _fit(model, examples, settings: ExportSettings, desc: str, recorder=None) -> float:
    """Fits `model` with a progress bar over the epochs; the seconds it took."""
    start = time.perf_counter()
    epochs = EpochProgress(len(examples), settings.training, desc, settings.progress, then=recorder)
    model.fit(examples, on_checkpoint=epochs)
    epochs.close()
    return time.perf_counter() - start


def _teacher(project: AnnotatedProject, settings: ExportSettings, work: WorkFolder, train, heldout) -> Teacher:
    """The teacher fit on `train` and scored on `heldout`, then refit on all the gold (with TracIn's
    checkpoints); each one reloaded from the work folder when an earlier run on the same inputs
    saved it."""
    from al_core.models import build_model, load_model

    progress, needs_checkpoints = settings.progress, settings.filter == "tracin"
    kind, labels = project.config.kind, project.dataset.labels
    state = work.state()
    if state is None:
        work.reset()
        _say(f"training the teacher {settings.teacher} on {len(train)} gold tasks to score it", progress)
        model = build_model(kind, settings.teacher, labels, settings.training)
        fit_s = _fit(model, train, settings, "teacher")
        start = time.perf_counter()
        report = teacher_report(model, heldout)
        score = drop_score(report, model.task_kind)
        eval_s = time.perf_counter() - start
        state = {"teacher_score": score, "teacher_report": report, "teacher_fit_s": fit_s, "n_train": len(train)}
        work.save_model(model, work.scored, state)
        del model
        timings = {"teacher_fit_s": fit_s, "teacher_eval_s": eval_s}
    else:
        _say(f"resuming: the teacher scored earlier is in {work.scored}", progress)
        timings = {"teacher_fit_s": 0.0}
    gold = train + heldout
    checkpoints = CheckpointRecorder.read(work.checkpoints) if state.get("refit") else []
    refit_saved = state.get("refit") and work.teacher.is_dir() and (checkpoints or not needs_checkpoints)
    if refit_saved:
        _say(f"resuming: the teacher refit earlier is in {work.teacher}", progress)
        model = load_model(work.teacher, settings.training)
        timings["teacher_refit_s"] = 0.0
    else:
        shutil.rmtree(work.checkpoints, ignore_errors=True)
        recorder = CheckpointRecorder(work.checkpoints) if needs_checkpoints else None
        _say(f"refitting the teacher on all {len(gold)} gold tasks", progress)
        model = build_model(kind, settings.teacher, labels, settings.training)
        timings["teacher_refit_s"] = _fit(model, gold, settings, "teacher refit", recorder)
        work.save_model(model, work.teacher, {**state, "refit": True, "n_refit": len(gold)})
        checkpoints = recorder.checkpoints if recorder else []
    resumed = bool(refit_saved) and timings["teacher_fit_s"] == 0.0
    return Teacher(
        model, float(state["teacher_score"]), checkpoints, resumed, timings, work.scored, state.get("teacher_report")
    )


def _filtered_pool(settings: ExportSettings, work: WorkFolder, teacher: Teacher, pool, timings: dict):
    """The pool pseudo-labeled and filtered (al_core.plasm.label_pool); TracIn's scores are kept in
    the work folder and reused by a run on the same inputs."""
    label_filter = (
        TracInFilter(teacher.checkpoints, batch_size=settings.training.eval_batch_size, progress=settings.progress)
        if settings.filter == "tracin"
        else get_filter(settings.filter)
    )
    ids = [e.id for e in pool]
    cached = work.cached_scores(settings.filter, ids) if settings.filter == "tracin" else None
    if cached is not None:
        _say("resuming: TracIn scores computed earlier are reused", settings.progress)
        label_filter = _Cached(label_filter, cached)
    filtered, steps = label_pool(
        teacher.model, pool, label_filter, teacher.score, settings.drop_fraction, settings.progress
    )
    timings.update(steps)
    if settings.filter == "tracin" and cached is None:
        work.save_scores(settings.filter, ids, filtered.scores)
    return filtered


class _Cached:
    """A filter whose scores were computed by an earlier run on the same pool."""

    def __init__(self, inner, scores: np.ndarray):
        self.name, self.drops, self.scores = inner.name, inner.drops, scores

    def score(self, examples, pseudo):
        return self.scores


def _rows(
    dataset_order: list[Example], train: list[Example], heldout: list[Example], filtered: FilteredPseudoLabels
) -> list[Row]:
    """One row per task, in the project's task order."""
    heldout_ids = {e.id for e in heldout}
    rows = [Row(e, "gold", heldout=e.id in heldout_ids) for e in train + heldout]
    for example, confidence, filter_score, kept in zip(
        filtered.examples, filtered.confidences, filtered.scores, filtered.kept, strict=True
    ):
        rows.append(Row(example, "pseudo", float(confidence), float(filter_score), bool(kept), passed_filter=bool(kept)))
    order = {e.id: i for i, e in enumerate(dataset_order)}
    return sorted(rows, key=lambda r: order[r.example.id])


def check_successor(
    successor: str,
    kind: str,
    labels: list[str],
    train: list[Example],
    heldout: list[Example],
    pseudo: list[Example],
    training: TrainingConfig,
    progress: bool = True,
    frozen: bool = False,
    margin: float = 0.0,
) -> dict:
    """al_core.plasm.check_successor with plasm-export's progress lines and epoch bars."""

    def fit(model, examples: list[Example]) -> None:
        epochs = EpochProgress(len(examples), training, "successor", progress)
        model.fit(examples, on_checkpoint=epochs)
        epochs.close()

    return plasm.check_successor(
        successor, kind, labels, train, heldout, pseudo, training, frozen=frozen, margin=margin,
        say=lambda message: _say(message, progress), fit=fit,
    )


def check_summary(check: dict | None, n_pseudo: int) -> str:
    """The check's verdict in one line (stdout and the reports). "The training set" is whatever the formats
    asked for carry: train.csv / train.conll, the JSONL's and the Label Studio import's kept flags."""
    training_file = "the training set"
    if check is None:
        return (
            f"successor check: off (--no-check) -> {training_file} holds gold + {n_pseudo} "
            "pseudo-labels, unchecked"
        )
    if check["with_pseudo"] is None:
        return f"successor check: no pseudo-label passed the filter -> {training_file} holds gold alone"
    gold, pseudo = check["gold_only"]["score"], check["with_pseudo"]["score"]
    verdict = "gold + pseudo-labels" if check["better"] == "with_pseudo" else "gold alone"
    return (
        f"successor check: gold + {check['n_pseudo']} pseudo-labels {pseudo:.3f} vs gold alone {gold:.3f} "
        f"({check['metric']}) on {check['n_heldout']} held-out gold -> {training_file} holds {verdict}"
        + (f" (pseudo-labels must win by more than {check['margin']:g})" if check["better"] == "gold_only" else "")
    )
