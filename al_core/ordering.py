"""Orders over the encoder's vectors that the uncertainty ranking alone does not give.

- `cold_start_order`: before any label there is no model to be uncertain: the first tasks should
  cover the data. TypiClust (Hacohen et al., 2022): k-means on the vectors, and from each cluster
  its most typical task (the densest point of it), largest cluster first.
- `diverse_order`: Label Studio deals the published tasks out in score order, so the k annotators
  working between two retrains take k consecutive tasks. Near-duplicates among them teach what one
  would. The ranking is re-ordered so that no two tasks of one cluster stand within `team`
  consecutive places while a task of another cluster is near the top (Cluster-Margin's idea,
  Citovsky et al., 2021, as a serving order).

Both take unit-normalised rows of any encoder and return positions into them.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

_EPS = 1e-12

# The ranked tasks a serving order is made of: the most informative QUERY_WINDOW (or the batch, if
# larger) fresh tasks, the backend's default query window (AL_QUERY_WINDOW).
QUERY_WINDOW = 200


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    rows = np.asarray(vectors, dtype=np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), _EPS)


def _clusters(rows: np.ndarray, k: int, seed: int) -> np.ndarray:
    if k >= len(rows):
        return np.arange(len(rows))
    with warnings.catch_warnings():
        # tasks with identical texts give fewer distinct clusters than asked: they share one, as
        # they should, and scikit-learn's warning about it is left out
        warnings.simplefilter("ignore", ConvergenceWarning)
        return KMeans(n_clusters=k, n_init=1, random_state=seed).fit_predict(rows)


def typicality(rows: np.ndarray, neighbours: int = 20) -> np.ndarray:
    """1 / mean cosine distance to the `neighbours` nearest other rows (TypiClust's density)."""
    if len(rows) < 2:
        return np.ones(len(rows))
    top = min(neighbours, len(rows) - 1)
    out = np.empty(len(rows))
    for start in range(0, len(rows), 2048):
        distances = 1.0 - rows[start : start + 2048] @ rows.T
        # the row itself is its own nearest (distance 0): left out
        nearest = np.partition(distances, top, axis=1)[:, 1 : top + 1]
        out[start : start + 2048] = 1.0 / (np.maximum(nearest.mean(axis=1), 0.0) + 1e-6)
    return out


def cold_start_order(vectors: np.ndarray, count: int, seed: int = 0, labeled: np.ndarray | None = None) -> list[int]:
    """Positions of at most `count` rows, one per k-means cluster (k = count, over every row), each
    its cluster's most typical row, the largest clusters first. `labeled` (a boolean mask): rows
    already labeled; a cluster holding one is covered and gives nothing, and no labeled row is
    returned, so the same call serves the rest of the cold start as labels come in."""
    rows = unit_rows(vectors)
    k = min(count, len(rows))
    if k <= 0:
        return []
    taken = np.zeros(len(rows), dtype=bool) if labeled is None else np.asarray(labeled, dtype=bool)
    labels = _clusters(rows, k, seed)
    picks = []
    for cluster in np.unique(labels):
        members = np.flatnonzero(labels == cluster)
        if taken[members].any():
            continue
        best = members[int(np.argmax(typicality(rows[members])))]
        picks.append((-len(members), int(best)))
    return [position for _, position in sorted(picks)]


def cold_start_tasks(tasks: list, labeled_ids: set[str], count: int, vectors_of, seed: int = 0) -> list[str]:
    """The ids of the unlabeled tasks of the cold-start order (`cold_start_order`, k = `count`, over
    every task given, labeled or not): the most typical task of the largest uncovered cluster first;
    [] once `count` tasks are labeled (0: off). The rows are sorted by id (numerically for the digit
    ids of Label Studio), so that over the same tasks the clusters are the same from call to call and
    a cluster holding a label stays covered. The backend's retrains, the simulator and the benchmarks
    take the cold start from here."""
    if count <= 0 or len(labeled_ids) >= count or len(labeled_ids) >= len(tasks):
        return []
    ordered = sorted(tasks, key=lambda e: (len(e.id), e.id))
    mask = np.array([e.id in labeled_ids for e in ordered], dtype=bool)
    positions = cold_start_order(np.stack(vectors_of(ordered)), count, seed, labeled=mask)
    return [ordered[i].id for i in positions]


def diverse_order(vectors: np.ndarray, team: int, horizon: int | None = None, seed: int = 0) -> list[int]:
    """A serving order of rows given best first (the ranking), so that any `team` consecutive
    places hold tasks of different clusters (k-means, k = 2 x team, over these rows) where the
    ranking allows: each place takes the best-ranked of the next `horizon` (default 3 x team)
    remaining tasks whose cluster is not among the last team - 1 placed, else the best-ranked
    remaining. team <= 1: the ranking unchanged."""
    n = len(vectors)
    if team <= 1 or n <= 2:
        return list(range(n))
    look = horizon or 3 * team
    labels = _clusters(unit_rows(vectors), min(2 * team, n), seed)
    remaining = list(range(n))
    out: list[int] = []
    while remaining:
        recent = {labels[i] for i in out[-(team - 1):]}
        pick = next((i for i in remaining[:look] if labels[i] not in recent), remaining[0])
        out.append(pick)
        remaining.remove(pick)
    return out


def serving_order(ranked: list, vectors_of, team: int, seed: int = 0) -> list:
    """The ranked tasks (best first) in the order a team should take them (`diverse_order`);
    `vectors_of(tasks)` gives their encoder vectors. The one place the backend's published window,
    the simulator's batches and the benchmarks get that order from."""
    if team <= 1 or len(ranked) <= 2:
        return list(ranked)
    return [ranked[i] for i in diverse_order(np.stack(vectors_of(ranked)), team, seed=seed)]
