"""Model versions on disk (atomic promotion, pruning, safe names) and the file score cache."""

import pytest

from al_core.ups import CachedScore
from ml_backend.storage.layout import InvalidNameError, ModelDirLayout
from ml_backend.storage.store import FileScoreCache, VersionStore, version_name


def write_marker(folder):
    (folder / "weights.bin").write_text("w")


def test_versions_are_promoted_and_only_the_last_k_kept(tmp_path):
    store = VersionStore(tmp_path, keep=2)
    assert store.current_version(5) is None and store.next_iteration(5) == 0
    names = []
    for i in range(4):
        name = version_name(5, i + 1)
        store.save_version(5, name, i, write_marker, {"n_labeled": i})
        names.append(name)
        assert store.current_version(5) == name
    assert store.versions(5) == names[-2:]
    assert store.next_iteration(5) == 4
    assert store.meta(5, names[-1])["n_labeled"] == 3
    assert not list((tmp_path / "5").glob(".staging-*"))


def test_pruning_a_version_drops_the_vectors_its_encoder_handed_over(tmp_path):
    import numpy as np

    from al_core.models.embedding_cache import SqliteEmbeddingCache, encoder_prefix

    store = VersionStore(tmp_path, keep=1)
    first, second = version_name(5, 1), version_name(5, 2)
    store.save_version(5, first, 0, write_marker, {})
    cache = SqliteEmbeddingCache(store.layout.embeddings_file(5))
    vector = np.ones(4, dtype=np.float32)
    owned = {encoder_prefix(store.version_dir(5, first).resolve()) + f"t{i}": vector for i in range(3)}
    pretrained = {encoder_prefix("/models/minilm-l6") + f"t{i}": vector for i in range(3)}
    cache.set_many(owned | pretrained)
    store.save_version(5, second, 1, write_marker, {})  # keep=1: the first version is pruned
    assert store.versions(5) == [second]
    assert cache.present(owned) == set() and cache.present(pretrained) == set(pretrained)


def test_delete_prefix_drops_one_encoders_vectors_only(tmp_path):
    import numpy as np

    from al_core.models.embedding_cache import MemoryEmbeddingCache, SqliteEmbeddingCache, encoder_prefix

    a, b = encoder_prefix("/enc/a"), encoder_prefix("/enc/b")
    assert a != b and a.endswith(":")
    for cache in (MemoryEmbeddingCache(), SqliteEmbeddingCache(tmp_path / "e.sqlite")):
        cache.set_many({f"{p}{i}": np.zeros(2, dtype=np.float32) for p in (a, b) for i in range(700)})
        assert cache.delete_prefix(a) == 700
        assert len(cache) == 700 and cache.present([f"{b}0", f"{a}0"]) == {f"{b}0"}


def test_a_failed_write_leaves_the_promoted_version_alone(tmp_path):
    store = VersionStore(tmp_path)
    good = version_name(5, 1)
    store.save_version(5, good, 0, write_marker, {})

    def broken(folder):
        raise OSError("disk full")

    with pytest.raises(OSError):
        store.save_version(5, version_name(5, 2), 1, broken, {})
    assert store.current_version(5) == good and store.versions(5) == [good]
    assert not list((tmp_path / "5").glob(".staging-*"))


@pytest.mark.parametrize("project", ["../x", "1/2", "", "a"])
def test_project_ids_cannot_escape_the_model_folder(tmp_path, project):
    with pytest.raises(InvalidNameError):
        ModelDirLayout(tmp_path).project_dir(project)


@pytest.mark.parametrize("version", ["../../etc", "5-v1-../x", "6-v1-20260101T000000Z", "untrained"])
def test_version_names_cannot_escape_their_project(tmp_path, version):
    with pytest.raises(InvalidNameError):
        VersionStore(tmp_path).version_dir(5, version)


def test_file_score_cache_survives_a_restart(tmp_path):
    path = tmp_path / "scores.sqlite"
    cache = FileScoreCache(path)
    cache.set_many({str(i): CachedScore(i / 10, "5-v1", 0) for i in range(1200)})
    cache.delete_many(["3", "4"])
    reopened = FileScoreCache(path)
    found = reopened.get_many([str(i) for i in range(1200)] + ["nope"])
    assert len(found) == 1198 and found["7"] == CachedScore(0.7, "5-v1", 0)
    assert len(reopened.all()) == 1198
