import numpy as np
import pytest

from al_core.data import Example
from al_core.exceptions import EmptyPoolError
from al_core.loop import run_round
from al_core.models import TransformerClassifier, TransformerTagger
from al_core.strategies import get_strategy
from al_core.ups import InMemoryScoreCache, PoolSubsampler, SubsamplingConfig
from tests.unit.engine_fixtures import FAST, TAGS, ner_examples, sentiment_examples


def _pool(n):
    words = ["great", "movie", "awful", "film", "boring", "fun", "love", "hate", "plot", "story"]
    rng = np.random.default_rng(0)
    return [Example(id=f"p{i}", text=" ".join(rng.choice(words, size=4))) for i in range(n)]


def test_round_scores_full_pool_then_only_the_ups_subset(tiny_model_dir):
    model = TransformerClassifier(tiny_model_dir, ["neg", "pos"], FAST.replace(epochs=2))
    cache = InMemoryScoreCache()
    pool = _pool(300)
    subsampler = PoolSubsampler(SubsamplingConfig(gamma=0.1, temperature=0.01, full_first=1, full_every=0), seed=0)
    strategy = get_strategy("lc")

    first = run_round(model, sentiment_examples(1), pool, strategy, subsampler, cache, 0, "v1", count=5)
    assert first.n_scored == 300 and len(first.scores) == 300
    assert set(first.timings) == {"fit_s", "inference_s", "select_s"}
    assert len(first.selected_ids) == 5 and set(first.probs) == {e.id for e in pool}

    second = run_round(model, sentiment_examples(1), pool, strategy, subsampler, cache, 1, "v2", count=5)
    assert 20 <= second.n_scored < 80
    assert set(second.selected_ids) <= set(second.fresh_ids)
    versions = {c.model_version for c in cache.all().values()}
    assert versions == {"v1", "v2"}
    stale = set(second.scores) - set(second.fresh_ids)
    assert all(second.scores[i] == first.scores[i] for i in stale)
    # the subset is the top of the previous ranking (the top 10% always)
    top = sorted(first.scores, key=first.scores.get, reverse=True)[:30]
    assert set(top) <= set(second.fresh_ids)


def test_round_for_tagging_respects_the_word_budget(tiny_model_dir):
    model = TransformerTagger(tiny_model_dir, TAGS, FAST.replace(epochs=2))
    pool = [Example(id=f"q{i}", text=e.text, words=e.words) for i, e in enumerate(ner_examples(5))]
    result = run_round(
        model, ner_examples(1), pool, get_strategy("mnlp"), PoolSubsampler(), InMemoryScoreCache(), 0, "v1", word_budget=12
    )
    n_words = {e.id: e.n_words for e in pool}
    assert 0 < sum(n_words[i] for i in result.selected_ids) <= 12


def test_empty_pool_is_an_error(tiny_model_dir):
    model = TransformerClassifier(tiny_model_dir, ["neg", "pos"], FAST)
    with pytest.raises(EmptyPoolError):
        run_round(model, sentiment_examples(1), [], get_strategy("lc"), PoolSubsampler(), InMemoryScoreCache(), 0, "v1", count=1)
