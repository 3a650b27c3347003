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
