"""The background lane: a due fine-tune runs beside the retrains, which serve a refresh round (or the
frozen head) meanwhile, and its encoder is taken up only when a head over it is not worse."""

import json

import pytest

from al_core.acquisition import (
    AcquisitionConfig,
    QualityEstimate,
    finetune_in_background,
    first_finetune_at,
    resolve_mode,
    served_mode,
)
from al_core.data import Example
from al_core.loop import PREMISE_FILE, FinetuneVerdict, adopt_encoder, encoder_premise, finetune_encoder
from al_core.models import MemoryEmbeddingCache, TransformerClassifier, build_model, refresh_model
from al_core.strategies import get_strategy
from al_core.ups import CachedScore, InMemoryScoreCache, PoolSubsampler, SubsamplingConfig
from tests.helpers import backend_settings
from tests.unit.engine_fixtures import FAST, sentiment_examples


def test_a_due_fine_tune_is_served_as_a_refresh_round_or_the_frozen_head_in_the_background_lane():
    config = AcquisitionConfig(frozen_below_classification=40, finetune_every=20, finetune_head_start=0)
    assert config.finetune_lane == "background"
    assert served_mode(config, "classification", 39) == "frozen"
    assert not finetune_in_background(config, "classification", 39, None)
    assert served_mode(config, "classification", 40) == "frozen"  # the first fine-tune runs beside it
    assert finetune_in_background(config, "classification", 40, None)
    assert served_mode(config, "classification", 45, finetuned_at=40) == "refresh"
    assert not finetune_in_background(config, "classification", 45, 40)
    assert served_mode(config, "classification", 60, finetuned_at=40) == "refresh"
    assert finetune_in_background(config, "classification", 60, 40)
    # tagging fine-tunes inside the retrain (it does not refresh), as does the inline lane
    assert served_mode(config, "tagging", 45, finetuned_at=40) == "finetune"
    assert not finetune_in_background(config, "tagging", 45, 40)
    inline = AcquisitionConfig(frozen_below_classification=40, finetune_every=20, finetune_lane="inline")
    assert served_mode(inline, "classification", 60, finetuned_at=40) == "finetune"
    assert not finetune_in_background(inline, "classification", 60, 40)
    assert not finetune_in_background(AcquisitionConfig(mode="finetune"), "classification", 60, 40)


def test_the_background_lane_asks_for_its_first_fine_tune_a_head_start_before_the_threshold():
    config = AcquisitionConfig(frozen_below_classification=40, finetune_every=20, finetune_head_start=20)
    assert first_finetune_at(config, "classification") == 20
    assert not finetune_in_background(config, "classification", 19, None)
    assert finetune_in_background(config, "classification", 20, None)
    assert served_mode(config, "classification", 20) == "frozen"  # served until the fine-tune is taken up
    # taken up below the threshold: its encoder serves at once, the next fine-tune due 20 labels on
    assert served_mode(config, "classification", 35, finetuned_at=20) == "refresh"
    assert not finetune_in_background(config, "classification", 35, 20)
    assert finetune_in_background(config, "classification", 40, 20)
    # a head start beyond the threshold starts at the first label; the inline lane and tagging keep the threshold
    assert first_finetune_at(AcquisitionConfig(frozen_below_classification=10), "classification") == 0
    inline = AcquisitionConfig(frozen_below_classification=40, finetune_lane="inline", finetune_head_start=20)
    assert first_finetune_at(inline, "classification") == 40
    assert resolve_mode(inline, "classification", 39) == "frozen"
    tagging = AcquisitionConfig(frozen_below_tagging=30, finetune_head_start=20)
    assert first_finetune_at(tagging, "tagging") == 30


def _builder(model_dir, labels, embeddings):
    """`finetune_encoder`'s `build`: the frozen head over `embeddings`, else a one-epoch fine-tune."""

    def build(mode):
        if mode == "frozen":
            return build_model("classification", model_dir, labels, FAST, "frozen", embeddings)
        return TransformerClassifier(model_dir, labels, FAST.replace(epochs=1))

    return build


def _estimate(value):
    return QualityEstimate("macro_f1", value, "held-out 10% of the labels", 0 if value is None else 8)


@pytest.mark.parametrize(
    ("new", "old", "accepted"),
    [(0.7, 0.6, True), (0.6, 0.6, True), (0.59, 0.6, False), (None, 0.6, True), (0.5, None, True)],
)
def test_the_verdict_takes_a_fine_tune_up_when_it_is_not_worse(new, old, accepted):
    verdict = FinetuneVerdict(None, "/nowhere", 40, _estimate(new), _estimate(old))
    assert verdict.accepted is accepted
    assert verdict.as_dict()["accepted"] is accepted and verdict.as_dict()["incumbent_value"] == old


@pytest.mark.parametrize(("new", "accepted"), [(0.7, True), (0.55, True), (0.41, True), (0.39, False), (None, True)])
def test_a_fine_tune_that_replaces_a_fine_tune_is_rejected_only_beyond_the_margin(new, accepted):
    verdict = FinetuneVerdict(None, "/nowhere", 80, _estimate(new), _estimate(0.6), margin=0.2)
    assert verdict.accepted is accepted
    assert verdict.as_dict()["margin"] == 0.2


@pytest.mark.parametrize(("held_out", "accepted"), [(9, True), (10, False), (30, False)])
def test_a_verdict_on_fewer_held_out_tasks_than_its_minimum_cannot_reject(held_out, accepted):
    worse = QualityEstimate("macro_f1", 0.25, "held-out 10% of the labels", held_out)
    served = QualityEstimate("macro_f1", 0.49, "held-out 10% of the labels", held_out)
    verdict = FinetuneVerdict(None, "/nowhere", 40, worse, served, min_held_out=10)
    assert verdict.accepted is accepted
    assert verdict.as_dict()["min_held_out"] == 10 and verdict.as_dict()["n_held_out"] == held_out


def test_the_margin_applies_only_when_the_served_encoder_is_a_fine_tune(tiny_model_dir, tmp_path):
    labeled = sentiment_examples(4)
    labels = ["neg", "pos"]
    embeddings = MemoryEmbeddingCache()

    build = _builder(tiny_model_dir, labels, embeddings)
    config = AcquisitionConfig(
        holdout_share=0.3, audit_share=0.0, finetune_replace_margin=0.15, finetune_min_held_out=3
    )
    args = (build, "classification", labels, labeled, [], InMemoryScoreCache(), PoolSubsampler(SubsamplingConfig()), 0,
            config)
    first = finetune_encoder(*args, str(tmp_path / "first"), None, FAST, embeddings)
    assert first.margin == 0.0
    assert first.min_held_out == 3  # the setting reaches the verdict
    first.save(tmp_path / "first")
    second = finetune_encoder(*args, str(tmp_path / "second"), (str(tmp_path / "first"), 40), FAST, embeddings)
    assert second.margin == 0.15


def test_a_background_fine_tune_hands_over_its_vectors_and_is_saved_only_when_taken_up(tiny_model_dir, tmp_path):
    labeled = sentiment_examples(4)
    pool = [e.without_labels() for e in sentiment_examples(3)]
    pool = [type(e)(id=f"u{i}", text=e.text) for i, e in enumerate(pool)]
    labels = ["neg", "pos"]
    embeddings = MemoryEmbeddingCache()

    build = _builder(tiny_model_dir, labels, embeddings)
    config = AcquisitionConfig(holdout_share=0.3, audit_share=0.0)
    folder = str(tmp_path / "ft")
    verdict = finetune_encoder(
        build, "classification", labels, labeled, pool, InMemoryScoreCache(), PoolSubsampler(SubsamplingConfig()), 0,
        config, folder, None, FAST, embeddings,
    )
    # both heads measured on the same held-out tasks, the new one over the vectors handed over
    assert verdict.quality.n == verdict.incumbent.n > 0
    assert verdict.quality.method == verdict.incumbent.method == "held-out 30% of the labels"
    assert verdict.n_labeled == len(labeled)
    assert set(verdict.timings) == {"fit_s", "inference_s", "verdict_s"}
    # the first iteration scores the whole pool: every pool task's vector is cached under the folder's keys
    from al_core.models import refresh_model

    reader = refresh_model("classification", folder, labels, FAST, embeddings)
    assert {e.id for e in reader.embedded(pool)} == {e.id for e in pool}

    rejected = FinetuneVerdict(verdict.model, folder, 40, _estimate(0.1), _estimate(0.5))
    assert adopt_encoder(rejected, ("/old", 20)) == ("/old", 20)
    assert not (tmp_path / "ft").exists()
    old = tmp_path / "old"
    old.mkdir()
    taken = FinetuneVerdict(verdict.model, folder, 40, _estimate(0.6), _estimate(0.5))
    assert adopt_encoder(taken, (str(old), 20)) == (folder, 40)
    assert (tmp_path / "ft").is_dir() and not old.exists()


def test_a_whole_pool_pass_measures_the_premise_that_decides_the_next_fine_tunes_pass(tiny_model_dir, tmp_path):
    labeled = sentiment_examples(2)
    pool = [Example(id=f"u{i}", text=f"{e.text} {i}") for i, e in enumerate(sentiment_examples(5))]  # 40 tasks
    labels = ["neg", "pos"]
    embeddings = MemoryEmbeddingCache()
    cache = InMemoryScoreCache()  # scores of an earlier model for every pool task
    cache.set_many({e.id: CachedScore(float(i), "frozen", 0) for i, e in enumerate(pool)})
    subsampler = PoolSubsampler(SubsamplingConfig())

    build = _builder(tiny_model_dir, labels, embeddings)
    def fine_tune(name, incumbent):
        folder = str(tmp_path / name)
        verdict = finetune_encoder(
            build, "classification", labels, labeled, pool, cache, subsampler, 7, AcquisitionConfig(audit_share=0.0),
            folder, incumbent, FAST, embeddings, strategy=get_strategy("entropy"),
        )
        embedded = {e.id for e in refresh_model("classification", folder, labels, FAST, embeddings).embedded(pool)}
        return verdict, embedded

    # no premise measured yet (the scores came from another model): the whole pool, and the premise measured
    first, embedded = fine_tune("ft1", None)
    assert first.full_pass and embedded == {e.id for e in pool}
    assert set(first.premise) == {"1", "10", "50"} and all(0 <= v <= 1 for v in first.premise.values())
    assert "premise_s" in first.timings and first.as_dict()["ups_premise"] == first.premise
    first.save(first.folder)
    assert encoder_premise(first.folder) == first.premise and encoder_premise(str(tmp_path / "none")) is None
    # the served encoder's pass found the premise held: the next fine-tune embeds the UPS subset only
    (tmp_path / "ft1" / PREMISE_FILE).write_text(json.dumps({"1": 1.0, "10": 0.9, "50": 0.7}))
    second, embedded = fine_tune("ft2", (first.folder, len(labeled)))
    ups_subset = set(subsampler.subset([e.id for e in pool], cache.get_many([e.id for e in pool]), 7))
    assert not second.full_pass and second.premise is None and embedded == ups_subset and len(ups_subset) < 10
    # it did not hold: the whole pool again
    (tmp_path / "ft1" / PREMISE_FILE).write_text(json.dumps({"1": 1.0, "10": 0.5, "50": 0.3}))
    third, embedded = fine_tune("ft3", (first.folder, len(labeled)))
    assert third.full_pass and embedded == {e.id for e in pool} and third.premise is not None


def _project(fake, project, n_labeled):
    return fake.add_labeled_project(project, 40, n_labeled=n_labeled)


def test_the_backend_serves_at_once_and_takes_up_the_background_fine_tune_in_a_retrain(
    tmp_path, fake_ls, tiny_model_dir
):
    from ml_backend.jobs.run import embedded_runner
    from ml_backend.jobs.status import MemoryState
    from ml_backend.storage.store import VersionStore

    fake, url = fake_ls
    ids = _project(fake, 12, 16)
    # no held-out share: no estimate, so the verdict takes the fine-tune up (its rule is tested above)
    settings = backend_settings(
        url, tmp_path / "store", tiny_model_dir, frozen_below_classification=16, finetune_every=4,
        audit_share=0.0, holdout_share=0.0,
    )
    state = MemoryState()
    runner = embedded_runner(settings, state)
    runner.submit_retrain("12")
    assert runner.join(timeout=300)
    store = VersionStore(settings.model_dir)
    first, second = store.versions(12)
    assert store.meta(12, first)["acquisition_mode"] == "frozen"  # served without waiting for the fine-tune
    finetune = state.status("12")["last_finetune"]
    assert finetune["status"] == "adopted" and finetune["n_labeled"] == 16 and not state.status("12")["finetuning"]
    assert store.encoders(12) == [finetune["encoder"]]
    # the first fine-tune embeds the whole pool (the cached scores are the frozen head's) and keeps its premise
    assert finetune["full_pass"] is True and set(finetune["ups_premise"]) == {"1", "10", "50"}
    assert encoder_premise(str(store.layout.encoder_dir(12, finetune["encoder"]))) == finetune["ups_premise"]
    meta = store.meta(12, second)  # the retrain the fine-tune asked for reads its encoder
    assert meta["acquisition_mode"] == "refresh"
    assert meta["encoder"] == {"encoder": finetune["encoder"], "n_labeled": 16}
    assert state.status("12")["last_round"]["finetune_due"] is False

    for i in (16, 17, 18, 19):  # 4 labels later the next fine-tune is due: a refresh round serves meanwhile
        fake.choose(ids[i], "Positive" if i % 2 else "Negative")
    runner.submit_retrain("12")
    assert runner.join(timeout=300)
    third, fourth = store.versions(12)[-2:]
    assert store.meta(12, third)["acquisition_mode"] == "refresh"
    assert store.meta(12, third)["encoder"]["n_labeled"] == 16
    assert store.meta(12, fourth)["encoder"]["n_labeled"] == 20
    assert len(store.encoders(12)) == 2  # the two newest are kept


def test_a_fine_tune_not_taken_up_leaves_the_served_encoder_and_asks_for_no_retrain(
    tmp_path, fake_ls, tiny_model_dir, monkeypatch
):
    from ml_backend.jobs.run import embedded_runner
    from ml_backend.jobs.status import MemoryState
    from ml_backend.storage.store import VersionStore

    monkeypatch.setattr(FinetuneVerdict, "accepted", property(lambda self: False))
    fake, url = fake_ls
    _project(fake, 13, 16)
    settings = backend_settings(
        url, tmp_path / "store", tiny_model_dir, frozen_below_classification=16, finetune_every=4, audit_share=0.0,
    )
    state = MemoryState()
    runner = embedded_runner(settings, state)
    runner.submit_retrain("13")
    assert runner.join(timeout=300)
    store = VersionStore(settings.model_dir)
    assert len(store.versions(13)) == 1 and store.encoders(13) == []
    finetune = state.status("13")["last_finetune"]
    assert finetune["status"] == "rejected" and finetune["encoder"] is None and finetune["incumbent"] == "pretrained"
    # its vectors of the 40 tasks are dropped: the cache holds the pretrained encoder's alone (at most 40)
    from ml_backend.storage.store import embedding_cache

    assert finetune["full_pass"] and 0 < len(embedding_cache(settings, 13)) <= 40


def test_a_fine_tune_cut_short_by_a_stop_is_asked_for_again_after_the_restart(tmp_path):
    from ml_backend.jobs.embedded_state import FileState

    state = FileState(tmp_path)
    assert state.claim_finetune("4", ttl=60) and not state.claim_finetune("4", ttl=60)
    restarted = FileState(tmp_path)  # the process stopped during the fine-tune
    assert restarted.status("4")["finetuning"]
    assert restarted.interrupted() == []  # no retrain to queue again; the flag is cleared
    assert not FileState(tmp_path).status("4")["finetuning"]
    assert restarted.claim_finetune("4", ttl=60)
    restarted.finish_finetune("4", {"status": "adopted"})
    assert FileState(tmp_path).status("4")["last_finetune"] == {"status": "adopted"}
