import numpy as np
import pytest

from al_core.metrics import accuracy, span_f1


def test_accuracy():
    assert accuracy(["a", "b", "a", "c"], ["a", "b", "c", "c"]) == 0.75
    with pytest.raises(ValueError):
        accuracy(["a"], [])


def test_span_f1_is_strict():
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "O"]]  # PER span cut short: wrong under strict matching
    result = span_f1(true, pred)
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["per_type"] == {"LOC": 1.0, "ORG": 1.0, "PER": 0.0}


def test_span_f1_rejects_misaligned_input():
    with pytest.raises(ValueError, match="same sentences"):
        span_f1([["O", "O"]], [["O"]])


# --- every class seen: macro F1 and the per-class table, computed by hand ----------------------


def test_classification_report_by_hand_a_class_never_predicted_scores_zero_and_stays_in_the_table():
    from al_core.kinds import kind_of

    gold = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "a", "b", "b", "a", "a"]  # c is never predicted
    report = kind_of("classification").report(gold, pred, ["a", "b", "c", "d"])
    # a: predicted 4 times, 2 right, 3 in gold -> P 1/2, R 2/3, F1 4/7; b: P 1/2, R 1/2, F1 1/2; c: 0
    a, b, c = report["per_label"]["a"], report["per_label"]["b"], report["per_label"]["c"]
    assert (a["precision"], a["recall"], a["f1"], a["support"]) == pytest.approx((0.5, 2 / 3, 4 / 7, 3))
    assert (b["precision"], b["recall"], b["f1"], b["support"]) == pytest.approx((0.5, 0.5, 0.5, 2))
    assert c == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    # d has no example and no prediction: listed, and left out of the macro mean
    assert report["per_label"]["d"]["support"] == 0 and list(report["per_label"]) == ["a", "b", "c", "d"]
    assert report["metric"] == "macro_f1"
    assert report["value"] == pytest.approx((4 / 7 + 1 / 2 + 0) / 3)
    assert report["figures"] == {"macro_f1": pytest.approx((4 / 7 + 1 / 2) / 3), "accuracy": pytest.approx(0.5)}
    assert list(report["figures"]) == ["macro_f1", "accuracy"]  # the headline first
    assert report["worst"] == "c"
    kind = kind_of("classification")
    assert kind.score(gold, pred) == pytest.approx(report["value"])
    assert kind.scores(gold, pred) == report["figures"]


def test_accuracy_hides_a_rare_class_that_macro_f1_shows():
    from al_core.kinds import kind_of

    gold = ["common"] * 18 + ["rare"] * 2
    pred = ["common"] * 20
    report = kind_of("classification").report(gold, pred, ["common", "rare"])
    assert report["figures"]["accuracy"] == pytest.approx(0.9)
    assert report["value"] == pytest.approx((36 / 38 + 0) / 2)  # common: P 18/20, R 1, F1 36/38
    assert report["per_label"]["rare"]["recall"] == 0.0 and report["worst"] == "rare"


def test_multilabel_report_by_hand():
    from al_core.kinds import kind_of

    gold = [["a", "b"], ["a"], ["b"], []]
    pred = [["a"], ["a", "c"], ["b"], []]
    report = kind_of("multilabel").report(gold, pred, ["a", "b", "c", "d"])
    # a: 2/2 right; b: gold twice, predicted once (right) -> P 1, R 1/2, F1 2/3; c: a false alarm -> 0
    assert report["per_label"]["b"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert report["per_label"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert report["per_label"]["d"]["support"] == 0
    assert report["metric"] == "macro_f1" and list(report["figures"]) == ["macro_f1", "micro_f1"]
    assert report["value"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    # micro: 3 right, 1 missed (b), 1 wrong (c) -> P 3/4, R 3/4
    assert report["figures"]["micro_f1"] == pytest.approx(0.75)
    assert report["worst"] == "b"  # c has no gold example: not the worst of the learned classes


def test_span_report_per_type_and_worst_type():
    from al_core.kinds import kind_of

    true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-LOC"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "O", "O"]]  # PER cut short, one LOC missed
    report = kind_of("tagging").report(true, pred, ["PER", "LOC", "ORG", "MISC"])
    table = report["per_label"]
    assert table["PER"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert table["LOC"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert table["ORG"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert table["MISC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # micro: 2 right of 3 predicted spans and of 4 gold spans -> P 2/3, R 1/2, F1 4/7
    assert report["metric"] == "span_f1" and report["value"] == pytest.approx(4 / 7)
    assert report["worst"] == "PER"
    assert span_f1(true, pred)["per_type"] == {"LOC": pytest.approx(2 / 3), "ORG": 1.0, "PER": 0.0}
    assert kind_of("tagging").config_labels(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]) == ["PER", "LOC"]


def test_the_resampled_macro_f1_is_the_reports_on_every_resample():
    from al_core.metrics import class_report, resampled_macro_f1

    rng = np.random.default_rng(4)
    labels = ["a", "b", "c", "never"]
    y_true = list(rng.choice(["a", "b", "c"], size=40, p=[0.7, 0.25, 0.05]))
    y_pred = [y if rng.random() < 0.6 else str(rng.choice(["a", "b", "c"])) for y in y_true]
    draws = rng.integers(0, 40, size=(200, 40))
    fast = resampled_macro_f1(y_true, y_pred, labels, draws)
    slow = [class_report([y_true[i] for i in row], [y_pred[i] for i in row], labels)["macro_f1"] for row in draws]
    assert np.allclose(fast, slow)
    assert len(set(np.round(fast, 6))) > 20  # the resamples differ: the check compares many values
