"""Faults with real processes: Redis down, a worker killed mid-training, Label Studio down while
publishing, a failed model write, a web process restarted mid-loop. Tiny models, small pools."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from rq import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry

from ml_backend.app import create_app
from testkit.fake_label_studio import CLS_CONFIG, TEXTS, annotation_webhook
from tests.conftest import require_or_skip
from tests.helpers import backend_settings
from tests.integration.conftest import REDIS_URL, ROOT, RQ, worker_env

pytestmark = pytest.mark.integration
ML_BACKEND = Path(sys.executable).with_name("ml-backend")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method: str, url: str, body=None, timeout: float = 30.0) -> tuple[int, dict]:
    """(status, JSON answer) of one call; an error status is answered, not raised."""
    reply = httpx.request(method, url, json=body, timeout=timeout)
    return reply.status_code, reply.json()


def wait_until(condition, timeout: float = 60.0, every: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return False


class Processes:
    """Processes started by a test, each in its own session so the whole group can be killed."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        process = subprocess.Popen(
            args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        self.started.append(process)
        return process

    def backend(self, settings) -> tuple[subprocess.Popen, str]:
        require_or_skip(ML_BACKEND.exists(), f"{ML_BACKEND} is not installed (pip install -e . --no-deps)")
        port = free_port()
        env = worker_env(settings.model_copy(update={"port": port, "server_threads": 4}))
        process = self.start([str(ML_BACKEND)], env)
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert process.poll() is None, process.stdout.read()
            try:
                return http("GET", url + "/health", timeout=2)[0] == 200
            except httpx.TransportError:
                return False

        assert wait_until(up, timeout=60), "ml-backend did not answer /health"
        return process, url

    def kill(self, process: subprocess.Popen, sig=signal.SIGKILL) -> None:
        os.killpg(process.pid, sig)
        process.wait(timeout=30)

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def processes():
    started = Processes()
    yield started
    started.stop_all()


def make_settings(tmp_path, url, model, **overrides):
    # fine-tuning: these faults strike a retrain that takes a while and re-scores a UPS subset
    overrides = {"acquisition_mode": "finetune", **overrides}
    return backend_settings(url, tmp_path / "store", model, redis_url=REDIS_URL, rq_queue="al-faults", **overrides)


def start_endless_retrain(processes: Processes, settings, client) -> subprocess.Popen:
    """A real `rq worker` running project 1's queued retrain with steps enough to run until it is
    killed; returns once the retrain is well inside its training steps."""
    slow = settings.model_copy(update={"min_steps": 100000})
    worker = processes.start(
        [str(RQ), "worker", "--url", settings.redis_url, settings.rq_queue], worker_env(slow)
    )
    assert wait_until(lambda: client.get("/status/1").json["projects"]["1"]["running_retrain"], timeout=60)
    time.sleep(1.0)
    return worker


def test_redis_down_at_start_the_backend_serves_and_webhooks_get_a_clear_503(tmp_path, processes, tiny_model_dir):
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings = backend_settings(None, tmp_path / "store", tiny_model_dir, redis_url=closed)
    process, url = processes.backend(settings)

    code, answer = http("POST", url + "/webhook", annotation_webhook(1, 1))
    assert code == 503 and "Redis is unavailable" in answer["error"], answer
    assert http("GET", url + "/status")[0] == 503
    code, answer = http("POST", url + "/predict", {"project": "1.2", "tasks": [{"id": 1, "data": {"text": "x"}}]})
    assert code == 200 and answer["results"][0]["model_version"] == "untrained"  # /predict needs no Redis
    assert http("GET", url + "/health") == (200, {"status": "UP", "model_class": "ActiveLearningBackend", "queue": "rq"})
    assert process.poll() is None


def test_a_worker_killed_during_training_leaves_the_old_version_serving_and_the_retrain_runs_again(
    tmp_path, redis_conn, fake_ls, run_worker, processes, tiny_model_dir
):
    fake, ls_url = fake_ls
    fake.add_project(1)
    ids = fake.add_tasks(1, TEXTS[:30])
    settings = make_settings(tmp_path, ls_url, tiny_model_dir)
    app = create_app(settings)
    client = app.test_client()
    for n, task_id in enumerate(ids[:4]):
        fake.choose(task_id, "Positive" if n % 2 else "Negative")
        client.post("/webhook", json=annotation_webhook(1, task_id))
    assert run_worker(settings).returncode == 0
    v1 = client.get("/status/1").json["projects"]["1"]["current_version"]
    assert v1

    fake.choose(ids[4], "Positive")
    assert client.post("/webhook", json=annotation_webhook(1, ids[4])).json["retrain"] == "queued"
    worker = start_endless_retrain(processes, settings, client)
    processes.kill(worker)  # the worker and its work horse, without warning

    task = {"id": ids[20], "data": fake.tasks[ids[20]]["data"]}
    served = client.post("/predict", json={"project": "1.9", "tasks": [task], "label_config": CLS_CONFIG}).json
    assert served["results"][0]["model_version"] == v1  # the previous version keeps serving
    assert client.get("/status/1").json["projects"]["1"]["running_retrain"]  # until rq notices

    # rq's registry maintenance, as a worker runs it once the dead worker's heartbeat has expired
    # (at least 60 s in rq): it calls the job's failure callback with AbandonedJobError.
    queue = Queue(settings.rq_queue, connection=redis_conn)
    StartedJobRegistry(queue=queue).cleanup(timestamp=time.time() + 24 * 3600)
    status = client.get("/status/1").json["projects"]["1"]
    assert not status["running_retrain"] and status["pending_retrain"]
    assert "interrupted" in status["last_error"] and queue.count == 1

    assert run_worker(settings).returncode == 0
    status = client.get("/status/1").json["projects"]["1"]
    assert status["last_error"] is None and not status["running_retrain"] and not status["pending_retrain"]
    v2 = status["current_version"]
    assert v2 != v1 and status["last_round"]["n_labeled"] == 5
    store = app.extensions["al_backend"].store
    assert sorted(store.meta(1, v2)["labeled_ids"], key=int) == [str(i) for i in ids[:5]]


def test_a_work_horse_killed_alone_is_noticed_and_its_retrain_queued_again(
    tmp_path, redis_conn, fake_ls, run_worker, processes, tiny_model_dir
):
    """The out-of-memory killer picks the work horse: rq fails the job without a callback, so the
    backend itself notices (here on the status route) that the run it marked running is gone."""
    fake, ls_url = fake_ls
    fake.add_project(1)
    ids = fake.add_tasks(1, TEXTS[:30])
    settings = make_settings(tmp_path, ls_url, tiny_model_dir)
    app = create_app(settings)
    client = app.test_client()
    for n, task_id in enumerate(ids[:3]):
        fake.choose(task_id, "Positive" if n % 2 else "Negative")
        client.post("/webhook", json=annotation_webhook(1, task_id))
    worker = start_endless_retrain(processes, settings, client)
    horses = subprocess.run(["pgrep", "-P", str(worker.pid)], capture_output=True, text=True).stdout.split()
    assert len(horses) == 1, horses
    os.kill(int(horses[0]), signal.SIGKILL)

    queue = Queue(settings.rq_queue, connection=redis_conn)
    failed = FailedJobRegistry(queue=queue)
    assert wait_until(lambda: failed.count == 1, timeout=30), "rq did not fail the job of the killed horse"
    processes.kill(worker)  # so that the retrain queued again runs in a worker with normal settings
    assert worker.poll() is not None and queue.count == 0

    status = client.get("/status/1").json["projects"]["1"]
    assert not status["running_retrain"] and status["pending_retrain"], status
    assert "interrupted" in status["last_error"] and queue.count == 1
    assert client.get("/status/1").json["projects"]["1"]["pending_retrain"] and queue.count == 1  # once

    assert run_worker(settings).returncode == 0
    status = client.get("/status/1").json["projects"]["1"]
    assert status["last_error"] is None and not status["running_retrain"] and not status["pending_retrain"]
    assert status["current_version"] and status["last_round"]["n_labeled"] == 3


def answer_503(handler) -> None:
    """The fake Label Studio's answer when it is overloaded or restarting."""
    handler.send_response(503)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def test_label_studio_down_while_publishing_is_retried_with_backoff_then_reported(
    tmp_path, fake_ls, tiny_model_dir
):
    fake, ls_url = fake_ls
    fake.add_labeled_project(2, 12)
    attempts: list[float] = []

    def unavailable(handler):  # the import route answers 503: Label Studio overloaded or restarting
        attempts.append(time.monotonic())
        answer_503(handler)

    fake.server.RequestHandlerClass.do_POST = unavailable
    app = create_app(backend_settings(ls_url, tmp_path / "store", tiny_model_dir, ls_retries=2))
    client = app.test_client()
    assert client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 2}}).status_code == 200
    assert app.extensions["al_backend"].runner.join(timeout=120)

    assert len(attempts) == 3  # the first call and 2 retries
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    assert gaps[0] >= 0.45 and gaps[1] >= 0.95  # 0.5 s then 1 s
    status = client.get("/status/2").json["projects"]["2"]
    assert "import" in status["last_error"] and "503" in status["last_error"], status
    assert not status["running_retrain"] and not status["pending_retrain"]
    assert fake.projects[2]["model_version"] == "backend-title"  # never pointed at unpublished scores


def test_label_studio_down_after_the_subset_is_published_leaves_the_ordering_on_the_subset(
    tmp_path, fake_ls, tiny_model_dir
):
    fake, ls_url = fake_ls
    ids = fake.add_labeled_project(4, 40)
    settings = backend_settings(
        ls_url, tmp_path / "store", tiny_model_dir, ls_retries=1, ups_full_first=1, ups_full_every=0,
        acquisition_mode="finetune", query_window=0,  # every task under every version: a subset, then the rest
    )
    app = create_app(settings)
    client = app.test_client()
    runner = app.extensions["al_backend"].runner

    def retrain() -> dict:
        assert client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 4}}).status_code == 200
        assert runner.join(timeout=120)
        return client.get("/status/4").json["projects"]["4"]

    v1 = retrain()["current_version"]  # iteration 0 scores the whole pool: one part
    fake.choose(ids[4], "Positive")
    handler_class = fake.server.RequestHandlerClass
    serve_post = handler_class.do_POST
    imports: list[int] = []

    def down_after_the_first_import(handler):  # Label Studio goes down between the two parts
        imports.append(1)
        if len(imports) == 1:
            return serve_post(handler)
        answer_503(handler)

    handler_class.do_POST = down_after_the_first_import
    status = retrain()
    v2 = status["current_version"]
    assert v2 != v1 and "import" in status["last_error"] and "503" in status["last_error"], status
    assert len(imports) == 3  # the subset, then the rest: its first call and one retry
    # the project points at v2 and Label Studio serves from its re-scored subset, the rest missing
    subset = fake.predictions_of(v2)
    assert fake.projects[4]["model_version"] == v2 and fake.activated_with[v2] == len(subset)
    assert 0 < len(subset) < len(ids) - 5
    assert not status["running_retrain"] and not status["pending_retrain"]

    handler_class.do_POST = serve_post  # Label Studio is back: the next retrain publishes everything
    status = retrain()
    assert status["last_error"] is None
    assert sorted(p["task"] for p in fake.predictions_of(status["current_version"])) == ids[5:]


def test_label_studio_down_while_reading_tasks_is_retried_and_the_retrain_completes(
    tmp_path, fake_ls, tiny_model_dir
):
    fake, ls_url = fake_ls
    fake.add_labeled_project(3, 12)
    handler_class = fake.server.RequestHandlerClass
    serve_get = handler_class.do_GET
    refused: list[str] = []

    def restarting(handler):  # Label Studio restarting: its first two reads answer 503
        if len(refused) < 2:
            refused.append(handler.path)
            return answer_503(handler)
        serve_get(handler)

    handler_class.do_GET = restarting
    app = create_app(backend_settings(ls_url, tmp_path / "store", tiny_model_dir, ls_retries=3))
    client = app.test_client()
    assert client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 3}}).status_code == 200
    assert app.extensions["al_backend"].runner.join(timeout=120)

    assert len(refused) == 2
    status = client.get("/status/3").json["projects"]["3"]
    assert status["last_error"] is None and status["current_version"], status
    assert status["last_round"]["n_labeled"] == 4
    assert fake.projects[3]["model_version"] == status["current_version"]


def test_a_failed_model_write_promotes_nothing(tmp_path, fake_ls, tiny_model_dir, monkeypatch):
    from al_core.models import TransformerClassifier
    from ml_backend.jobs.run import run_retrain
    from ml_backend.jobs.status import MemoryState

    fake, ls_url = fake_ls
    ids = fake.add_labeled_project(3, 12)
    settings = backend_settings(ls_url, tmp_path / "store", tiny_model_dir, acquisition_mode="finetune")
    v1 = run_retrain(3, settings, MemoryState())["version"]

    original_save = TransformerClassifier.save

    def disk_full(self, folder):  # half the weights reach the disk, then the disk is full
        original_save(self, folder)
        weights = Path(folder) / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(TransformerClassifier, "save", disk_full)
    fake.choose(ids[4], "Positive")
    state = MemoryState()
    with pytest.raises(OSError):
        run_retrain(3, settings, state)
    assert "No space left" in state.status("3")["last_error"]

    client = create_app(settings).test_client()
    status = client.get("/status/3").json["projects"]["3"]
    assert status["current_version"] == v1 and status["versions"] == [v1]
    project_dir = tmp_path / "store" / "3"
    assert [p.name for p in project_dir.iterdir() if p.name.startswith(".")] == []  # no staging left
    tasks = [{"id": ids[8], "data": fake.tasks[ids[8]]["data"]}]
    answer = client.post("/predict", json={"project": "3.1", "tasks": tasks, "label_config": CLS_CONFIG}).json
    assert answer["results"][0]["model_version"] == v1


def test_a_restarted_backend_recovers_versions_state_and_score_cache(
    tmp_path, redis_conn, fake_ls, run_worker, processes, tiny_model_dir
):
    from ml_backend.storage.store import RedisScoreCache

    fake, ls_url = fake_ls
    fake.add_project(4)
    ids = fake.add_tasks(4, TEXTS[:40])
    settings = make_settings(tmp_path, ls_url, tiny_model_dir, ups_full_first=1, ups_full_every=0)
    process, url = processes.backend(settings)
    for n, task_id in enumerate(ids[:4]):
        fake.choose(task_id, "Positive" if n % 2 else "Negative")
        assert http("POST", url + "/webhook", annotation_webhook(4, task_id))[0] == 200
    assert run_worker(settings).returncode == 0
    v1 = http("GET", url + "/status/4")[1]["projects"]["4"]["current_version"]
    cached = RedisScoreCache(redis_conn, 4).all()
    assert len(cached) == 36

    fake.choose(ids[4], "Negative")  # an annotation arrives, then the web process dies
    assert http("POST", url + "/webhook", annotation_webhook(4, ids[4]))[1]["retrain"] == "queued"
    processes.kill(process)
    process, url = processes.backend(settings)

    assert http("GET", url + "/versions?project=4")[1]["versions"] == [v1]
    assert http("POST", url + "/setup", {"project": "4.1", "schema": CLS_CONFIG})[1] == {"model_version": v1}
    status = http("GET", url + "/status/4")[1]["projects"]["4"]
    assert status["pending_retrain"] and status["current_version"] == v1
    assert RedisScoreCache(redis_conn, 4).all() == cached

    assert run_worker(settings).returncode == 0  # the retrain queued before the restart runs
    status = http("GET", url + "/status/4")[1]["projects"]["4"]
    assert status["current_version"] != v1 and status["last_round"]["n_labeled"] == 5
    assert 0 < status["last_round"]["n_scored"] < status["last_round"]["n_pool"]  # the cache was reused
    tasks = [{"id": ids[30], "data": fake.tasks[ids[30]]["data"]}]
    answer = http("POST", url + "/predict", {"project": "4.1", "tasks": tasks, "label_config": CLS_CONFIG})[1]
    assert answer["results"][0]["model_version"] == status["current_version"]


def test_redis_lost_during_a_job_promotes_nothing_and_the_loop_recovers_when_it_is_back(
    tmp_path, fake_ls, processes, run_worker, tiny_model_dir
):
    from redis import Redis
    from redis.exceptions import RedisError

    server = shutil.which("redis-server")
    require_or_skip(server is not None, "no redis-server executable to run a private Redis")
    port = free_port()
    redis_args = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]

    def start_redis() -> subprocess.Popen:
        process = processes.start(redis_args, dict(os.environ))
        connection = Redis(port=port)

        def up() -> bool:
            try:
                return connection.ping()
            except RedisError:
                return False

        assert wait_until(up, timeout=20)
        return process

    redis_server = start_redis()
    fake, ls_url = fake_ls
    fake.add_project(5)
    ids = fake.add_tasks(5, TEXTS[:20])
    settings = backend_settings(
        ls_url, tmp_path / "store", tiny_model_dir, redis_url=f"redis://127.0.0.1:{port}/0", rq_queue="al-lost"
    )
    client = create_app(settings).test_client()
    for n, task_id in enumerate(ids[:4]):
        fake.choose(task_id, "Positive" if n % 2 else "Negative")
        client.post("/webhook", json=annotation_webhook(5, task_id))
    assert run_worker(settings).returncode == 0
    v1 = client.get("/status/5").json["projects"]["5"]["current_version"]

    fake.choose(ids[4], "Negative")
    assert client.post("/webhook", json=annotation_webhook(5, ids[4])).json["retrain"] == "queued"
    waiting = settings.model_copy(update={"retrain_delay": 3.0})  # the job holds still 3 s once started
    worker = processes.start(
        [str(RQ), "worker", "--url", settings.redis_url, settings.rq_queue], worker_env(waiting)
    )
    registry = StartedJobRegistry(settings.rq_queue, connection=Redis(port=port))
    assert wait_until(lambda: registry.count == 1, timeout=60)
    processes.kill(redis_server)  # Redis goes away while the job runs

    reply = client.post("/webhook", json=annotation_webhook(5, ids[5]))
    assert reply.status_code == 503 and "Redis is unavailable" in reply.json["error"]
    task = {"id": ids[10], "data": fake.tasks[ids[10]]["data"]}
    served = client.post("/predict", json={"project": "5.1", "tasks": [task], "label_config": CLS_CONFIG}).json
    assert served["results"][0]["model_version"] == v1  # serving needs no Redis
    assert worker.wait(timeout=60) != 0  # the worker cannot go on without Redis ...
    assert client.get("/versions?project=5").json["versions"] == [v1]  # ... and promoted nothing

    start_redis()  # back, empty: the queue and the state were in memory only
    assert client.post("/webhook", json=annotation_webhook(5, ids[4])).json["retrain"] == "queued"
    assert run_worker(settings).returncode == 0
    status = client.get("/status/5").json["projects"]["5"]
    assert status["current_version"] != v1 and status["last_error"] is None
    assert status["last_round"]["n_labeled"] == 5  # every annotation, read again from Label Studio

