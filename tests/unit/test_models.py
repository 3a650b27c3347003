import numpy as np
import pytest

from al_core.data import Example
from al_core.exceptions import ModelLoadError, NotFittedError
from al_core.models import ModelOutputs, TransformerClassifier, TransformerTagger, build_model, load_model
from tests.unit.engine_fixtures import FAST, TAGS, ner_examples, sentiment_examples


def test_fit_lowers_the_loss_on_a_separable_set(tiny_model_dir):
    model = TransformerClassifier(tiny_model_dir, ["neg", "pos"], FAST).fit(sentiment_examples())
    losses = model.train_losses_
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3])
    examples = sentiment_examples(1)
    assert model.predict(examples) == [e.label for e in examples]


def test_probabilities_are_distributions_in_input_order(tiny_model_dir):
    model = TransformerClassifier(tiny_model_dir, ["neg", "pos"], FAST).fit(sentiment_examples(1))
    pool = [Example(id=str(i), text=" ".join(["movie"] * n)) for i, n in enumerate([9, 1, 5, 3, 7])]
    probs = model.predict_proba(pool)
    assert probs.shape == (5, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    one_by_one = np.vstack([model.predict_proba([e]) for e in pool])
    np.testing.assert_allclose(probs, one_by_one, atol=1e-5)


def test_save_then_load_gives_identical_probabilities(tiny_model_dir, tmp_path):
    model = TransformerClassifier(tiny_model_dir, ["neg", "pos"], FAST).fit(sentiment_examples(1))
    model.save(tmp_path / "saved")
    assert (tmp_path / "saved" / "model.safetensors").exists()
    assert not list((tmp_path / "saved").glob("*.bin"))
    loaded = load_model(tmp_path / "saved")
    assert isinstance(loaded, TransformerClassifier) and loaded.labels == ["neg", "pos"]
    examples = sentiment_examples(1)
    np.testing.assert_array_equal(model.predict_proba(examples), loaded.predict_proba(examples))


@pytest.mark.parametrize("labels", [["neg", "pos"], ["neg", "pos", "never"]])
def test_a_new_head_starts_as_the_frozen_heads_regression(tiny_model_dir, labels):
    """Linear probe, then fine-tuning: before its first step the classifier says what a logistic
    regression on the pretrained mean-pooled vectors says (a label never seen: about nothing)."""
    from al_core.models import FrozenClassifier

    train = sentiment_examples(1)
    pool = [Example(id=str(i), text=t) for i, t in enumerate(["great fun", "boring", "film"])]
    # one step at a learning rate that moves nothing: what fit starts from
    model = TransformerClassifier(tiny_model_dir, labels, FAST.replace(epochs=1, learning_rate=1e-12)).fit(train)
    frozen = FrozenClassifier(tiny_model_dir, labels, FAST).fit(train)
    started = model.predict_proba(pool)
    np.testing.assert_allclose(started, frozen.predict_proba(pool), atol=1e-4)
    if "never" in labels:
        assert started[:, 2].max() < 1e-3


def test_a_version_saved_with_a_cls_head_still_loads(tiny_model_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    model = TransformerClassifier(tiny_model_dir, ["neg", "pos"], FAST)
    model._load(model.model_name_or_path, fresh_head=True)
    model.model_ = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    model.save(tmp_path / "old")
    loaded = load_model(tmp_path / "old")
    assert type(loaded.model_) is type(model.model_)
    examples = sentiment_examples(1)
    np.testing.assert_allclose(loaded.predict_proba(examples), model.predict_proba(examples), atol=1e-6)


def test_same_seed_gives_the_same_model_on_cpu(tiny_model_dir):
    first = TransformerClassifier(tiny_model_dir, ["neg", "pos"], FAST).fit(sentiment_examples(1))
    second = TransformerClassifier(tiny_model_dir, ["neg", "pos"], FAST).fit(sentiment_examples(1))
    np.testing.assert_array_equal(first.predict_proba(sentiment_examples(1)), second.predict_proba(sentiment_examples(1)))


def test_min_steps_extends_training(tiny_model_dir):
    config = FAST.replace(epochs=1, min_steps=7)
    model = TransformerClassifier(tiny_model_dir, ["neg", "pos"], config).fit(sentiment_examples(1))
    assert len(model.train_losses_) == 7


def test_max_steps_caps_training(tiny_model_dir):
    config = FAST.replace(epochs=50, min_steps=0, max_steps=5)
    model = TransformerClassifier(tiny_model_dir, ["neg", "pos"], config).fit(sentiment_examples(1))
    assert len(model.train_losses_) == 5


def test_frozen_embeddings_stay_while_the_rest_learns(tiny_model_dir):
    reference = TransformerClassifier(tiny_model_dir, ["neg", "pos"], FAST)
    reference._load(tiny_model_dir, fresh_head=True)
    before = reference.model_.get_input_embeddings().weight.detach().clone()
    model = TransformerClassifier(tiny_model_dir, ["neg", "pos"], FAST.replace(freeze_embeddings=True))
    model.fit(sentiment_examples())
    assert np.mean(model.train_losses_[-3:]) < 0.6 * np.mean(model.train_losses_[:3])
    np.testing.assert_array_equal(model.model_.get_input_embeddings().weight.detach().numpy(), before.numpy())


def test_a_huge_text_is_cut_before_tokenizing(tiny_model_dir):
    model = TransformerClassifier(tiny_model_dir, ["neg", "pos"], FAST.replace(max_length=16))
    model.fit(sentiment_examples(1))
    short = "great movie " * 8
    huge = short + "terrible " * 1_200_000  # about 10 MB
    features = model._encode([Example(id="huge", text=huge)], with_labels=False)
    assert len(features[0]["input_ids"]) == 16
    np.testing.assert_allclose(
        model.predict_proba([Example(id="h", text=huge)]),
        model.predict_proba([Example(id="s", text=short + "terrible " * 20)]),
        atol=1e-6,
    )


def test_checkpoint_callback_runs_every_epoch(tiny_model_dir):
    seen = []
    TransformerClassifier(tiny_model_dir, ["neg", "pos"], FAST.replace(epochs=3)).fit(
        sentiment_examples(1), on_checkpoint=lambda model, step, lr: seen.append((step, lr))
    )
    assert [step for step, _ in seen] == [1, 2, 3]
    assert all(lr > 0 for _, lr in seen)


def test_embeddings_have_the_hidden_size(tiny_model_dir):
    model = TransformerClassifier(tiny_model_dir, ["neg", "pos"], FAST).fit(sentiment_examples(1))
    assert model.embed(sentiment_examples(1)).shape == (8, 32)


@pytest.mark.parametrize("kind", ["classification", "multilabel"])
def test_a_classifiers_embeddings_are_its_mean_pooled_last_layer(tiny_model_dir, kind):
    """What md and dlc read is the vector the head reads: the mean over the text's sub-tokens."""
    import torch

    labels = ["neg", "pos"]
    examples = sentiment_examples(1)
    train = examples if kind == "classification" else [
        Example(id=e.id, text=e.text, choices=[e.label]) for e in examples
    ]
    model = build_model(kind, tiny_model_dir, labels, FAST).fit(train)
    # texts of different lengths, so padding would show in a mean taken over the whole row
    pool = [Example(id="a", text="good"), Example(id="b", text="bad movie plot story the film actor was long")]
    embeddings = model.infer(pool, probs=False, embeddings=True).embeddings
    module = model.model_
    module.eval()
    for example, vector in zip(pool, embeddings, strict=True):
        ids = model.tokenizer_(example.text, return_tensors="pt")
        with torch.no_grad():
            hidden = module(**ids, output_hidden_states=True).hidden_states[-1][0]
        np.testing.assert_allclose(vector, hidden.mean(0).numpy(), atol=1e-5)
        assert not np.allclose(vector, hidden[0].numpy(), atol=1e-3)  # not the [CLS] vector


def test_a_taggers_embeddings_stay_its_cls_vector(tiny_model_dir):
    import torch

    model = TransformerTagger(tiny_model_dir, TAGS, FAST).fit(ner_examples(4))
    example = Example(id="x", text="john lives in paris", words=["john", "lives", "in", "paris"])
    vector = model.embed([example])[0]
    ids = model.tokenizer_(example.text, return_tensors="pt")
    with torch.no_grad():
        hidden = model.model_(**ids, output_hidden_states=True).hidden_states[-1][0]
    np.testing.assert_allclose(vector, hidden[0].numpy(), atol=1e-5)


def test_word_alignment_reads_the_first_sub_token(tiny_model_dir):
    model = TransformerTagger(tiny_model_dir, TAGS, FAST)
    model._load(str(tiny_model_dir), fresh_head=True)
    # "unbelievable" splits into un ##bel ##iev ##able in the test vocabulary
    example = Example(id="x", text="john unbelievable paris", words=["john", "unbelievable", "paris"])
    features = model._encode([example], with_labels=False)
    tokens = model.tokenizer_.convert_ids_to_tokens(features[0]["input_ids"])
    assert tokens == ["[CLS]", "john", "un", "##bel", "##iev", "##able", "paris", "[SEP]"]
    assert features[0]["first_token"] == [1, 2, 6]


def test_tagger_learns_tags_and_gives_one_row_per_word(tiny_model_dir):
    model = TransformerTagger(tiny_model_dir, TAGS, FAST.replace(epochs=15)).fit(ner_examples())
    examples = ner_examples(1)
    probs = model.predict_proba(examples)
    assert [p.shape for p in probs] == [(len(e.words), len(TAGS)) for e in examples]
    predicted = model.predict(examples)
    correct = sum(p == t for e, pred in zip(examples, predicted) for p, t in zip(pred, e.tags))
    assert correct / sum(len(e.tags) for e in examples) > 0.8


def test_tagger_words_cut_by_max_length_are_outside(tiny_model_dir):
    model = TransformerTagger(tiny_model_dir, TAGS, FAST.replace(max_length=4)).fit(ner_examples(1))
    words = ["john", "smith", "said", "in", "paris", "today"]
    probs = model.predict_proba([Example(id="long", text=" ".join(words), words=words)])[0]
    assert probs.shape == (6, len(TAGS))
    np.testing.assert_array_equal(probs[3:], np.eye(len(TAGS))[[0, 0, 0]])


def test_errors_are_named(tiny_model_dir, tmp_path):
    with pytest.raises(NotFittedError):
        TransformerClassifier(tiny_model_dir, ["a", "b"]).predict_proba([Example(id="1", text="x")])
    with pytest.raises(ModelLoadError):
        TransformerClassifier(tmp_path / "missing", ["a", "b"]).fit([Example(id="1", text="x", label="a")])
    with pytest.raises(ModelLoadError, match="not a saved model"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match="not one of"):
        TransformerClassifier(tiny_model_dir, ["a", "b"], FAST).fit([Example(id="1", text="x", label="c")])
    with pytest.raises(ValueError, match="unknown task kind"):
        build_model("regression", tiny_model_dir, ["a"])


@pytest.mark.parametrize("kind", ["classification", "tagging"])
def test_outputs_of_chunks_saved_loaded_and_joined_are_one_pass_over_all(tiny_model_dir, tmp_path, kind):
    if kind == "classification":
        model = TransformerClassifier(tiny_model_dir, ["neg", "pos"], FAST).fit(sentiment_examples(1))
        examples = [e.without_labels() for e in sentiment_examples(1)]
    else:
        model = TransformerTagger(tiny_model_dir, TAGS, FAST).fit(ner_examples(1))
        examples = [e.without_labels() for e in ner_examples(1)]
    whole = model.infer(examples, probs=True, embeddings=True)
    parts = []
    for n, start in enumerate(range(0, len(examples), 3)):
        model.infer(examples[start : start + 3], probs=True, embeddings=True).save(tmp_path / f"{n}.npz")
        parts.append(ModelOutputs.load(tmp_path / f"{n}.npz"))
    joined = ModelOutputs.concat(parts)
    assert joined.n == whole.n == len(examples) and len(parts) > 1
    np.testing.assert_allclose(joined.embeddings, whole.embeddings, atol=1e-5)
    if kind == "classification":
        np.testing.assert_allclose(joined.probs, whole.probs, atol=1e-5)
    else:
        assert [p.shape for p in joined.probs] == [p.shape for p in whole.probs]
        for mine, theirs in zip(joined.probs, whole.probs, strict=True):
            np.testing.assert_allclose(mine, theirs, atol=1e-5)


def test_a_class_balanced_head_predicts_a_rare_class_the_plain_head_misses():
    from al_core.models.heads import LinearHead

    rng = np.random.default_rng(0)
    centers = {0: [0.0, 0.0], 1: [4.0, 0.0], 2: [1.5, 1.5]}  # the rare class 2 sits between the others
    counts = {0: 60, 1: 60, 2: 4}
    vectors = np.vstack([np.array(centers[k]) + rng.normal(0, 1.0, size=(n, 2)) for k, n in counts.items()])
    targets = np.concatenate([[k] * n for k, n in counts.items()])
    rare = np.array(centers[2]) + rng.normal(0, 1.0, size=(200, 2))
    recall = {
        balanced: float((LinearHead.fit(vectors, targets, 1.0, 0, balanced).probs(rare, 3).argmax(1) == 2).mean())
        for balanced in (False, True)
    }
    assert recall[False] < 0.15 and recall[True] > 0.35


@pytest.mark.parametrize("multilabel", [False, True])
def test_a_head_fits_with_numpys_blas_on_one_thread_and_gives_the_threads_back(monkeypatch, multilabel):
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_info, threadpool_limits

    from al_core.models.heads import BinaryHeads, LinearHead

    def blas_threads() -> list[int]:
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    seen: list[list[int]] = []
    fit = LogisticRegression.fit
    monkeypatch.setattr(LogisticRegression, "fit", lambda self, *a, **k: seen.append(blas_threads()) or fit(self, *a, **k))
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 8))
    targets = (vectors[:, :2] > 0).astype(int) if multilabel else (vectors[:, 0] > 0).astype(int)
    with threadpool_limits(limits=2, user_api="blas"):  # as on a 2-core machine, whatever this one has
        before = blas_threads()
        (BinaryHeads if multilabel else LinearHead).fit(vectors, targets, 1.0, 0)
        assert blas_threads() == before
    assert before and set(before) == {2}
    assert seen and all(threads and set(threads) == {1} for threads in seen)


@pytest.mark.parametrize("kind,balances", [("classification", True), ("multilabel", False), ("tagging", False)])
@pytest.mark.parametrize("setting", [True, False])
def test_the_frozen_head_balances_its_classes_as_the_setting_says(tiny_model_dir, monkeypatch, kind, balances, setting):
    import dataclasses

    from al_core.models import heads

    asked = []
    for head in (heads.LinearHead, heads.BinaryHeads):
        monkeypatch.setattr(
            head, "fit", classmethod(lambda cls, *args, _fit=head.fit.__func__: asked.append(args[-1]) or _fit(cls, *args))
        )
    if kind == "classification":
        examples, labels = sentiment_examples(2), ["neg", "pos"]
    elif kind == "multilabel":
        examples = [Example(id=str(i), text=t, choices=c) for i, (t, c) in enumerate([("a b", ["x"]), ("c d", ["x", "y"]), ("e f", [])])]
        labels = ["x", "y"]
    else:
        examples, labels = ner_examples(1), TAGS
    config = dataclasses.replace(FAST, balance_classes=setting)
    build_model(kind, tiny_model_dir, labels, config, "frozen").fit(examples)
    assert asked == [balances and setting]


@pytest.mark.parametrize("setting", [True, False])
def test_fine_tuning_weighs_its_classes_as_the_setting_says(tiny_model_dir, setting):
    import dataclasses

    examples = sentiment_examples(2)
    examples = examples + [Example(id=f"x{i}", text=e.text, label=e.label) for i, e in enumerate(examples) if e.label == "pos"] * 2
    config = dataclasses.replace(FAST, balance_classes=setting)
    model = build_model("classification", tiny_model_dir, ["neg", "pos", "unused"], config, "finetune").fit(examples)
    weights = model.model_.class_weights
    if not setting:
        assert weights is None
        return
    n_pos = sum(e.label == "pos" for e in examples)
    n_neg = len(examples) - n_pos
    assert n_pos > n_neg  # skewed, so the weights differ
    # each labeled class weighs n / (2 x its count) in total: the rare class more; a class with no text 1
    np.testing.assert_allclose(weights.numpy(), [len(examples) / (2 * n_neg), len(examples) / (2 * n_pos), 1.0], rtol=1e-6)
    multilabel = build_model("multilabel", tiny_model_dir, ["x", "y"], config, "finetune").fit(
        [Example(id="a", text="a b", choices=["x"]), Example(id="b", text="c d", choices=["x", "y"])]
    )
    assert multilabel.model_.class_weights is None
