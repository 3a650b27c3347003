"""When more labels stop paying: the stabilizing-predictions rule (Bloodgood and Vijay-Shanker, 2009).

A fixed sample of unlabeled tasks is predicted by every model version. Cohen's kappa between the
predictions of consecutive versions measures how much a retrain still changes the model's mind;
once the mean kappa of the last `window` pairs reaches `threshold`, the predictions have
stabilized and further labels change little (small-text's KappaAverage applies the same rule,
window 3 and threshold 0.99 by default).

The rule reads no quality estimate (neither the one on actively chosen tasks nor the audit sample's,
al_core.acquisition): only how consecutive versions' predictions agree.

Predictions are given per task id: a label (classification) or a list of word tags (tagging;
kappa is then taken over all words of the tasks both versions predicted, flattened).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sklearn.metrics import cohen_kappa_score

from al_core.config import StrategyConfig

_DEFAULTS = StrategyConfig()
DEFAULT_SAMPLE = _DEFAULTS.stability_sample
DEFAULT_THRESHOLD = _DEFAULTS.stop_kappa
DEFAULT_WINDOW = _DEFAULTS.stop_window

Prediction = str | int | Sequence[str | int]


def _rank(task_id: str) -> str:
    return hashlib.sha1(str(task_id).encode()).hexdigest()


def stability_sample(unlabeled_ids: Iterable[str], size: int = DEFAULT_SAMPLE) -> list[str]:
    """The `size` unlabeled task ids with the smallest hash.

    The hash does not depend on the pool, so the sample stays the same from one version to
    the next: a task leaves it only when it is labeled (another one then takes its place), and
    consecutive versions are compared on the tasks both predicted.
    """
    return sorted({str(i) for i in unlabeled_ids}, key=_rank)[: max(0, size)]


def kappa(first: Sequence, second: Sequence) -> float:
    """Cohen's kappa of two equally long label sequences.

    Kappa is undefined (0/0) when both sequences hold one and the same label throughout (a
    one-class model twice, or a sample where all words are "O"): the two versions agree
    perfectly, so this is taken as 1.0. Empty sequences give nan (nothing to compare).
    """
    if len(first) != len(second):
        raise ValueError(f"sequences of different lengths: {len(first)} and {len(second)}")
    if not len(first):
        return math.nan
    a = [str(x) for x in first]
    b = [str(x) for x in second]
    if len(set(a) | set(b)) == 1:
        return 1.0
    return float(cohen_kappa_score(a, b))


def _flatten(previous: Mapping[str, Prediction], current: Mapping[str, Prediction]) -> tuple[list, list, int]:
    a: list = []
    b: list = []
    tasks = 0
    for task in sorted(set(previous) & set(current)):
        x, y = previous[task], current[task]
        if isinstance(x, (str, int)) and isinstance(y, (str, int)):
            a.append(x)
            b.append(y)
        elif not isinstance(x, (str, int)) and not isinstance(y, (str, int)) and len(x) == len(y):
            a.extend(x)
            b.extend(y)
        else:  # a task whose text changed between versions: not comparable
            continue
        tasks += 1
    return a, b, tasks


def agreement(previous: Mapping[str, Prediction], current: Mapping[str, Prediction]) -> tuple[float, int]:
    """(kappa, number of tasks compared) of two versions' predictions on the sample."""
    a, b, tasks = _flatten(previous, current)
    return kappa(a, b), tasks


@dataclass(frozen=True)
class StoppingRule:
    """Stop when the mean kappa of the last `window` consecutive-version pairs reaches `threshold`."""

    threshold: float = DEFAULT_THRESHOLD
    window: int = DEFAULT_WINDOW

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError("window must be at least 1")

    def describe(self) -> str:
        return (
            f"stop when the mean Cohen's kappa between consecutive versions' predictions on a fixed "
            f"sample of unlabeled tasks, over the last {self.window} pairs, reaches {self.threshold:g} "
            "(no quality estimate is read)"
        )

    def window_mean(self, kappas: Sequence[float]) -> float | None:
        """Mean of the last `window` defined kappas, or None while there are fewer."""
        defined = [k for k in kappas if k is not None and not math.isnan(k)]
        if len(defined) < self.window:
            return None
        return sum(defined[-self.window :]) / self.window

    def should_stop(self, kappas: Sequence[float]) -> bool:
        mean = self.window_mean(kappas)
        return mean is not None and mean >= self.threshold

    def decide(self, predictions: Sequence[Mapping[str, Prediction]]) -> dict:
        """The rule applied to the sample predictions of successive versions, oldest first."""
        kappas = [agreement(a, b)[0] for a, b in zip(predictions, predictions[1:])]
        mean = self.window_mean(kappas)
        return {"kappas": kappas, "window_mean": mean, "stop": mean is not None and mean >= self.threshold}
