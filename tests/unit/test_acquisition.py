"""The acquisition model: one source of training defaults, the step schedule, the frozen head,
the auto mode and the quality estimate each version records."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from al_core.acquisition import AcquisitionConfig, fit_with_estimate, resolve_mode
from al_core.config import TrainingConfig
from al_core.data import Example
from al_core.kinds import kind_of
from al_core.models import (
    FrozenClassifier,
    FrozenTagger,
    MemoryEmbeddingCache,
    SqliteEmbeddingCache,
    build_model,
    load_model,
)
from al_core.models.embedding_cache import encoder_prefix
from al_core.training import total_steps
from tests.unit.engine_fixtures import NER_SENTENCES, TAGS, ner_examples

GOOD = ["good", "great", "excellent", "fun", "love", "best"]
BAD = ["bad", "awful", "terrible", "boring", "hate", "worst"]
FILLER = ["the", "movie", "film", "plot", "story", "actor", "was", "is", "this", "a", "really", "very"]


def toy_reviews(n: int, seed: int, start: int = 0) -> list[Example]:
    """Texts whose class is the sentiment word they hold among neutral fillers: separable."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        words = rng.sample(FILLER, 2) + [rng.choice(GOOD if label == "pos" else BAD) for _ in range(2)]
        rng.shuffle(words)
        out.append(Example(id=f"r{start + i}", text=" ".join(words), label=label))
    return out


def unlabeled(examples):
    return [e.without_labels() for e in examples]


# --- one source of defaults and bounds ----------------------------------------------------


@pytest.fixture
def clean_environment(monkeypatch):
    """No backend setting from the environment: the defaults are in force."""
    from ml_backend.settings import Settings, env_name

    for name in Settings.model_fields:
        monkeypatch.delenv(env_name(name), raising=False)


def _simulator_config(**changes):
    from simulate.config import parse_config

    return parse_config(
        {
            "name": "defaults",
            "dataset": {"pool_path": "p.jsonl", "test_size": 10},
            "acquisition": {"model": "m"},
            "successors": [{"kind": "acquisition"}],
            "seed_set": {"count": 2},
            "batch": {"count": 2},
            "iterations": 1,
            "seeds": [0],
            **changes,
        }
    )


def test_backend_simulator_and_plasm_export_train_with_the_engine_defaults(clean_environment):
    from ml_backend.settings import Settings
    from plasm_export.cli import build_parser, training_config
    from simulate.config import ModelSpec
    from simulate.successors import training_config as simulator_training

    engine = TrainingConfig()
    backend = Settings().training_config()
    args = build_parser().parse_args(["--export", "x.json", "--teacher", "t", "--out", "o"])
    exporter = training_config(args)
    simulator = simulator_training(ModelSpec(model="m"), {}, seed=engine.seed)
    assert backend == engine
    assert exporter == engine
    assert simulator == engine
    # and an explicit setting is the only way to change one
    assert Settings(min_steps=7).training_config().min_steps == 7
    args = build_parser().parse_args(["--export", "x", "--teacher", "t", "--out", "o", "--no-group-by-length"])
    assert training_config(args) == engine.replace(group_by_length=False)


def test_every_shared_field_has_one_default_and_one_set_of_bounds_everywhere(clean_environment):
    """The backend's settings, the simulator's config and plasm-export's flags are made of the
    engine's config fields: the same default, bounds and description for each."""
    from ml_backend.settings import EMBEDDED, Settings
    from plasm_export.cli import TrainingFlags
    from simulate.config import SimulationConfig

    def same(a, b):
        return (a.annotation, a.default, a.metadata, a.description) == (b.annotation, b.default, b.metadata, b.description)

    settings = Settings()
    for embedded in EMBEDDED:
        defaults = embedded.config()
        for name, field in embedded.config.__pydantic_fields__.items():
            if name in embedded.exclude:
                continue
            setting = embedded.rename.get(name, name)
            assert same(Settings.model_fields[setting], field), setting
            assert getattr(settings, setting) == getattr(defaults, name), setting
    for name, field in TrainingFlags.model_fields.items():
        assert same(field, TrainingConfig.__pydantic_fields__[name]), name
    assert set(TrainingFlags.model_fields) == set(TrainingConfig.fields()) - {"from_scratch"}
    # the simulator's sections are the engine's configs themselves; its training overrides are checked by TrainingConfig
    from al_core.ups import SubsamplingConfig

    assert SimulationConfig.model_fields["scoring"].annotation is SubsamplingConfig
    assert SimulationConfig.model_fields["acquisition_mode"].annotation is AcquisitionConfig
    config = _simulator_config()
    assert config.scoring == settings.subsampling_config() == SubsamplingConfig()
    assert config.acquisition_mode == settings.acquisition_config() == AcquisitionConfig()


@pytest.mark.parametrize(
    "setting, value, section",
    [("epochs", 0, "training"), ("ups_gamma", 2, "scoring"), ("cv_folds", 1, "acquisition_mode")],
)
def test_a_value_out_of_bounds_is_refused_by_the_backend_the_simulator_and_plasm_export(setting, value, section):
    from pydantic import ValidationError

    from al_core.exceptions import ALError
    from ml_backend.settings import Settings
    from plasm_export.cli import build_parser, training_config
    from simulate.config import ConfigError

    with pytest.raises(ValidationError):
        Settings(**{setting: value})
    key = {"ups_gamma": "gamma"}.get(setting, setting)
    with pytest.raises(ConfigError, match=key):
        _simulator_config(**{section: {key: value}})
    if section == "training":
        args = build_parser().parse_args(["--export", "x", "--teacher", "t", "--out", "o", f"--{setting}", str(value)])
        with pytest.raises(ALError, match=f"--{setting}"):
            training_config(args)


# --- the schedule -------------------------------------------------------------------------


def test_the_schedule_gives_at_least_its_minimum_steps_for_ten_labels(tiny_model_dir):
    assert total_steps(10, TrainingConfig()) == TrainingConfig().min_steps == 100
    model = build_model("classification", tiny_model_dir, ["neg", "pos"], TrainingConfig(max_length=16))
    model.fit(toy_reviews(10, seed=0))
    assert len(model.train_losses_) >= 100


def test_the_schedule_grows_with_the_labels_and_stays_bounded_when_capped():
    config = TrainingConfig()
    assert total_steps(5000, config) == 3 * 313  # epochs take over from the floor
    assert total_steps(50_000, config.replace(max_steps=1000)) == 1000


def test_the_learning_rate_is_chosen_by_kind_unless_set(tiny_model_dir):
    classifier = build_model("classification", tiny_model_dir, ["neg", "pos"])
    tagger = build_model("tagging", tiny_model_dir, TAGS)
    assert classifier.config.learning_rate == 5e-5 and tagger.config.learning_rate == 3e-4
    fixed = build_model("tagging", tiny_model_dir, TAGS, TrainingConfig(learning_rate=1e-3))
    assert fixed.config.learning_rate == 1e-3


# --- the frozen head ----------------------------------------------------------------------


def frozen(tiny_model_dir, cache=None, cls=FrozenClassifier, labels=("neg", "pos")):
    return cls(tiny_model_dir, list(labels), TrainingConfig(max_length=32, eval_batch_size=8), cache)


def test_the_frozen_head_learns_a_separable_toy_set(tiny_model_dir):
    train, test = toy_reviews(60, seed=1), toy_reviews(100, seed=2, start=1000)
    model = frozen(tiny_model_dir).fit(train)
    predicted = model.predict(unlabeled(test))
    accuracy = np.mean([p == e.label for p, e in zip(predicted, test)])
    assert accuracy >= 0.9
    probs = model.predict_proba(unlabeled(test))
    assert probs.shape == (100, 2) and np.allclose(probs.sum(axis=1), 1.0)


def test_a_second_retrain_embeds_only_the_new_tasks(tiny_model_dir):
    cache = MemoryEmbeddingCache()
    labeled, pool = toy_reviews(20, seed=3), unlabeled(toy_reviews(50, seed=4, start=100))
    first = frozen(tiny_model_dir, cache).fit(labeled)
    first.infer(pool)
    assert first.rows_embedded_ == 70
    new = toy_reviews(5, seed=5, start=500)
    second = frozen(tiny_model_dir, cache).fit(labeled + new[:2])
    second.infer(pool + unlabeled(new[2:]))
    assert second.rows_embedded_ == 5  # the five new texts, nothing else
    edited = dataclasses.replace(pool[0], text=pool[0].text + " really")
    third = frozen(tiny_model_dir, cache).fit(labeled)
    third.infer([edited])
    assert third.rows_embedded_ == 1  # a changed text is embedded again


def test_a_big_pass_is_embedded_chunk_by_chunk_with_the_same_vectors(tiny_model_dir, monkeypatch):
    import al_core.models.frozen

    texts = unlabeled(toy_reviews(20, seed=11))
    whole = frozen(tiny_model_dir).fit(toy_reviews(6, seed=12)).vectors(texts)
    monkeypatch.setattr(al_core.models.frozen, "EMBED_CHUNK", 7)
    model = frozen(tiny_model_dir)
    calls = []
    embed = model._embed
    monkeypatch.setattr(model, "_embed", lambda examples: calls.append(len(examples)) or embed(examples))
    chunked = model.vectors(texts)
    assert calls == [7, 7, 6]
    np.testing.assert_allclose(np.stack(chunked), np.stack(whole), atol=1e-5)


def test_the_forward_pass_a_frozen_head_needs_is_the_tasks_not_cached(tiny_model_dir, tmp_path):
    for cache in (MemoryEmbeddingCache(), SqliteEmbeddingCache(tmp_path / "n.sqlite")):
        labeled, pool = toy_reviews(10, seed=9), unlabeled(toy_reviews(8, seed=10, start=200))
        model = frozen(tiny_model_dir, cache).fit(labeled)
        assert [e.id for e in model.needs_forward(labeled + pool)] == [e.id for e in pool]
        twin = dataclasses.replace(pool[0], id="twin")  # the same text under another id: one vector
        assert [e.id for e in model.needs_forward(pool + [twin])] == [e.id for e in pool]
        model.infer(pool[:3])
        assert [e.id for e in model.needs_forward(pool)] == [e.id for e in pool[3:]]


def test_the_file_cache_is_shared_between_models_and_processes(tiny_model_dir, tmp_path):
    labeled = toy_reviews(12, seed=6)
    first = frozen(tiny_model_dir, SqliteEmbeddingCache(tmp_path / "e.sqlite")).fit(labeled)
    second = frozen(tiny_model_dir, SqliteEmbeddingCache(tmp_path / "e.sqlite")).fit(labeled)
    assert first.rows_embedded_ == 12 and second.rows_embedded_ == 0
    np.testing.assert_allclose(first.predict_proba(labeled), second.predict_proba(labeled), atol=2e-3)
    # every vector sits under its encoder's prefix: deleting the prefix drops them all
    cache = SqliteEmbeddingCache(tmp_path / "e.sqlite")
    assert cache.delete_prefix(encoder_prefix(first.model_name_or_path)) == 12 and len(cache) == 0


def test_save_and_load_give_identical_probabilities(tiny_model_dir, tmp_path):
    labeled, pool = toy_reviews(20, seed=7), unlabeled(toy_reviews(30, seed=8, start=100))
    model = frozen(tiny_model_dir).fit(labeled)
    before = model.predict_proba(pool)
    model.save(tmp_path / "v1")
    loaded = load_model(tmp_path / "v1")
    assert isinstance(loaded, FrozenClassifier)
    np.testing.assert_array_equal(loaded.predict_proba(pool), before)
    tagger = frozen(tiny_model_dir, cls=FrozenTagger, labels=TAGS).fit(ner_examples(2))
    sentences = unlabeled(ner_examples(1))
    tagger.save(tmp_path / "v2")
    again = load_model(tmp_path / "v2")
    for a, b in zip(again.predict_proba(sentences), tagger.predict_proba(sentences)):
        np.testing.assert_array_equal(a, b)


def test_the_frozen_tagger_gives_word_probabilities_and_learns_its_sentences(tiny_model_dir):
    tagger = frozen(tiny_model_dir, cls=FrozenTagger, labels=TAGS).fit(ner_examples(3))
    sentences = ner_examples(1)
    probs = tagger.predict_proba(unlabeled(sentences))
    assert [p.shape for p in probs] == [(len(w), len(TAGS)) for w, _ in NER_SENTENCES]
    predicted = tagger.predict(unlabeled(sentences))
    right = sum(p == t for tags, (_, gold) in zip(predicted, NER_SENTENCES) for p, t in zip(tags, gold))
    assert right / sum(len(t) for _, t in NER_SENTENCES) >= 0.9


def test_a_single_labeled_class_is_predicted_with_certainty(tiny_model_dir):
    only_pos = [e for e in toy_reviews(10, seed=9) if e.label == "pos"]
    probs = frozen(tiny_model_dir).fit(only_pos).predict_proba(unlabeled(toy_reviews(4, seed=10)))
    assert probs[:, 1].tolist() == [1.0] * 4


@pytest.mark.parametrize("strategy", ["lc", "dlc", "dlc-rare", "margin", "entropy", "md"])
def test_every_classification_strategy_scores_the_frozen_head(tiny_model_dir, strategy):
    from al_core.strategies import get_strategy

    labeled, pool = toy_reviews(20, seed=11), unlabeled(toy_reviews(15, seed=12, start=100))
    model = frozen(tiny_model_dir).fit(labeled)
    chosen = get_strategy(strategy, seed=0)
    chosen.prepare(model, labeled)
    outputs = model.infer(pool, probs=chosen.needs_probs, embeddings=chosen.needs_embeddings)
    scores = chosen.score_outputs(probs=outputs.probs, embeddings=outputs.embeddings, n=len(pool))
    assert len(scores) == 15 and np.isfinite(scores).all() and len(set(np.round(scores, 6))) > 1


def test_mnlp_scores_the_frozen_tagger(tiny_model_dir):
    from al_core.strategies import get_strategy

    tagger = frozen(tiny_model_dir, cls=FrozenTagger, labels=TAGS).fit(ner_examples(2))
    mnlp = get_strategy("mnlp", seed=0)
    outputs = tagger.infer(unlabeled(ner_examples(1)))
    scores = mnlp.score_outputs(probs=outputs.probs, embeddings=None, n=4)
    assert len(scores) == 4 and np.isfinite(scores).all()


def test_a_round_with_the_frozen_head_scores_the_whole_pool(tiny_model_dir):
    from al_core.loop import run_round
    from al_core.strategies import get_strategy
    from al_core.ups import CachedScore, InMemoryScoreCache, PoolSubsampler, SubsamplingConfig

    labeled, pool = toy_reviews(20, seed=13), unlabeled(toy_reviews(40, seed=14, start=100))
    cache = InMemoryScoreCache()
    cache.set_many({e.id: CachedScore(0.5, "v0", 0) for e in pool})
    ups = PoolSubsampler(SubsamplingConfig(mode="ups", full_first=0, full_every=0))
    result = run_round(frozen(tiny_model_dir), labeled, pool, get_strategy("lc"), ups, cache, 5, "v1", count=1)
    assert result.n_scored == 40
    assert result.quality.method == "5-fold cross-validation" and 0.0 <= result.quality.value <= 1.0


# --- auto mode and the quality estimate ---------------------------------------------------


def test_auto_switches_at_its_threshold_per_kind():
    config = AcquisitionConfig(frozen_below_classification=50, frozen_below_tagging=10, finetune_head_start=0)
    assert resolve_mode(config, "classification", 49) == "frozen"
    assert resolve_mode(config, "classification", 50) == "finetune"
    assert resolve_mode(config, "tagging", 9) == "frozen"
    assert resolve_mode(config, "tagging", 10) == "finetune"
    assert resolve_mode(AcquisitionConfig(), "tagging", 0) == "finetune"  # the default for tagging
    assert resolve_mode(AcquisitionConfig(mode="frozen"), "classification", 10_000) == "frozen"


def test_the_cross_validated_estimate_sees_a_learnable_set_and_a_random_one(tiny_model_dir):
    config = AcquisitionConfig()
    learnable = fit_with_estimate(frozen(tiny_model_dir), toy_reviews(60, seed=15), config)
    shuffled = toy_reviews(60, seed=15)
    labels = [e.label for e in shuffled]
    random.Random(0).shuffle(labels)
    noise = fit_with_estimate(
        frozen(tiny_model_dir), [dataclasses.replace(e, label=y) for e, y in zip(shuffled, labels)], config
    )
    assert learnable.metric == "macro_f1" and learnable.n == 60
    assert learnable.value >= 0.75 and noise.value <= 0.65
    # beside the headline: accuracy, and a row for every class of the model
    assert list(learnable.figures) == ["macro_f1", "accuracy"] and learnable.figures["macro_f1"] == learnable.value
    classes = sorted({e.label for e in toy_reviews(60, seed=15)})
    assert sorted(learnable.per_label) == classes
    assert sum(row["support"] for row in learnable.per_label.values()) == 60
    assert learnable.worst in classes
    assert learnable.as_dict()["per_label"] == learnable.per_label


def test_fine_tuning_holds_out_the_same_tasks_every_version(tiny_model_dir):
    config = AcquisitionConfig(holdout_share=0.25)
    labeled = toy_reviews(40, seed=16)
    seen = []

    class Recording:
        kind, mode = "classification", "finetune"
        task_kind = kind_of("classification")
        labels = ["neg", "pos"]

        def fit(self, examples):
            seen.append({e.id for e in examples})
            return self

        def predict(self, examples):
            return ["pos"] * len(examples)

    first = fit_with_estimate(Recording(), labeled, config)
    second = fit_with_estimate(Recording(), labeled + toy_reviews(20, seed=17, start=100), config)
    held_first = {e.id for e in labeled} - seen[0]
    assert first.n == len(held_first) > 0 and held_first.isdisjoint(seen[1])
    assert first.method == "held-out 25% of the labels" and second.n >= first.n
    # "neg" is never predicted: F1 0, and still in the table
    assert first.per_label["neg"]["f1"] == 0.0 and first.per_label["neg"]["support"] > 0
    assert first.worst == "neg" and first.figures["accuracy"] > first.value


def test_too_few_labels_give_no_estimate_and_train_on_everything(tiny_model_dir):
    model = frozen(tiny_model_dir)
    estimate = fit_with_estimate(model, toy_reviews(6, seed=18), AcquisitionConfig())
    assert estimate.value is None and model.head_ is not None


def test_plasm_export_flags_reach_the_training_config():
    from plasm_export.cli import build_parser, training_config

    args = build_parser().parse_args(
        ["--export", "x", "--teacher", "t", "--out", "o", "--epochs", "7", "--learning-rate", "1e-4"]
    )
    config = training_config(args)
    assert (config.epochs, config.learning_rate) == (7, 1e-4)
