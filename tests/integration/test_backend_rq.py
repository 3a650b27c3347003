"""The live loop with real Redis and a real `rq worker`: merging, promotion, serving, cache reuse."""

from __future__ import annotations

import pytest
from rq import Queue

from al_core.acquisition import is_audit_task
from ml_backend.app import create_app
from ml_backend.settings import Settings, env_name
from ml_backend.storage.store import RedisScoreCache
from testkit.fake_label_studio import CLS_CONFIG, TEXTS, annotation_webhook
from tests.helpers import backend_settings, worker_env
from tests.integration.conftest import REDIS_URL

pytestmark = pytest.mark.integration


def annotate_with_webhooks(fake, client, project_id: int, task_ids: list[int]) -> list[str]:
    outcomes = []
    for n, task_id in enumerate(task_ids):
        fake.choose(task_id, "Positive" if n % 2 else "Negative")
        reply = client.post("/webhook", json=annotation_webhook(project_id, task_id))
        assert reply.status_code == 200, reply.json
        outcomes.append(reply.json["retrain"])
    return outcomes


def make_settings(tmp_path, url, model, **overrides):
    # fine-tuning, so that a UPS iteration re-scores a subset (a frozen head scores every task)
    overrides = {"acquisition_mode": "finetune", **overrides}
    return backend_settings(
        url, tmp_path / "store", model, redis_url=REDIS_URL, rq_queue="al-test", **overrides
    )


def test_a_burst_of_webhooks_is_one_retrain_holding_every_annotation_then_served(
    tmp_path, redis_conn, fake_ls, run_worker, tiny_model_dir
):
    fake, url = fake_ls
    fake.add_project(1)
    ids = fake.add_tasks(1, TEXTS[:40])
    settings = make_settings(tmp_path, url, tiny_model_dir)
    app = create_app(settings)
    client = app.test_client()

    outcomes = annotate_with_webhooks(fake, client, 1, ids[:8])
    assert outcomes == ["queued"] + ["merged"] * 7
    assert Queue("al-test", connection=redis_conn).count == 1
    assert client.get("/status/1").json["projects"]["1"]["pending_retrain"] is True

    worker = run_worker(settings)
    assert worker.returncode == 0, worker.stdout

    status = client.get("/status/1").json["projects"]["1"]
    assert status["last_error"] is None and not status["pending_retrain"] and not status["running_retrain"]
    version = status["current_version"]
    assert status["versions"] == [version]
    assert status["last_round"]["n_labeled"] == 8
    meta = app.extensions["al_backend"].store.meta(1, version)
    assert sorted(meta["labeled_ids"], key=int) == [str(i) for i in ids[:8]]
    assert sorted(p["task"] for p in fake.predictions_of(version)) == ids[8:]
    assert fake.projects[1]["model_version"] == version
    assert fake.projects[1]["sampling"] == "Uncertainty sampling"

    # the web process serves the promoted version without a restart
    assert client.post("/setup", json={"project": "1.99", "schema": CLS_CONFIG}).json == {
        "model_version": version
    }
    tasks = [fake.tasks[i] for i in ids[20:24]]
    results = client.post(
        "/predict", json={"project": "1.99", "tasks": tasks, "label_config": CLS_CONFIG}
    ).json
    assert [r["model_version"] for r in results["results"]] == [version] * 4


def test_a_worker_without_the_web_environment_runs_with_the_web_settings(
    tmp_path, redis_conn, fake_ls, run_worker, tiny_model_dir
):
    """The retrain job carries the settings the web process resolved: a worker whose environment
    names no Label Studio, no MODEL_DIR and an invalid AL_EPOCHS still retrains as the web asked."""
    fake, url = fake_ls
    fake.add_project(6)
    ids = fake.add_tasks(6, TEXTS[:20])
    settings = make_settings(tmp_path, url, tiny_model_dir, acquisition_mode="frozen")
    client = create_app(settings).test_client()
    annotate_with_webhooks(fake, client, 6, ids[:4])

    variables = {env_name(name) for name in Settings.model_fields}
    bare = {k: v for k, v in worker_env(settings).items() if k not in variables}
    bare["AL_EPOCHS"] = "0"  # were the environment read, the job would be refused
    worker = run_worker(settings, env=bare)
    assert worker.returncode == 0, worker.stdout

    status = client.get("/status/6").json["projects"]["6"]
    assert status["last_error"] is None and status["current_version"], status
    assert fake.projects[6]["model_version"] == status["current_version"]


def test_next_ups_iteration_rescores_only_the_subset_and_reuses_the_cache(
    tmp_path, redis_conn, fake_ls, run_worker, tiny_model_dir
):
    fake, url = fake_ls
    fake.add_project(2)
    ids = fake.add_tasks(2, TEXTS[:80])
    settings = make_settings(
        tmp_path, url, tiny_model_dir, ups_full_first=1, ups_full_every=0, ups_gamma=0.1, ups_temperature=0.01
    )
    client = create_app(settings).test_client()

    annotate_with_webhooks(fake, client, 2, ids[:6])
    assert run_worker(settings).returncode == 0
    first = client.get("/status/2").json["projects"]["2"]
    assert first["last_round"]["n_scored"] == 74  # iteration 0: the whole pool
    v1 = first["current_version"]

    annotate_with_webhooks(fake, client, 2, ids[6:7])
    assert run_worker(settings).returncode == 0
    second = client.get("/status/2").json["projects"]["2"]
    v2 = second["current_version"]
    assert v2 != v1 and second["last_error"] is None
    n_pool, n_scored = second["last_round"]["n_pool"], second["last_round"]["n_scored"]
    assert n_pool == 73 and 0 < n_scored < n_pool // 2

    cache = RedisScoreCache(redis_conn, 2).all()
    assert str(ids[6]) not in cache  # the newly labeled task left the pool and the cache
    by_version = {}
    for entry in cache.values():
        by_version[entry.model_version] = by_version.get(entry.model_version, 0) + 1
    assert by_version == {v2: n_scored, v1: n_pool - n_scored}
    # the query window (AL_QUERY_WINDOW, larger than the pool here) holds the fresh scores first, then
    # the rest of the pool from the cache with the regions v1 published: a cached score never undercuts
    # a fresh one (the fresh audit tasks keep their own places), and the whole window goes out before the
    # project is pointed at v2
    fresh_ids = {int(i) for i, entry in cache.items() if entry.model_version == v2}
    published = {p["task"]: p for p in fake.predictions_of(v2)}
    assert sorted(published) == ids[7:]
    assert all(p["result"] for p in published.values())
    regular = {t for t in fresh_ids if not is_audit_task(str(t), settings.seed, settings.audit_share)}
    assert max(published[t]["score"] for t in regular) < min(
        published[t]["score"] for t in set(published) - fresh_ids
    )
    v1_results = {p["task"]: p["result"] for p in fake.predictions_of(v1)}
    assert all(published[t]["result"] == v1_results[t] for t in set(published) - fresh_ids)
    assert fake.activated_with[v2] == n_pool
    assert fake.projects[2]["model_version"] == v2
    assert sorted(p["task"] for p in fake.predictions_of(v1)) == ids[6:]


def test_a_failing_job_reports_its_error_and_does_not_block_the_project(
    tmp_path, redis_conn, run_worker, tiny_model_dir
):
    settings = make_settings(tmp_path, "http://127.0.0.1:9", tiny_model_dir)  # nobody listens there
    client = create_app(settings).test_client()
    assert client.post("/webhook", json=annotation_webhook(3, 1)).json["retrain"] == "queued"
    run_worker(settings)
    status = client.get("/status/3").json["projects"]["3"]
    assert "Label Studio" in status["last_error"]
    assert not status["pending_retrain"] and not status["running_retrain"]
    assert client.post("/webhook", json=annotation_webhook(3, 2)).json["retrain"] == "queued"
