"""The published score: bounded in [0, 1] and falling as informativeness rises, for every strategy."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from al_core.strategies import available_strategies, entropy, least_confidence, margin, mnlp
from ml_backend.scoring import SCORE_MAPPINGS, default_strategy, published_score, published_scores


def test_every_engine_strategy_has_a_documented_mapping():
    assert set(available_strategies()) <= set(SCORE_MAPPINGS)


@pytest.mark.parametrize("k", [2, 3, 7])
@pytest.mark.parametrize(
    "name,function", [("lc", least_confidence), ("margin", margin), ("entropy", entropy)]
)
def test_probability_strategies_span_exactly_zero_to_one(name, function, k):
    uniform = np.full((1, k), 1.0 / k)
    certain = np.eye(k)[:1]
    assert published_score(name, function(uniform)[0], k) == pytest.approx(0.0, abs=1e-6)
    assert published_score(name, function(certain)[0], k) == pytest.approx(1.0, abs=1e-6)


def test_mnlp_is_the_geometric_mean_of_the_best_tag_probabilities():
    word_probs = [np.array([[0.9, 0.1], [0.6, 0.4]])]
    u = mnlp(word_probs)[0]
    assert published_score("mnlp", u, 2) == pytest.approx(np.sqrt(0.9 * 0.6), rel=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(sorted(SCORE_MAPPINGS)),
    k=st.integers(2, 9),
    values=st.lists(st.floats(0, 50, allow_nan=False), min_size=2, max_size=20),
)
def test_mapping_is_bounded_and_never_rises_with_informativeness(name, k, values):
    if name in ("lc", "dlc"):
        values = [v % (1 - 1 / k) for v in values]
    elif name in ("margin", "random"):
        values = [v % 1 for v in values]
    elif name == "entropy":
        values = [v % np.log(k) for v in values]
    order = np.sort(values)
    scores = published_scores(name, order, k)
    assert np.all((scores >= 0) & (scores <= 1))
    assert np.all(np.diff(scores) <= 1e-12)


def test_more_informative_task_gets_the_lower_score_so_label_studio_serves_it_first():
    probs = np.array([[0.5, 0.5], [0.99, 0.01]])  # task 0 is the uncertain one
    scores = published_scores("lc", least_confidence(probs), 2)
    assert scores[0] < scores[1]


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="no score mapping"):
        published_scores("nope", [0.1], 2)


def test_auto_strategy_per_task_kind():
    assert default_strategy("classification") == "dlc"
    assert default_strategy("tagging") == "mnlp"
