"""The retrain history: appended per retrain, read back bounded, the record a retrain writes."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from al_core.data import Example
from al_core.ls_format import LabelConfig, label_counts
from ml_backend.storage.history import (
    HistoryCache,
    append_record,
    build_record,
    history_path,
    read_last,
    record_retrain,
)


def test_read_last_returns_the_newest_records_in_order(tmp_path):
    path = history_path(tmp_path, 3)
    assert read_last(path) == []
    for i in range(700):
        append_record(path, {"iteration": i, "pad": "x" * (i % 300)})  # lines of varied length
    records = read_last(path, 500)
    assert [r["iteration"] for r in records] == list(range(200, 700))
    assert [r["iteration"] for r in read_last(path, 1)] == [699]
    assert [r["iteration"] for r in read_last(path, 5000)] == list(range(700))


def test_read_last_reads_a_bounded_part_of_a_long_file(tmp_path, monkeypatch):
    path = history_path(tmp_path, 3)
    path.parent.mkdir(parents=True)
    with open(path, "w") as handle:
        for i in range(20000):
            handle.write(json.dumps({"iteration": i, "pad": "y" * 200}) + "\n")
    read = []
    real_open = open

    class Counting:
        def __init__(self, handle):
            self.handle = handle

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def read(self, n=-1):
            data = self.handle.read(n)
            read.append(len(data))
            return data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    monkeypatch.setattr("ml_backend.storage.history.open", lambda *a, **k: Counting(real_open(*a, **k)), raising=False)
    records = read_last(path, 500)
    assert [r["iteration"] for r in records] == list(range(19500, 20000))
    assert sum(read) < 3 * 500 * 240 < path.stat().st_size / 10  # a few blocks, not the whole file


def test_a_line_cut_short_is_skipped(tmp_path):
    path = history_path(tmp_path, 3)
    append_record(path, {"iteration": 0})
    append_record(path, {"iteration": 1})
    with open(path, "a") as handle:
        handle.write('{"iteration": 2, "tim')  # a crash mid-write
    assert [r["iteration"] for r in read_last(path)] == [0, 1]


def test_the_cache_rereads_only_a_changed_file(tmp_path, monkeypatch):
    path = history_path(tmp_path, 5)
    append_record(path, {"iteration": 0})
    cache = HistoryCache(tmp_path, limit=10)
    calls = []
    import ml_backend.storage.history as history

    real = history.read_last
    monkeypatch.setattr(history, "read_last", lambda *a: calls.append(a) or real(*a))
    key, records = cache.records("5")
    assert cache.records("5") == (key, records) and len(calls) == 1
    append_record(path, {"iteration": 1})
    key2, records2 = cache.records("5")
    assert key2 != key and [r["iteration"] for r in records2] == [0, 1] and len(calls) == 2
    assert cache.records("6") == ((0, 0), [])  # no history yet



def test_the_cache_keeps_the_most_recently_viewed_projects(tmp_path, monkeypatch):
    for project in ("1", "2", "3"):
        append_record(history_path(tmp_path, project), {"iteration": 0})
    cache = HistoryCache(tmp_path, limit=10, projects=2)
    calls = []
    import ml_backend.storage.history as history

    real = history.read_last
    monkeypatch.setattr(history, "read_last", lambda path, *a: calls.append(path.parent.name) or real(path, *a))
    for project in ("1", "2", "1", "3"):  # 3 drops 2, the least recently viewed
        cache.records(project)
    cache.records("1")
    cache.records("2")
    assert calls == ["1", "2", "3", "2"]

CLS = LabelConfig("classification", "label", "text", "text", ["World", "Sports", "Business"], False, "Choices")
NER = LabelConfig("tagging", "label", "text", "text", ["PER", "LOC"], False, "Labels")


def test_label_counts_per_class_and_per_entity_type():
    labeled = [Example("1", "a", label="World"), Example("2", "b", label="World"), Example("3", "c", label="Sports")]
    assert label_counts(labeled, CLS) == {"World": 2, "Sports": 1, "Business": 0}
    tagged = [
        Example("1", "a b c", words=["a", "b", "c"], tags=["B-PER", "I-PER", "B-PER"], offsets=[(0, 1), (2, 3), (4, 5)]),
        Example("2", "d", words=["d"], tags=["O"], offsets=[(0, 1)]),
    ]
    assert label_counts(tagged, NER) == {"PER": 2, "LOC": 0}


class FixedModel:
    """Predicts class `label_of(id)` with certainty; counts what it was asked to predict."""

    def __init__(self, label_of, n_labels=3):
        self.label_of = label_of
        self.n_labels = n_labels
        self.asked = []

    def predict_proba(self, examples):
        self.asked += [e.id for e in examples]
        out = np.zeros((len(examples), self.n_labels), dtype=np.float32)
        for row, example in enumerate(examples):
            out[row, self.label_of(example.id)] = 1.0
        return out


def settings(tmp_path, sample=50):
    return SimpleNamespace(model_dir=str(tmp_path), stability_sample=sample)


def summary(iteration, n_pool):
    return {
        "version": f"4-v{iteration + 1}-20260101T000000Z",
        "iteration": iteration,
        "n_labeled": 3,
        "n_pool": n_pool,
        "n_scored": 10,
        "n_published": n_pool,
        "started_at": 1.0,
        "timings": {"read_s": 0.1, "fit_s": 1.0, "total_s": 2.0},
    }


META = {"project": 4, "labels": CLS.labels, "created_at": 2.0, "strategy": "lc"}


def test_a_retrain_record_holds_the_sample_predictions_and_the_kappa_with_the_previous_one(tmp_path):
    labeled = [Example("1", "a", label="World"), Example("2", "b", label="Sports")]
    pool = [Example(str(i), f"text {i}") for i in range(100, 300)]
    fresh = {str(i): np.array([0.1, 0.8, 0.1]) for i in range(100, 120)}  # this round's re-scored subset
    model = FixedModel(lambda task: int(task) % 3)
    record_retrain(settings(tmp_path), summary(0, 200), META, model, labeled, pool, fresh, CLS)
    first = read_last(history_path(tmp_path, 4))[-1]
    sample = first["stability"]["predictions"]
    assert len(sample) == 50 and first["stability"]["kappa"] is None
    assert not set(model.asked) & set(fresh)  # fresh probabilities are reused, not predicted again
    assert {sample[t] for t in sample if t in fresh} <= {1}
    assert all(sample[t] == int(t) % 3 for t in sample if t not in fresh)
    assert first["label_counts"] == {"World": 1, "Sports": 1, "Business": 0}
    assert first["quality"] is None and first["publish"] == {"ok": True}
    assert first["timings"]["fit_s"] == 1.0 and "stability_s" in first["timings"]
    assert first["version"] == "4-v1-20260101T000000Z" and first["classes"] == CLS.labels

    # the next version agrees on the sample: kappa 1; a third one predicts something else
    record_retrain(settings(tmp_path), summary(1, 200), META, FixedModel(lambda t: 1 if t in fresh else int(t) % 3), labeled, pool, {}, CLS)
    second = read_last(history_path(tmp_path, 4))[-1]
    assert second["stability"]["kappa"] == 1.0 and second["stability"]["n_compared"] == 50
    record_retrain(settings(tmp_path), summary(2, 200), META, FixedModel(lambda t: 0), labeled, pool, {}, CLS)
    third = read_last(history_path(tmp_path, 4))[-1]
    assert third["stability"]["kappa"] == pytest.approx(0.0, abs=1e-9)  # one class everywhere against three: no agreement beyond chance


def test_the_quality_estimate_of_the_version_meta_is_kept(tmp_path):
    quality = {"metric": "accuracy", "value": 0.8, "method": "5-fold cross-validation", "n": 40}
    meta = dict(META, quality=quality, acquisition_mode="frozen")
    record = build_record(settings(tmp_path, sample=0), summary(0, 5), meta, None, [], [Example("9", "x")], {}, CLS)
    assert record["quality"] == quality and record["acquisition_mode"] == "frozen"
    assert record["stability"] is None  # AL_STABILITY_SAMPLE=0: no sample


def test_a_failing_record_never_fails_the_retrain(tmp_path, caplog):
    class Broken:
        def predict_proba(self, examples):
            raise RuntimeError("out of memory")

    pool = [Example("1", "x")]
    record_retrain(settings(tmp_path), summary(0, 1), META, Broken(), [], pool, {}, CLS)
    assert "could not write the retrain history" in caplog.text
    assert read_last(history_path(tmp_path, 4)) == []


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_record_is_valid_json(tmp_path, value):
    with pytest.raises(ValueError):
        append_record(history_path(tmp_path, 4), {"kappa": value})
