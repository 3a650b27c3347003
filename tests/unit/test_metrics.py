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
