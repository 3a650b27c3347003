"""A retrain's big scoring pass split over real `rq worker` processes sharing real Redis and MODEL_DIR:
two workers share it, one worker alone runs it all, a chunk lost by a worker is run again, and the
merged scores are what one pass over the pool gives."""

from __future__ import annotations

import subprocess
import time

import numpy as np
import pytest
from rq import Queue

from al_core.data import Example
from al_core.models import load_model
from al_core.strategies import get_strategy
from ml_backend.jobs.queue import enqueue_retrain
from ml_backend.predictor import load_strategy_state
from ml_backend.storage.layout import ModelDirLayout
from ml_backend.storage.store import RedisScoreCache, VersionStore, embedding_cache
from testkit.fake_label_studio import TEXTS
from tests.helpers import backend_settings
from tests.integration.conftest import RQ, worker_env
from tests.integration.test_faults import REDIS_URL

pytestmark = pytest.mark.integration

PROJECT = 8
CHUNK = 10


def _settings(tmp_path, ls_url, tiny_model_dir, **overrides):
    values = dict(acquisition_mode="finetune", ups_mode="full", split_chunk=CHUNK, min_labels=2)
    return backend_settings(
        ls_url, tmp_path / "store", tiny_model_dir, redis_url=REDIS_URL, rq_queue="al-split", **{**values, **overrides}
    )


def _labeled_project(fake) -> list[int]:
    fake.add_project(PROJECT)
    ids = fake.add_tasks(PROJECT, TEXTS[:58])
    for n, task_id in enumerate(ids[:4]):
        fake.choose(task_id, "Positive" if n % 2 else "Negative")
    return ids


@pytest.fixture
def start_worker():
    """Starts a real `rq worker` (not in burst mode); every one started is stopped at teardown."""
    started: list[subprocess.Popen] = []

    def start(settings, worker_class: str = "ml_backend.worker.Worker", **env) -> subprocess.Popen:
        process = subprocess.Popen(
            [str(RQ), "worker", "--worker-class", worker_class, "--url", settings.redis_url, settings.rq_queue],
            env={**worker_env(settings), **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def _wait_listening(redis_conn, count: int, timeout: float = 60) -> None:
    from rq import Worker

    deadline = time.monotonic() + timeout
    while len(Worker.all(connection=redis_conn)) < count:
        assert time.monotonic() < deadline, "rq workers did not register"
        time.sleep(0.2)


def _run_retrain(settings, redis_conn, workers: list[subprocess.Popen], later=None) -> dict:
    """Enqueues a retrain and waits for it; `later` starts more workers once it has started."""
    queue = Queue(settings.rq_queue, connection=redis_conn)
    job = enqueue_retrain(queue, PROJECT, settings.job_timeout)
    try:
        deadline = time.monotonic() + 300
        while job.get_status(refresh=True) not in ("finished", "failed"):
            assert time.monotonic() < deadline, "the retrain did not finish"
            if later is not None and job.get_status() == "started":
                workers += later()
                later = None
            time.sleep(0.1)
    finally:
        for worker in workers:
            worker.terminate()
        # a terminated worker finishes the chunk it holds first (rq's warm shutdown): on a loaded machine
        # that can take more than a minute
        logs = [w.communicate(timeout=180)[0] for w in workers]
    summary = job.return_value()
    assert job.get_status() == "finished" and summary["status"] == "trained", (summary, "\n".join(logs))
    return summary


def _check_scores_match_one_pass(settings, redis_conn, fake, ids, summary) -> None:
    """The scores the retrain cached are one pass of its saved model over the pool, in order."""
    store = VersionStore(settings.model_dir)
    folder = store.version_dir(PROJECT, summary["version"])
    model = load_model(folder)
    pool = [Example(id=str(t), text=fake.tasks[t]["data"]["text"]) for t in ids[4:]]
    strategy = get_strategy(store.meta(PROJECT, summary["version"])["strategy"])
    load_strategy_state(strategy, folder)  # dlc's landmarks, md's statistics: kept with the version
    outputs = model.infer(pool, probs=strategy.needs_probs, embeddings=strategy.needs_embeddings)
    expected = strategy.score_outputs(probs=outputs.probs, embeddings=outputs.embeddings, n=len(pool))
    cached = RedisScoreCache(redis_conn, PROJECT).all()
    assert summary["n_scored"] == len(pool)
    # a frozen head's vectors are cached in float16: its scores match to about 1e-3
    np.testing.assert_allclose([cached[e.id].score for e in pool], expected, atol=2e-3)


@pytest.mark.parametrize("mode", ["finetune", "frozen"])
def test_two_workers_share_a_split_scoring_pass(
    tmp_path, redis_conn, fake_ls, tiny_model_dir, start_worker, mode
):
    """finetune: a full-scoring iteration; frozen: the encoder's first embedding pass, whose
    vectors land in the project's shared embedding cache."""
    fake, ls_url = fake_ls
    ids = _labeled_project(fake)
    settings = _settings(tmp_path, ls_url, tiny_model_dir, acquisition_mode=mode)
    workers = [start_worker(settings) for _ in range(2)]
    _wait_listening(redis_conn, 2)
    summary = _run_retrain(settings, redis_conn, workers)

    split = summary["split"]
    assert split["tasks"] == 54 and split["chunks"] == 6 and split["rerun"] == 0, split
    assert len(split["by_worker"]) == 2 and sum(split["by_worker"].values()) == 6, split
    assert not Queue(settings.rq_queue, connection=redis_conn).job_ids  # no chunk left behind
    assert not list((ModelDirLayout(settings.model_dir).project_dir(PROJECT) / "passes").iterdir())
    if mode == "frozen":
        assert len(embedding_cache(settings, PROJECT)) == len(ids)  # every task embedded once, kept
    _check_scores_match_one_pass(settings, redis_conn, fake, ids, summary)


def test_one_worker_alone_runs_the_whole_split_pass(tmp_path, redis_conn, fake_ls, tiny_model_dir, start_worker):
    fake, ls_url = fake_ls
    ids = _labeled_project(fake)
    settings = _settings(tmp_path, ls_url, tiny_model_dir)
    worker = start_worker(settings)
    _wait_listening(redis_conn, 1)
    summary = _run_retrain(settings, redis_conn, [worker])

    split = summary["split"]
    assert split["chunks"] == 6 and split["rerun"] == 0 and list(split["by_worker"].values()) == [6], split
    _check_scores_match_one_pass(settings, redis_conn, fake, ids, summary)


def test_a_chunk_its_worker_could_not_run_is_run_again(
    tmp_path, redis_conn, fake_ls, tiny_model_dir, start_worker
):
    """A second worker that does not see MODEL_DIR (another machine without the shared disk) finds
    no pass folder: its chunk comes back without a result and the retrain's worker runs it itself.
    (The jobs carry the web's settings, so a worker's own MODEL_DIR variable cannot cause this.)"""
    fake, ls_url = fake_ls
    ids = _labeled_project(fake)
    settings = _settings(tmp_path, ls_url, tiny_model_dir, retrain_delay=10)  # time for the second to start

    def elsewhere():
        worker = start_worker(settings, worker_class="tests.integration.blind_worker.Worker")
        _wait_listening(redis_conn, 2)
        return [worker]

    summary = _run_retrain(settings, redis_conn, [start_worker(settings)], later=elsewhere)

    split = summary["split"]
    assert split["chunks"] == 6 and split["rerun"] >= 1, split
    assert list(split["by_worker"].values()) == [6], split  # all run by the retrain's worker in the end
    _check_scores_match_one_pass(settings, redis_conn, fake, ids, summary)
