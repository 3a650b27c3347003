"""auto mode between two fine-tunes: refresh rounds, a frozen head over the last fine-tuned encoder."""

import numpy as np
import pytest

from al_core.acquisition import AcquisitionConfig, fit_with_estimate, resolve_mode
from al_core.data import Example
from al_core.loop import run_round
from al_core.models import MemoryEmbeddingCache, TransformerClassifier, refresh_model
from al_core.strategies import get_strategy
from al_core.ups import CachedScore, InMemoryScoreCache, PoolSubsampler, SubsamplingConfig
from tests.helpers import backend_settings
from tests.unit.engine_fixtures import FAST, sentiment_examples


def _pool(n):
    words = ["great", "movie", "awful", "film", "boring", "fun", "love", "hate", "plot", "story"]
    rng = np.random.default_rng(1)
    return [Example(id=f"p{i}", text=" ".join(rng.choice(words, size=5))) for i in range(n)]


def test_auto_mode_fine_tunes_every_so_many_labels_and_refreshes_in_between():
    config = AcquisitionConfig(frozen_below_classification=40, finetune_every=20, finetune_head_start=0)
    assert resolve_mode(config, "classification", 39) == "frozen"
    assert resolve_mode(config, "classification", 40) == "finetune"  # no fine-tuned encoder yet
    assert resolve_mode(config, "classification", 41, finetuned_at=40) == "refresh"
    assert resolve_mode(config, "classification", 59, finetuned_at=40) == "refresh"
    assert resolve_mode(config, "classification", 60, finetuned_at=40) == "finetune"
    assert resolve_mode(config, "classification", 30, finetuned_at=55) == "frozen"  # labels deleted
    assert resolve_mode(config, "multilabel", 45, finetuned_at=40) == "refresh"
    # a tagger's frozen head reads a vector per word, which its fine-tune does not hand over
    assert resolve_mode(config, "tagging", 45, finetuned_at=40) == "finetune"
    assert resolve_mode(config.__class__(finetune_every=0), "classification", 45, finetuned_at=40) == "finetune"
    explicit = AcquisitionConfig(mode="finetune", finetune_every=20)
    assert resolve_mode(explicit, "classification", 45, finetuned_at=40) == "finetune"


@pytest.fixture(scope="module")
def fine_tuned(tiny_model_dir, tmp_path_factory):
    model = TransformerClassifier(tiny_model_dir, ["neg", "pos"], FAST.replace(epochs=2))
    model.fit(sentiment_examples(3))
    folder = tmp_path_factory.mktemp("finetuned")
    model.save(folder)
    return model, str(folder)


def test_the_vectors_a_fine_tune_hands_over_are_those_its_encoder_gives_a_frozen_head(fine_tuned):
    model, folder = fine_tuned
    examples = _pool(12)
    handed = MemoryEmbeddingCache()
    refresh_model("classification", folder, ["neg", "pos"], FAST, handed).remember(
        examples, model.embed(examples)
    )
    assert len(handed) == 12
    computed = refresh_model("classification", folder, ["neg", "pos"], FAST, MemoryEmbeddingCache())
    reader = refresh_model("classification", folder, ["neg", "pos"], FAST, handed)
    np.testing.assert_allclose(
        np.stack(reader.vectors(examples)), np.stack(computed.vectors(examples)), atol=1e-3
    )
    assert reader.rows_embedded_ == 0 and computed.rows_embedded_ == 12


def test_a_refresh_round_scores_the_handed_over_tasks_and_keeps_the_cached_scores_of_the_rest(fine_tuned):
    model, folder = fine_tuned
    pool = _pool(40)
    cache = InMemoryScoreCache()
    cache.set_many({e.id: CachedScore(0.5, "v1", 0) for e in pool})
    embeddings = MemoryEmbeddingCache()
    head = refresh_model("classification", folder, ["neg", "pos"], FAST, embeddings)
    head.remember(pool[:15], model.embed(pool[:15]))
    labeled = sentiment_examples(2)
    result = run_round(
        head, labeled, pool, get_strategy("lc"), PoolSubsampler(SubsamplingConfig(), seed=0), cache, 1, "v2",
        count=5, also_score=["p20"],
    )
    assert set(result.fresh_ids) == {e.id for e in pool[:15]} | {"p20"}
    assert set(result.scores) == {e.id for e in pool}  # the rest: their cached scores
    assert all(result.scores[e.id] == 0.5 for e in pool[21:])
    assert {c.model_version for i, c in cache.all().items() if i in result.fresh_ids} == {"v2"}
    # the encoder ran on the labeled tasks and on p20, not on the 24 tasks it was not handed
    assert head.rows_embedded_ == len({e.text for e in labeled} | {pool[20].text})


def test_a_refresh_head_is_measured_on_the_held_out_share_then_fit_on_every_label(fine_tuned):
    _, folder = fine_tuned
    labeled = sentiment_examples(5)
    head = refresh_model("classification", folder, ["neg", "pos"], FAST, MemoryEmbeddingCache())
    quality = fit_with_estimate(head, labeled, AcquisitionConfig(holdout_share=0.3, audit_share=0.0))
    assert quality.method == "held-out 30% of the labels" and 0 < quality.n < len(labeled)
    # the head kept is the one fit on every label: it predicts what a head fit on all of them does
    again = refresh_model("classification", folder, ["neg", "pos"], FAST, MemoryEmbeddingCache()).fit(labeled)
    np.testing.assert_allclose(head.head_.coef, again.head_.coef, atol=1e-6)


def test_the_backend_refreshes_between_fine_tunes_and_keeps_the_encoder_it_reads(tmp_path, fake_ls, tiny_model_dir):
    from ml_backend.jobs.run import run_retrain
    from ml_backend.jobs.status import MemoryState
    from ml_backend.predictor import Predictor
    from ml_backend.storage.store import VersionStore

    fake, url = fake_ls
    ids = fake.add_labeled_project(11, 40, n_labeled=16)
    settings = backend_settings(
        url, tmp_path / "store", tiny_model_dir, frozen_below_classification=16, finetune_every=4, keep_versions=1,
        audit_share=0.0, finetune_lane="inline",
    )
    state = MemoryState()
    tune = run_retrain(11, settings, state)
    assert tune["acquisition_mode"] == "finetune"
    store = VersionStore(settings.model_dir, keep=1)
    assert store.meta(11, tune["version"])["encoder"] == {"version": tune["version"], "n_labeled": 16}

    fake.choose(ids[16], "Positive")
    fake.choose(ids[17], "Negative")
    refresh = run_retrain(11, settings, state)
    assert refresh["acquisition_mode"] == "refresh"
    assert refresh["quality"]["method"] == "held-out 10% of the labels"
    assert 0 < refresh["n_scored"] <= tune["n_scored"] and refresh["n_published"] > 0
    meta = store.meta(11, refresh["version"])
    assert meta["encoder"] == {"version": tune["version"], "n_labeled": 16}
    # keep_versions=1 prunes older versions, but not the fine-tuned one whose encoder the promoted reads
    assert store.versions(11) == [tune["version"], refresh["version"]]
    predictor = Predictor(store.version_dir(11, refresh["version"]), meta, settings)
    answers, _ = predictor.predict_and_score([{"id": ids[30], "data": {"text": "a great movie"}}])
    assert answers[0]["result"][0]["value"]["choices"][0] in {"Positive", "Negative"}

    fake.choose(ids[18], "Positive")
    fake.choose(ids[19], "Negative")
    again = run_retrain(11, settings, state)
    assert again["acquisition_mode"] == "finetune"  # 20 labels: 4 since the last fine-tune
    assert store.versions(11) == [again["version"]]


def test_a_refresh_round_with_few_handed_over_tasks_left_tops_up_with_the_most_uncertain_cached_ones(fine_tuned):
    model, folder = fine_tuned
    pool = _pool(30)
    cache = InMemoryScoreCache()
    cache.set_many({e.id: CachedScore(i / 100, "v1", 0) for i, e in enumerate(pool) if i < 25})  # p25-p29: none
    head = refresh_model("classification", folder, ["neg", "pos"], FAST, MemoryEmbeddingCache())
    head.remember(pool[:3], model.embed(pool[:3]))
    result = run_round(
        head, sentiment_examples(2), pool, get_strategy("lc"), PoolSubsampler(SubsamplingConfig(), seed=0), cache,
        1, "v2", count=5, top_up=10,
    )
    # the 3 handed over, then the tasks never scored (p25-p29), then the highest cached scores (p24, p23)
    expected = {"p0", "p1", "p2", "p25", "p26", "p27", "p28", "p29", "p24", "p23"}
    assert set(result.fresh_ids) == expected
    # no top-up while enough handed-over tasks are left
    again = run_round(
        head, sentiment_examples(2), pool, get_strategy("lc"), PoolSubsampler(SubsamplingConfig(), seed=0), cache,
        2, "v3", count=5, top_up=3,
    )
    assert set(again.fresh_ids) == {e.id for e in head.embedded(pool)} >= expected
