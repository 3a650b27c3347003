"""UPS, Unlabeled Pool Subsampling: re-score only the part of the pool that can matter.

Every pool task keeps its last computed score. Ranked from most uncertain (rank 0) to
least (rank M), task i is re-scored with probability p_i = exp(-max(0, r_i - gamma) / T),
r_i = i / M: the top `gamma` share always, the rest with quickly vanishing probability
(about gamma + T of the pool in expectation). Whole-pool scoring still happens on the
first iterations and then at gaps growing to a bound (SPEC.md: 0, 1, 4, 8 of 15).

The premise, that the tasks most uncertain under the previous model hold most of the next query,
is measured on every full pass (`ups_premise`). A background fine-tune, a new encoder whose ranking
the cached scores (the frozen head's, an older encoder's) predict poorly at the live cadence,
embeds the whole pool until its last full pass found the premise held (`min_premise`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from pydantic import Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from al_core.config import STRICT


@dataclass(frozen=True)
class CachedScore:
    """A task's last computed score and which model version and iteration computed it."""

    score: float
    model_version: str
    iteration: int


class ScoreCache(Protocol):
    """Where the last score of every pool task lives (in memory, in Redis, on disk)."""

    def get_many(self, ids: Iterable[str]) -> dict[str, CachedScore]: ...

    def set_many(self, entries: Mapping[str, CachedScore]) -> None: ...

    def delete_many(self, ids: Iterable[str]) -> None: ...

    def all(self) -> dict[str, CachedScore]: ...


class InMemoryScoreCache:
    """A ScoreCache in a dict: for the simulator and tests."""

    def __init__(self) -> None:
        self._scores: dict[str, CachedScore] = {}

    def get_many(self, ids):
        return {i: self._scores[i] for i in ids if i in self._scores}

    def set_many(self, entries):
        self._scores.update(entries)

    def delete_many(self, ids):
        for i in ids:
            self._scores.pop(i, None)

    def all(self):
        return dict(self._scores)


Mode = Literal["full", "ups", "random"]
PREMISE_TOP = (1, 10, 50)
PREMISE_RULE_TOP = 10  # the share of these many most uncertain tasks decides a fine-tune's pass


def ups_premise(ranking: list[str], subset: Collection[str], tops: tuple[int, ...] = PREMISE_TOP) -> dict[str, float] | None:
    """UPS's premise on one full pass: the share of its k most uncertain tasks (`ranking`, best first)
    that the UPS subset chosen from the scores cached before held, for each k in `tops` (k = 1: the
    task an annotator gets next). The paper's Table 2 measures the same on the query."""
    if not ranking or not subset:
        return None
    return {str(k): sum(i in subset for i in ranking[:k]) / len(ranking[:k]) for k in tops}


@pydantic_dataclass(frozen=True, config=STRICT)
class SubsamplingConfig:
    """How much of the pool to score each iteration.

    mode: "full" scores everything; "ups" as above; "random" draws a uniform subset of the
    same expected size as UPS would (the paper's baseline). Iterations count from 0: the
    first `full_first` score the whole pool, then iterations N, 2N, 4N and every 4N after
    (N = `full_every`): 0, 1, 4, 8, 16, 32, 48, ... by default, the paper's 0, 1, 4, 8 over 15
    iterations (SPEC.md), with the gap held at 4N so that no cached score grows older than
    that in a long campaign; full_every = 0 means never again after the first ones.
    """

    mode: Mode = Field(
        "ups", description="Pool scoring: full (every task each time), ups (uncertainty-based subsampling), random."
    )
    gamma: float = Field(0.1, ge=0, le=1, description="UPS: fraction of the pool re-scored per iteration.")
    temperature: float = Field(0.01, ge=0, description="UPS: temperature T of the sampling (0: a hard cut).")
    full_first: int = Field(2, ge=0, description="UPS: first iterations that score the whole pool.")
    full_every: int = Field(4, ge=0, description="UPS: score the whole pool at iterations N, 2N, 4N, then every 4N (0: never).")
    min_premise: float = Field(
        0.8,
        ge=0,
        le=1,
        description="UPS: a background fine-tune embeds only the UPS subset once its encoder's own full pass found that "
        f"the subset chosen from the scores cached before held at least this share of the new model's {PREMISE_RULE_TOP} "
        "most uncertain tasks; below that, or unmeasured, it embeds the whole pool (0: the iteration schedule alone).",
    )

    def is_full_iteration(self, iteration: int) -> bool:
        if self.mode == "full" or iteration < self.full_first:
            return True
        if self.full_every <= 0 or iteration < self.full_every or iteration % self.full_every:
            return False
        # N, 2N, 4N, then every 4N: the paper's 0, 1, 4, 8 over 15 iterations, and a long live
        # campaign still refreshes every cached score at a bounded gap
        step = iteration // self.full_every
        return step in (1, 2) or step % 4 == 0

    def finetune_pass_is_full(self, iteration: int, premise: Mapping[str, float] | None) -> bool:
        """Whether a background fine-tune embeds the whole pool: its vectors are all the refresh rounds
        until the next fine-tune can score, and the subset cached scores choose held 0.2-0.6 of a new
        encoder's most uncertain tasks at the live cadence (BENCHMARKS.md, ups-premise). `premise`: what
        the full pass of the encoder served now measured (`ups_premise`), None when it ran none."""
        if self.mode != "ups" or self.min_premise <= 0:
            return self.is_full_iteration(iteration)
        return premise is None or premise.get(str(PREMISE_RULE_TOP), 0.0) < self.min_premise


def ups_probabilities(n: int, gamma: float, temperature: float) -> np.ndarray:
    """Re-scoring probability by rank position 0..n-1 (0 = most uncertain)."""
    if n == 0:
        return np.zeros(0)
    ranks = np.arange(n) / max(1, n - 1)
    excess = np.maximum(0.0, ranks - gamma)
    if temperature == 0:
        return (excess == 0).astype(float)
    with np.errstate(over="ignore"):  # a tiny T overflows to inf, and exp(-inf) is the right 0
        return np.exp(-excess / temperature)


class PoolSubsampler:
    """Chooses which pool tasks to re-score this iteration (seeded, so runs repeat)."""

    def __init__(self, config: SubsamplingConfig | None = None, seed: int = 0):
        self.config = config or SubsamplingConfig()
        self.seed = seed

    def choose(self, pool_ids: list[str], cached: Mapping[str, CachedScore], iteration: int) -> list[str]:
        """Ids to score, in pool order. Tasks with no cached score are always scored."""
        if self.config.is_full_iteration(iteration):
            return list(pool_ids)
        return self.subset(pool_ids, cached, iteration)

    def subset(self, pool_ids: list[str], cached: Mapping[str, CachedScore], iteration: int) -> list[str]:
        """The UPS subset (random: its uniform baseline) whatever the schedule says, in pool order."""
        known = [i for i in pool_ids if i in cached]
        if not known:
            return list(pool_ids)
        # rank by last score, most uncertain first; ties keep pool order
        order = np.argsort(-np.array([cached[i].score for i in known]), kind="stable")
        p_by_rank = ups_probabilities(len(known), self.config.gamma, self.config.temperature)
        if self.config.mode == "random":
            p_by_rank = np.full(len(known), p_by_rank.mean())
        rng = np.random.default_rng([self.seed, iteration])
        drawn = rng.random(len(known)) < p_by_rank
        keep = {known[order[rank]] for rank in np.flatnonzero(drawn)}
        return [i for i in pool_ids if i in keep or i not in cached]
