"""Replay: play Label Studio's part against a running ML backend, through the real protocol.

Label Studio is the shared fake (testkit.fake_label_studio.FakeLabelStudio, the API routes of Label
Studio 1.23.2 served from memory: the project and its counters, the task listing with its
`updated_at` filter, the JSON export, bulk prediction import, model versions, project PATCH
to activate a version). The replay then does what Label Studio and an annotator do: connect
(GET /health, POST /setup), annotate a seed set task by task (each annotation is stored in the
fake, then followed by an ANNOTATION_CREATED webhook with Label Studio's payload shape), wait
for the backend to publish a new version, retrieve predictions for every unlabeled task in one
POST /predict (the Data Manager action), and then annotate the tasks with the lowest score of
the active version first (uncertainty sampling), iteration after iteration.

Measured per iteration: webhook answer times (Label Studio waits 1 s), the time from the
last annotation to the new version being active, the /predict time, how many predictions
were published, and the accuracy of the published labels on the unlabeled pool.

The backend must read Label Studio at the URL the replay prints (LABEL_STUDIO_URL) with the
fake's token (LABEL_STUDIO_API_KEY); `start_backend` launches `ml-backend` with both set.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from al_core.data import Example
from al_core.exceptions import ALError
from al_core.kinds import kind_of
from al_core.ls_format import parse_label_config, prediction_result, task_to_example
from testkit.fake_label_studio import TOKEN, FakeLabelStudio


def label_config_xml(kind: str, labels: list[str]) -> str:
    """A Label Studio labeling config for the dataset's kind and model labels (tagging: IOB2 tags)."""
    return kind_of(kind).label_config_xml(labels)


class ReplayError(ALError):
    """The backend did not answer as Label Studio expects."""


class Replay:
    """Label Studio and an annotator, replaying gold labels against a backend at `backend_url`.

    `ls` is the fake Label Studio holding the project (`project_id`), one task per example
    (`by_task`: task id -> example); `ls.start()` serves it, and the backend must read it there.
    """

    def __init__(
        self,
        examples: list[Example],
        kind: str,
        labels: list[str],
        backend_url: str,
        project_id: int = 1,
        timeout: float = 600.0,
        settle: float = 1.0,
    ):
        self.examples = examples
        self.kind = kind
        self.backend = backend_url.rstrip("/")
        self.timeout = timeout
        self.settle = settle  # seconds a version's predictions stay unchanged before it counts as published
        self.label_config = label_config_xml(kind, labels)
        self.config = parse_label_config(self.label_config)
        self.project_id = project_id
        self.ls = FakeLabelStudio()
        self.ls.add_project(project_id, self.label_config)
        ids = self.ls.add_tasks(project_id, [e.text for e in examples], key=self.config.value_key)
        self.by_task: dict[int, Example] = dict(zip(ids, examples))
        self.client = httpx.Client(timeout=httpx.Timeout(timeout, connect=5.0))

    @property
    def ls_project(self) -> str:
        return f"{self.project_id}.{int(time.time())}"

    def _tasks(self) -> list[dict]:
        """The project's tasks as the fake stores them (call with `ls.lock` held)."""
        return [t for t in self.ls.tasks.values() if t["project"] == self.project_id]

    def active_version(self) -> str | None:
        """The project's model_version: the predictions Label Studio's uncertainty sampling reads."""
        with self.ls.lock:
            return self.ls.projects[self.project_id].get("model_version")

    def n_unlabeled(self) -> int:
        with self.ls.lock:
            return sum(1 for t in self._tasks() if not t["annotations"])

    # -- what Label Studio sends -----------------------------------------------------------
    def connect(self) -> str:
        try:
            health = self.client.get(f"{self.backend}/health", timeout=5.0)
        except httpx.HTTPError as error:
            raise ReplayError(f"cannot reach the backend at {self.backend}: {error}") from None
        if health.status_code != 200:
            raise ReplayError(f"GET /health answered {health.status_code}: {health.text[:200]}")
        return self.setup()

    def setup(self) -> str:
        answer = self.client.post(
            f"{self.backend}/setup",
            json={
                "project": self.ls_project,
                "schema": self.label_config,
                "hostname": "http://127.0.0.1",
                "access_token": TOKEN,
                "extra_params": None,
            },
            timeout=10.0,
        )
        if answer.status_code != 200 or "model_version" not in answer.json():
            raise ReplayError(f"POST /setup answered {answer.status_code}: {answer.text[:200]}")
        return answer.json()["model_version"]

    def store_annotation(self, task_id: int) -> int:
        """The annotator submits the gold label of the task: stored in Label Studio; its id."""
        return self.ls.annotate(
            task_id,
            prediction_result(self.by_task[task_id], self.config),
            lead_time=3.2,
            completed_by=1,
            updated_by=1,
            result_count=1,
            parent_prediction=None,
            parent_annotation=None,
        )

    def annotate(self, task_id: int) -> float:
        """Store the gold annotation, then send ANNOTATION_CREATED; returns the webhook's answer time."""
        payload = self.ls.annotation_created(self.store_annotation(task_id))
        start = time.perf_counter()
        answer = self.client.post(f"{self.backend}/webhook", json=payload, timeout=30.0)
        elapsed = time.perf_counter() - start
        if answer.status_code >= 300:
            raise ReplayError(f"POST /webhook answered {answer.status_code}: {answer.text[:200]}")
        return elapsed

    def predict_unlabeled(self) -> tuple[float, list[dict]]:
        """The Data Manager's "Retrieve predictions": /setup, then one /predict with every unlabeled task."""
        self.setup()
        with self.ls.lock:
            ids = [t["id"] for t in self._tasks() if not t["annotations"]]
        tasks = [self.ls.task_view(i, full=True) for i in ids]
        start = time.perf_counter()
        answer = self.client.post(
            f"{self.backend}/predict",
            json={
                "tasks": tasks,
                "project": self.ls_project,
                "label_config": self.label_config,
                "params": {"login": None, "password": None, "context": None},
            },
        )
        elapsed = time.perf_counter() - start
        if answer.status_code != 200:
            raise ReplayError(f"POST /predict answered {answer.status_code}: {answer.text[:200]}")
        results = answer.json().get("results", [])
        if len(results) != len(tasks):
            raise ReplayError(
                f"/predict gave {len(results)} results for {len(tasks)} tasks (Label Studio stores none)"
            )
        return elapsed, results

    # -- waiting for the backend -------------------------------------------------------------
    def _published(self, version: str) -> tuple[int, int, bool]:
        """(predictions of `version`, unlabeled tasks holding one, whether no labeled task holds one)
        (call with `ls.lock` held)."""
        total = covered = on_labeled = 0
        for task in self._tasks():
            mine = sum(p.get("model_version") == version for p in task["predictions"])
            total += mine
            if task["annotations"]:
                on_labeled += mine
            else:
                covered += mine > 0
        return total, covered, on_labeled == 0

    def wait_for_version(self, after: float, n_unlabeled: int) -> tuple[str, float]:
        """Wait until a version activated after `after` read every annotation (it published nothing
        for a labeled task) and is published: a prediction for every unlabeled task, or (a backend
        publishing a bounded query window, AL_QUERY_WINDOW) its predictions unchanged for `settle` s.
        Returns the version and the time it was activated."""
        deadline = time.perf_counter() + self.timeout
        waiting_since, checked = time.time() - (time.perf_counter() - after), 0.0
        seen: dict[str, tuple[int, float]] = {}  # version -> (predictions, since when)
        while time.perf_counter() < deadline:
            now = time.perf_counter()
            if now - checked >= 1.0:
                checked = now
                self._raise_if_retrain_failed(waiting_since)
            with self.ls.lock:
                for moment, version in reversed(self.ls.activations):
                    if moment < after:
                        break
                    total, covered, saw_all = self._published(version)
                    if total != seen.get(version, (None, 0.0))[0]:
                        seen[version] = (total, now)
                    settled = now - seen[version][1] >= self.settle
                    if saw_all and (covered == n_unlabeled or settled):
                        return version, moment
            time.sleep(0.2)
        calls = "; ".join(self.ls.unserved[-3:])
        raise ReplayError(
            f"no new model version within {self.timeout:.0f} s"
            + (f" (unserved calls from the backend: {calls})" if calls else "")
        )

    def _raise_if_retrain_failed(self, since: float) -> None:
        """A retrain that failed after `since` (wall clock) with none pending or running will give no
        version: say why now rather than at the timeout. Unreadable /status answers are ignored."""
        try:
            answer = self.client.get(f"{self.backend}/status", timeout=5.0)
            state = answer.json()["projects"].get(str(self.project_id), {})
        except (httpx.HTTPError, ValueError, KeyError, AttributeError):
            return
        failed_at = state.get("last_error_at") or 0.0
        if failed_at >= since and not state.get("pending_retrain") and not state.get("running_retrain"):
            raise ReplayError(f"the backend's retrain failed: {state.get('last_error')}")

    def next_batch(self, version: str, size: int) -> list[int]:
        """Uncertainty sampling as Label Studio does it: of the unlabeled tasks, those with a
        prediction of `version` (the active one), lowest score first (a null score last, ties by
        task id); then the tasks without one."""
        with self.ls.lock:
            ranked = []
            for task in self._tasks():
                if task["annotations"]:
                    continue
                scores = [p.get("score") for p in task["predictions"] if p.get("model_version") == version]
                key = min(((s is None, s or 0.0) for s in scores), default=(True, float("inf")))
                ranked.append((not scores, *key, task["id"]))
        return [r[-1] for r in sorted(ranked)[:size]]

    def pool_quality(self, version: str) -> float | None:
        """The kind's headline metric (macro F1, span F1) of the pre-annotations `version` published
        on unlabeled tasks against their gold labels, both read back as Label Studio results."""
        kind = self.config.task_kind
        gold, predicted = [], []
        with self.ls.lock:
            for task in self._tasks():
                mine = [p for p in task["predictions"] if p.get("model_version") == version]
                if task["annotations"] or not mine:
                    continue
                stub = {"id": task["id"], "data": task["data"]}
                truth = {"result": prediction_result(self.by_task[task["id"]], self.config)}
                gold.append(kind.gold(task_to_example(stub, self.config, truth)))
                read = task_to_example(stub, self.config, {"result": mine[-1]["result"]}, lenient=True)
                predicted.append(kind.gold(read))
        return kind.score(gold, predicted) if gold else None

    def run(self, seed_ids: list[int], batch_size: int, iterations: int, progress: bool = True):
        """Yields one record per iteration: annotate a batch, wait for the retrain, predict."""
        from tqdm.auto import tqdm

        self.connect()
        batch = list(seed_ids)
        for t in tqdm(range(iterations + 1), desc="replay", disable=not progress):
            try:
                webhook_s = [self.annotate(i) for i in batch]
            except httpx.HTTPError as error:
                raise ReplayError(f"the backend stopped answering webhooks: {error}") from None
            last = time.perf_counter()
            n_unlabeled = self.n_unlabeled()
            version, activated = self.wait_for_version(last, n_unlabeled)
            try:
                predict_s, results = self.predict_unlabeled()
            except httpx.HTTPError as error:
                raise ReplayError(f"/setup or /predict failed: {error}") from None
            with self.ls.lock:
                labeled = len(self._tasks()) - n_unlabeled
                sampling = self.ls.projects[self.project_id].get("sampling")
            record = {
                "iteration": t,
                "labeled": labeled,
                "annotated_now": len(batch),
                "annotated_ids": [self.by_task[i].id for i in batch],
                "version": version,
                "webhook_max_s": max(webhook_s),
                "webhook_mean_s": sum(webhook_s) / len(webhook_s),
                "retrain_latency_s": activated - last,
                "predict_s": predict_s,
                "predict_tasks": len(results),
                "published": len(self.ls.predictions_of(version)),
                "pool_metric": self.config.task_kind.metric,
                "pool_quality": self.pool_quality(version),
                "sampling": sampling,
            }
            yield record
            # Label Studio serves from the project's version now (a later retrain may have replaced it)
            batch = self.next_batch(self.active_version() or version, batch_size)
            if not batch:
                break


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_backend(
    ls_url: str, port: int, model_dir: str, extra_env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Launch `ml-backend` (this interpreter's package) reading Label Studio at `ls_url`."""
    env = {
        **os.environ,
        "LABEL_STUDIO_URL": ls_url,
        "LABEL_STUDIO_API_KEY": TOKEN,
        "AL_PORT": str(port),
        "MODEL_DIR": model_dir,
        **(extra_env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-c", "from ml_backend.cli import main; raise SystemExit(main())"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


def wait_until_up(url: str, timeout: float = 60.0) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise ReplayError(f"the backend at {url} did not answer /health within {timeout:.0f} s")


def replay_config(
    config,
    backend_url: str | None,
    out: Path,
    timeout: float,
    progress: bool = True,
    backend_env: dict[str, str] | None = None,
    ls_port: int = 0,
) -> Path:
    """Replays the config's dataset (first seed, its seed set and batch size) against a backend.

    With backend_url None, an `ml-backend` process is started for the replay and stopped after.
    Writes replay.jsonl in `out`.
    """
    import numpy as np

    from simulate.runner import draw_seed_set, load_data

    data = load_data(config)
    replay = Replay(
        [data.gold[e.id] for e in data.pool], data.kind, data.labels, backend_url or "", timeout=timeout
    )
    seed = config.seeds[0]
    number_of = {e.id: n for n, e in replay.by_task.items()}
    seed_tasks = [number_of[i] for i in draw_seed_set(config, data, seed)]
    if config.batch.in_words:  # the live loop asks by count: the budget as an average number of sentences
        mean_words = float(np.mean([e.n_words for e in data.pool])) or 1.0
        batch_size = max(1, round(config.batch.resolve(len(data.pool), data.pool_words) / mean_words))
    else:
        batch_size = config.batch.resolve(len(data.pool), data.pool_words)
    path = out / "replay.jsonl"
    process = None
    ls_url = replay.ls.start(port=ls_port)
    print(
        f"Label Studio routes served at {ls_url} (LABEL_STUDIO_URL), token {TOKEN} (LABEL_STUDIO_API_KEY)",
        file=sys.stderr,
    )
    try:
        if backend_url is None:
            port = free_port()
            replay.backend = f"http://127.0.0.1:{port}"
            out.mkdir(parents=True, exist_ok=True)
            process = start_backend(ls_url, port, str(out / "backend-models"), backend_env)
            wait_until_up(replay.backend)
        for n, record in enumerate(replay.run(seed_tasks, batch_size, config.iterations, progress=progress)):
            out.mkdir(parents=True, exist_ok=True)
            with path.open("w" if n == 0 else "a", encoding="utf-8") as records:  # no file before a record
                records.write(json.dumps(record) + "\n")
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
        replay.ls.stop()
    return path
