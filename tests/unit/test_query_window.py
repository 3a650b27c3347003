"""Writes proportional to what changed: a retrain publishes its query window (the most informative
fresh scores), Label Studio's next task is the lowest fresh score, and the predictions of old
versions are deleted, never the current one's. Against the fake Label Studio, whose next task
follows Label Studio 1.23.2's uncertainty sampling."""

from __future__ import annotations

from al_core.acquisition import is_audit_task
from ml_backend.jobs.run import run_retrain
from ml_backend.jobs.status import MemoryState
from ml_backend.storage.store import score_cache, version_number
from testkit.fake_label_studio import CLS_CONFIG, TEXTS
from tests.helpers import backend_settings


def settings_for(url, tmp_path, model, **overrides):
    # the whole pool scored first, then UPS subsets of 20%: a window of 4 is smaller than each
    values = dict(
        ups_mode="ups", ups_full_first=1, ups_full_every=0, ups_gamma=0.2, ups_temperature=0.01,
        acquisition_mode="finetune", query_window=4, keep_prediction_versions=2, publish_first=1000,
    )
    values.update(overrides)
    return backend_settings(url, tmp_path / "store", model, **values)


def start_project(fake, n_tasks=60, n_labeled=6):
    fake.add_project(1, CLS_CONFIG)
    ids = fake.add_tasks(1, TEXTS[:n_tasks])
    for n, task_id in enumerate(ids[:n_labeled]):
        fake.choose(task_id, "Positive" if n % 2 else "Negative")
    return ids


def fresh_tasks(settings, version) -> set[int]:
    """The tasks whose cached score the round `version` computed (not carried from earlier)."""
    return {int(t) for t, s in score_cache(settings, 1).all().items() if s.model_version == version}


def test_a_ups_round_publishes_only_its_window_of_fresh_scores_and_next_is_the_lowest(
    fake_ls, tmp_path, tiny_model_dir
):
    fake, url = fake_ls
    ids = start_project(fake)
    settings = settings_for(url, tmp_path, tiny_model_dir)
    run_retrain(1, settings, MemoryState())  # full scoring
    fake.choose(ids[10], "Positive")
    second = run_retrain(1, settings, MemoryState())  # UPS
    assert second["read"]["mode"] == "incremental"
    fresh = fresh_tasks(settings, second["version"])
    assert 4 < len(fresh) < second["n_pool"], "a UPS round re-scores part of the pool"

    published = fake.predictions_of(second["version"])
    assert len(published) == 4 == second["n_published"]
    assert {p["task"] for p in published} <= fresh, "a stale score was published under the new version"
    lowest = min(published, key=lambda p: (p["score"], p["task"]))
    served = fake.next_task(1)
    assert served["queue"] == "uncertainty" and served["id"] == lowest["task"]


def test_old_versions_are_pruned_and_the_current_and_foreign_ones_are_kept(fake_ls, tmp_path, tiny_model_dir):
    fake, url = fake_ls
    ids = start_project(fake)
    settings = settings_for(url, tmp_path, tiny_model_dir)
    fake.tasks[ids[-1]]["predictions"].append({"task": ids[-1], "model_version": "imported-by-user", "result": []})
    fake.predictions.append(fake.tasks[ids[-1]]["predictions"][-1])
    summaries = []
    for n in range(4):
        fake.choose(ids[10 + n], "Negative")
        summaries.append(run_retrain(1, settings, MemoryState()))

    versions = fake_versions(fake)
    ours = sorted(v for v in versions if version_number(1, v))
    assert ours == sorted(s["version"] for s in summaries[-2:])
    assert fake.projects[1]["model_version"] == summaries[-1]["version"]
    assert "imported-by-user" in versions, "predictions this backend did not make were deleted"
    assert summaries[-1]["pruned_versions"] == {summaries[1]["version"]: 4}
    # bounded: at most the window per kept version, whatever the pool
    assert sum(versions[v] for v in ours) <= 2 * 4

    assert "prune_s" in summaries[-1]["timings"]


def test_a_retrain_leaves_the_prune_to_a_pending_one_and_times_it_apart(fake_ls, tmp_path, tiny_model_dir):
    fake, url = fake_ls
    ids = start_project(fake)
    settings = settings_for(url, tmp_path, tiny_model_dir, acquisition_mode="frozen")  # K = 2
    state = MemoryState()
    summaries = []
    for n in range(3):
        fake.choose(ids[10 + n], "Negative")
        summaries.append(run_retrain(1, settings, state))

    def ours() -> list[str]:
        return sorted(v for v in fake_versions(fake) if version_number(1, v))

    assert ours() == sorted(s["version"] for s in summaries[1:])
    # annotations keep coming while each retrain runs: the one each queues prunes, not this one,
    # until more than twice the versions kept are held
    original_start = state.start_run

    def start_then_event(project, job_id=None):
        generation = original_start(project, job_id)
        assert state.claim_pending(project, 60)
        return generation

    state.start_run = start_then_event
    busy = []
    for n in range(3):
        fake.choose(ids[20 + n], "Positive")
        busy.append(run_retrain(1, settings, state))
        assert len(ours()) <= 2 * 2
    assert busy[0]["pruned_versions"] == busy[1]["pruned_versions"] == {}
    assert sorted(busy[2]["pruned_versions"]) == sorted([summaries[1]["version"], summaries[2]["version"], busy[0]["version"]])
    state.start_run = original_start
    fake.choose(ids[30], "Positive")
    idle = run_retrain(1, settings, state)
    assert sorted(idle["pruned_versions"]) == [busy[1]["version"]]
    assert ours() == sorted([busy[2]["version"], idle["version"]])
    assert "prune_s" in idle["timings"]


def test_window_zero_publishes_every_unlabeled_task_under_each_version(fake_ls, tmp_path, tiny_model_dir):
    fake, url = fake_ls
    ids = start_project(fake, n_tasks=30)
    settings = settings_for(url, tmp_path, tiny_model_dir, query_window=0, keep_prediction_versions=0)
    run_retrain(1, settings, MemoryState())
    fake.choose(ids[10], "Positive")
    second = run_retrain(1, settings, MemoryState())
    published = fake.predictions_of(second["version"])
    assert len(published) == second["n_pool"] == 30 - 7
    # cached scores keep the regions of their latest prediction: every task shows a pre-annotation
    assert all(p["result"] for p in published)
    assert len(fake_versions(fake)) == 2


def fake_versions(fake) -> dict[str, int]:
    counts: dict[str, int] = {}
    for prediction in fake.predictions:
        counts[prediction["model_version"]] = counts.get(prediction["model_version"], 0) + 1
    return counts


def test_a_ups_round_fills_its_window_from_cached_scores_served_after_the_fresh_ones(fake_ls, tmp_path, tiny_model_dir):
    fake, url = fake_ls
    ids = start_project(fake)
    settings = settings_for(url, tmp_path, tiny_model_dir, query_window=40)
    first = run_retrain(1, settings, MemoryState())  # full scoring: its window has regions for each task
    earlier = {p["task"]: p["result"] for p in fake.predictions_of(first["version"])}
    fake.choose(ids[10], "Positive")
    second = run_retrain(1, settings, MemoryState())  # UPS: fewer fresh scores than the window holds
    fresh = fresh_tasks(settings, second["version"])
    assert len(fresh) < 40
    published = fake.predictions_of(second["version"])
    assert len(published) == 40 == second["n_published"], "the window is filled"
    audit = {p["task"] for p in published if is_audit_task(str(p["task"]), settings.seed, settings.audit_share)}
    new = [p for p in published if p["task"] in fresh and p["task"] not in audit]
    filled = [p for p in published if p["task"] not in fresh]
    assert new and filled
    # no stale score undercuts a fresh one: Label Studio serves every fresh task first (the audit
    # tasks, fresh too, keep their one-in-25 places wherever those fall)
    assert max(p["score"] for p in new) < min(p["score"] for p in filled)
    # a task filled from the cache keeps the regions it was last published with (a pre-annotation)
    assert all(p["result"] == earlier[p["task"]] for p in filled if p["task"] in earlier)
    assert any(p["result"] for p in filled)
    served = fake.next_task(1)
    assert served["id"] in fresh
