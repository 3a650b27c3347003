"""Task JSON <-> examples, and predictions back in Label Studio's shape."""

import numpy as np
import pytest

from al_core.ls_format import parse_label_config, task_to_example
from ml_backend.jobs.retrain_steps import pool_predictions
from ml_backend.labelstudio.gateway import annotated, split_tasks
from ml_backend.labelstudio.mirror import TaskMirror
from ml_backend.predictor import regions, untrained_answer
from testkit.fake_label_studio import CLS_CONFIG, NER_CONFIG

CLS = parse_label_config(CLS_CONFIG)
NER = parse_label_config(NER_CONFIG)


def task(task_id, text="Alice went to Paris .", annotations=()):
    return {"id": task_id, "data": {"text": text}, "annotations": list(annotations)}


def test_cancelled_annotations_leave_a_task_in_the_pool():
    skipped = task(1, annotations=[{"id": 1, "was_cancelled": True, "result": []}])
    done = task(2, annotations=[{"id": 2, "was_cancelled": False, "result": []}])
    labeled, unlabeled = split_tasks([skipped, done, task(3)])
    assert [t["id"] for t in labeled] == [2]
    assert [t["id"] for t in unlabeled] == [1, 3]
    assert not annotated({"id": 4})


def test_ner_prediction_regions_are_character_spans_of_the_text():
    text = "Alice Smith went to Paris ."
    example = task_to_example(task(5, text), NER)
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    tags = ["B-PER", "I-PER", "O", "O", "B-LOC", "O"]
    probs = np.stack([np.eye(len(labels))[labels.index(t)] for t in tags])
    result = regions(example, probs, labels, NER)
    assert [
        (r["value"]["start"], r["value"]["end"], r["value"]["text"], r["value"]["labels"]) for r in result
    ] == [
        (0, 11, "Alice Smith", ["PER"]),
        (20, 25, "Paris", ["LOC"]),
    ]
    assert all(r["from_name"] == "label" and r["to_name"] == "text" and r["type"] == "labels" for r in result)


def test_annotated_spans_round_trip_to_word_tags():
    text = "Alice Smith went to Paris ."
    result = [
        {
            "from_name": "label",
            "to_name": "text",
            "type": "labels",
            "value": {"start": 0, "end": 11, "text": "Alice Smith", "labels": ["PER"]},
        },
        {
            "from_name": "label",
            "to_name": "text",
            "type": "labels",
            "value": {"start": 20, "end": 25, "text": "Paris", "labels": ["LOC"]},
        },
    ]
    example = task_to_example(task(6, text, [{"id": 1, "result": result}]), NER)
    assert example.tags == ["B-PER", "I-PER", "O", "O", "B-LOC", "O"]
    back = regions(
        example,
        np.stack([np.eye(5)[["O", "B-PER", "I-PER", "B-LOC", "I-LOC"].index(t)] for t in example.tags]),
        ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
        NER,
    )
    assert [r["value"] for r in back] == [r["value"] for r in result]


def test_classification_region_names_the_best_class_with_its_probability():
    example = task_to_example(task(7, "good film"), CLS)
    result = regions(example, np.array([0.2, 0.8]), ["Positive", "Negative"], CLS)
    assert result == [
        {
            "from_name": "sentiment",
            "to_name": "text",
            "type": "choices",
            "value": {"choices": ["Negative"]},
            "score": 0.8,
        }
    ]


def test_every_pool_task_gets_a_prediction_fresh_ones_with_regions():
    pool = [task_to_example(task(i, "good film"), CLS) for i in (1, 2, 3)]
    scores = {"1": 0.5, "2": 0.0, "3": 0.25}  # lc informativeness: 0.5 is the most uncertain for K=2
    probs = {"1": np.array([0.5, 0.5])}  # only task 1 was re-scored this round
    out = pool_predictions(pool, scores, probs, "lc", ["Positive", "Negative"], CLS)
    assert [p["task"] for p in out] == [1, 2, 3]
    assert [p["score"] for p in out] == pytest.approx([0.0, 1.0, 0.5])
    assert out[0]["result"][0]["value"]["choices"] == ["Positive"]
    assert out[1]["result"] == [] and out[2]["result"] == []


def test_cached_tasks_keep_the_regions_they_were_last_published_with(tmp_path):
    old = [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["Negative"]}}]
    older = [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}}]
    mirror = TaskMirror(tmp_path / "mirror.sqlite")
    mirror.record_published([{"task": 2, "result": older}, {"task": 3, "result": []}])
    mirror.record_published([{"task": 2, "result": old}])
    mirror.record_published([{"task": 2, "result": []}])  # a score-only prediction keeps the regions
    previous = mirror.published_results()
    assert previous == {"2": old}
    pool = [task_to_example(task(i, "good film"), CLS) for i in (1, 2, 3)]
    out = pool_predictions(
        pool, {"1": 0.5, "2": 0.0, "3": 0.25}, {"1": np.array([0.5, 0.5])}, "lc", ["Positive", "Negative"], CLS, previous
    )
    assert out[1]["result"] == old and out[2]["result"] == []
    assert out[0]["result"][0]["value"]["choices"] == ["Positive"]


def test_untrained_answer_is_one_empty_item_per_task():
    assert untrained_answer(3) == [{"result": [], "score": 0.0, "model_version": "untrained"}] * 3
