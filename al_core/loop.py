"""One active-learning round: fit, subsample the pool, score the subset, select a batch.

The live backend's retrain job and the simulator both call `run_round`, so what is
measured offline is what runs behind Label Studio. The fit records the model's quality
estimate (al_core.acquisition); a model whose scoring is a matrix product over cached
vectors (`scores_whole_pool`, the frozen head) scores the whole pool every round.

`infer` lets the caller run the scoring pass elsewhere: the backend splits a big pass into
chunks for its RQ workers (ml_backend.jobs.split_pass); the result must be what `model.infer`
gives, in the same order.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from al_core.acquisition import (
    AcquisitionConfig,
    QualityEstimate,
    finetune_in_background,
    fit_with_estimate,
    resolve_mode,
    served_mode,
)
from al_core.data import Example
from al_core.exceptions import EmptyPoolError
from al_core.models.base import AcquisitionModel, ModelOutputs, Predictor
from al_core.strategies import QueryStrategy, select_batch
from al_core.ups import CachedScore, PoolSubsampler, ScoreCache, ups_premise

PREMISE_FILE = "ups_premise.json"  # beside a background fine-tune's encoder: what its pass measured


@dataclass
class RoundModel:
    """The model a round trains (`round_model`) and what it leaves for the rounds after it.

    `encoder`: (folder, labeled count) of the fine-tuned encoder the next refresh rounds read, the
    one this round read or (a fine-tune with `hand_over`) its own once saved to that folder;
    `hand_over`: for `run_round`, which caches the fine-tune's vectors under that folder's keys;
    `finetune_due`: a fine-tune is due and runs beside the retrains (`finetune_encoder`), the
    round serving a refresh head or the frozen head meanwhile."""

    model: object
    mode: str  # frozen | finetune | refresh (al_core.acquisition.resolve_mode)
    encoder: tuple[str, int] | None = None
    hand_over: Callable[[list[Example], object], None] | None = None
    finetune_due: bool = False


def round_model(
    acquisition: AcquisitionConfig,
    kind: str,
    labels: list[str],
    n_labeled: int,
    build: Callable[[str], object],
    encoder: tuple[str, int] | None,
    new_encoder_folder: Callable[[], str],
    training=None,
    embedding_cache=None,
) -> RoundModel:
    """The round's model, as the backend's retrain and the simulator pick it: `build(mode)` for a
    frozen head or a fine-tune; for a refresh round a head over `encoder` (the last fine-tune's
    folder and labeled count, None if none), al_core.models.refresh_model. A fine-tune that refresh
    rounds will follow hands its vectors over for the folder `new_encoder_folder()` names, where the
    caller saves it. In the background lane (AcquisitionConfig.finetune_lane) a due fine-tune is not
    the round's: the round serves `served_mode`'s model and says the fine-tune is due."""
    from al_core.models import refresh_model

    finetuned_at = encoder[1] if encoder else None
    due = finetune_in_background(acquisition, kind, n_labeled, finetuned_at)
    mode = served_mode(acquisition, kind, n_labeled, finetuned_at)
    if mode == "refresh":
        return RoundModel(refresh_model(kind, encoder[0], labels, training, embedding_cache), mode, encoder, None, due)
    model = build(mode)
    if due:
        return RoundModel(model, mode, None, None, True)
    if mode == "finetune" and resolve_mode(acquisition, kind, n_labeled, n_labeled) == "refresh":
        folder = new_encoder_folder()
        reader = refresh_model(kind, folder, labels, training, embedding_cache)
        return RoundModel(model, mode, (folder, n_labeled), reader.remember)
    return RoundModel(model, mode)


def keep_encoder(chosen: RoundModel, model, previous: tuple[str, int] | None) -> tuple[str, int] | None:
    """After a round that `round_model` chose (callers that keep no version store: the simulator, the
    benchmarks): a fine-tune that handed its vectors over is saved to its folder and the earlier
    encoder's folder deleted. Returns the encoder the next round reads."""
    if chosen.hand_over is not None:
        model.save(chosen.encoder[0])
        if previous is not None and previous[0] != chosen.encoder[0]:
            shutil.rmtree(previous[0], ignore_errors=True)
    return chosen.encoder


@dataclass
class FinetuneVerdict:
    """A fine-tune of the background lane (`finetune_encoder`) and whether its encoder is taken up.

    `quality`: a head over the new encoder, `incumbent`: a head over the encoder served when it
    started (the last fine-tuned one, else the pretrained one), both fit on the same labels and
    measured on the same held-out share, which no fine-tune trains on. Taken up (`accepted`) when
    the new one is not worse, or when either has no estimate (too few labels). When the incumbent
    is itself a fine-tune (`margin`: AcquisitionConfig.finetune_replace_margin), the new one is
    taken up unless it is worse by more than `margin`: a few held-out tasks cannot tell two
    fine-tunes apart, and each rejection leaves the served encoder further behind the labels.
    Measured on fewer than `min_held_out` tasks (AcquisitionConfig.finetune_min_held_out) the
    verdict cannot reject: a macro F1 on 4 tasks is chance."""

    model: object
    folder: str
    n_labeled: int
    quality: QualityEstimate
    incumbent: QualityEstimate
    timings: dict[str, float] = field(default_factory=dict)
    full_pass: bool = False
    premise: dict[str, float] | None = None
    margin: float = 0.0
    min_held_out: int = 0

    @property
    def accepted(self) -> bool:
        new, old = self.quality.value, self.incumbent.value
        return new is None or old is None or self.quality.n < self.min_held_out or new >= old - self.margin

    def as_dict(self) -> dict:
        return {
            "n_labeled": self.n_labeled,
            "accepted": self.accepted,
            "metric": self.quality.metric,
            "value": self.quality.value,
            "incumbent_value": self.incumbent.value,
            "margin": self.margin,
            "n_held_out": self.quality.n,
            "min_held_out": self.min_held_out,
            "full_pass": self.full_pass,
            "ups_premise": self.premise,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }

    def save(self, folder: str | Path) -> None:
        """The encoder and the premise its pass measured, which the next fine-tune's pass follows."""
        self.model.save(folder)
        Path(folder, PREMISE_FILE).write_text(json.dumps(self.premise), encoding="utf-8")


def encoder_premise(folder: str | None) -> dict[str, float] | None:
    """The premise the fine-tune of the encoder in `folder` measured (None: none measured, or no file)."""
    path = Path(folder, PREMISE_FILE) if folder else None
    return json.loads(path.read_text(encoding="utf-8")) if path is not None and path.is_file() else None


def finetune_encoder(
    build: Callable[[str], object],
    kind: str,
    labels: list[str],
    labeled: list[Example],
    pool: list[Example],
    cache: ScoreCache,
    subsampler: PoolSubsampler,
    iteration: int,
    acquisition: AcquisitionConfig,
    folder: str,
    incumbent: tuple[str, int] | None,
    training=None,
    embedding_cache=None,
    seed: int = 0,
    infer: Callable[..., ModelOutputs] | None = None,
    also_score: Collection[str] = (),
    strategy: QueryStrategy | None = None,
) -> FinetuneVerdict:
    """The background lane's fine-tune: `build("finetune")` fit on the labels (the held-out share and
    the audit tasks out of its training), its vectors of the labeled tasks and of the pool tasks the
    refresh rounds will score (the whole pool, or the UPS subset over the cached scores when the
    incumbent's pass found the premise held: SubsamplingConfig.finetune_pass_is_full; plus
    `also_score`) cached under the keys of `folder`, where the caller saves it (`FinetuneVerdict.save`)
    if the verdict takes it up; then the verdict against `incumbent` (the encoder served now: (folder,
    labeled count), None: the pretrained one). A whole-pool pass measures the premise for the next
    one: `strategy` ranks the pool under a head over the new encoder."""
    from al_core.models import refresh_model

    run = infer or _infer_here
    timings: dict[str, float] = {}
    start = time.perf_counter()
    model = build("finetune")
    fit_with_estimate(model, labeled, acquisition, seed)
    timings["fit_s"] = time.perf_counter() - start
    start = time.perf_counter()
    pool_ids = [e.id for e in pool]
    cached = cache.get_many(pool_ids)
    full = subsampler.config.finetune_pass_is_full(iteration, encoder_premise(incumbent[0] if incumbent else None))
    chosen = set(pool_ids if full else subsampler.choose(pool_ids, cached, iteration)) | set(also_score)
    subset = [e for e in pool if e.id in chosen]
    reader = refresh_model(kind, folder, labels, training, embedding_cache)
    if subset:
        reader.remember(subset, run(model, subset, probs=False, embeddings=True).embeddings)
    reader.remember(labeled, run(model, labeled, probs=False, embeddings=True).embeddings)
    timings["inference_s"] = time.perf_counter() - start
    start = time.perf_counter()
    quality = fit_with_estimate(reader, labeled, acquisition, seed)  # the head then refit on every label
    served = refresh_model(kind, incumbent[0], labels, training, embedding_cache) if incumbent else build("frozen")
    before = fit_with_estimate(served, labeled, acquisition, seed, held_out=True)
    timings["verdict_s"] = time.perf_counter() - start
    premise = None
    if full and strategy is not None and pool and len(cached) == len(pool):
        start = time.perf_counter()
        ranking = _ranking(reader, labeled, pool, strategy)
        premise = ups_premise(ranking, set(subsampler.subset(pool_ids, cached, iteration)))
        timings["premise_s"] = time.perf_counter() - start
    margin = acquisition.finetune_replace_margin if incumbent else 0.0
    verdict = FinetuneVerdict(
        model, folder, len(labeled), quality, before, timings, full, premise, margin, acquisition.finetune_min_held_out
    )
    if not verdict.accepted:  # nothing will read its vectors (a whole pool's, often)
        reader.forget(subset + labeled)
    return verdict


def _ranking(model: Predictor, labeled: list[Example], pool: list[Example], strategy: QueryStrategy) -> list[str]:
    """The pool's ids, most uncertain first, as `strategy` scores them under `model`."""
    strategy.prepare(model, labeled)
    outputs = model.infer(pool, probs=strategy.needs_probs, embeddings=strategy.needs_embeddings)
    scores = strategy.score_outputs(probs=outputs.probs, embeddings=outputs.embeddings, n=len(pool))
    return select_batch([e.id for e in pool], scores, count=len(pool))  # a round's ranking rule


def adopt_encoder(verdict: FinetuneVerdict, previous: tuple[str, int] | None) -> tuple[str, int] | None:
    """For callers that keep no version store (the simulator, the benchmarks): a fine-tune the verdict
    takes up is saved to its folder, which replaces the earlier encoder's. Returns the encoder the
    next round reads."""
    if not verdict.accepted:
        return previous
    verdict.save(verdict.folder)
    if previous is not None and previous[0] != verdict.folder:
        shutil.rmtree(previous[0], ignore_errors=True)
    return verdict.folder, verdict.n_labeled


@dataclass
class RoundResult:
    """What a round produced.

    `scores` holds every pool task's current score (fresh for the scored subset, cached for
    the rest); `probs` the fresh probabilities by id (for predictions), when the strategy
    used them.
    """

    model: object
    selected_ids: list[str]
    scores: dict[str, float]
    fresh_ids: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    probs: dict[str, object] = field(default_factory=dict)
    quality: QualityEstimate | None = None

    @property
    def n_scored(self) -> int:
        return len(self.fresh_ids)


def run_round(
    model: AcquisitionModel | Predictor,
    labeled: list[Example],
    pool: list[Example],
    strategy: QueryStrategy,
    subsampler: PoolSubsampler,
    cache: ScoreCache,
    iteration: int,
    model_version: str,
    count: int | None = None,
    word_budget: int | None = None,
    fit: bool = True,
    acquisition: AcquisitionConfig | None = None,
    infer: Callable[..., ModelOutputs] | None = None,
    seed: int = 0,
    also_score: Collection[str] = (),
    hand_over: Callable[[list[Example], object], None] | None = None,
    top_up: int = 0,
) -> RoundResult:
    """Runs one round; the query is taken from the freshly scored subset only. `seed` picks the
    audit sample of the estimate (al_core.acquisition.is_audit_task); `also_score`: pool tasks
    scored whatever the subsampler chooses (the audit tasks the backend serves next).

    `hand_over(examples, vectors)` (a fine-tune that refresh rounds follow): receives the model's
    vectors of the labeled tasks and of the scored subset, the ones the scoring pass computes anyway.
    A refresh round's model (a head over a fine-tuned encoder, `encoder_saw_labels`) scores the pool
    tasks whose vectors were handed over (and `also_score`); the rest keep their cached scores. Should
    fewer than `top_up` of them be left (labeled since, or a fine-tune not taken up), the most uncertain
    others by their cached score are added up to that many, their vectors computed by the encoder."""
    if not pool:
        raise EmptyPoolError("the pool is empty: nothing left to query")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    quality = fit_with_estimate(model, labeled, acquisition or AcquisitionConfig(), seed) if fit else None
    timings["fit_s"] = time.perf_counter() - start

    start = time.perf_counter()
    pool_ids = [e.id for e in pool]
    cached = cache.get_many(pool_ids)
    if getattr(model, "encoder_saw_labels", False):
        known = {e.id for e in model.embedded(pool)} | set(also_score)
        if len(known) < top_up:
            others = sorted(
                (i for i in pool_ids if i not in known), key=lambda i: -cached[i].score if i in cached else -np.inf
            )
            known |= set(others[: top_up - len(known)])
        subset = [e for e in pool if e.id in known]
    elif getattr(model, "scores_whole_pool", False):
        subset = list(pool)
    else:
        chosen = set(subsampler.choose(pool_ids, cached, iteration)) | set(also_score)
        subset = [e for e in pool if e.id in chosen]
    strategy.prepare(model, labeled)
    run = infer or _infer_here
    outputs = run(model, subset, probs=strategy.needs_probs, embeddings=strategy.needs_embeddings or bool(hand_over))
    if hand_over is not None:
        hand_over(subset, outputs.embeddings)
        hand_over(labeled, run(model, labeled, probs=False, embeddings=True).embeddings)
    fresh = strategy.score_outputs(probs=outputs.probs, embeddings=outputs.embeddings, n=len(subset))
    cache.set_many(
        {e.id: CachedScore(float(s), model_version, iteration) for e, s in zip(subset, fresh, strict=True)}
    )
    timings["inference_s"] = time.perf_counter() - start

    start = time.perf_counter()
    scores = {i: c.score for i, c in cached.items()}
    scores.update({e.id: float(s) for e, s in zip(subset, fresh, strict=True)})
    selected = select_batch(
        [e.id for e in subset], fresh, count=count, word_budget=word_budget, n_words=[e.n_words for e in subset]
    )
    timings["select_s"] = time.perf_counter() - start
    probs = {}
    if outputs.probs is not None:
        probs = {e.id: p for e, p in zip(subset, outputs.probs, strict=True)}
    return RoundResult(model, selected, scores, [e.id for e in subset], timings, probs, quality)


def _infer_here(model: Predictor, examples: list[Example], probs: bool, embeddings: bool) -> ModelOutputs:
    return model.infer(examples, probs=probs, embeddings=embeddings)
