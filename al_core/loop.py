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

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from al_core.acquisition import AcquisitionConfig, QualityEstimate, fit_with_estimate
from al_core.data import Example
from al_core.exceptions import EmptyPoolError
from al_core.models.base import AcquisitionModel, ModelOutputs, Predictor
from al_core.strategies import QueryStrategy, select_batch
from al_core.ups import CachedScore, PoolSubsampler, ScoreCache


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
) -> RoundResult:
    """Runs one round; the query is taken from the freshly scored subset only. `seed` picks the
    audit sample of the estimate (al_core.acquisition.is_audit_task); `also_score`: pool tasks
    scored whatever the subsampler chooses (the audit tasks the backend serves next)."""
    if not pool:
        raise EmptyPoolError("the pool is empty: nothing left to query")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    quality = fit_with_estimate(model, labeled, acquisition or AcquisitionConfig(), seed) if fit else None
    timings["fit_s"] = time.perf_counter() - start

    start = time.perf_counter()
    pool_ids = [e.id for e in pool]
    cached = cache.get_many(pool_ids)
    if getattr(model, "scores_whole_pool", False):
        subset = list(pool)
    else:
        chosen = set(subsampler.choose(pool_ids, cached, iteration)) | set(also_score)
        subset = [e for e in pool if e.id in chosen]
    strategy.prepare(model, labeled)
    outputs = (infer or _infer_here)(model, subset, probs=strategy.needs_probs, embeddings=strategy.needs_embeddings)
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
