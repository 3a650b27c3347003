"""One contract test run over every strategy, and properties of the scores."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import al_core.strategies
from al_core.data import CLASSIFICATION, TAGGING, Example
from al_core.exceptions import EmptyPoolError, UnknownStrategyError
from al_core.kinds import KINDS
from al_core.models import TransformerClassifier, TransformerTagger
from al_core.strategies import (
    STRATEGIES,
    DensityWeightedLeastConfidence,
    MahalanobisDistance,
    QueryStrategy,
    available_strategies,
    draw_landmarks,
    entropy,
    get_strategy,
    information_density,
    least_confidence,
    margin,
    mnlp,
    select_batch,
    task_nlp,
)
from tests.unit.engine_fixtures import FAST, TAGS, ner_examples, sentiment_examples


@pytest.fixture(scope="module")
def classifier(tiny_model_dir):
    return TransformerClassifier(tiny_model_dir, ["neg", "pos"], FAST.replace(epochs=3)).fit(sentiment_examples(1))


@pytest.fixture(scope="module")
def tagger(tiny_model_dir):
    return TransformerTagger(tiny_model_dir, TAGS, FAST.replace(epochs=3)).fit(ner_examples(1))


def _pool(kind):
    if kind == CLASSIFICATION:
        return [Example(id=f"p{i}", text=e.text) for i, e in enumerate(sentiment_examples(2))]
    return [Example(id=f"p{i}", text=e.text, words=e.words) for i, e in enumerate(ner_examples(2))]


CASES = [(name, CLASSIFICATION) for name in available_strategies(CLASSIFICATION)] + [
    (name, TAGGING) for name in available_strategies(TAGGING)
]


@pytest.mark.parametrize("name,kind", CASES)
def test_strategy_contract(name, kind, classifier, tagger):
    model = classifier if kind == CLASSIFICATION else tagger
    labeled = sentiment_examples(1) if kind == CLASSIFICATION else ner_examples(1)
    pool = _pool(kind)
    pool_ids = [e.id for e in pool]

    scores = get_strategy(name, seed=7).score(model, pool, labeled)
    assert scores.shape == (len(pool),) and np.isfinite(scores).all()
    again = get_strategy(name, seed=7).score(model, pool, labeled)
    np.testing.assert_array_equal(scores, again)  # same seed, same answer

    if kind == CLASSIFICATION:
        chosen = select_batch(pool_ids, scores, count=5)
        assert len(chosen) == 5
    else:
        n_words = [e.n_words for e in pool]
        chosen = select_batch(pool_ids, scores, word_budget=17, n_words=n_words)
        assert sum(n_words[pool_ids.index(i)] for i in chosen) <= 17 and chosen
    assert len(set(chosen)) == len(chosen)
    assert set(chosen) <= set(pool_ids)
    best = pool_ids[int(np.argmax(scores))]
    assert chosen[0] == best

    with pytest.raises(EmptyPoolError):
        get_strategy(name).score(model, [], labeled)


def test_random_differs_by_seed(classifier):
    pool = _pool(CLASSIFICATION)
    assert not np.array_equal(get_strategy("random", 1).score(classifier, pool), get_strategy("random", 2).score(classifier, pool))


def test_unknown_strategy_is_named():
    with pytest.raises(UnknownStrategyError, match="'bald'.*available: dlc, dlc-rare, entropy, lc"):
        get_strategy("bald")


def test_strategy_refuses_the_wrong_kind(tagger):
    with pytest.raises(ValueError, match="does not apply"):
        get_strategy("lc").score(tagger, _pool(TAGGING))


def test_select_batch_guards():
    with pytest.raises(EmptyPoolError):
        select_batch([], np.array([]), count=1)
    with pytest.raises(ValueError, match="exactly one"):
        select_batch(["a"], np.array([1.0]))
    with pytest.raises(ValueError, match="word count"):
        select_batch(["a"], np.array([1.0]), word_budget=3)
    assert select_batch(["a", "b", "c"], np.array([0.1, 0.9, 0.5]), count=10) == ["b", "c", "a"]


def _distributions(draw_rows, k):
    raw = np.asarray(draw_rows, dtype=float) + 1e-6
    return raw / raw.sum(axis=1, keepdims=True)


prob_rows = st.integers(2, 6).flatmap(
    lambda k: arrays(float, st.tuples(st.integers(1, 30), st.just(k)), elements=st.floats(0, 1))
)


@settings(max_examples=60, deadline=None)
@given(prob_rows)
def test_least_confidence_is_within_bounds(raw):
    probs = _distributions(raw, raw.shape[1])
    scores = least_confidence(probs)
    k = probs.shape[1]
    assert (scores >= -1e-9).all() and (scores <= 1 - 1 / k + 1e-9).all()


@settings(max_examples=60, deadline=None)
@given(prob_rows, st.randoms())
def test_scores_do_not_depend_on_row_order(raw, rnd):
    probs = _distributions(raw, raw.shape[1])
    perm = list(range(len(probs)))
    rnd.shuffle(perm)
    for function in (least_confidence, margin, entropy):
        np.testing.assert_allclose(function(probs)[perm], function(probs[perm]))
    words = [probs[: i + 1] for i in range(len(probs))]
    np.testing.assert_allclose(mnlp(words)[perm], mnlp([words[i] for i in perm]))
    np.testing.assert_allclose(task_nlp(words)[perm], task_nlp([words[i] for i in perm]))


def test_mnlp_values():
    certain = np.array([[1.0, 0.0], [1.0, 0.0]])
    unsure = np.array([[0.5, 0.5], [0.5, 0.5]])
    scores = mnlp([certain, unsure, np.zeros((0, 2))])
    np.testing.assert_allclose(scores, [0.0, np.log(2), 0.0], atol=1e-6)


def test_mnlp_task_charges_each_sentence_a_fixed_cost_so_a_fragment_no_longer_goes_first():
    unsure, sure = np.array([[0.6, 0.4]]), np.array([[0.99, 0.01]])
    fragment, sentence = unsure, np.vstack([unsure, unsure, sure, unsure])
    assert mnlp([fragment, sentence])[0] > mnlp([fragment, sentence])[1]  # the mean asks for the fragment
    u = task_nlp([fragment, sentence, np.zeros((0, 2))], task_cost_words=10)
    np.testing.assert_allclose(u, [-np.log(0.6) / 11, (-3 * np.log(0.6) - np.log(0.99)) / 14, 0.0])
    assert u[1] > u[0]
    # no fixed cost is mnlp itself
    np.testing.assert_allclose(task_nlp([fragment, sentence], task_cost_words=0), mnlp([fragment, sentence]))
    assert _published("mnlp-task", u, 2)[1] == pytest.approx(np.exp(-u[1]), rel=1e-9)


def test_mahalanobis_prefers_points_far_from_every_class():
    rng = np.random.default_rng(0)
    embeddings = np.vstack([rng.normal(0, 1, (20, 3)), rng.normal(10, 1, (20, 3))])
    md = MahalanobisDistance().fit_embeddings(embeddings, ["a"] * 20 + ["b"] * 20)
    scores = md.score_outputs(embeddings=np.array([[0.0, 0, 0], [10.0, 10, 10], [5.0, 5, 5], [40.0, -40, 3]]))
    assert scores[0] < scores[2] < scores[3] and scores[1] < scores[2]


def _cluster_and_outliers(rng, n=60):
    """`n` vectors around one direction, then two far from it and from each other."""
    cluster = np.array([5.0, 0, 0, 0]) + rng.normal(0, 0.3, (n, 4))
    return np.vstack([cluster, [[0.0, 5, 0, 0], [0.0, 0, -5, 1]]])


@pytest.mark.parametrize("landmarks", [500, 10])
def test_information_density_is_highest_inside_a_cluster_and_lowest_for_an_outlier(landmarks):
    vectors = _cluster_and_outliers(np.random.default_rng(0))
    chosen = draw_landmarks(vectors, seed=3, count=landmarks)
    assert len(chosen) == min(62, landmarks)
    density = information_density(vectors, chosen)
    assert density.shape == (62,)
    assert density[:60].min() > density[60:].max()
    np.testing.assert_array_equal(chosen, draw_landmarks(vectors, seed=3, count=landmarks))
    assert information_density(vectors[:1], draw_landmarks(vectors[:1])).tolist() == [1.0]


def test_information_density_is_the_mean_similarity_to_the_nearest_landmarks_floored_at_zero():
    landmarks = draw_landmarks(np.array([[1.0, 0.0], [1.0, 0.1], [1.0, -0.1], [0.0, 1.0]]))
    probes = np.array([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    density = information_density(probes, landmarks, k=2)
    near = 1 / np.sqrt(1.01)  # the cosine of (1, 0) and (1, +-0.1)
    # the 3 most similar landmarks, the most similar left out, the mean of the other two
    np.testing.assert_allclose(density[:2], [near, (0.1 * near + 0.0) / 2], rtol=1e-6)
    assert density[2] == 0.0  # unlike every landmark: a mean similarity of about -0.995, floored


def test_density_weighting_asks_the_uncertain_typical_task_before_the_uncertain_outlier():
    vectors = _cluster_and_outliers(np.random.default_rng(1))
    probs = np.tile([0.9, 0.1], (62, 1))
    probs[[0, 60]] = [0.5, 0.5]  # equally unsure about a task of the cluster and an outlier
    scores = DensityWeightedLeastConfidence(seed=0).score_outputs(probs=probs, embeddings=vectors)
    assert int(np.argmax(scores)) == 0 and scores[0] > scores[60] > 0
    assert scores[1:60].max() < scores[0]
    assert (scores <= least_confidence(probs) + 1e-12).all()


def test_density_weighting_scores_later_tasks_against_its_round_s_landmarks():
    """New tasks and /predict are scored with the version's strategy state: the same task gets the
    same score alone as in its round's pool."""
    rng = np.random.default_rng(2)
    vectors = _cluster_and_outliers(rng)
    probs = rng.dirichlet([1, 1], 62)
    round_strategy = DensityWeightedLeastConfidence(seed=0)
    in_round = round_strategy.score_outputs(probs=probs, embeddings=vectors)
    later = DensityWeightedLeastConfidence(seed=0)
    later.restore(round_strategy.state())
    alone = [later.score_outputs(probs=probs[i : i + 1], embeddings=vectors[i : i + 1])[0] for i in (0, 61)]
    np.testing.assert_allclose(alone, in_round[[0, 61]], rtol=1e-6)


# -- the published score: what Label Studio stores and serves lowest first -----------------------


def _published(name, u, k):
    return get_strategy(name).published_scores(u, k)


def test_every_strategy_documents_its_published_score_in_the_module_table():
    rows = {
        line.split("|")[1].strip(): line
        for line in al_core.strategies.__doc__.splitlines()
        if line.startswith("| ") and line.split("|")[1].strip() in STRATEGIES
    }
    assert set(rows) == set(STRATEGIES)
    for name, cls in STRATEGIES.items():
        published = rows[name].rstrip(" |").rsplit("|", 1)[1]  # the last column ("P(y|x)" holds a bar)
        assert cls.score_formula and cls.score_formula in published, name


# each strategy's u at the tasks to ask last (0) and first (the top of its range), for K outcomes
TOPS = {
    "lc": lambda k: 1 - 1 / k,
    "dlc": lambda k: 1 - 1 / k,
    "margin": lambda k: 1.0,
    "random": lambda k: 1.0,
    "entropy": np.log,
}


@pytest.mark.parametrize("k", [2, 3, 7])
@pytest.mark.parametrize("name", sorted(TOPS))
def test_bounded_mappings_run_from_one_at_certainty_to_zero_at_the_top_strictly_decreasing(name, k):
    top = TOPS[name](k)
    u = np.linspace(0.0, top, 101)
    scores = _published(name, u, k)
    assert scores[0] == pytest.approx(1.0, abs=1e-12) and scores[-1] == pytest.approx(0.0, abs=1e-12)
    assert (np.diff(scores) < 0).all()


@pytest.mark.parametrize("k", [2, 3, 7])
@pytest.mark.parametrize("name,function", [("lc", least_confidence), ("margin", margin), ("entropy", entropy)])
def test_a_uniform_distribution_is_published_zero_and_a_certain_one_one(name, function, k):
    uniform, certain = np.full((1, k), 1.0 / k), np.eye(k)[:1]
    assert _published(name, function(uniform), k)[0] == pytest.approx(0.0, abs=1e-6)
    assert _published(name, function(certain), k)[0] == pytest.approx(1.0, abs=1e-6)


def test_unbounded_mappings_fall_strictly_from_one():
    u = np.linspace(0.0, 30.0, 301)
    for name, expected in (("mnlp", np.exp(-u)), ("md", 1 / (1 + u))):
        scores = _published(name, u, 5)
        np.testing.assert_allclose(scores, expected, rtol=1e-12)
        assert scores[0] == 1.0 and (np.diff(scores) < 0).all()
    assert _published("md", [1.0, 3.0], 5).tolist() == [0.5, 0.25]


def test_mnlp_is_the_geometric_mean_of_the_best_tag_probabilities():
    u = mnlp([np.array([[0.9, 0.1], [0.6, 0.4]])])
    assert _published("mnlp", u, 2)[0] == pytest.approx(np.sqrt(0.9 * 0.6), rel=1e-6)


def test_the_clip_only_meets_values_rounded_past_the_range():
    eps = 1e-12
    # lc with K = 4 tops at 0.75: just past it is exactly 0, just below 0 exactly 1
    assert _published("lc", [0.75 + eps, -eps], 4).tolist() == [0.0, 1.0]
    assert _published("entropy", [np.log(3) + eps], 3).tolist() == [0.0]
    assert _published("margin", [1 + eps, -eps], 2).tolist() == [0.0, 1.0]
    assert _published("mnlp", [-eps], 9).tolist() == [1.0]
    assert _published("md", [-eps], 2).tolist() == [1.0]
    # inside the range the clip changes nothing: the formula's own value
    assert _published("lc", [0.25], 4)[0] == pytest.approx(1 - 0.25 / 0.75, abs=0)


def test_more_informative_task_gets_the_lower_score_so_label_studio_serves_it_first():
    probs = np.array([[0.5, 0.5], [0.99, 0.01]])  # task 0 is the uncertain one
    scores = _published("lc", least_confidence(probs), 2)
    assert scores[0] < scores[1]


def test_a_strategy_without_a_published_score_says_so():
    class Unmapped(QueryStrategy):
        name = "unmapped"

    with pytest.raises(NotImplementedError, match="'unmapped' has no published score"):
        Unmapped().published_scores([0.1], 2)


def test_each_kind_s_default_strategy_applies_to_it():
    assert {name: kind.default_strategy for name, kind in KINDS.items()} == {
        "classification": "dlc-rare",
        "multilabel": "lc",
        "tagging": "mnlp-task",
    }
    for name, kind in KINDS.items():
        assert name in STRATEGIES[kind.default_strategy].kinds


def test_dlc_rare_prefers_the_class_with_fewest_labels_only_while_the_mix_is_skewed():
    from types import SimpleNamespace

    model = SimpleNamespace(labels=["common", "rare", "other"])
    probs = np.array([[0.6, 0.2, 0.2], [0.2, 0.6, 0.2]])  # equally unsure; the second looks rare
    embeddings = np.array([[1.0, 0.2, 0.0], [1.0, 0.0, 0.2]])  # alike: the same density
    plain = get_strategy("dlc", seed=0)
    rare = get_strategy("dlc-rare", seed=0)
    skewed = [Example(id=str(i), text="t", label="common") for i in range(8)] + [
        Example(id="r", text="t", label="rare"), Example(id="o", text="t", label="other")
    ]
    rare.prepare(model, skewed)
    u_plain = plain.score_outputs(probs=probs, embeddings=embeddings)
    u_rare = rare.score_outputs(probs=probs, embeddings=embeddings)
    assert u_plain[0] == pytest.approx(u_plain[1])
    assert u_rare[1] > u_rare[0]
    assert np.all(u_rare <= u_plain + 1e-12)  # a factor in (0, 1]: u stays in lc's range
    # the factor travels with the version's state
    restored = get_strategy("dlc-rare", seed=0)
    restored.restore(rare.state())
    np.testing.assert_allclose(restored.score_outputs(probs=probs, embeddings=embeddings), u_rare)
    balanced = [Example(id=f"{c}{i}", text="t", label=c) for c in model.labels for i in range(3)]
    rare.prepare(model, balanced)
    fresh = get_strategy("dlc-rare", seed=0)
    fresh.restore(rare.state())
    np.testing.assert_allclose(fresh.score_outputs(probs=probs, embeddings=embeddings), u_plain)
