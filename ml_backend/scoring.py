"""From a strategy's informativeness to the score Label Studio stores and orders by.

Label Studio's "Uncertainty sampling" serves the LOWEST prediction score first, while every
strategy in al_core gives a HIGHER score to the task to ask first. The published score is
therefore a bounded, strictly decreasing function of the informativeness u, always in [0, 1]
(0 = ask first, 1 = the model is sure):

| strategy | informativeness u (al_core)         | range        | published score           |
|----------|-------------------------------------|--------------|---------------------------|
| lc       | 1 - max_y P(y|x)                    | [0, 1 - 1/K] | 1 - u / (1 - 1/K)         |
| dlc      | (1 - max_y P(y|x)) x density in [0, 1] | [0, 1 - 1/K] | 1 - u / (1 - 1/K)      |
| margin   | 1 - (P(best) - P(second))           | [0, 1]       | 1 - u  (= the margin)     |
| entropy  | -sum_y P(y|x) log P(y|x)            | [0, log K]   | 1 - u / log K             |
| mnlp     | -(1/n) sum_i max_y log P(y_i|x)     | [0, inf)     | exp(-u) (geometric mean of the best tag probabilities) |
| md       | min_c Mahalanobis distance to class c | [0, inf)   | 1 / (1 + u)               |
| random   | uniform draw                        | [0, 1)       | 1 - u                     |

K is the number of outcomes of one decision: the classes (tags for mnlp; 2 for the per-class
yes/no decisions of multi-label classification, whose u is the mean over the classes). Results
are clipped to [0, 1] against rounding.
"""

from __future__ import annotations

import math

import numpy as np

SCORE_MAPPINGS = {
    "lc": "1 - u / (1 - 1/K)",
    "dlc": "1 - u / (1 - 1/K)",
    "margin": "1 - u",
    "entropy": "1 - u / log K",
    "mnlp": "exp(-u)",
    "md": "1 / (1 + u)",
    "random": "1 - u",
}


def published_scores(strategy: str, informativeness, n_classes: int) -> np.ndarray:
    """Map informativeness (higher = ask first) to Label Studio scores in [0, 1] (lower = ask first)."""
    u = np.asarray(informativeness, dtype=np.float64)
    if strategy in ("lc", "dlc"):
        top = 1.0 - 1.0 / n_classes if n_classes > 1 else 1.0
        score = 1.0 - u / top
    elif strategy in ("margin", "random"):
        score = 1.0 - u
    elif strategy == "entropy":
        score = 1.0 - u / math.log(n_classes) if n_classes > 1 else 1.0 - u
    elif strategy == "mnlp":
        score = np.exp(-np.maximum(u, 0.0))
    elif strategy == "md":
        score = 1.0 / (1.0 + np.maximum(u, 0.0))
    else:
        raise ValueError(f"no score mapping for strategy {strategy!r}; known: {', '.join(SCORE_MAPPINGS)}")
    return np.clip(score, 0.0, 1.0)


def published_score(strategy: str, informativeness: float, n_classes: int) -> float:
    return float(published_scores(strategy, [informativeness], n_classes)[0])


def default_strategy(kind: str) -> str:
    """The strategy used when STRATEGY=auto: the kind's (least confidence for classes, MNLP for entities)."""
    from al_core.kinds import kind_of

    return kind_of(kind).default_strategy
