"""Linear heads on fixed vectors: the logistic regressions of the frozen acquisition models,
and the first weights of a fine-tuned classifier's head (a linear probe, then fine-tuning).

- `LinearHead`: a multinomial logistic regression over the classes present (one label per text,
  or one tag per word).
- `BinaryHeads`: one binary logistic regression per class (multi-label).
Both keep `classes`, `coef` and `intercept` as plain arrays, so probabilities are one matrix
product and a saved head is three arrays.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

# Inverse regularisation of the logistic regression (BENCHMARKS.md, learning curves).
HEAD_C = 1.0
# How far below the lowest logit a label no training row had is set in `dense` (e^-10: never said).
ABSENT_MARGIN = 10.0


@functools.cache
def _blas():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def fit_logistic_regression(
    vectors: np.ndarray, targets: np.ndarray, c: float, seed: int, weights, blas_threads: int = 1
):
    """scikit-learn's logistic regression with numpy's BLAS on `blas_threads` threads (one for every
    head). Its matrices (a few hundred to a few thousand rows of 384-768 numbers) gain nothing from
    more, and where a fine-tune holds the cores (the background lane) a BLAS that waits for its other
    threads made a 500-row fit 10-20 times slower (BENCHMARKS.md, head-fit). Torch's own threads are
    not touched."""
    from sklearn.linear_model import LogisticRegression

    with _blas().limit(limits=blas_threads, user_api="blas"):
        return LogisticRegression(C=c, max_iter=2000, random_state=seed, class_weight=weights).fit(vectors, targets)


def _head_probs(vectors: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """The logistic regression's class probabilities: one matrix product and a softmax."""
    logits = vectors @ coef.T + intercept
    if coef.shape[0] == 1:  # binary: scikit-learn keeps one row for the second class
        logits = np.hstack([np.zeros_like(logits), logits])
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)


@dataclasses.dataclass
class LinearHead:
    """A logistic regression over the classes present in its training rows (label indices)."""

    classes: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray

    @classmethod
    def fit(cls, vectors: np.ndarray, targets: np.ndarray, c: float, seed: int, balanced: bool = False) -> LinearHead:
        """`balanced`: each class's rows weighted by the inverse of its count (scikit-learn's "balanced")."""
        classes = np.unique(targets)
        if len(classes) < 2:  # one class labeled so far: it is all the head can say
            return cls(classes, np.zeros((0, vectors.shape[1])), np.zeros(0))
        weights = "balanced" if balanced else None
        model = fit_logistic_regression(vectors, targets, c, seed, weights)
        return cls(model.classes_, model.coef_.astype(np.float32), model.intercept_.astype(np.float32))

    def dense(self, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
        """The same regression as a linear layer's weight (n_labels, dim) and bias over every label:
        a label no training row had gets a bias far below the others (as here, it is never said)."""
        weight = np.zeros((n_labels, self.coef.shape[1]), dtype=np.float32)
        bias = np.full(n_labels, float(np.min(self.intercept, initial=0.0)) - ABSENT_MARGIN, dtype=np.float32)
        if len(self.classes) == 1:
            bias[self.classes[0]] = 0.0
        elif self.coef.shape[0] == 1:  # binary: the first class's logit is 0
            bias[self.classes] = [0.0, self.intercept[0]]
            weight[self.classes[1]] = self.coef[0]
        else:
            weight[self.classes], bias[self.classes] = self.coef, self.intercept
        return weight, bias

    def probs(self, vectors: np.ndarray, n_labels: int) -> np.ndarray:
        out = np.zeros((len(vectors), n_labels), dtype=np.float32)
        if len(self.classes) == 1:
            out[:, self.classes[0]] = 1.0
        elif len(vectors):
            out[:, self.classes] = _head_probs(vectors, self.coef, self.intercept)
        return out


@dataclasses.dataclass
class BinaryHeads:
    """One binary logistic regression per class (multi-label): row k of `coef` says class k.

    A class whose training rows are all of one outcome gets no regression: a constant
    probability, the smoothed share of its positive rows ((positives + 1) / (rows + 2)).
    `classes` is every class index (kept for the saved head's one format).
    """

    classes: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray

    @classmethod
    def fit(cls, vectors: np.ndarray, targets: np.ndarray, c: float, seed: int, balanced: bool = False) -> BinaryHeads:
        """`balanced`: in each class's regression, its present and absent rows weighted alike in total."""
        n_rows, n_labels = targets.shape
        coef = np.zeros((n_labels, vectors.shape[1]), dtype=np.float32)
        intercept = np.zeros(n_labels, dtype=np.float32)
        for k in range(n_labels):
            column = targets[:, k]
            if column.min() == column.max():
                share = (column.sum() + 1.0) / (n_rows + 2.0)
                intercept[k] = np.log(share / (1.0 - share))
                continue
            weights = "balanced" if balanced else None
            model = fit_logistic_regression(vectors, column, c, seed, weights)
            coef[k], intercept[k] = model.coef_[0], model.intercept_[0]
        return cls(np.arange(n_labels), coef, intercept)

    def dense(self, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
        """The regressions as a linear layer's weight (n_labels, dim) and bias (a sigmoid per row)."""
        return self.coef.astype(np.float32), self.intercept.astype(np.float32)

    def probs(self, vectors: np.ndarray, n_labels: int) -> np.ndarray:
        """(n, K, 2): each class's [P(absent), P(present)]."""
        present = 1.0 / (1.0 + np.exp(-(np.asarray(vectors) @ self.coef.T + self.intercept)))
        return np.stack([1.0 - present, present], axis=-1).astype(np.float32)
