"""PLASM engine: pseudo-labels, the drop-fraction rule, filters, TracIn on planted noise."""

from __future__ import annotations

import random

import numpy as np
import pytest

from al_core.data import Example
from al_core.exceptions import ALError
from al_core.kinds import kind_of
from al_core.plasm import (
    CheckpointRecorder,
    NoFilter,
    PseudoLabels,
    TracInFilter,
    UncertaintyFilter,
    available_filters,
    drop_fraction_from_score,
    filter_pseudo_labels,
    get_filter,
    keep_mask,
    pseudo_label,
    self_influence,
    valid_iob2,
)

POSITIVE = "good great excellent fun love best".split()
NEGATIVE = "bad awful terrible boring hate worst".split()
FILLER = "the movie film plot story actor was is very really".split()


def sentiment_examples(n: int, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = rng.sample(POSITIVE if label == "pos" else NEGATIVE, 2) + rng.sample(FILLER, 3)
        rng.shuffle(words)
        examples.append(Example(id=f"t{i}", text=" ".join(words), label=label))
    return examples


def ner_examples(n: int) -> list[Example]:
    names, places = ["john", "mary", "smith"], ["paris", "london", "berlin"]
    out = []
    for i in range(n):
        words = [names[i % 3], "was", "in", places[(i + 1) % 3], "."]
        out.append(
            Example(id=f"s{i}", text=" ".join(words), words=words, tags=["B-PER", "O", "O", "B-LOC", "O"])
        )
    return out


def tiny_config(**changes):
    from al_core.training import TrainingConfig

    base = dict(
        learning_rate=3e-3, epochs=6, batch_size=8, warmup_ratio=0.0, max_length=32, seed=0, device="cpu",
        min_steps=0, freeze_embeddings=False, group_by_length=False,
    )
    base.update(changes)
    return TrainingConfig(**base)


# -- the fraction rule and the keep mask ------------------------------------------------------


@pytest.mark.parametrize("score, fraction", [(0.9, 0.1), (1.0, 0.0), (0.0, 1.0), (1.2, 0.0), (-0.5, 1.0)])
def test_drop_fraction_is_one_minus_score_within_bounds(score, fraction):
    assert drop_fraction_from_score(score) == pytest.approx(fraction)


def test_drop_fraction_rejects_nan():
    with pytest.raises(ALError):
        drop_fraction_from_score(float("nan"))


def test_keep_mask_drops_the_highest_scores():
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.2, 0.0, 0.3, 0.8, 0.4, 0.6])
    kept = keep_mask(scores, 0.3)
    assert kept.sum() == 7
    assert set(np.flatnonzero(~kept)) == {1, 7, 3}


def test_keep_mask_rounds_and_keeps_all_at_zero():
    assert keep_mask(np.arange(7.0), 0.0).all()
    assert (~keep_mask(np.arange(7.0), 0.25)).sum() == 2  # round(1.75)
    assert not keep_mask(np.arange(3.0), 1.0).any()
    with pytest.raises(ALError):
        keep_mask(np.arange(3.0), 1.5)


# -- filters on given pseudo-labels ------------------------------------------------------------


def test_pseudo_tags_are_valid_iob2():
    assert valid_iob2(["I-PER", "I-PER", "O", "I-LOC", "B-ORG", "I-LOC"]) == [
        "B-PER",
        "I-PER",
        "O",
        "B-LOC",
        "B-ORG",
        "B-LOC",
    ]
    assert valid_iob2(["B-PER", "I-PER", "O"]) == ["B-PER", "I-PER", "O"]


def test_registry_names_and_unknown_filter():
    assert available_filters() == ["none", "uncertainty", "tracin"]
    assert isinstance(get_filter("uncertainty"), UncertaintyFilter)
    with pytest.raises(ALError, match="unknown pseudo-label filter"):
        get_filter("magic")


def test_uncertainty_filter_drops_the_least_confident():
    pool = [Example(id=str(i), text=f"text {i}") for i in range(5)]
    pseudo = PseudoLabels(
        labels=["a", "b", "a", "b", "a"], confidences=np.array([0.99, 0.4, 0.8, 0.55, 0.95])
    )
    result = filter_pseudo_labels(pool, pseudo, "classification", UncertaintyFilter(), drop_fraction=0.4)
    assert [e.id for e in result.kept_examples] == ["0", "2", "4"]
    assert [e.label for e in result.examples] == ["a", "b", "a", "b", "a"]
    assert pool[0].label is None  # the caller's examples are not changed


def test_none_filter_keeps_everything_whatever_the_fraction():
    pool = [Example(id=str(i), text="x") for i in range(4)]
    pseudo = PseudoLabels(labels=["a"] * 4, confidences=np.array([0.3, 0.5, 0.9, 0.1]))
    result = filter_pseudo_labels(pool, pseudo, "classification", NoFilter(), drop_fraction=0.5)
    assert result.kept.all() and result.drop_fraction == 0.0


# -- with a tiny random transformer ------------------------------------------------------------


def test_pseudo_label_classification_and_tagging(tiny_model_dir):
    from al_core.models import TransformerClassifier, TransformerTagger

    clf = TransformerClassifier(str(tiny_model_dir), ["pos", "neg"], tiny_config(epochs=1)).fit(
        sentiment_examples(8)
    )
    pool = [Example(id="p1", text="good fun film"), Example(id="p2", text="awful plot")]
    pseudo = pseudo_label(clf, pool, chunk_size=1)
    assert all(y in ("pos", "neg") for y in pseudo.labels)
    np.testing.assert_allclose(pseudo.confidences, clf.predict_proba(pool).max(axis=1), rtol=1e-5)

    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    tagger = TransformerTagger(str(tiny_model_dir), tags, tiny_config(epochs=1)).fit(ner_examples(6))
    sentences = [Example(id="q", text="mary was in berlin", words="mary was in berlin".split())]
    pseudo = pseudo_label(tagger, sentences)
    assert len(pseudo.labels[0]) == 4 and set(pseudo.labels[0]) <= set(tags)
    probs = tagger.predict_proba(sentences)[0]
    assert pseudo.confidences[0] == pytest.approx(np.exp(np.log(probs.max(axis=1)).mean()), rel=1e-5)


def test_checkpoint_recorder_saves_every_epoch_with_its_learning_rate(tiny_model_dir, tmp_path):
    from al_core.models import TransformerClassifier

    recorder = CheckpointRecorder(tmp_path / "ckpt")
    config = tiny_config(epochs=3, warmup_ratio=0.0)
    TransformerClassifier(str(tiny_model_dir), ["pos", "neg"], config).fit(
        sentiment_examples(16), on_checkpoint=recorder
    )
    found = CheckpointRecorder.read(tmp_path / "ckpt")
    assert [c.step for c in found] == [2, 4, 6]
    rates = [c.learning_rate for c in found]
    assert rates[0] > rates[1] > rates[2] > 0  # linear decay
    assert found == recorder.checkpoints


def test_tracin_finds_planted_label_noise(tiny_model_dir, tmp_path):
    """Flipped labels keep large gradients through training: higher self-influence on average."""
    from al_core.models import TransformerClassifier

    examples = sentiment_examples(48, seed=0)
    flipped = set(range(0, 48, 12)) | set(range(5, 48, 12))  # 8 of 48 rows, 4 of each class
    noisy = [
        Example(
            id=e.id, text=e.text, label=("neg" if e.label == "pos" else "pos") if i in flipped else e.label
        )
        for i, e in enumerate(examples)
    ]
    recorder = CheckpointRecorder(tmp_path / "ckpt")
    config = tiny_config(epochs=10, batch_size=4)
    TransformerClassifier(str(tiny_model_dir), ["pos", "neg"], config).fit(noisy, on_checkpoint=recorder)
    influence = self_influence(recorder.checkpoints, noisy, [e.label for e in noisy])
    is_flipped = np.array([i in flipped for i in range(len(noisy))])
    assert influence.shape == (48,)
    assert influence[is_flipped].mean() > 2 * influence[~is_flipped].mean()
    # through the filter: dropping 1/6 catches mostly flipped rows (chance would be 1/6)
    pseudo = PseudoLabels(labels=[e.label for e in noisy], confidences=np.ones(48))
    result = filter_pseudo_labels(noisy, pseudo, "classification", TracInFilter(recorder.checkpoints), 8 / 48)
    assert is_flipped[~result.kept].mean() >= 0.5


class _LinearHeadWrapper:
    """A model wrapper as self_influence loads it: the text of an example is the index of its
    fixed feature vector, which goes straight into a linear `classifier` head."""

    kind = "classification"
    task_kind = kind_of("classification")
    labels = ["pos", "neg"]

    def __init__(self, features, weight, bias):
        import torch

        class Model(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.features = torch.tensor(features, dtype=torch.float32)
                self.classifier = torch.nn.Linear(2, 2)
                with torch.no_grad():
                    self.classifier.weight.copy_(torch.tensor(weight))
                    self.classifier.bias.copy_(torch.tensor(bias))

            def forward(self, input_ids, **_):
                return self.classifier(self.features[input_ids[:, 0]])

        self.model_ = Model()
        self.tokenizer_ = type("Tokenizer", (), {"pad_token_id": 0})()

    def encode(self, examples, with_labels=False):
        return [{"input_ids": [int(e.text)], "labels": self.labels.index(e.label)} for e in examples]


def test_self_influence_is_the_learning_rate_weighted_squared_head_gradient():
    """For a linear head z = Wx + b under cross-entropy, the loss gradient is (p - e_y) x^T for W
    and p - e_y for b, so ||grad||^2 = ||p - e_y||^2 (||x||^2 + 1), summed with lr_t weights."""
    from al_core.plasm import Checkpoint

    x = [[1.0, 2.0], [0.0, 1.0]]  # ||x||^2 + 1: 6 and 2
    heads = {
        "zero": ([[0.0, 0.0], [0.0, 0.0]], [0.0, 0.0]),  # p = (1/2, 1/2) for every row
        "trained": ([[0.0, 0.0], [0.0, 0.0]], [float(np.log(3.0)), 0.0]),  # p = (3/4, 1/4)
    }
    checkpoints = [Checkpoint("zero", 1, 0.1), Checkpoint("trained", 2, 0.05)]
    examples = [Example(id=str(i), text=str(i)) for i in (0, 1, 0)]
    targets = ["pos", "pos", "neg"]

    influence = self_influence(
        checkpoints, examples, targets, load=lambda path: _LinearHeadWrapper(x, *heads[path])
    )

    # ||p - e_y||^2: zero head 1/2 whatever the label; trained head 1/8 for "pos", 9/8 for "neg"
    expected = [
        0.1 * 0.5 * 6 + 0.05 * 0.125 * 6,
        0.1 * 0.5 * 2 + 0.05 * 0.125 * 2,
        0.1 * 0.5 * 6 + 0.05 * 1.125 * 6,
    ]
    np.testing.assert_allclose(influence, expected, rtol=1e-6)
    assert influence[2] > influence[0]  # the label the head disagrees with scores higher


def test_tracin_on_tagging_scores_one_value_per_sentence(tiny_model_dir, tmp_path):
    from al_core.models import TransformerTagger

    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    sentences = ner_examples(12)
    recorder = CheckpointRecorder(tmp_path / "ckpt")
    TransformerTagger(str(tiny_model_dir), tags, tiny_config(epochs=4)).fit(sentences, on_checkpoint=recorder)
    wrong = [["B-LOC", "O", "O", "B-PER", "O"]] * 3  # persons and places swapped
    right = [s.tags for s in sentences[:3]]
    influence = self_influence(recorder.checkpoints, sentences[:3] * 2, right + wrong)
    assert influence.shape == (6,)
    assert influence[3:].mean() > influence[:3].mean()


def test_tracin_needs_checkpoints():
    with pytest.raises(ALError, match="checkpoint"):
        self_influence([], [Example(id="1", text="x")], ["a"])
