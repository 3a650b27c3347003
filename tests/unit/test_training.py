import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from al_core.models import TransformerClassifier
from al_core.training import LENGTH_GROUP_BATCHES, TrainingConfig, epoch_batches
from tests.unit.engine_fixtures import FAST, sentiment_examples


def padded_tokens(batches, lengths) -> int:
    """Tokens a step computes after padding each batch to its longest row."""
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 300), min_size=1, max_size=900),
    batch_size=st.integers(1, 40),
    grouped=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_an_epoch_takes_every_row_once_in_batches_no_larger_than_asked(lengths, batch_size, grouped, seed):
    config = TrainingConfig(batch_size=batch_size, group_by_length=grouped)
    batches = epoch_batches(lengths, config, np.random.default_rng(seed))
    assert sorted(int(i) for b in batches for i in b) == list(range(len(lengths)))
    assert all(1 <= len(b) <= batch_size for b in batches)


def test_without_grouping_an_epoch_is_one_permutation_cut_in_order():
    lengths = list(range(100))
    batches = epoch_batches(lengths, TrainingConfig(batch_size=16, group_by_length=False), np.random.default_rng(7))
    expected = np.random.default_rng(7).permutation(100)
    np.testing.assert_array_equal(np.concatenate(batches), expected)


def test_grouping_by_length_pads_far_less_and_still_mixes_the_set():
    rng = np.random.default_rng(0)
    lengths = list(rng.integers(10, 128, size=2000))
    config = TrainingConfig(batch_size=16, group_by_length=False)
    plain = epoch_batches(lengths, config, np.random.default_rng(1))
    grouped = epoch_batches(lengths, config.replace(group_by_length=True), np.random.default_rng(1))
    assert padded_tokens(grouped, lengths) < 0.8 * padded_tokens(plain, lengths)
    # batches are not served shortest to longest: the order of lengths is shuffled
    longest = [max(lengths[i] for i in b) for b in grouped]
    assert not (longest == sorted(longest) or longest == sorted(longest, reverse=True))
    # chunks are drawn from a permutation, not cut from consecutive rows: a batch's rows then lie
    # further apart than one chunk's width, which consecutive chunks would never allow
    chunk_width = config.batch_size * LENGTH_GROUP_BATCHES
    spreads = [int(b.max() - b.min()) for b in grouped if len(b) > 1]
    assert np.median(spreads) > chunk_width


def test_two_epochs_are_grouped_differently():
    lengths = list(np.random.default_rng(0).integers(10, 128, size=400))
    config = TrainingConfig(batch_size=16, group_by_length=True)
    rng = np.random.default_rng(3)
    first, second = epoch_batches(lengths, config, rng), epoch_batches(lengths, config, rng)
    assert [list(b) for b in first] != [list(b) for b in second]


def test_a_model_learns_with_batches_grouped_by_length(tiny_model_dir):
    model = TransformerClassifier(tiny_model_dir, ["neg", "pos"], FAST.replace(group_by_length=True))
    model.fit(sentiment_examples())
    assert np.mean(model.train_losses_[-3:]) < 0.6 * np.mean(model.train_losses_[:3])
    examples = sentiment_examples(1)
    assert model.predict(examples) == [e.label for e in examples]
