"""The labels-saved arithmetic of benchmarks/bench_saving.py on hand-made curves."""

import pytest

from benchmarks.bench_saving import labels_to_reach, summarise


def test_labels_to_reach_interpolates_between_counts():
    curve = {20: 0.5, 30: 0.6, 40: 0.8}
    assert labels_to_reach(curve, 0.5) == 20
    assert labels_to_reach(curve, 0.7) == pytest.approx(35.0)
    assert labels_to_reach(curve, 0.9) is None


def _rows(ordering, values, seed=0):
    return [
        {"set": "toy", "ordering": ordering, "step": 10, "seed": seed, "labels": n, "headline": v, "metric": "macro_f1",
         "accuracy": v, "rare_recall": 0.0, "rarest": "r", "rare_labels": 0}
        for n, v in values.items()
    ]


def test_saving_is_the_share_of_labels_random_needs_more():
    random = {100: 0.60, 150: 0.65, 200: 0.70}
    better = {100: 0.70, 150: 0.72, 200: 0.74}  # reaches random's 200-label figure at 100 labels
    summary = {s["ordering"]: s for s in summarise(_rows("random", random) + _rows("default", better))}
    assert summary["default"]["saved_200"] == pytest.approx(0.5)
    assert summary["default"]["saved_100"] == pytest.approx(0.0)
    assert summary["random"]["saved_200"] == pytest.approx(0.0)
    assert summary["default"]["worst_gap"] == pytest.approx(0.04)
    worse = {100: 0.50, 150: 0.55, 200: 0.60}
    summary = {s["ordering"]: s for s in summarise(_rows("random", random) + _rows("default", worse))}
    assert summary["default"]["saved_200"] is None and summary["default"]["worst_gap"] == pytest.approx(-0.10)
