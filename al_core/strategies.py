"""Query strategies behind one contract: a higher score means "ask a human first".

A strategy says which model outputs it needs (probabilities, embeddings or nothing),
turns those outputs into one score per task, and is found by name in a registry. Batch
selection is separate: by count (classification) or by a word budget (tagging).

The probability scores take an (n, K) array, one distribution per task, or an (n, K, 2) array of
K yes/no decisions per task (multi-label classification): each decision is scored as a two-class
task and a task scores the mean over its decisions.

A strategy also says how its informativeness u becomes the score Label Studio stores and orders
by (`QueryStrategy.published_scores`). Label Studio's "Uncertainty sampling" serves the LOWEST
prediction score first, while every strategy gives a HIGHER u to the task to ask first, so the
published score is a bounded, strictly decreasing function of u, always in [0, 1] (0 = ask first,
1 = the model is sure):

| strategy | informativeness u                      | range        | published score           |
|----------|----------------------------------------|--------------|---------------------------|
| lc       | 1 - max_y P(y|x)                       | [0, 1 - 1/K] | 1 - u / (1 - 1/K)         |
| dlc      | (1 - max_y P(y|x)) x density in [0, 1] | [0, 1 - 1/K] | 1 - u / (1 - 1/K)         |
| dlc-rare | dlc's u x a rare-class factor in (0, 1] | [0, 1 - 1/K] | 1 - u / (1 - 1/K)         |
| margin   | 1 - (P(best) - P(second))              | [0, 1]       | 1 - u  (= the margin)     |
| entropy  | -sum_y P(y|x) log P(y|x)               | [0, log K]   | 1 - u / log K             |
| mnlp     | -(1/n) sum_i max_y log P(y_i|x)        | [0, inf)     | exp(-u) (geometric mean of the best tag probabilities) |
| mnlp-task | -sum_i max_y log P(y_i|x) / (n + C)   | [0, inf)     | exp(-u)                   |
| md       | min_c Mahalanobis distance to class c  | [0, inf)     | 1 / (1 + u)               |
| random   | uniform draw                           | [0, 1)       | 1 - u                     |

K is the number of outcomes of one decision (`TaskKind.outcomes`): the classes (tags for mnlp and mnlp-task; 2
for the per-class yes/no decisions of multi-label classification, whose u is the mean over the
classes; C for mnlp-task, a task's fixed annotation cost in words). Results are clipped to [0, 1]
against rounding. A new strategy is one subclass of
`QueryStrategy` (its scores and its published score) plus its line in `STRATEGIES`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from sklearn.covariance import LedoitWolf

from al_core.data import CLASSIFICATION, MULTILABEL, TAGGING, Example
from al_core.exceptions import EmptyPoolError, UnknownStrategyError

if TYPE_CHECKING:  # the models' module loads torch; the settings' strategy check need not
    from al_core.models.base import AcquisitionModel

_EPS = 1e-12

# mnlp-task's fixed cost of a task, in words: 20 saved the most sentences on CoNLL-2003 and WNUT-17
# without costing words against random order (0, 5, 10, 20 and unbounded measured, BENCHMARKS.md
# "Labels saved against random order: NER")
TASK_COST_WORDS = 20.0


# -- scores from probabilities (pure functions) ------------------------------------------
def _per_task(scores: np.ndarray) -> np.ndarray:
    """Scores of decisions, (n,) or (n, K): the mean of each task's decisions."""
    return scores.mean(axis=1) if scores.ndim == 2 else scores


def least_confidence(probs: np.ndarray) -> np.ndarray:
    """1 - max_y P(y|x), in [0, 1 - 1/K]."""
    return _per_task(1.0 - np.asarray(probs).max(axis=-1))


def margin(probs: np.ndarray) -> np.ndarray:
    """1 - (P(best) - P(second best)): a small margin between the top two means uncertain."""
    probs = np.asarray(probs)
    if probs.shape[-1] < 2:
        return np.zeros(len(probs))
    top2 = np.sort(probs, axis=-1)[..., -2:]
    return _per_task(1.0 - (top2[..., 1] - top2[..., 0]))


def entropy(probs: np.ndarray) -> np.ndarray:
    """-sum_y P(y|x) log P(y|x)."""
    probs = np.asarray(probs)
    return _per_task(-(probs * np.log(probs + _EPS)).sum(axis=-1))


def draw_landmarks(embeddings: np.ndarray, seed: int = 0, count: int = 500) -> np.ndarray:
    """`count` of the rows, drawn at random (seeded), as unit vectors: what `information_density`
    compares tasks with."""
    vectors = _unit_rows(embeddings)
    if len(vectors) <= count:
        return vectors
    return vectors[np.random.default_rng(seed).choice(len(vectors), count, replace=False)]


def information_density(embeddings: np.ndarray, landmarks: np.ndarray, k: int = 5) -> np.ndarray:
    """How typical each task is of the tasks the landmarks were drawn from, in [0, 1]: the mean
    cosine similarity of its vector to its `k` most similar landmarks, leaving out the most similar
    one (the task itself, when it is a landmark). Information density (Settles & Craven, 2008)
    over landmarks, so its cost grows with the rows, not their square."""
    vectors = _unit_rows(embeddings)
    top = min(k + 1, len(landmarks))
    if top < 2:
        return np.ones(len(vectors))
    out = np.empty(len(vectors))
    for start in range(0, len(vectors), 4096):  # a (4096, landmarks) block of similarities at a time
        nearest = np.partition(vectors[start : start + 4096] @ landmarks.T, -top, axis=1)[:, -top:]
        out[start : start + 4096] = (nearest.sum(axis=1) - nearest.max(axis=1)) / (top - 1)
    return np.clip(out, 0.0, 1.0)


def _unit_rows(embeddings: np.ndarray) -> np.ndarray:
    vectors = np.asarray(embeddings, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), _EPS)


def mnlp(word_probs: Sequence[np.ndarray]) -> np.ndarray:
    """Maximum normalised log-probability, negated: -(1/n) sum_i max_y log P(y_i = y | x) (with a
    per-word softmax the best tag sequence is the per-word argmax): `task_nlp` with no task cost.

    A sentence with no words scores 0 (nothing to ask about).
    """
    return task_nlp(word_probs, task_cost_words=0.0)


def task_nlp(word_probs: Sequence[np.ndarray], task_cost_words: float = TASK_COST_WORDS) -> np.ndarray:
    """The best tag sequence's negative log-probability per word of annotation cost:
    -sum_i max_y log P(y_i = y | x) / (n + task_cost_words).

    mnlp (task_cost_words 0) divides by the words alone, as if a sentence cost only its words: it
    asks for fragments ("*", "EL MUNDO"; on CoNLL-2003 its first 180 averaged 5 words against
    random's 15), which cost a task each in Label Studio. The sum alone (an infinite task cost)
    asks for the longest uncertain sentences, twice random's words per task. The fixed cost
    charges each task for being opened, read and submitted, as a number of words.
    """
    scores = np.zeros(len(word_probs))
    for i, probs in enumerate(word_probs):
        if len(probs):
            surprise = -np.log(np.asarray(probs).max(axis=1) + _EPS)
            scores[i] = surprise.sum() / (len(surprise) + task_cost_words)
    return scores


# -- the contract ------------------------------------------------------------------------
class QueryStrategy:
    """Scores pool tasks; higher means more informative, ask first."""

    name: str = ""
    kinds: frozenset[str] = frozenset({CLASSIFICATION, MULTILABEL, TAGGING})
    needs_probs: bool = False
    needs_embeddings: bool = False
    score_formula: str = ""  # the published score as a function of u and K (the module's table)

    def prepare(self, model: AcquisitionModel, labeled: list[Example] | None) -> None:
        """Fits whatever the strategy learns from the labeled set (default: nothing)."""

    def state(self) -> dict[str, np.ndarray]:
        """What it learned in its round, kept with the version so that tasks scored later (new
        tasks, /predict) are scored alike (default: nothing)."""
        return {}

    def restore(self, state: dict[str, np.ndarray]) -> None:
        """Takes back what `state` gave."""

    def score_outputs(self, probs=None, embeddings=None, n: int | None = None) -> np.ndarray:
        raise NotImplementedError

    def published_scores(self, informativeness, n_outcomes: int) -> np.ndarray:
        """Label Studio's scores of tasks with informativeness `informativeness` (higher = ask first):
        in [0, 1], lower = ask first; `n_outcomes` is K, the outcomes of one decision."""
        u = np.asarray(informativeness, dtype=np.float64)
        return np.clip(self._publish(u, n_outcomes), 0.0, 1.0)

    def _publish(self, u: np.ndarray, n_outcomes: int) -> np.ndarray:
        """`score_formula` of u before the clip against rounding."""
        raise NotImplementedError(f"strategy {self.name!r} has no published score")

    def score(self, model: AcquisitionModel, pool: list[Example], labeled: list[Example] | None = None) -> np.ndarray:
        if not pool:
            raise EmptyPoolError("cannot score an empty pool")
        if model.kind not in self.kinds:
            raise ValueError(f"strategy {self.name!r} does not apply to {model.kind}")
        self.prepare(model, labeled)
        outputs = model.infer(pool, probs=self.needs_probs, embeddings=self.needs_embeddings)
        return self.score_outputs(probs=outputs.probs, embeddings=outputs.embeddings, n=len(pool))


class RandomStrategy(QueryStrategy):
    """Random scores from a seeded generator: the baseline every strategy must beat."""

    name = "random"
    score_formula = "1 - u"

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._calls = 0

    def _publish(self, u, n_outcomes):
        return 1.0 - u

    def score_outputs(self, probs=None, embeddings=None, n=None):
        if n is None:
            n = len(probs) if probs is not None else len(embeddings)
        # a fresh stream per call, derived from the seed: same seed, same sequence of answers
        rng = np.random.default_rng([self.seed, self._calls])
        self._calls += 1
        return rng.random(n)


class _ProbabilityStrategy(QueryStrategy):
    needs_probs = True
    function = staticmethod(least_confidence)

    def __init__(self, seed: int = 0):
        self.seed = seed

    def score_outputs(self, probs=None, embeddings=None, n=None):
        return np.asarray(self.function(probs), dtype=np.float64)


_CHOICE_KINDS = frozenset({CLASSIFICATION, MULTILABEL})


def _least_confidence_published(u: np.ndarray, n_outcomes: int) -> np.ndarray:
    """u over its top, 1 - 1/K (a uniform distribution), taken from 1."""
    top = 1.0 - 1.0 / n_outcomes if n_outcomes > 1 else 1.0
    return 1.0 - u / top


class LeastConfidence(_ProbabilityStrategy):
    name, kinds, function = "lc", _CHOICE_KINDS, staticmethod(least_confidence)
    score_formula = "1 - u / (1 - 1/K)"

    def _publish(self, u, n_outcomes):
        return _least_confidence_published(u, n_outcomes)


class Margin(_ProbabilityStrategy):
    name, kinds, function = "margin", _CHOICE_KINDS, staticmethod(margin)
    score_formula = "1 - u"

    def _publish(self, u, n_outcomes):
        return 1.0 - u


class Entropy(_ProbabilityStrategy):
    name, kinds, function = "entropy", _CHOICE_KINDS, staticmethod(entropy)
    score_formula = "1 - u / log K"

    def _publish(self, u, n_outcomes):
        return 1.0 - u / math.log(n_outcomes) if n_outcomes > 1 else 1.0 - u


class DensityWeightedLeastConfidence(QueryStrategy):
    """Least confidence times `information_density`: of two tasks the model is as unsure about, the
    one like many others in the pool goes first, and an uncertain outlier (a text unlike the rest,
    which teaches little about the others) later. Below a hundred labels, on SST-2, least
    confidence alone ordered no better than random and dlc better, on AG News both better
    (BENCHMARKS.md, active learning against random ordering)."""

    name, kinds = "dlc", _CHOICE_KINDS
    needs_probs = needs_embeddings = True
    score_formula = LeastConfidence.score_formula  # density in [0, 1] keeps u within lc's range

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.landmarks_: np.ndarray | None = None

    def score_outputs(self, probs=None, embeddings=None, n=None):
        if self.landmarks_ is None:  # drawn from the first tasks it scores: its round's pool (or subset)
            self.landmarks_ = draw_landmarks(embeddings, self.seed)
        return least_confidence(probs) * information_density(embeddings, self.landmarks_)

    def _publish(self, u, n_outcomes):
        return _least_confidence_published(u, n_outcomes)

    def state(self):
        return {} if self.landmarks_ is None else {"landmarks": self.landmarks_}

    def restore(self, state):
        self.landmarks_ = state.get("landmarks")


class RareClassDLC(DensityWeightedLeastConfidence):
    """dlc that, while the labeled mix is skewed, prefers the tasks likely to belong to the classes
    with the fewest labels: u = dlc's u x (1 + sum_c P(c|x) r_c) / (1 + max_c r_c), where
    r_c = 1 - labels of c / labels of the most labeled class. With every class labeled alike
    (r = 0) it is dlc; the factor is in (0, 1], so u stays within lc's range."""

    name = "dlc-rare"

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self.rarity_: np.ndarray | None = None

    def prepare(self, model, labeled):
        if not labeled:
            self.rarity_ = None
            return
        classes = list(model.labels)
        counts = np.zeros(len(classes))
        for example in labeled:
            for label in example.choices if example.choices is not None else [example.label]:
                if label in classes:
                    counts[classes.index(label)] += 1
        self.rarity_ = 1.0 - counts / max(counts.max(), 1.0)

    def score_outputs(self, probs=None, embeddings=None, n=None):
        u = super().score_outputs(probs=probs, embeddings=embeddings, n=n)
        if self.rarity_ is None or not self.rarity_.any():
            return u
        likely = np.asarray(probs)
        likely = likely[..., 1] if likely.ndim == 3 else likely  # multi-label: P(yes) of each class
        return u * (1.0 + likely @ self.rarity_) / (1.0 + self.rarity_.max())

    def state(self):
        return super().state() | ({} if self.rarity_ is None else {"rarity": self.rarity_})

    def restore(self, state):
        super().restore(state)
        self.rarity_ = state.get("rarity")


class MNLP(_ProbabilityStrategy):
    name, kinds, function = "mnlp", frozenset({TAGGING}), staticmethod(mnlp)
    score_formula = "exp(-u)"  # the geometric mean of the best tag probabilities

    def _publish(self, u, n_outcomes):
        return np.exp(-np.maximum(u, 0.0))


class TaskNLP(MNLP):
    """mnlp charged per task as well as per word (`task_nlp`); the default for NER."""

    name, function = "mnlp-task", staticmethod(task_nlp)


class MahalanobisDistance(QueryStrategy):
    """Distance of a task's vector (a classifier's mean-pooled last layer, what its head reads) to the
    nearest class centroid of the labeled set.

    One centroid per labeled class and one shared covariance of the class-centred labeled
    vectors, shrunk by Ledoit-Wolf so it stays invertible with few labels. Far from every
    class means unlike anything labeled: ask first.
    """

    name = "md"
    kinds = frozenset({CLASSIFICATION})
    needs_embeddings = True
    score_formula = "1 / (1 + u)"

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.centroids_: np.ndarray | None = None
        self.precision_: np.ndarray | None = None

    def prepare(self, model, labeled):
        if not labeled:
            raise ValueError("strategy 'md' needs labeled examples to fit class centroids")
        self.fit_embeddings(model.embed(labeled), [e.label for e in labeled])

    def fit_embeddings(self, embeddings: np.ndarray, labels: Sequence[str]) -> MahalanobisDistance:
        labels = np.asarray(labels)
        classes = sorted(set(labels.tolist()))
        self.centroids_ = np.stack([embeddings[labels == c].mean(axis=0) for c in classes])
        centred = embeddings - self.centroids_[[classes.index(c) for c in labels]]
        if len(centred) < 2:  # a single row has no spread: fall back to the Euclidean distance
            self.precision_ = np.eye(embeddings.shape[1])
        else:
            self.precision_ = LedoitWolf(assume_centered=True).fit(centred).precision_
        return self

    def _publish(self, u, n_outcomes):
        return 1.0 / (1.0 + np.maximum(u, 0.0))

    def state(self):
        return {} if self.centroids_ is None else {"centroids": self.centroids_, "precision": self.precision_}

    def restore(self, state):
        self.centroids_, self.precision_ = state.get("centroids"), state.get("precision")

    def score_outputs(self, probs=None, embeddings=None, n=None):
        if self.centroids_ is None:
            raise ValueError("strategy 'md' is used before it was fitted on labeled embeddings")
        diffs = embeddings[:, None, :] - self.centroids_[None, :, :]
        distances = np.einsum("ncd,de,nce->nc", diffs, self.precision_, diffs)
        return distances.min(axis=1)


STRATEGIES: dict[str, type[QueryStrategy]] = {
    cls.name: cls
    for cls in (
        RandomStrategy, LeastConfidence, DensityWeightedLeastConfidence, RareClassDLC, Margin, Entropy, MNLP, TaskNLP,
        MahalanobisDistance,
    )
}


def get_strategy(name: str, seed: int = 0) -> QueryStrategy:
    """The strategy registered under `name`."""
    if name not in STRATEGIES:
        raise UnknownStrategyError(f"unknown strategy {name!r}; available: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[name](seed=seed)


def available_strategies(kind: str | None = None) -> list[str]:
    return sorted(name for name, cls in STRATEGIES.items() if kind is None or kind in cls.kinds)


def select_batch(
    ids: Sequence[str],
    scores: np.ndarray,
    count: int | None = None,
    word_budget: int | None = None,
    n_words: Sequence[int] | None = None,
) -> list[str]:
    """The ids to ask next, highest score first (ties keep pool order).

    By `count`, or by `word_budget` (tagging): sentences are taken in score order while
    their words still fit in the budget, so the budget is never exceeded.
    """
    if len(ids) != len(scores):
        raise ValueError(f"{len(ids)} ids but {len(scores)} scores")
    if not len(ids):
        raise EmptyPoolError("cannot select from an empty pool")
    if (count is None) == (word_budget is None):
        raise ValueError("give exactly one of count and word_budget")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    if count is not None:
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        return [ids[i] for i in order[:count]]
    if word_budget < 1:
        raise ValueError(f"word_budget must be at least 1, got {word_budget}")
    if n_words is None or len(n_words) != len(ids):
        raise ValueError("a word budget needs the word count of every pool task")
    chosen, used = [], 0
    for i in order:
        if used + n_words[i] <= word_budget:
            chosen.append(ids[i])
            used += n_words[i]
    return chosen
