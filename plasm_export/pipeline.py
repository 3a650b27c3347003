"""The PLASM run behind plasm-export: teacher, held-out score, pseudo-labels, filter, successor check.

The teacher is trained once per set of inputs and saved under the work folder with a hash
of those inputs; a run that was killed later (while pseudo-labeling, filtering or checking
the successor) loads it instead of training again. TracIn's checkpoints and scores are
kept there too.
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

from al_core.data import Example
from al_core.kinds import TaskKind, kind_of
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
    successor: str | None = None  # --check-successor MODEL
    progress: bool = True


@dataclass
class Row:
    """One task of the output: a gold label or a pseudo-label with its scores."""

    example: Example
    source: str  # "gold" or "pseudo"
    teacher_confidence: float | None = None
    filter_score: float | None = None
    kept: bool = True
    heldout: bool = False  # a gold row kept aside to measure the teacher (and the successors)


@dataclass
class ExportResult:
    project: AnnotatedProject
    settings: ExportSettings
    rows: list[Row]
    teacher_metric: str  # the measure the drop rule reads: "accuracy", "micro_f1" or "span_f1"
    teacher_score: float
    drop_fraction: float
    teacher_version: str
    timings: dict[str, float]
    resumed: bool
    successor: dict | None = None
    # the teacher's held-out report (TaskKind.report: the kind's headline, figures, per-label table);
    # None for a teacher resumed from a work folder that did not save it
    teacher_quality: dict | None = None

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
    """<out>.work: the trained teacher, its TracIn checkpoints and cached filter scores."""

    def __init__(self, path: Path, digest: str):
        self.path = Path(path)
        self.digest = digest
        self.teacher = self.path / "teacher"
        self.checkpoints = self.path / "checkpoints"

    def state(self) -> dict | None:
        try:
            state = json.loads((self.path / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return state if state.get("inputs_hash") == self.digest and self.teacher.is_dir() else None

    def reset(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True)

    def save_teacher(self, teacher, state: dict) -> None:
        partial = self.path / "teacher.partial"
        shutil.rmtree(partial, ignore_errors=True)
        teacher.save(partial)
        partial.replace(self.teacher)
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
    model: object
    score: float  # its held-out score that the drop rule reads (TaskKind.drop_metric)
    checkpoints: list  # TracIn's, when the filter is tracin
    resumed: bool  # loaded from the work folder of an earlier run on the same inputs
    timings: dict[str, float]
    report: dict | None = None  # its held-out report (TaskKind.report)


def run_plasm(project: AnnotatedProject, settings: ExportSettings, work_path: Path) -> ExportResult:
    """Trains (or reloads) the teacher, pseudo-labels and filters the pool, checks a successor."""
    kind = project.config.kind
    metric = project.config.task_kind.drop_metric
    progress = settings.progress
    pool = project.dataset.unlabeled()
    train, heldout = split_gold(project.dataset.labeled(), kind, settings.holdout, settings.training.seed)
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
    if settings.successor:
        start = time.perf_counter()
        successor = check_successor(
            settings.successor, kind, project.dataset.labels, train, heldout, filtered.kept_examples,
            settings.training, progress,
        )
        timings["successor_check_s"] = time.perf_counter() - start
    return ExportResult(
        project,
        settings,
        _rows(project.dataset.examples, train, heldout, filtered),
        metric,
        teacher.score,
        filtered.drop_fraction,
        f"plasm-teacher-{Path(settings.teacher.rstrip('/')).name}-{work.digest[:8]}",
        timings,
        teacher.resumed,
        successor,
        teacher.report,
    )


def _teacher(project: AnnotatedProject, settings: ExportSettings, work: WorkFolder, train, heldout) -> Teacher:
    """The teacher of an earlier run on the same inputs, or a new one trained on `train` and scored
    on `heldout` (saved in the work folder, with TracIn's checkpoints)."""
    from al_core.models import build_model, load_model

    progress, needs_checkpoints = settings.progress, settings.filter == "tracin"
    state = work.state()
    checkpoints = CheckpointRecorder.read(work.checkpoints) if state else []
    if state is not None and (checkpoints or not needs_checkpoints):
        _say(f"resuming: the teacher trained earlier is in {work.teacher}", progress)
        model = load_model(work.teacher, settings.training)
        return Teacher(
            model, float(state["teacher_score"]), checkpoints, True, {"teacher_fit_s": 0.0}, state.get("teacher_report")
        )
    work.reset()
    model = build_model(project.config.kind, settings.teacher, project.dataset.labels, settings.training)
    recorder = CheckpointRecorder(work.checkpoints) if needs_checkpoints else None
    _say(f"training the teacher {settings.teacher} on {len(train)} gold tasks", progress)
    start = time.perf_counter()
    epochs = EpochProgress(len(train), settings.training, "teacher", progress, then=recorder)
    model.fit(train, on_checkpoint=epochs)
    epochs.close()
    timings = {"teacher_fit_s": time.perf_counter() - start}
    start = time.perf_counter()
    report = teacher_report(model, heldout)
    score = drop_score(report, model.task_kind)
    timings["teacher_eval_s"] = time.perf_counter() - start
    work.save_teacher(
        model, {"teacher_score": score, "teacher_report": report, "teacher_fit_s": timings["teacher_fit_s"]}
    )
    return Teacher(model, score, recorder.checkpoints if recorder else [], False, timings, report)


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
        rows.append(Row(example, "pseudo", float(confidence), float(filter_score), bool(kept)))
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
) -> dict:
    """Trains the successor on gold alone and on gold + kept pseudo-labels; scores both on held-out gold."""
    from al_core.models import build_model

    results = {}
    for name, examples in (("gold_only", train), ("with_pseudo", train + pseudo)):
        _say(
            f"successor check: training {successor} on {len(examples)} tasks ({name.replace('_', ' ')})",
            progress,
        )
        start = time.perf_counter()
        epochs = EpochProgress(len(examples), training, "successor", progress)
        model = build_model(kind, successor, labels, training).fit(examples, on_checkpoint=epochs)
        epochs.close()
        fit_s = time.perf_counter() - start
        report = teacher_report(model, heldout)
        results[name] = {"score": report["value"], "quality": report, "n_train": len(examples), "fit_s": fit_s}
        del model
    better = "with_pseudo" if results["with_pseudo"]["score"] > results["gold_only"]["score"] else "gold_only"
    return {
        "model": successor,
        "metric": kind_of(kind).metric,
        "n_heldout": len(heldout),
        **results,
        "better": better,
    }
