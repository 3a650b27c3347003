"""Several `rq worker` processes on one queue: retrains of one project never overlap, so an older
run cannot promote its model over a newer one. Real Redis, real workers, tiny model."""

from __future__ import annotations

import subprocess
import time
from datetime import timezone

import pytest
from rq import Queue
from rq.job import Job

from ml_backend.app import create_app
from ml_backend.jobs.queue import enqueue_retrain
from ml_backend.jobs.status import RedisState, RunLockTimeout
from testkit.fake_label_studio import TEXTS, annotation_webhook
from tests.helpers import backend_settings
from tests.integration.conftest import RQ, worker_env
from tests.integration.test_faults import REDIS_URL

pytestmark = pytest.mark.integration


def _timestamp(moment) -> float:
    """rq keeps naive UTC datetimes."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def test_the_run_lock_waits_for_a_live_holder_and_takes_over_from_a_dead_one(redis_conn):
    state = RedisState(redis_conn)
    alive = {"job-a"}
    with state.exclusive_run("5", "job-a", wait=5, owner_alive=alive.__contains__, ttl=60):
        started = time.monotonic()
        with pytest.raises(RunLockTimeout, match="job job-a"):
            with state.exclusive_run("5", "job-b", wait=0.6, owner_alive=alive.__contains__, ttl=60):
                pass
        assert time.monotonic() - started >= 0.6
        alive.clear()  # job-a's worker died: the next run takes the lock at once
        with state.exclusive_run("5", "job-b", wait=0.1, owner_alive=alive.__contains__, ttl=60):
            assert redis_conn.get("al:5:run-lock") == b"job-b"
    # job-a, finishing late, must not release job-b's lock (it only deletes its own)
    assert redis_conn.get("al:5:run-lock") is None
    with state.exclusive_run("5", "job-c", wait=1, owner_alive=alive.__contains__, ttl=60):
        pass
    assert redis_conn.get("al:5:run-lock") is None


def test_two_workers_run_retrains_of_one_project_one_after_the_other(
    tmp_path, redis_conn, fake_ls, tiny_model_dir
):
    fake, ls_url = fake_ls
    fake.add_project(4)
    ids = fake.add_tasks(4, TEXTS[:30])
    settings = backend_settings(
        ls_url, tmp_path / "store", tiny_model_dir, redis_url=REDIS_URL, rq_queue="al-two-workers",
        retrain_delay=0.0, keep_versions=5, min_steps=40,
    )
    app = create_app(settings)
    client = app.test_client()
    for n, task_id in enumerate(ids[:4]):
        fake.choose(task_id, "Positive" if n % 2 else "Negative")
        client.post("/webhook", json=annotation_webhook(4, task_id))
    queue = Queue(settings.rq_queue, connection=redis_conn)
    enqueue_retrain(queue, 4, settings.job_timeout)  # a second retrain, as after a later annotation
    assert queue.count == 2
    job_ids = queue.job_ids

    workers = [
        subprocess.Popen(
            [str(RQ), "worker", "--burst", "--url", settings.redis_url, settings.rq_queue],
            env=worker_env(settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for _ in range(2)
    ]
    try:
        outputs = [w.communicate(timeout=300)[0] for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    assert [w.returncode for w in workers] == [0, 0], outputs
    jobs = [Job.fetch(i, connection=redis_conn) for i in job_ids]
    assert [j.get_status() for j in jobs] == ["finished", "finished"]
    assert len({j.worker_name for j in jobs}) == 2  # each worker took one: both were busy at once
    runs = sorted((j.return_value() for j in jobs), key=lambda summary: summary["started_at"])
    store = app.extensions["al_backend"].store
    first, second = (store.meta(4, run["version"]) for run in runs)
    # the second job was picked up while the first still trained, yet its run started only once
    # the first had saved its version: it waited at the lock
    picked_up = {j.return_value()["version"]: _timestamp(j.started_at) for j in jobs}
    assert picked_up[runs[1]["version"]] < first["created_at"] <= second["started_at"], (picked_up, first, second)
    status = client.get("/status/4").json["projects"]["4"]
    assert status["current_version"] == runs[1]["version"]
    assert not status["running_retrain"] and status["last_error"] is None
