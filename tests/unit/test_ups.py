import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from al_core.ups import (
    CachedScore,
    InMemoryScoreCache,
    PoolSubsampler,
    SubsamplingConfig,
    ups_premise,
    ups_probabilities,
)


def _cached(scores):
    return {f"t{i}": CachedScore(float(s), "v1", 0) for i, s in enumerate(scores)}


@settings(max_examples=40, deadline=None)
@given(st.integers(20, 400), st.floats(0.0, 0.5), st.floats(0.0, 0.05), st.integers(0, 10**6))
def test_ups_always_keeps_the_top_gamma(n, gamma, temperature, seed):
    scores = np.random.default_rng(seed).random(n)
    cached = _cached(scores)
    ids = list(cached)
    chosen = set(PoolSubsampler(SubsamplingConfig(gamma=gamma, temperature=temperature), seed).choose(ids, cached, 2))
    ranked = [ids[i] for i in np.argsort(-scores, kind="stable")]
    top = [ranked[i] for i in range(n) if i / (n - 1) <= gamma]
    assert set(top) <= chosen


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10**6), st.integers(2, 9))
def test_temperature_zero_keeps_exactly_the_top_gamma(seed, iteration):
    n, gamma = 201, 0.1
    scores = np.random.default_rng(seed).random(n)
    cached = _cached(scores)
    chosen = PoolSubsampler(SubsamplingConfig(gamma=gamma, temperature=0.0, full_every=0), seed).choose(
        list(cached), cached, iteration
    )
    ranked = [list(cached)[i] for i in np.argsort(-scores, kind="stable")]
    assert set(chosen) == set(ranked[:21])  # ranks 0..20 have r = i/200 <= 0.1


def test_ups_keeps_about_gamma_plus_t_on_average():
    n, gamma, temperature = 5000, 0.1, 0.01
    cached = _cached(np.random.default_rng(0).random(n))
    config = SubsamplingConfig(gamma=gamma, temperature=temperature, full_every=0)
    sizes = [len(PoolSubsampler(config, seed).choose(list(cached), cached, 3)) / n for seed in range(20)]
    assert abs(np.mean(sizes) - (gamma + temperature)) < 0.005
    assert np.std(sizes) > 0  # independent draws: the size varies


def test_random_subsampling_has_the_same_expected_size_but_ignores_rank():
    n = 5000
    scores = np.random.default_rng(1).random(n)
    cached = _cached(scores)
    config = SubsamplingConfig(mode="random", full_every=0)
    chosen = PoolSubsampler(config, 0).choose(list(cached), cached, 3)
    expected = ups_probabilities(n, 0.1, 0.01).mean()
    assert abs(len(chosen) / n - expected) < 0.02
    ranked = [list(cached)[i] for i in np.argsort(-scores)]
    top_share = len(set(ranked[:500]) & set(chosen)) / 500
    assert top_share < 0.3  # UPS would keep all of them


def test_full_scoring_schedule():
    config = SubsamplingConfig()
    # SPEC.md: the paper's runs score the whole pool at iterations 0, 1, 4 and 8 of 15
    assert [i for i in range(15) if config.is_full_iteration(i)] == [0, 1, 4, 8]
    assert [i for i in range(70) if config.is_full_iteration(i)] == [0, 1, 4, 8, 16, 32, 48, 64]
    assert [i for i in range(20) if SubsamplingConfig(full_first=1, full_every=3).is_full_iteration(i)] == [0, 3, 6, 12]
    assert all(SubsamplingConfig(mode="full").is_full_iteration(i) for i in range(10))
    assert [i for i in range(10) if SubsamplingConfig(full_first=1, full_every=0).is_full_iteration(i)] == [0]


def test_a_fine_tunes_pass_covers_the_pool_until_a_full_pass_found_the_premise_held():
    config = SubsamplingConfig()  # min_premise 0.8 on the share of the 10 most uncertain tasks
    assert config.finetune_pass_is_full(5, None)  # nothing measured: the first fine-tune, or after a UPS pass
    assert config.finetune_pass_is_full(5, {"1": 1.0, "10": 0.5, "50": 0.4})
    assert not config.finetune_pass_is_full(5, {"1": 1.0, "10": 0.8, "50": 0.4})
    assert not config.finetune_pass_is_full(0, {"10": 0.9})  # the premise rules, not the iteration schedule
    # min_premise 0, and the full / random modes, follow the iteration schedule alone
    assert [SubsamplingConfig(min_premise=0).finetune_pass_is_full(i, None) for i in (0, 3, 4)] == [True, False, True]
    assert SubsamplingConfig(mode="full").finetune_pass_is_full(3, {"10": 1.0})
    assert not SubsamplingConfig(mode="random").finetune_pass_is_full(3, None)


def test_the_premise_is_the_share_of_a_full_pass_top_inside_the_subset():
    ranking = [str(i) for i in range(60)]  # id 0 most uncertain under the full pass
    subset = {"0", "3", "20", "59"}
    assert ups_premise(ranking, subset) == {"1": 1.0, "10": 0.2, "50": 0.06}
    assert ups_premise(ranking[:5], subset) == {"1": 1.0, "10": 0.4, "50": 0.4}  # fewer tasks than k
    assert ups_premise(ranking, set()) is None


def test_the_subset_ignores_the_schedule():
    cached = _cached(np.arange(100)[::-1])  # t0 most uncertain
    sub = PoolSubsampler(SubsamplingConfig(temperature=0), seed=1)
    ids = list(cached)
    assert sub.choose(ids, cached, 0) == ids  # a full iteration
    assert sub.subset(ids, cached, 0) == sub.choose(ids, cached, 3) == ids[:10]


def test_uncached_tasks_are_always_scored_and_order_is_kept():
    cached = _cached(np.linspace(0, 1, 100))
    ids = ["new1", *cached, "new2"]
    chosen = PoolSubsampler(SubsamplingConfig(full_every=0), 0).choose(ids, cached, 5)
    assert chosen[0] == "new1" and chosen[-1] == "new2"
    assert chosen == [i for i in ids if i in set(chosen)]
    assert len(chosen) < 40


def test_same_seed_same_subset():
    cached = _cached(np.random.default_rng(3).random(1000))
    config = SubsamplingConfig(full_every=0)
    assert PoolSubsampler(config, 9).choose(list(cached), cached, 3) == PoolSubsampler(config, 9).choose(list(cached), cached, 3)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="gamma"):
        SubsamplingConfig(gamma=1.5)
    with pytest.raises(ValueError, match="temperature"):
        SubsamplingConfig(temperature=-1)
    with pytest.raises(ValueError, match="mode"):
        SubsamplingConfig(mode="half")


def test_in_memory_cache():
    cache = InMemoryScoreCache()
    cache.set_many({"a": CachedScore(0.5, "v1", 0), "b": CachedScore(0.1, "v1", 0)})
    cache.delete_many(["b", "zzz"])
    assert cache.get_many(["a", "b"]) == {"a": CachedScore(0.5, "v1", 0)}
    assert cache.all() == {"a": CachedScore(0.5, "v1", 0)}
