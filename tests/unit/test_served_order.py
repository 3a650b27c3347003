"""The order a version's predictions are served in (ml_backend.jobs.retrain_steps.served_order):
the cold-start tasks first, then the strategy's ranking in the team-diverse order, the audit tasks
in their places, and published scores that strictly increase along it. Before the project has the
labels to train on, a version without a model publishes the cold-start order alone."""

from __future__ import annotations

import numpy as np

from al_core.acquisition import interleave_audit
from al_core.data import Example
from al_core.ordering import cold_start_tasks
from ml_backend.app import create_app
from ml_backend.jobs.retrain_steps import served_order, team_order
from ml_backend.jobs.run import run_retrain, run_scoring
from ml_backend.jobs.status import MemoryState
from ml_backend.storage.history import history_path, read_last
from ml_backend.storage.store import VersionStore
from testkit.fake_label_studio import CLS_CONFIG, TEXTS
from tests.helpers import backend_settings
from tests.unit.test_backend_app import wait_until


def settings_for(url, tmp_path, model, **overrides):
    values = dict(
        acquisition_mode="frozen", query_window=20, audit_share=0.0, team_size=1, cold_start_labels=0,
        keep_prediction_versions=3,
    )
    values.update(overrides)
    return backend_settings(url, tmp_path / "store", model, **values)


def served(fake, version) -> list[dict]:
    """A version's predictions in the order Label Studio serves them (lowest score first)."""
    return sorted(fake.predictions_of(version), key=lambda p: (p["score"], p["task"]))


def text_of(fake, prediction) -> str:
    return fake.tasks[prediction["task"]]["data"]["text"]


# --- the composing function on given predictions ---------------------------------------------


def test_scores_strictly_increase_along_the_served_order_and_audit_tasks_keep_their_places():
    # ties among the scores, a team order that reverses the ranking, two audit tasks, a cold start
    predictions = [{"task": i, "result": [], "score": round(0.05 * (i // 3), 6)} for i in range(30)]
    ranking = [str(p["task"]) for p in sorted(predictions, key=lambda p: p["score"])]
    audit, cold = ["7", "20"], ["25", "3"]
    regular = [i for i in ranking if i not in audit + cold]

    out = served_order(
        predictions, cold_start=cold, audit=audit, share=0.1, first_audit=4,
        team_order=lambda ranked: ranked[::-1], head=10,
    )
    order = [str(p["task"]) for p in out]
    assert order == interleave_audit(cold + regular[:10][::-1] + regular[10:], audit, 0.1, 4)
    assert [order.index(a) for a in audit] == [4, 14]
    scores = [p["score"] for p in out]
    assert all(a < b for a, b in zip(scores, scores[1:], strict=False)), scores
    # Label Studio serves by score: sorting the published predictions gives the same order back
    assert [str(p["task"]) for p in sorted(out, key=lambda p: p["score"])] == order
    # the regular tasks hand out the window's own scores (lowest to the cold-start tasks), ties raised
    regular_scores = [p["score"] for p in out if str(p["task"]) not in audit]
    assert regular_scores[0] == 0.0 and max(regular_scores) < 0.45 + 1e-4


def test_audit_tasks_whose_turn_has_not_come_are_served_after_every_other_task():
    # tasks 0 and 1 are the most uncertain, but audit tasks: the ranking may not serve them; task 2
    # is the audit task due now, served at its place
    predictions = [{"task": i, "result": [], "score": round(0.01 * i, 6)} for i in range(30)]
    out = served_order(predictions, audit=["2"], share=0.1, first_audit=4, held_back=["0", "1", "2"])
    order = [str(p["task"]) for p in out]
    assert order[4] == "2" and order[-2:] == ["0", "1"]
    assert order[:4] + order[5:-2] == [str(i) for i in range(3, 30)]
    scores = [p["score"] for p in out]
    assert all(a < b for a, b in zip(scores, scores[1:], strict=False)), scores


def test_team_size_one_and_no_cold_start_give_the_ranking_with_its_own_scores():
    predictions = [{"task": i, "result": [], "score": round(0.01 * ((i * 7) % 40), 6)} for i in range(40)]
    assert team_order([], lambda examples: [], team=1, seed=0) is None
    out = served_order(predictions, audit=["5"], share=0.0, team_order=None)
    assert out == sorted(predictions, key=lambda p: p["score"])


def test_cold_start_tasks_cover_well_separated_clusters_and_skip_covered_ones():
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:4] * 10
    # 4 well separated clusters of unequal sizes (40, 30, 20, 10), their tasks shuffled over the ids
    cluster = np.repeat(np.arange(4), [40, 30, 20, 10])
    ids = rng.permutation(100)
    vectors = {str(i): centres[c] + rng.normal(0, 0.1, 8) for i, c in zip(ids, cluster, strict=True)}
    truth = {str(i): int(c) for i, c in zip(ids, cluster, strict=True)}
    examples = [Example(id=str(i), text=f"t{i}") for i in range(100)]

    def vectors_of(tasks):
        return [vectors[e.id] for e in tasks]

    labeled_ids = {e.id for e in examples if truth[e.id] == 0}
    labeled_ids = {min(labeled_ids, key=int)}  # one label, in the largest cluster
    labeled = [Example(id=i, text=f"t{i}", label="a") for i in labeled_ids]
    pool = [e for e in examples if e.id not in labeled_ids]
    picks = cold_start_tasks([*labeled, *pool], labeled_ids, 4, vectors_of, seed=0)
    assert [truth[i] for i in picks] == [1, 2, 3]  # the uncovered clusters, the largest first
    assert not set(picks) & labeled_ids
    # the same call with the pool in another order picks the same tasks (rows sorted by id)
    assert cold_start_tasks([*pool[::-1], *labeled], labeled_ids, 4, vectors_of, seed=0) == picks
    # composed: the cold-start tasks are served first, then the ranking
    predictions = [{"task": int(e.id), "result": [], "score": round(int(e.id) / 100, 6)} for e in pool]
    out = served_order(predictions, cold_start=picks)
    assert [str(p["task"]) for p in out[:3]] == picks
    assert cold_start_tasks([*labeled, *pool], labeled_ids, 0, vectors_of, seed=0) == []  # 0: off
    assert cold_start_tasks(examples, {str(i) for i in range(4)}, 4, vectors_of, seed=0) == []  # enough labels


# --- a retrain against the fake Label Studio -------------------------------------------------


def duplicated_project(fake) -> list[int]:
    """Six labeled tasks, then 30 texts each imported twice (near-duplicates at their most)."""
    fake.add_project(1, CLS_CONFIG)
    labeled = fake.add_tasks(1, TEXTS[50:56])
    for n, task_id in enumerate(labeled):
        fake.choose(task_id, "Positive" if n % 2 else "Negative")
    fake.add_tasks(1, TEXTS[:30] + TEXTS[:30])
    return labeled


def test_a_team_takes_no_duplicate_pair_from_the_top_of_the_window(fake_ls, tmp_path, tiny_model_dir):
    fake, url = fake_ls
    duplicated_project(fake)
    team = 5

    def first_texts(**overrides) -> list[str]:
        settings = settings_for(url, tmp_path, tiny_model_dir, **overrides)
        summary = run_retrain(1, settings, MemoryState())
        assert summary["order"]["team_size"] == overrides.get("team_size", 1)
        window = served(fake, summary["version"])
        scores = [p["score"] for p in window]
        assert all(a < b for a, b in zip(scores, scores[1:], strict=False))
        return [text_of(fake, p) for p in window]

    plain = first_texts(team_size=1)
    # identical texts score the same: in the strategy's ranking a pair stands side by side
    assert len(set(plain[:team])) < team
    diverse = first_texts(team_size=team)
    assert len(set(diverse[:team])) == team, diverse[:team]
    assert sorted(diverse) == sorted(plain)  # the same window, in another order


def clustered_project(fake, n_labeled: int) -> tuple[list[int], dict[str, list[int]]]:
    """Four texts, each imported ten times: four clusters as far apart as the encoder puts them."""
    texts = [TEXTS[0], TEXTS[27], TEXTS[45], TEXTS[70]]
    fake.add_project(1, CLS_CONFIG)
    ids = fake.add_tasks(1, [t for t in texts for _ in range(10)])
    groups = {t: ids[10 * k : 10 * k + 10] for k, t in enumerate(texts)}
    for k in range(n_labeled):
        fake.choose(groups[texts[k]][0], "Positive" if k % 2 else "Negative")
    return ids, groups


def test_with_fewer_labels_than_the_cold_start_the_first_tasks_come_from_uncovered_clusters(
    fake_ls, tmp_path, tiny_model_dir
):
    fake, url = fake_ls
    _, groups = clustered_project(fake, n_labeled=2)
    settings = settings_for(url, tmp_path, tiny_model_dir, cold_start_labels=4, team_size=3)
    summary = run_retrain(1, settings, MemoryState())
    assert summary["status"] == "trained" and "cold_start_s" in summary["timings"] and "order_s" in summary["timings"]
    window = served(fake, summary["version"])
    labeled = {groups[t][0] for t in list(groups)[:2]}
    assert not labeled & {p["task"] for p in window}
    first = [text_of(fake, p) for p in window[:2]]
    assert sorted(first) == sorted(list(groups)[2:]), first  # one task of each uncovered cluster
    assert [str(p["task"]) for p in window[:2]] == summary["order"]["cold_start"]
    assert all(p["result"] for p in window)  # a trained version's regions
    # cold_start_labels 0: the strategy's ranking alone
    off = run_retrain(1, settings_for(url, tmp_path, tiny_model_dir, team_size=3), MemoryState())
    assert off["order"]["cold_start"] == [] and "cold_start_s" not in off["timings"]


def test_before_any_label_a_version_without_a_model_publishes_the_cold_start_order(
    fake_ls, tmp_path, tiny_model_dir
):
    fake, url = fake_ls
    ids, groups = clustered_project(fake, n_labeled=0)
    settings = settings_for(url, tmp_path, tiny_model_dir, cold_start_labels=4, audit_share=0.04)
    first = run_retrain(1, settings, MemoryState())
    assert first["status"] == "cold_start" and first["n_published"] == len(served(fake, first["version"]))
    window = served(fake, first["version"])
    cold = [p for p in window if str(p["task"]) in first["order"]["cold_start"]]
    assert sorted(text_of(fake, p) for p in cold) == sorted(groups)  # one task of each cluster
    assert [str(p["task"]) for p in cold] == first["order"]["cold_start"] == [str(p["task"]) for p in window[:4]]
    assert all(p["result"] == [] for p in window)
    assert fake.projects[1]["model_version"] == first["version"]

    client = create_app(settings).test_client()
    assert first["version"] in client.get("/versions").json["versions"]
    status = client.get("/status/1").json["projects"]["1"]
    assert status["current_version"] == first["version"] and status["current"]["acquisition_mode"] == "cold_start"
    answer = client.post("/predict", json={"project": "1.1", "tasks": [{"id": ids[0], "data": {"text": "x"}}]})
    assert answer.status_code == 200 and answer.json["results"][0]["model_version"] == "untrained"
    assert client.get("/campaign/1").status_code == 200 and client.get("/campaign/1.json").status_code == 200
    assert run_scoring(1, [{"id": ids[0], "data": {"text": "x"}}], settings)["reason"] == "no model yet"
    assert read_last(history_path(settings.model_dir, 1))[-1]["version"] == first["version"]

    # nothing changed: Label Studio already serves this order, no new version
    again = run_retrain(1, settings, MemoryState())
    assert again["status"] == "waiting" and "serves the cold-start order" in again["reason"]
    # one label covers its cluster: the next cold-start version leaves it out
    fake.choose(groups[list(groups)[0]][0], "Positive")
    one = run_retrain(1, settings, MemoryState())
    assert one["status"] == "cold_start" and len(one["order"]["cold_start"]) == 3
    assert list(groups)[0] not in {text_of(fake, p) for p in served(fake, one["version"])[:3]}
    # enough labels: a trained version, /predict answers with it
    fake.choose(groups[list(groups)[1]][0], "Negative")
    trained = run_retrain(1, settings, MemoryState())
    assert trained["status"] == "trained" and len(trained["order"]["cold_start"]) == 2
    answer = client.post("/predict", json={"project": "1.1", "tasks": [{"id": ids[5], "data": {"text": "x"}}]})
    assert answer.json["results"][0]["model_version"] == trained["version"]
    assert [v for v in VersionStore(settings.model_dir).versions(1)][-1] == trained["version"]


def test_cold_start_labels_zero_keeps_waiting_for_labels(fake_ls, tmp_path, tiny_model_dir):
    fake, url = fake_ls
    clustered_project(fake, n_labeled=1)
    summary = run_retrain(1, settings_for(url, tmp_path, tiny_model_dir), MemoryState())
    assert summary["status"] == "waiting" and not fake.predictions


def test_a_project_that_connects_gets_its_cold_start_order(fake_ls, tmp_path, tiny_model_dir):
    fake, url = fake_ls
    clustered_project(fake, n_labeled=0)
    settings = settings_for(url, tmp_path, tiny_model_dir, cold_start_labels=4)
    client = create_app(settings).test_client()
    assert client.post("/setup", json={"project": "1.1", "schema": CLS_CONFIG}).status_code == 200

    def cold_version():
        status = client.get("/status/1").json["projects"].get("1") or {}
        return not status.get("running_retrain") and not status.get("pending_retrain") and status.get("current_version")

    assert wait_until(cold_version)
    version = client.get("/status/1").json["projects"]["1"]["current_version"]
    assert fake.projects[1]["model_version"] == version and len(fake.predictions_of(version)) == 4
    # new tasks while there is no model: a retrain takes them into the cold-start order
    new = fake.add_tasks(1, ["a new film"])
    reply = client.post("/webhook", json={"action": "TASKS_CREATED", "project": {"id": 1}, "tasks": [{"id": new[0]}]})
    assert reply.json["retrain"] in ("queued", "merged") and reply.json["scoring"] is False
