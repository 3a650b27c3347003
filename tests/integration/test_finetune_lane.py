"""The background lane with real Redis and two real `rq worker` processes: while one worker fine-tunes,
the other serves the retrains; the fine-tune, taken up, asks for the retrain that reads its encoder."""

from __future__ import annotations

import subprocess
import time

import pytest

from ml_backend.app import create_app
from ml_backend.jobs.status import RedisState
from testkit.fake_label_studio import annotation_webhook
from tests.helpers import backend_settings
from tests.integration.conftest import ROOT, RQ, worker_env
from tests.integration.test_faults import REDIS_URL

pytestmark = pytest.mark.integration


def _wait(condition, timeout: float, what: str, workers) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        dead = [w for w in workers if w.poll() is not None]
        if dead:
            raise AssertionError(f"an rq worker exited while waiting for {what}: {dead[0].communicate()[0][-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout:.0f} s")
        time.sleep(0.3)


def _finetune_started(queue: str, connection) -> bool:
    from rq.job import Job
    from rq.registry import StartedJobRegistry

    started = StartedJobRegistry(queue, connection=connection).get_job_ids()
    return any(job.func_name == "ml_backend.jobs.run.finetune" for job in Job.fetch_many(started, connection=connection) if job)


def test_a_retrain_is_served_while_the_other_worker_fine_tunes_then_it_reads_the_new_encoder(
    tmp_path, redis_conn, fake_ls, tiny_model_dir
):
    fake, ls_url = fake_ls
    ids = fake.add_labeled_project(6, 40, n_labeled=16)
    # no held-out share: the verdict takes the fine-tune up (its rule: tests/unit/test_finetune_lane.py);
    # a long schedule, so that the fine-tune outlasts a retrain
    settings = backend_settings(
        ls_url, tmp_path / "store", tiny_model_dir, redis_url=REDIS_URL, rq_queue="al-lane", retrain_delay=0.0,
        frozen_below_classification=16, finetune_every=4, audit_share=0.0, holdout_share=0.0, min_steps=1500,
    )
    app = create_app(settings)
    client = app.test_client()
    store = app.extensions["al_backend"].store
    state = RedisState(redis_conn)
    assert client.post("/webhook", json=annotation_webhook(6, ids[0])).status_code == 200
    workers = [
        subprocess.Popen(
            [str(RQ), "worker", "--worker-class", "ml_backend.worker.Worker", "--url", settings.redis_url, settings.rq_queue],
            env=worker_env(settings), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for _ in range(2)
    ]
    try:
        # the first retrain serves the frozen head at once and asks for the fine-tune
        _wait(lambda: len(store.versions(6)) == 1 and state.status("6")["finetuning"], 180, "first version", workers)
        # the fine-tune job reads the project as it starts: the next label comes after that read
        _wait(lambda: _finetune_started(settings.rq_queue, redis_conn), 180, "fine-tune job start", workers)
        time.sleep(3)
        fake.choose(ids[16], "Positive")
        assert client.post("/webhook", json=annotation_webhook(6, ids[16])).status_code == 200
        _wait(lambda: len(store.versions(6)) >= 2, 180, "retrain beside the fine-tune", workers)
        served_during = store.meta(6, store.versions(6)[1])
        _wait(lambda: "last_finetune" in state.status("6"), 300, "fine-tune verdict", workers)
        _wait(
            lambda: store.meta(6, store.current_version(6))["acquisition_mode"] == "refresh"
            and not state.status("6")["running"] and not state.status("6")["pending"],
            180, "retrain over the new encoder", workers,
        )
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
    finetune = state.status("6")["last_finetune"]
    assert finetune["status"] == "adopted" and finetune["n_labeled"] == 16, finetune
    assert not state.status("6")["finetuning"]
    # the second retrain was served while the fine-tune ran, on the other worker: nobody waited for it
    assert served_during["acquisition_mode"] == "frozen" and served_during["n_labeled"] == 17
    assert finetune["started_at"] < served_during["created_at"] < finetune["finished_at"], (finetune, served_during)
    latest = store.meta(6, store.current_version(6))
    assert latest["encoder"] == {"encoder": finetune["encoder"], "n_labeled": 16}
    assert latest["n_labeled"] == 17 and latest["created_at"] > finetune["finished_at"]
    status = client.get("/status/6").json["projects"]["6"]
    assert status["last_error"] is None and not status["running_finetune"]
    assert status["last_finetune"]["encoder"] == finetune["encoder"] and status["last_finetune"]["accepted"]
