"""The stabilizing-predictions stopping rule on made-up prediction sequences."""

from __future__ import annotations

import math
import random
import warnings

import pytest

from al_core.stopping import StoppingRule, agreement, kappa, stability_sample

IDS = [str(i) for i in range(300)]


def versions_converging(n_versions: int, changed: list[int], labels=("A", "B", "C"), seed: int = 0):
    """Predictions of successive versions on IDS, version k changing `changed[k-1]` tasks."""
    rng = random.Random(seed)
    current = {t: rng.choice(labels) for t in IDS}
    out = [dict(current)]
    for k in range(1, n_versions):
        for task in rng.sample(IDS, changed[k - 1]):
            current[task] = rng.choice([x for x in labels if x != current[task]])
        out.append(dict(current))
    return out


def test_stable_predictions_say_stop():
    # the first retrains change a lot, the last three change nothing
    predictions = versions_converging(6, [150, 60, 0, 0, 0])
    decision = StoppingRule(threshold=0.99, window=3).decide(predictions)
    assert len(decision["kappas"]) == 5
    assert decision["kappas"][0] < 0.6 and decision["kappas"][-3:] == [1.0, 1.0, 1.0]
    assert decision["window_mean"] == 1.0 and decision["stop"] is True


def test_unstable_predictions_do_not_say_stop():
    predictions = versions_converging(8, [120] * 7)
    decision = StoppingRule(threshold=0.99, window=3).decide(predictions)
    assert all(k < 0.8 for k in decision["kappas"])
    assert decision["window_mean"] < 0.8 and decision["stop"] is False


def test_almost_stable_is_judged_by_the_mean_of_the_window():
    # one change in 300 tasks per retrain: kappa about 0.995 each time
    predictions = versions_converging(5, [1, 1, 1, 1])
    rule = StoppingRule(threshold=0.99, window=3)
    decision = rule.decide(predictions)
    assert all(0.99 < k < 1.0 for k in decision["kappas"]) and decision["stop"] is True
    assert StoppingRule(threshold=0.999, window=3).decide(predictions)["stop"] is False
    # one unstable pair in the window pulls the mean below the threshold
    assert rule.should_stop([1.0, 1.0, 0.9]) is False
    assert rule.should_stop([0.5, 1.0, 1.0, 1.0]) is True


def test_one_class_predictions_agree_fully_without_nan():
    one_class = [{t: "A" for t in IDS}] * 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sklearn warns and returns nan on 0/0
        decision = StoppingRule(window=3).decide(one_class)
    assert decision["kappas"] == [1.0, 1.0, 1.0] and decision["stop"] is True
    assert kappa(["A"] * 5, ["A"] * 5) == 1.0
    # two versions that each predict one class, but not the same one, disagree everywhere
    assert kappa(["A"] * 5, ["B"] * 5) == 0.0
    assert agreement({t: "A" for t in IDS}, {t: "B" for t in IDS})[0] == 0.0


def test_too_few_versions_give_no_decision():
    rule = StoppingRule(threshold=0.99, window=3)
    decision = rule.decide([{"1": "A"}, {"1": "A"}, {"1": "A"}])  # two pairs, window 3
    assert decision["window_mean"] is None and decision["stop"] is False
    assert rule.window_mean([1.0, float("nan"), 1.0]) is None  # nan (nothing compared) does not count
    with pytest.raises(ValueError):
        StoppingRule(window=0)


def test_tagging_kappa_is_over_all_words_flattened():
    previous = {"1": ["O", "B-PER", "I-PER", "O"], "2": ["B-LOC", "O"], "3": ["O"]}
    current = {"1": ["O", "B-PER", "O", "O"], "2": ["B-LOC", "O"], "4": ["O", "O"]}
    value, tasks = agreement(previous, current)
    assert tasks == 2  # tasks 1 and 2: the only ones both versions predicted
    flat_a = ["O", "B-PER", "I-PER", "O", "B-LOC", "O"]
    flat_b = ["O", "B-PER", "O", "O", "B-LOC", "O"]
    assert value == pytest.approx(kappa(flat_a, flat_b)) and 0 < value < 1
    assert agreement({"1": ["O", "O"]}, {"1": ["O", "O"]})[0] == 1.0  # all "O" twice: full agreement


def test_kappa_matches_the_textbook_value():
    # 2x2 table [[20, 5], [10, 15]]: po = 0.7, pe = 0.5, kappa = 0.4
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert kappa(a, b) == pytest.approx(0.4)
    assert math.isnan(kappa([], []))
    with pytest.raises(ValueError):
        kappa(["a"], [])


def test_the_sample_is_fixed_across_versions_and_drops_labeled_tasks():
    pool = [str(i) for i in range(1000)]
    sample = stability_sample(pool, 200)
    assert len(sample) == 200 == len(set(sample))
    assert stability_sample(list(reversed(pool)), 200) == sample  # order of the pool does not matter
    assert sample != pool[:200]  # chosen by hash, not by id order
    labeled = set(sample[:10])
    later = stability_sample([t for t in pool if t not in labeled], 200)
    assert not labeled & set(later)
    assert len(set(sample) & set(later)) == 190  # the rest of the sample stays; 10 new tasks join
    assert set(stability_sample(pool[:50], 200)) == set(pool[:50])
