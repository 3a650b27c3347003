"""The cold-start order and the team-diverse serving order (al_core.ordering) on toy vectors."""

import numpy as np

from al_core.ordering import cold_start_order, diverse_order, typicality


def clusters(k: int, per: int, dim: int = 16, spread: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k well separated clusters of `per` rows each, cluster i's rows first, and each row's cluster."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:k] * 5
    rows = np.concatenate([c + spread * rng.standard_normal((per, dim)) for c in centres])
    return rows, np.repeat(np.arange(k), per)


def test_cold_start_first_k_tasks_hit_k_clusters():
    rows, cluster = clusters(k=6, per=30)
    order = cold_start_order(rows, count=6, seed=0)
    assert len(order) == 6
    assert sorted(cluster[order]) == list(range(6))


def test_cold_start_takes_a_clusters_typical_task_not_its_outlier():
    rows, _ = clusters(k=1, per=40)
    rows[7] += 2.0  # far from the rest
    dense = int(np.argmax(typicality(rows / np.linalg.norm(rows, axis=1, keepdims=True))))
    assert cold_start_order(rows, count=1) == [dense]
    assert dense != 7


def test_cold_start_largest_cluster_first_and_count_bounded_by_rows():
    rows = np.concatenate([clusters(k=1, per=50)[0], clusters(k=2, per=5, seed=1)[0][5:]])
    cluster = np.array([0] * 50 + [1] * 5)
    order = cold_start_order(rows, count=2)
    assert cluster[order].tolist() == [0, 1]
    assert sorted(cold_start_order(rows[:3], count=10)) == [0, 1, 2]


def test_no_duplicate_pair_within_a_team():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((20, 32))
    # a ranking where each task's near-duplicate stands right behind it
    ranked = np.repeat(base, 2, axis=0) + 1e-4 * rng.standard_normal((40, 32))
    team = 5
    order = diverse_order(ranked, team=team)
    assert sorted(order) == list(range(40))
    pair = [i // 2 for i in order]
    for start in range(len(order) - team + 1):
        if start + team <= 20:  # while distinct tasks are left to put between the pairs
            window = pair[start : start + team]
            assert len(set(window)) == team, (start, window)
    # the ranking without the diverse order has a pair in its first two places
    assert len({i // 2 for i in range(team)}) < team


def test_one_annotator_keeps_the_ranking():
    rows, _ = clusters(k=3, per=4)
    assert diverse_order(rows, team=1) == list(range(12))


def test_diverse_order_keeps_to_the_top_of_the_ranking():
    rows, _ = clusters(k=4, per=25)  # ranking: cluster 0 first, then 1, 2, 3
    order = diverse_order(rows, team=2, horizon=6)
    # two consecutive places never share a cluster only when the horizon reaches another cluster:
    # inside cluster 0's block there is nothing else to take, so the ranking stands
    assert order[:5] == [0, 1, 2, 3, 4]


def test_cold_start_skips_clusters_already_labeled():
    rows, cluster = clusters(k=4, per=10)
    labeled = np.zeros(40, dtype=bool)
    labeled[[3, 25]] = True  # clusters 0 and 2 are covered
    order = cold_start_order(rows, count=4, labeled=labeled)
    assert sorted(cluster[order]) == [1, 3]
    assert not labeled[order].any()


def test_encoder_vectors_read_what_a_frozen_model_of_the_folder_cached(tiny_model_dir):
    from al_core.models import FrozenClassifier, FrozenTagger, MemoryEmbeddingCache, encoder_vectors
    from tests.unit.engine_fixtures import FAST, TAGS, ner_examples, sentiment_examples

    class Counting(MemoryEmbeddingCache):
        writes = 0

        def set_many(self, entries):
            self.writes += len(entries)
            super().set_many(entries)

    texts = sentiment_examples(1)
    cache = Counting()
    model = FrozenClassifier(tiny_model_dir, ["neg", "pos"], FAST, cache)
    own = model.vectors(texts)
    written = cache.writes
    # the same folder, kind and length limit: the frozen model's vectors, from its cache
    vectors = encoder_vectors("classification", tiny_model_dir, ["neg", "pos"], FAST, cache)(texts)
    assert cache.writes == written and all(np.array_equal(a, b) for a, b in zip(vectors, own, strict=True))
    # a sentence: one vector, the mean over its words
    sentences = ner_examples(1)
    tagger = FrozenTagger(tiny_model_dir, TAGS, FAST)
    per_word = tagger.vectors(sentences)
    summary = encoder_vectors("tagging", tiny_model_dir, TAGS, FAST)(sentences)
    assert all(v.shape == (m.shape[1],) for v, m in zip(summary, per_word, strict=True))
    assert np.allclose(summary[0], np.nanmean(per_word[0], axis=0), atol=1e-6)
