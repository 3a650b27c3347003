"""A retrain, in named steps: read the project, train a round, save the version, publish it.

A retrain reads Label Studio at its start (so every annotation made before it started is
in its training set), trains the acquisition model (a frozen head or fine-tuning, as
AL_ACQUISITION_MODE decides) with its quality estimate, scores the UPS subset of the pool
(the whole pool for a frozen head; in an rq worker a big pass is split over the queue's
workers, ml_backend.jobs.split_pass), promotes the new version, publishes a scored prediction
for every unlabeled task under it (the most informative fresh scores, then the project's
ordering is pointed at the version, then the rest) in the order `served_order` composes, and
appends the retrain to the history. Before the project has the labels to train on, a retrain
publishes the cold-start order alone, under a version without a model (`publish_cold_start`).
The jobs that run it are in ml_backend.jobs.run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from al_core.acquisition import (
    audit_ids,
    audit_slots,
    first_audit_place,
    fit_with_estimate,
    interleave_audit,
    is_audit_task,
    predicted_counts,
    without_audit,
)
from al_core.data import Example
from al_core.exceptions import UnsupportedConfigError
from al_core.kinds import kind_of
from al_core.loop import round_model, run_round
from al_core.ls_format import LabelConfig, label_counts, model_labels
from al_core.models import build_model, encoder_vectors, load_model, read_model_meta
from al_core.ordering import cold_start_tasks, serving_order
from al_core.strategies import get_strategy
from al_core.ups import PoolSubsampler
from ml_backend.jobs.split_pass import SplitPass, configure_torch
from ml_backend.labelstudio.gateway import LSGateway, PublishReport, split_tasks
from ml_backend.labelstudio.label_set import check_config, promoted_label_set_changed, region_problem
from ml_backend.labelstudio.mirror import sync, task_mirror
from ml_backend.labelstudio.reading import ReadReport, log_report, read_examples
from ml_backend.predictor import config_hash, regions, save_strategy_state
from ml_backend.settings import Settings
from ml_backend.storage.history import record_retrain
from ml_backend.storage.store import (
    COLD_START,
    VersionStore,
    embedding_cache,
    has_model,
    score_cache,
    version_name,
    version_number,
)

log = logging.getLogger(__name__)


class NotReadyError(RuntimeError):
    """The project cannot be trained yet (too few labels); not a failure."""

    def __init__(self, message: str, summary: dict | None = None):
        super().__init__(message)
        self.summary = summary or {}


def strategy_name(settings: Settings, kind: str) -> str:
    name = kind_of(kind).default_strategy if settings.strategy == "auto" else settings.strategy
    strategy = get_strategy(name, seed=settings.seed)
    if kind not in strategy.kinds:
        raise UnsupportedConfigError(f"strategy {name!r} does not apply to {kind} projects")
    return name


class StepTimer:
    """The seconds of a retrain's named steps, in one dict (the summary's `timings`)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._start = time.perf_counter()

    @contextmanager
    def step(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - start, 3)

    def add(self, timings: dict[str, float]) -> None:
        self.timings.update({k: round(v, 3) for k, v in timings.items()})

    def total(self) -> dict[str, float]:
        return {**self.timings, "total_s": round(time.perf_counter() - self._start, 3)}


@dataclass
class ProjectRead:
    """What a retrain read of a project: its label config, its tasks as examples, the read's report."""

    label_config: str
    config: LabelConfig
    mirror: Any
    labeled: list[Example]
    pool: list[Example]
    reading: dict  # kind, label_counts, skipped, ties, read (the summary's part about the read)
    ls_read_s: float
    model_version: str | None = None  # the version Label Studio orders the project by


@dataclass
class TrainedRound:
    """A new version, trained, and the scores of the pool tasks it re-scored."""

    version: str
    iteration: int
    labels: list[str]
    strategy: Any
    mode: str
    model: Any
    cache: Any
    config_changed: bool
    quality: Any
    probs: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)
    n_scored: int = 0
    audit_served: list[str] = field(default_factory=list)  # unlabeled audit tasks placed in the window
    cold_start: list[str] = field(default_factory=list)  # the cold-start order's tasks, served first
    vectors_of: Any = None  # order_vectors: the encoder's vector of each task, for the orders
    encoder: dict | None = None  # the fine-tuned encoder refresh rounds read: {"version" | "encoder", "n_labeled"}
    finetune_due: bool = False  # a fine-tune of the background lane is due (ml_backend.jobs.finetune_lane)


def train_and_publish(
    project_id: int, settings: Settings, redis, gateway: LSGateway, state, split: SplitPass | None = None
) -> dict[str, Any]:
    """One retrain in named steps: read the project, train a round, save the version, publish it;
    then, outside its timed total, delete the predictions of old versions."""
    started_at = time.time()
    timer = StepTimer()
    store = VersionStore(settings.model_dir, keep=settings.keep_versions)
    configure_torch(settings)
    with timer.step("read_s"):
        read = read_project(project_id, settings, gateway)
    timer.timings["ls_read_s"] = read.ls_read_s  # of read_s, the calls to Label Studio
    if len(read.labeled) < settings.min_labels:
        return publish_cold_start(project_id, settings, store, gateway, state, read, timer, started_at)
    trained = train_round(project_id, settings, store, redis, read, timer, split)
    # what the new version predicts over the pool tasks it scored (the probabilities are at hand)
    predicted = {
        "predicted_counts": predicted_counts(read.config.task_kind, trained.probs.values(), trained.labels),
        "n_predicted": len(trained.probs),
    }
    with timer.step("save_s"):
        meta = save_version(project_id, settings, store, read, trained, started_at, predicted)
    published = publish(project_id, settings, gateway, read, trained, timer)
    timings = timer.total()  # to the new ordering: what the annotators wait for
    pruned: dict[str, int] = {}
    if published.activated:
        pruned, timings["prune_s"] = prune_when_idle(project_id, settings, gateway, state, trained.version)
    summary = {
        "status": "trained",
        "version": trained.version,
        "iteration": trained.iteration,
        "n_labeled": len(read.labeled),
        "n_pool": len(read.pool),
        "n_scored": trained.n_scored,
        "n_published": published.created,
        "acquisition_mode": trained.mode,
        "finetune_due": trained.finetune_due,
        "quality": trained.quality.as_dict(),
        "audit": meta["audit"],
        "order": order_summary(settings, trained.cold_start),
        **predicted,
        "label_config_changed": trained.config_changed,
        **read.reading,
        "publish": published.summary(),
        "pruned_versions": pruned,
        "split": split.report if split is not None else {},
        "started_at": started_at,
        "timings": timings,
    }
    # the campaign page's history
    record_retrain(settings, summary, meta, trained.model, read.labeled, read.pool, trained.probs, read.config)
    log.info("project %s: %s", project_id, summary)
    return summary


def publish_cold_start(
    project_id: int,
    settings: Settings,
    store: VersionStore,
    gateway: LSGateway,
    state,
    read: ProjectRead,
    timer: StepTimer,
    started_at: float,
) -> dict[str, Any]:
    """Before the project has AL_MIN_LABELS labeled tasks to train on: the cold-start order alone
    (`cold_start_tasks`, with the audit tasks in their places), published as a version without a
    model (acquisition mode "cold_start": a version.json and no weights) whose predictions carry no
    region, only the score of their place. It is promoted and listed like any version; /predict
    answers the untrained answer while it is the promoted one. Raises NotReadyError (a `waiting`
    retrain) when there is nothing to publish (cold start off, an empty pool) or when Label Studio
    already orders the project by the promoted cold-start version with this very order."""
    waiting = f"{len(read.labeled)} labeled tasks, {settings.min_labels} needed before training"
    acquisition = settings.acquisition_config()
    if acquisition.cold_start_labels <= 0 or not read.pool:
        raise NotReadyError(waiting, read.reading)
    labels = model_labels(read.config)
    with timer.step("cold_start_s"):
        vectors_of = order_vectors(settings, project_id, read.config.kind, labels)
        cold = cold_start_tasks(
            [*read.labeled, *without_audit(read.pool, settings.seed, acquisition.audit_share)], {e.id for e in read.labeled},
            acquisition.cold_start_labels, vectors_of, settings.seed,
        )
    if not cold:
        raise NotReadyError(waiting, read.reading)
    share = acquisition.audit_share
    audit = audit_ids([e.id for e in read.pool if e.id not in set(cold)], settings.seed, share)[
        : audit_slots(len(cold), share)
    ]
    labeled_audit = sum(is_audit_task(e.id, settings.seed, share) for e in read.labeled)
    # no model, no ranking: each task's score is its place in the cold-start order, in [0, 1)
    predictions = served_order(
        [{"task": int(i), "result": [], "score": round(n / len(cold), 6)} for n, i in enumerate(cold)]
        + [{"task": int(i), "result": [], "score": 0.0} for i in audit],
        cold_start=cold,
        audit=audit,
        share=share,
        first_audit=first_audit_place(len(read.labeled), labeled_audit, share),
    )
    order = [str(p["task"]) for p in predictions]
    current = store.current_version(project_id)
    if current is not None and read.model_version == current:
        meta = store.meta(project_id, current)
        if (
            not has_model(meta)
            and meta.get("published_order") == order
            and meta.get("label_config_hash") == config_hash(read.label_config)
            and gateway.model_versions(project_id).get(current) == len(order)
        ):
            raise NotReadyError(f"{waiting}; {current} serves the cold-start order", read.reading)
    config_changed = promoted_label_set_changed(store, project_id, read.config)
    iteration = store.next_iteration(project_id)
    version = version_name(project_id, iteration + 1)
    with timer.step("save_s"):
        meta = {
            "project": project_id,
            "kind": read.config.kind,
            "labels": labels,
            "label_config": read.label_config,
            "label_config_hash": config_hash(read.label_config),
            "strategy": None,
            "base_model": settings.acquisition_model,
            "acquisition_mode": COLD_START,
            "quality": None,
            "audit": {
                "share": share,
                "served": len(audit),
                "labeled": labeled_audit,
            },
            "label_counts": read.reading["label_counts"],
            "n_labeled": len(read.labeled),
            "labeled_ids": [e.id for e in read.labeled],
            "n_pool": len(read.pool),
            "n_scored": 0,
            "cold_start": cold,
            "published_order": order,
            "started_at": started_at,
            "created_at": time.time(),
        }
        store.save_version(project_id, version, iteration, lambda folder: None, meta)
    report = PublishReport()
    timer.add(gateway.publish_version(project_id, version, predictions, [], report))
    read.mirror.record_published(predictions)
    timings = timer.total()
    pruned: dict[str, int] = {}
    if report.activated:
        pruned, timings["prune_s"] = prune_when_idle(project_id, settings, gateway, state, version)
    summary = {
        "status": "cold_start",
        "reason": f"{waiting}: the cold-start order is served meanwhile",
        "version": version,
        "iteration": iteration,
        "n_labeled": len(read.labeled),
        "n_pool": len(read.pool),
        "n_scored": 0,
        "n_published": report.created,
        "acquisition_mode": COLD_START,
        "quality": None,
        "audit": meta["audit"],
        "order": order_summary(settings, cold),
        "label_config_changed": config_changed,
        **read.reading,
        "publish": report.summary(),
        "pruned_versions": pruned,
        "split": {},
        "started_at": started_at,
        "timings": timings,
    }
    record_retrain(settings, summary, meta, None, read.labeled, read.pool, {}, read.config)
    log.info("project %s: %s", project_id, summary)
    return summary


def read_project(project_id: int, settings: Settings, gateway: LSGateway) -> ProjectRead:
    """The project's label config and tasks, through the backend's mirror of them."""
    project = gateway.get_project(project_id)
    label_config = project.get("label_config") or ""
    config = check_config(label_config)
    mirror = task_mirror(settings, project_id)
    tasks, sync_report = sync(mirror, gateway, project_id, config_hash(label_config))
    labeled_tasks, unlabeled_tasks = split_tasks(tasks)
    report = ReadReport()
    labeled = [e for e in read_examples(labeled_tasks, config, report) if e.is_labeled]
    pool = read_examples(unlabeled_tasks, config, report)
    log_report(project_id, report)
    reading = {
        "kind": config.kind,
        "label_counts": label_counts(labeled, config),
        "skipped": dict(report.skipped),
        "ties": report.ties,
        "read": sync_report.as_dict(),
    }
    return ProjectRead(
        label_config, config, mirror, labeled, pool, reading, sync_report.timings["read_s"], project.get("model_version")
    )


def train_round(
    project_id: int,
    settings: Settings,
    store: VersionStore,
    redis,
    read: ProjectRead,
    timer: StepTimer,
    split: SplitPass | None,
) -> TrainedRound:
    """A new model trained on the labeled tasks, and the pool re-scored as UPS says (al_core's round)."""
    config, labeled, pool = read.config, read.labeled, read.pool
    with timer.step("prepare_s"):
        iteration = store.next_iteration(project_id)
        labels = model_labels(config)
        acquisition = settings.acquisition_config()
        config_changed = promoted_label_set_changed(store, project_id, config)
        version = version_name(project_id, iteration + 1)
        previous = None if config_changed else finetuned_encoder(store, project_id, labels)
        chosen = round_model(
            acquisition, config.kind, labels, len(labeled),
            lambda mode: new_model(settings, store, project_id, config.kind, labels, mode),
            (encoder_folder(store, project_id, previous), previous["n_labeled"]) if previous else None,
            lambda: encoder_folder(store, project_id, {"version": version}),
            settings.training_config(), embedding_cache(settings, project_id),
        )
        mode, hand_over = chosen.mode, chosen.hand_over
        trained = TrainedRound(
            version=version,
            iteration=iteration,
            labels=labels,
            strategy=get_strategy(strategy_name(settings, config.kind), seed=settings.seed),
            mode=mode,
            model=chosen.model,
            cache=score_cache(settings, project_id, redis),
            config_changed=config_changed,
            quality=None,
            # version.json names the encoder (a fine-tuned version, or an encoder of the background lane)
            # by its folder's name, not by a path
            encoder=encoder_reference(previous, chosen.encoder, version),
            finetune_due=chosen.finetune_due,
        )
        trained.vectors_of = order_vectors(settings, project_id, config.kind, labels, trained.model)
        if trained.config_changed:  # a new model: no score of the old label set is reused, the whole pool is scored
            log.info("project %s: the label config changed; dropping the score cache, scoring the whole pool", project_id)
            trained.cache.delete_many(list(trained.cache.all()))
        trained.cache.delete_many([e.id for e in labeled])  # labeled tasks left the pool
    if not pool:
        with timer.step("fit_s"):
            trained.quality = fit_with_estimate(trained.model, labeled, acquisition, settings.seed)
        if hand_over is not None:
            hand_over(labeled, trained.model.embed(labeled))
        return trained
    share = acquisition.audit_share
    # the audit tasks the window can hold (one every round(1/share) places), scored whatever UPS chooses
    serve = audit_ids([e.id for e in pool], settings.seed, share)[: audit_slots(settings.query_window or len(pool), share)]

    def pick_cold_start() -> None:
        if 0 < len(labeled) < acquisition.cold_start_labels:
            with timer.step("cold_start_s"):
                trained.cold_start = cold_start_tasks(
                    [*labeled, *without_audit(pool, settings.seed, share)], {e.id for e in labeled},
                    acquisition.cold_start_labels, trained.vectors_of, settings.seed,
                )

    # A frozen head scores every task, and its pass (split over the workers in an rq worker) embeds
    # them: its cold-start tasks are picked after the round. A fine-tuned round scores them
    # whatever UPS chooses, so they are picked before it.
    if mode != "frozen":
        pick_cold_start()
    subsampler = PoolSubsampler(settings.subsampling_config(), seed=settings.seed)
    result = run_round(
        trained.model, labeled, pool, trained.strategy, subsampler, trained.cache, iteration, trained.version,
        count=1, acquisition=acquisition, infer=split, seed=settings.seed,
        also_score=serve + [i for i in trained.cold_start if i not in set(serve)], hand_over=hand_over,
        top_up=settings.query_window or settings.publish_first,  # a refresh round's fresh share of the window
    )
    timer.add(result.timings)
    trained.probs, trained.scores, trained.n_scored, trained.quality = (
        result.probs, result.scores, result.n_scored, result.quality
    )
    if mode == "frozen":
        pick_cold_start()
    trained.cold_start = [i for i in trained.cold_start if i in result.scores]
    trained.audit_served = [
        i for i in serve if i in result.probs and i in result.scores and i not in set(trained.cold_start)
    ]
    return trained


def audit_summary(settings: Settings, labeled: list[Example], served: list[str]) -> dict:
    """The version's audit sample: its share, the unlabeled audit tasks served in its window and the
    labeled ones its audit estimate is measured on (counts)."""
    share = settings.acquisition_config().audit_share
    return {
        "share": share,
        "served": len(served),
        "labeled": sum(is_audit_task(e.id, settings.seed, share) for e in labeled),
    }


def save_version(
    project_id: int,
    settings: Settings,
    store: VersionStore,
    read: ProjectRead,
    trained: TrainedRound,
    started_at: float,
    predicted: dict,
) -> dict:
    """The version in the model store (model, strategy state, metadata); returns its metadata."""
    meta = {
        "project": project_id,
        "kind": read.config.kind,
        "labels": trained.labels,
        "label_config": read.label_config,
        "label_config_hash": config_hash(read.label_config),
        "strategy": trained.strategy.name,
        "base_model": settings.acquisition_model,
        "acquisition_mode": trained.mode,
        "warm_start": settings.warm_start,
        "encoder": trained.encoder,
        "quality": trained.quality.as_dict(),
        "audit": audit_summary(settings, read.labeled, trained.audit_served),
        "label_counts": read.reading["label_counts"],
        **predicted,
        "n_labeled": len(read.labeled),
        "labeled_ids": [e.id for e in read.labeled],
        "n_pool": len(read.pool),
        "n_scored": trained.n_scored,
        "started_at": started_at,
        "created_at": time.time(),
    }

    def write(folder: Path) -> None:
        trained.model.save(folder)
        save_strategy_state(trained.strategy, folder)

    store.save_version(project_id, trained.version, trained.iteration, write, meta)
    return meta


def publish(
    project_id: int, settings: Settings, gateway: LSGateway, read: ProjectRead, trained: TrainedRound, timer: StepTimer
) -> PublishReport:
    """The new version's predictions in Label Studio (the query window, or every task) in the
    order `served_order` composes, and the project pointed at it."""
    window = settings.query_window
    acquisition = settings.acquisition_config()
    share = acquisition.audit_share
    with timer.step("predictions_s"):
        # the audit sample's unlabeled tasks: served at their audit places only, never by the ranking
        audit_sample = set(audit_ids([e.id for e in read.pool], settings.seed, share))
        previous = {} if trained.config_changed or window else read.mirror.published_results()
        # with a window, regions are made for the window alone (a frozen head scores the whole pool)
        outcomes = read.config.task_kind.outcomes(len(trained.labels))
        serving = set(trained.audit_served)
        cold = trained.cold_start[: max(0, window - len(serving))] if window else trained.cold_start
        candidates, stale = read.pool, []
        if window:  # the cold-start and the audit tasks take their places, the most informative tasks the rest
            by_id = {e.id: e for e in read.pool}
            taken = serving | set(cold)
            rest = [e for e in read.pool if e.id not in taken and e.id not in audit_sample]
            ranked = query_window(
                rest, trained.scores, trained.probs, trained.strategy.name, outcomes, max(0, window - len(taken))
            )
            # a UPS round that scored fewer tasks than the window holds fills it from the cached scores,
            # served after every fresh one, with the regions they were last published with: the stream
            # keeps serving pre-annotated tasks of the current version until the window is labeled
            stale = query_window(
                rest, trained.scores, trained.probs, trained.strategy.name, outcomes,
                max(0, window - len(taken) - len(ranked)), fresh=False,
            )
            if stale and not trained.config_changed:
                previous = read.mirror.published_results([e.id for e in stale])
            candidates = [by_id[i] for i in cold] + ranked + stale + [e for e in read.pool if e.id in serving]
        predictions = pool_predictions(
            candidates, trained.scores, trained.probs, trained.strategy.name, trained.labels, read.config, previous
        )
    with timer.step("order_s"):  # the team order reads the encoder's vectors of the ranked tasks
        labeled_audit = sum(is_audit_task(e.id, settings.seed, share) for e in read.labeled)
        predictions = served_order(
            predictions,
            cold_start=cold,
            stale=[e.id for e in stale],
            audit=trained.audit_served,
            share=share,
            first_audit=first_audit_place(len(read.labeled), labeled_audit, share),
            held_back=audit_sample,
            team_order=team_order(read.pool, trained.vectors_of, acquisition.team_size, settings.seed),
            head=window or settings.publish_first,
        )
    fresh, rest = split_publish(predictions, trained.probs, window or settings.publish_first, bounded=bool(window))
    report = PublishReport()
    if fresh or rest:
        timer.add(gateway.publish_version(project_id, trained.version, fresh, rest, report))
        read.mirror.record_published(fresh + rest)
        if report.deleted:
            trained.cache.delete_many([str(t) for t in report.deleted])
    return report


def order_summary(settings: Settings, cold_start: list[str]) -> dict:
    """What shaped the published order beside the strategy's ranking (the summary's `order`)."""
    acquisition = settings.acquisition_config()
    return {"team_size": acquisition.team_size, "cold_start": list(cold_start)}


def finetuned_encoder(store: VersionStore, project_id: int, labels: list[str] | None = None) -> dict | None:
    """The fine-tuned encoder the next refresh round reads, when its folder is still there, else None:
    of the one the promoted version reads or is ({"version", "n_labeled"}) and the newest the
    background lane took up for these `labels` ({"encoder", "n_labeled"}), the one tuned on more labels."""
    found = []
    current = store.current_version(project_id)
    encoder = store.meta(project_id, current).get("encoder") if current else None
    if encoder and Path(encoder_folder(store, project_id, encoder)).is_dir():
        found.append(encoder)
    for name in reversed(store.encoders(project_id)):
        try:
            meta = store.encoder_meta(project_id, name)
        except (OSError, ValueError):
            continue
        if labels is None or meta.get("labels") == labels:
            found.append({"encoder": name, "n_labeled": int(meta["n_labeled"])})
            break
    return max(found, key=lambda e: (e["n_labeled"], "encoder" in e), default=None)


def encoder_folder(store: VersionStore, project_id: int, encoder: dict) -> str:
    """The folder of a fine-tuned encoder (a version's, {"version"}, or the background lane's,
    {"encoder"}) as a refresh head names it (an absolute path: it is part of the embedding cache's
    keys, the same in every process)."""
    if encoder.get("encoder"):
        return str(store.layout.encoder_dir(project_id, encoder["encoder"]).resolve())
    return str(store.version_dir(project_id, encoder["version"]).resolve())


def encoder_reference(previous: dict | None, encoder: tuple[str, int] | None, version: str) -> dict | None:
    """What version.json says of the encoder a round read or trained (`RoundModel.encoder`): the
    encoder it read (`previous`), or the version itself (a fine-tune that hands its vectors over)."""
    if encoder is None:
        return None
    if previous is not None and encoder[1] == previous["n_labeled"] and Path(encoder[0]).name == (
        previous.get("encoder") or previous.get("version")
    ):
        return dict(previous)
    return {"version": version, "n_labeled": encoder[1]}


def new_model(settings: Settings, store: VersionStore, project_id: int, kind: str, labels: list[str], mode: str):
    """From the pretrained weights (the paper), or warm from the promoted version when asked
    (fine-tuning only: a frozen head is retrained from its cached vectors in milliseconds)."""
    config = settings.training_config()
    current = store.current_version(project_id)
    if mode == "finetune" and settings.warm_start and current and has_model(store.meta(project_id, current)):
        folder = store.version_dir(project_id, current)
        meta = read_model_meta(folder)
        if meta["kind"] == kind and meta["labels"] == labels and meta.get("mode", "finetune") == mode:
            return load_model(folder, config)
    return build_model(
        kind, settings.acquisition_model, labels, config, mode, embedding_cache(settings, project_id)
    )


def split_publish(
    predictions: list[dict], probs: dict, first: int, bounded: bool = True
) -> tuple[list[dict], list[dict]]:
    """The predictions published before the project is pointed at the new version, and those after.

    First go the freshly scored tasks (on a UPS round, where the method takes the query), at most
    `first` of them, the most informative (lowest published score) first: Label Studio's next task
    then comes from fresh scores, never from a stale one. `bounded` (AL_QUERY_WINDOW): the
    predictions are the window, all published before the switch: its fresh tasks, then those it was
    filled with from the cache (served after them), so the rows a version adds to Label Studio stay
    bounded whatever the pool; otherwise (AL_QUERY_WINDOW=0) the other fresh and the cached scores
    follow the switch.
    """
    fresh = sorted((p for p in predictions if str(p["task"]) in probs), key=lambda p: p["score"])
    if bounded:
        filled = sorted((p for p in predictions if str(p["task"]) not in probs), key=lambda p: p["score"])
        return fresh[:first] + filled, []
    rest = [p for p in predictions if str(p["task"]) not in probs]
    return fresh[:first], fresh[first:] + rest


def query_window(pool, scores: dict, probs: dict, strategy: str, outcomes: int, size: int, fresh: bool = True) -> list:
    """The `size` pool tasks with the lowest published score (asked first) among the freshly scored
    ones, or (`fresh` False) among those whose score came from the cache."""
    chosen = [e for e in pool if e.id in scores and (e.id in probs) == fresh]
    if not chosen or size <= 0:
        return []
    published = get_strategy(strategy).published_scores([scores[e.id] for e in chosen], outcomes)
    return [chosen[i] for i in np.argsort(published, kind="stable")[:size]]


# Published scores are rounded to 6 places: a tie in the served order is raised by this much.
SCORE_STEP = 1e-6


def served_order(
    predictions: list[dict],
    cold_start: Sequence[str] = (),
    stale: Sequence[str] = (),
    audit: Sequence[str] = (),
    share: float = 0.0,
    first_audit: int | None = None,
    held_back: Collection[str] = (),
    team_order: Callable[[list[str]], list[str]] | None = None,
    head: int | None = None,
) -> list[dict]:
    """The order Label Studio serves the predictions in (lowest score first), as published scores:
    the one place the published order is composed. Returns copies of the predictions, in that order.

    1. cold start: the tasks of `cold_start` (al_core.ordering.cold_start_order's), in its order;
    2. ranking: the other tasks (but the audit tasks placed in step 4) by the strategy's published score;
    3. team order: the first `head` of that ranking (all without `head`) in `team_order`'s order
       (al_core.ordering.serving_order: no two near-duplicates within a team's consecutive tasks);
       then the tasks of `stale` (scores from the cache, not this version's), by their score, so
       that no stale score undercuts a fresh one;
    4. audit places: the unlabeled audit tasks `audit` (in their serving order) at one place every
       round(1/share) from `first_audit` (al_core.acquisition.interleave_audit); the other tasks of
       `held_back` (the audit sample's, whose turn has not come) after every other task, so that the
       strategy's ranking never serves an audit task (al_core.acquisition.without_audit);
    5. published scores, strictly increasing along that order (Label Studio sorts by them): the
       published scores of the tasks of steps 1 to 3, sorted, are handed out along their order, a
       tie raised by SCORE_STEP; each audit task's score is set between its neighbours'. A task's
       published score thus says where it is served: the score of its place in the strategy's
       ranking (the cold-start tasks take the lowest), no longer its own.
    """
    by_task = {str(p["task"]): dict(p) for p in predictions}
    cold = [i for i in dict.fromkeys(str(c) for c in cold_start) if i in by_task]
    queued = [i for i in audit if i in by_task and i not in set(cold)] if share > 0 else []
    placed = set(cold) | set(queued)
    waiting = {str(i) for i in held_back} - placed
    old = {str(s) for s in stale} - placed - waiting
    by_score = [str(p["task"]) for p in sorted(predictions, key=lambda p: p["score"]) if str(p["task"]) not in placed]
    ranking = [i for i in by_score if i not in old and i not in waiting]
    cut = len(ranking) if head is None else head
    ordered = ranking[:cut] if team_order is None else list(team_order(ranking[:cut]))
    regular = cold + ordered + ranking[cut:] + [i for i in by_score if i in old] + [i for i in by_score if i in waiting]
    for task, score in zip(regular, _strictly_increasing(sorted(by_task[i]["score"] for i in regular)), strict=True):
        by_task[task]["score"] = score
    out = [by_task[i] for i in interleave_audit(regular, queued, share, first_audit)]
    audit_places = set(queued)
    for i, p in enumerate(out):
        if str(p["task"]) in audit_places:
            below = out[i - 1]["score"] if i else None
            above = next((q["score"] for q in out[i + 1 :] if str(q["task"]) not in audit_places), None)
            if below is None and above is None:
                continue
            if below is None:
                p["score"] = above - SCORE_STEP
            elif above is None:
                p["score"] = below + SCORE_STEP
            else:
                p["score"] = (below + above) / 2
    return out


def _strictly_increasing(scores: list[float]) -> list[float]:
    out: list[float] = []
    for score in scores:
        out.append(round(out[-1] + SCORE_STEP, 6) if out and score <= out[-1] else score)
    return out


def team_order(pool: list[Example], vectors_of, team: int, seed: int) -> Callable[[list[str]], list[str]] | None:
    """The team-diverse serving order (al_core.ordering.serving_order) of ranked task ids, or None
    (team <= 1: the ranking as it is)."""
    if team <= 1 or vectors_of is None:
        return None
    by_id = {e.id: e for e in pool}

    def order(ranked: list[str]) -> list[str]:
        return [e.id for e in serving_order([by_id[i] for i in ranked], vectors_of, team, seed)]

    return order


def order_vectors(settings: Settings, project_id: int, kind: str, labels: list[str], model=None):
    """`vectors_of(tasks)` for the orders of al_core.ordering: a frozen head's own vectors, otherwise
    (a fine-tuned round, or before any model) a frozen encoder of AL_ACQUISITION_MODEL over the
    project's embedding cache, which computes only the vectors the cache lacks."""
    if getattr(model, "mode", None) == "frozen":
        return model.task_vectors
    return encoder_vectors(
        kind, settings.acquisition_model, labels, settings.training_config(), embedding_cache(settings, project_id)
    )


def prune_when_idle(project_id: int, settings: Settings, gateway: LSGateway, state, current: str) -> tuple[dict, float]:
    """`prune_versions` once the project points at `current`, outside the retrain's timed total:
    Label Studio saves the task of every prediction it deletes (about 25 ms each on PostgreSQL,
    ten times what creating it cost), seconds that no annotator should wait for. While another
    retrain of the project is pending, that one prunes, unless this one would leave more than
    twice the versions kept (a burst of annotations that never lets the queue go idle).
    Returns (versions deleted, seconds)."""
    keep = settings.keep_prediction_versions
    if keep <= 0:
        return {}, 0.0
    slack = keep if state.status(str(project_id)).get("pending") else 0
    start = time.perf_counter()
    pruned = prune_versions(gateway, project_id, current, keep, slack)
    return pruned, round(time.perf_counter() - start, 3)


def prune_versions(gateway: LSGateway, project_id: int, current: str, keep: int, slack: int = 0) -> dict[str, int]:
    """Deletes from Label Studio the predictions of this backend's versions older than the `keep`
    newest (0: none deleted), once more than `keep + slack` are held; never `current`, the version
    the project was just pointed at. Versions named otherwise (predictions a user imported) are
    left alone. Returns {version: predictions deleted}."""
    if keep <= 0:
        return {}
    ours = sorted(
        (version_number(project_id, v), v) for v in gateway.model_versions(project_id) if version_number(project_id, v)
    )
    if len(ours) <= keep + slack:
        return {}
    old = [v for _, v in ours[:-keep] if v != current]
    return {v: gateway.delete_version(project_id, v) for v in old}


def pool_predictions(
    pool, scores: dict, probs: dict, strategy: str, labels: list[str], config, previous: dict | None = None
) -> list[dict]:
    """A scored prediction for every pool task: regions where fresh probabilities exist
    (the re-scored subset); for the tasks whose score came from the cache, the regions of
    their latest earlier prediction (`previous`), so the labeling page keeps a pre-annotation."""
    previous = previous or {}
    scored = [e for e in pool if e.id in scores]
    if not scored:
        return []
    published = get_strategy(strategy).published_scores(
        [scores[e.id] for e in scored], config.task_kind.outcomes(len(labels))
    )
    out = []
    for example, score in zip(scored, published, strict=True):
        fresh = probs.get(example.id)
        if fresh is not None:
            result = regions(example, fresh, labels, config)
        else:  # an earlier prediction's regions only when they fit the current label config
            result = previous.get(example.id, [])
            if region_problem(result, config) is not None:
                result = []
        out.append({"task": int(example.id), "result": result, "score": round(float(score), 6)})
    return out


