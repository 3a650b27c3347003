"""1,000 annotation webhooks in a burst, from concurrent senders, against real Redis and a real
`rq worker` already running: at most two retrains, and the last one trained on every annotation."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from rq import Queue

from ml_backend.app import create_app
from testkit.fake_label_studio import CLS_CONFIG, TEXTS, annotation_webhook
from tests.helpers import backend_settings
from tests.integration.conftest import REDIS_URL, RQ, worker_env
from tests.integration.test_faults import Processes, wait_until

pytestmark = pytest.mark.integration
N_EVENTS = 1000


def test_a_burst_of_1000_webhooks_gives_at_most_two_retrains_holding_every_annotation(
    tmp_path, redis_conn, fake_ls, tiny_model_dir
):
    fake, ls_url = fake_ls
    fake.add_project(7)
    texts = [f"{TEXTS[n % len(TEXTS)]} {n}" for n in range(N_EVENTS + 50)]
    ids = fake.add_tasks(7, texts)
    settings = backend_settings(
        ls_url, tmp_path / "store", tiny_model_dir, redis_url=REDIS_URL,
        rq_queue="al-burst", retrain_delay=1.0, keep_versions=10, max_length=16,
    )
    app = create_app(settings)
    processes = Processes()
    worker = processes.start([str(RQ), "worker", "--url", settings.redis_url, settings.rq_queue], worker_env(settings))
    try:
        def annotate_and_send(n: int) -> tuple[int, str]:
            task_id = ids[n]
            fake.choose(task_id, "Positive" if n % 2 else "Negative")  # Label Studio saves, then calls
            reply = app.test_client().post("/webhook", json=annotation_webhook(7, task_id))
            return reply.status_code, reply.json.get("retrain")

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as senders:
            replies = list(senders.map(annotate_and_send, range(N_EVENTS)))
        burst_seconds = time.monotonic() - started
        assert {code for code, _ in replies} == {200}
        queued = sum(1 for _, outcome in replies if outcome == "queued")
        assert 1 <= queued <= 2, (queued, burst_seconds)

        client = app.test_client()

        def idle() -> bool:
            status = client.get("/status/7").json["projects"]["7"]
            return (
                not status["pending_retrain"]
                and not status["running_retrain"]
                and Queue(settings.rq_queue, connection=redis_conn).count == 0
                and status["current_version"] is not None
            )

        assert wait_until(idle, timeout=300, every=0.5)
        assert worker.poll() is None
    finally:
        processes.stop_all()

    status = client.get("/status/7").json["projects"]["7"]
    assert status["last_error"] is None
    assert 1 <= len(status["versions"]) <= 2, status["versions"]
    print(f"{N_EVENTS} webhooks in {burst_seconds:.1f} s: {queued} queued, {len(status['versions'])} retrains")
    meta = app.extensions["al_backend"].store.meta(7, status["current_version"])
    assert sorted(meta["labeled_ids"], key=int) == [str(i) for i in ids[:N_EVENTS]]
    assert meta["n_pool"] == 50
    assert client.post("/setup", json={"project": "7.1", "schema": CLS_CONFIG}).json == {
        "model_version": status["current_version"]
    }
