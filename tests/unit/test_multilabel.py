"""Multi-label classification (<Choices choice="multiple">): the kind, its models, its scores, and the
backend, plasm-export and the simulator running it."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from al_core.data import MULTILABEL, Example
from al_core.kinds import KINDS, kind_of
from al_core.ls_format import parse_label_config, prediction_result, task_to_example
from al_core.metrics import multilabel_report
from al_core.models import FrozenMultiLabel, MemoryEmbeddingCache, build_model, load_model
from al_core.plasm import pseudo_label
from al_core.strategies import LeastConfidence, entropy, least_confidence, margin
from al_core.training import TrainingConfig
from testkit.fake_label_studio import MULTI_CONFIG
from tests.helpers import backend_settings

CONFIG = parse_label_config(MULTI_CONFIG)
LABELS = ["Sport", "Money", "Food"]
VOCAB = {
    "Sport": ["goal", "match", "team", "coach", "league"],
    "Money": ["bank", "price", "market", "profit", "tax"],
    "Food": ["bread", "soup", "cheese", "salad", "pasta"],
}
FILLER = ["the", "a", "today", "people", "said", "about", "this", "very"]


def toy_topics(n: int, seed: int, start: int = 0) -> list[Example]:
    """Texts holding two words of each of their classes (each class present with odds 1/2)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        chosen = [label for label in LABELS if rng.random() < 0.5]
        words = rng.sample(FILLER, 2) + [w for label in chosen for w in rng.sample(VOCAB[label], 2)]
        rng.shuffle(words)
        out.append(Example(id=str(start + i), text=" ".join(words), choices=chosen))
    return out


def region(choices):
    return {"from_name": "topics", "to_name": "text", "type": "choices", "value": {"choices": choices}}


# --- the kind ------------------------------------------------------------------------------------


def test_a_multiple_choice_config_is_read_as_sets_of_classes():
    assert CONFIG.kind == MULTILABEL and CONFIG.multi_label
    both = {"id": 1, "data": {"text": "goal and bank"}, "annotations": [{"id": 9, "result": [region(["Sport", "Money"])]}]}
    assert task_to_example(both, CONFIG).choices == ["Sport", "Money"]
    none = {"id": 2, "data": {"text": "nothing"}, "annotations": [{"id": 10, "result": []}]}
    assert task_to_example(none, CONFIG).choices == []  # "none of these" is an answer
    assert task_to_example(none, CONFIG).is_labeled
    assert not task_to_example({"id": 3, "data": {"text": "x"}}, CONFIG).is_labeled
    removed = {"id": 4, "data": {"text": "x"}, "annotations": [{"id": 11, "result": [region(["Sport", "Chess"])]}]}
    lenient = task_to_example(removed, CONFIG, lenient=True)
    assert not lenient.is_labeled and lenient.meta["skipped"] == {"unknown_label": 1}


def test_disagreeing_annotators_are_compared_as_sets():
    first = {"id": 1, "updated_at": "2026-01-01", "result": [region(["Sport", "Money"])]}
    second = {"id": 2, "updated_at": "2026-01-03", "result": [region(["Food"])]}
    third = {"id": 3, "updated_at": "2026-01-02", "result": [region(["Money", "Sport"])]}
    task = {"id": 5, "data": {"text": "t"}, "annotations": [first, second, third]}
    example = task_to_example(task, CONFIG)
    assert sorted(example.choices) == ["Money", "Sport"]  # the majority, though not the newest
    assert example.meta["annotation_rule"] == "majority"


def test_regions_name_every_predicted_class_and_none_for_an_empty_set():
    example = Example(id="1", text="goal and bank")
    assert prediction_result(example, CONFIG, ["Sport", "Money"]) == [region(["Sport", "Money"])]
    assert prediction_result(example, CONFIG, []) == []
    with pytest.raises(ValueError, match="'Chess' is not in the label config"):
        prediction_result(example, CONFIG, ["Chess"])


def test_decoding_takes_every_class_at_or_above_one_half():
    probs = np.array([[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]])
    assert kind_of(MULTILABEL).decode(probs, LABELS) == ["Sport", "Money"]
    assert kind_of(MULTILABEL).confidence(probs) == pytest.approx((0.8 * 0.5 * 0.9) ** (1 / 3))


def test_probability_strategies_score_the_mean_of_the_per_class_decisions():
    present = np.array([[0.5, 0.9, 0.1], [0.99, 0.01, 0.99]])
    probs = np.stack([1 - present, present], axis=-1)
    per_class_lc = np.minimum(present, 1 - present)
    assert least_confidence(probs) == pytest.approx(per_class_lc.mean(axis=1))
    assert margin(probs) == pytest.approx((1 - np.abs(2 * present - 1)).mean(axis=1))
    binary_entropy = -(present * np.log(present) + (1 - present) * np.log(1 - present))
    assert entropy(probs) == pytest.approx(binary_entropy.mean(axis=1), rel=1e-6)
    assert least_confidence(probs)[0] > least_confidence(probs)[1]  # the unsure text is asked first
    published = LeastConfidence().published_scores(least_confidence(probs), kind_of(MULTILABEL).outcomes(3))
    # K = 2 per decision: lc of a decision tops at 0.5, so the mean maps 1 - 2u
    assert published == pytest.approx(1 - 2 * per_class_lc.mean(axis=1))
    certain = np.stack([np.zeros((1, 3)), np.ones((1, 3))], axis=-1)
    assert LeastConfidence().published_scores(least_confidence(certain), 2)[0] == pytest.approx(1.0)


def test_micro_and_macro_f1_of_label_sets():
    gold = [["a", "b"], ["a"], []]
    predicted = [["a"], ["a", "c"], []]
    scores = multilabel_report(gold, predicted)
    assert scores["micro_f1"] == pytest.approx(2 / 3)  # 2 right, 1 missed, 1 wrong
    assert scores["macro_f1"] == pytest.approx(1 / 3)  # a: 1, b: 0, c: 0
    assert multilabel_report([[]], [[]]) == {"micro_f1": 1.0, "macro_f1": 1.0, "per_label": {}}
    assert kind_of(MULTILABEL).agrees(["a", "b"], ["b", "a"])


# --- models --------------------------------------------------------------------------------------


def test_the_frozen_multilabel_head_learns_a_separable_toy_set_and_reloads_identically(tiny_model_dir, tmp_path):
    train, test = toy_topics(80, seed=1), toy_topics(60, seed=2, start=1000)
    unlabeled = [e.without_labels() for e in test]
    model = build_model(MULTILABEL, tiny_model_dir, LABELS, mode="frozen", embedding_cache=MemoryEmbeddingCache())
    assert isinstance(model, FrozenMultiLabel)
    model.fit(train)
    probs = model.predict_proba(unlabeled)
    assert probs.shape == (60, 3, 2) and np.allclose(probs.sum(axis=-1), 1.0)
    assert multilabel_report([e.choices for e in test], model.predict(unlabeled))["micro_f1"] >= 0.8
    folder = model.save(tmp_path / "v1")
    again = load_model(folder, embedding_cache=MemoryEmbeddingCache())
    assert np.allclose(again.predict_proba(unlabeled), probs, atol=1e-6)
    folds = model.cross_validated_predictions(train, 4)
    assert len(folds) == 80 and all(set(p) <= set(LABELS) for p in folds)


def test_a_class_no_labeled_text_has_gets_a_small_constant_probability(tiny_model_dir):
    train = [Example(id=str(i), text=f"goal match {i}", choices=["Sport"] if i % 2 else []) for i in range(10)]
    model = build_model(MULTILABEL, tiny_model_dir, LABELS, mode="frozen").fit(train)
    probs = model.predict_proba([Example(id="x", text="bank price")])
    assert probs[0, 1, 1] == pytest.approx(1 / 12) and probs[0, 2, 1] == pytest.approx(1 / 12)


def test_a_fine_tuned_multilabel_model_learns_with_a_sigmoid_head_and_reloads(tiny_model_dir, tmp_path):
    train = toy_topics(40, seed=3)
    config = TrainingConfig(epochs=1, min_steps=30, learning_rate=5e-3, batch_size=8, seed=0)
    model = build_model(MULTILABEL, tiny_model_dir, LABELS, config).fit(train)
    assert model.model_.multi_label  # a sigmoid per class, binary cross-entropy
    assert model.train_losses_[-1] < model.train_losses_[0]
    pool = [e.without_labels() for e in toy_topics(12, seed=4, start=500)]
    probs = model.predict_proba(pool)
    assert probs.shape == (12, 3, 2) and np.allclose(probs.sum(axis=-1), 1.0)
    again = load_model(model.save(tmp_path / "ft"))
    assert np.allclose(again.predict_proba(pool), probs, atol=1e-5)
    pseudo = pseudo_label(again, pool)
    assert all(set(labels) <= set(LABELS) for labels in pseudo.labels)
    assert pseudo.confidences.shape == (12,) and (0.5 <= pseudo.confidences).all()


# --- no kind branches outside the kinds ----------------------------------------------------------

BRANCH = re.compile(r"""kind\s*[!=]=\s*(CLASSIFICATION|TAGGING|MULTILABEL|["'](classification|tagging|multilabel)["'])""")


def test_no_module_outside_the_kinds_branches_on_a_task_kind():
    root = Path(__file__).resolve().parents[2]
    found = []
    for package in ("al_core", "ml_backend", "plasm_export", "simulate", "benchmarks", "testkit"):
        for path in (root / package).rglob("*.py"):
            if "kinds" in path.parts:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if BRANCH.search(line):
                    found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert not found, "a task-kind branch belongs in al_core/kinds:\n" + "\n".join(found)
    assert set(KINDS) == {"classification", "multilabel", "tagging"}


# --- the backend, plasm-export and the simulator -------------------------------------------------


def test_the_backend_trains_on_a_multilabel_project_and_publishes_several_choices(tmp_path, fake_ls, tiny_model_dir):
    from ml_backend.app import create_app
    from ml_backend.jobs.run import run_retrain
    from ml_backend.jobs.status import MemoryState

    fake, url = fake_ls
    fake.add_project(8, MULTI_CONFIG)
    examples = toy_topics(30, seed=5)
    ids = fake.add_tasks(8, [e.text for e in examples])
    for task_id, example in list(zip(ids, examples))[:16]:
        fake.choose(task_id, example.choices, from_name="topics")
    settings = backend_settings(url, tmp_path / "store", tiny_model_dir, acquisition_mode="frozen")
    summary = run_retrain(8, settings, MemoryState())
    assert summary["status"] == "trained" and summary["n_labeled"] == 16
    assert summary["quality"]["metric"] == "macro_f1"
    published = fake.predictions_of(summary["version"])
    assert {p["task"] for p in published} == set(ids[16:])
    several = [p for p in published if p["result"] and len(p["result"][0]["value"]["choices"]) > 1]
    assert several, "no text was given more than one class"
    for prediction in published:
        assert 0.0 <= prediction["score"] <= 1.0
        for r in prediction["result"]:
            assert r["type"] == "choices" and set(r["value"]["choices"]) <= set(LABELS)
    client = create_app(settings).test_client()
    answer = client.post(
        "/predict",
        json={"project": "8.1", "label_config": MULTI_CONFIG, "tasks": [{"id": ids[20], "data": {"text": "goal bank"}}]},
    )
    assert answer.status_code == 200 and answer.json["results"][0]["model_version"] == summary["version"]


def _export(tmp_path: Path, n_labeled: int) -> tuple[Path, Path]:
    tasks = []
    for i, example in enumerate(toy_topics(40, seed=6)):
        task = {"id": i + 1, "data": {"text": example.text}, "annotations": []}
        if i < n_labeled:
            task["annotations"] = [{"id": i + 1, "result": prediction_result(example, CONFIG) or []}]
        tasks.append(task)
    export, config = tmp_path / "export.json", tmp_path / "config.xml"
    export.write_text(json.dumps(tasks))
    config.write_text(MULTI_CONFIG)
    return export, config


def test_plasm_export_writes_a_multilabel_training_set(tiny_model_dir, tmp_path):
    from plasm_export.cli import main

    export, config = _export(tmp_path, 24)
    out = tmp_path / "out"
    code = main(
        ["--export", str(export), "--label-config", str(config), "--teacher", str(tiny_model_dir), "--out", str(out),
         "--filter", "uncertainty", "--format", "all", "--epochs", "1", "--min-steps", "4", "--no-progress"]
    )
    assert code == 0
    rows = [json.loads(line) for line in (out / "all_tasks.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and all(isinstance(r["labels"], list) for r in rows)
    gold = {r["id"]: r["labels"] for r in rows if r["source"] == "gold"}
    assert len(gold) == 24
    report = json.loads((out / "report.json").read_text())
    assert report["kind"] == MULTILABEL and report["teacher"]["metric"] == "micro_f1"
    header, *lines = (out / "train.csv").read_text().splitlines()
    assert header.startswith("id,text,label") and any("|" in line for line in lines)
    imported = json.loads((out / "label_studio_import.json").read_text())
    assert any(len(t["annotations"][0]["result"][0]["value"]["choices"]) > 1 for t in imported if t.get("annotations") and t["annotations"][0]["result"])


def test_the_simulator_runs_a_multilabel_dataset_with_micro_and_macro_f1(tiny_model_dir, tmp_path):
    from al_core.readers import write_jsonl
    from simulate.config import parse_config
    from simulate.runner import Simulation

    write_jsonl(toy_topics(60, seed=7), tmp_path / "pool.jsonl")
    write_jsonl(toy_topics(30, seed=8, start=100), tmp_path / "test.jsonl")
    config = {
        "name": "multilabel-toy",
        "output_dir": str(tmp_path / "runs"),
        "dataset": {
            "pool_path": str(tmp_path / "pool.jsonl"),
            "test_path": str(tmp_path / "test.jsonl"),
            "options": {"id_field": "id"},
        },
        "acquisition": {"name": "tiny", "model": str(tiny_model_dir)},
        "acquisition_mode": {"mode": "frozen"},
        "successors": [{"name": "matched", "kind": "acquisition"}],
        "strategy": "entropy",
        "seed_set": {"count": 10},
        "batch": {"count": 10},
        "iterations": 2,
        "seeds": [0],
    }
    folder = Simulation(parse_config(config), progress=False).run()
    records = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    assert [r["labeled_size"] for r in records] == [10, 20, 30]
    assert all(r["metric"] == "macro_f1" for r in records)
    assert all(0.0 <= r["acquisition_score"] <= 1.0 and 0.0 <= r["acquisition_micro_f1"] <= 1.0 for r in records)
    assert all(r["successor_micro_f1"] == r["acquisition_micro_f1"] for r in records)
    assert all(sorted(r["successor_recall"]) == sorted(LABELS) for r in records)
    assert records[-1]["acquisition_score"] > 0.5  # it learns the toy classes
