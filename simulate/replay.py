"""Replay: play Label Studio's part against a running ML backend, through the real protocol.

A small in-process HTTP server answers the Label Studio API routes the backend calls back
(the project, the paginated task listing with annotations, bulk prediction import, project
PATCH to activate a version). The replay then does what Label Studio and an annotator do:
connect (GET /health, POST /setup), annotate a seed set task by task (each annotation is
followed by an ANNOTATION_CREATED webhook with Label Studio's payload shape), wait for the
backend to publish a new version, retrieve predictions for every unlabeled task in one
POST /predict (the Data Manager action), and then annotate the tasks with the lowest
published score first (uncertainty sampling), iteration after iteration.

Measured per iteration: webhook answer times (Label Studio waits 1 s), the time from the
last annotation to the new version being active, the /predict time, how many predictions
were published, and the accuracy of the published labels on the unlabeled pool.

The backend must read Label Studio at the URL this server prints (LABEL_STUDIO_URL) with the
token it prints (LABEL_STUDIO_API_KEY); `start_backend` launches `ml-backend` with both set.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse
from xml.sax.saxutils import quoteattr

import httpx

from al_core.data import CLASSIFICATION, Example
from al_core.exceptions import ALError
from al_core.ls_format import parse_label_config, prediction_result

TOKEN = "replaytoken0123456789abcdef"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def label_config_xml(kind: str, labels: list[str]) -> str:
    """A Label Studio labeling config for the dataset: Choices (classification) or Labels (tagging)."""
    if kind == CLASSIFICATION:
        choices = "\n".join(f"    <Choice value={quoteattr(label)}/>" for label in labels)
        return (
            f'<View>\n  <Text name="text" value="$text"/>\n  <Choices name="label" toName="text" '
            f'choice="single">\n{choices}\n  </Choices>\n</View>'
        )
    types = sorted({t.split("-", 1)[1] for t in labels if t != "O"})
    entries = "\n".join(f"    <Label value={quoteattr(t)}/>" for t in types)
    return f'<View>\n  <Labels name="label" toName="text">\n{entries}\n  </Labels>\n  <Text name="text" value="$text"/>\n</View>'


@dataclass
class FakeProject:
    """The state Label Studio keeps for one project: tasks, annotations, predictions."""

    id: int
    title: str
    label_config: str
    tasks: dict[int, dict] = field(default_factory=dict)
    predictions: dict[int, list[dict]] = field(default_factory=dict)
    model_version: str = ""
    sampling: str = "Sequential sampling"
    created_at: str = field(default_factory=_now)
    activations: list[tuple[float, str]] = field(default_factory=list)  # (time, version)
    unknown_calls: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_annotation_id: int = 1
    next_prediction_id: int = 1

    def as_json(self) -> dict:
        annotations = sum(len(t["annotations"]) for t in self.tasks.values())
        return {
            "id": self.id,
            "title": self.title,
            "description": "",
            "label_config": self.label_config,
            "model_version": self.model_version,
            "sampling": self.sampling,
            "task_number": len(self.tasks),
            "total_annotations_number": annotations,
            "num_tasks_with_annotations": sum(1 for t in self.tasks.values() if t["annotations"]),
            "total_predictions_number": sum(len(p) for p in self.predictions.values()),
            "show_skip_button": True,
            "enable_empty_annotation": True,
            "maximum_annotations": 1,
            "min_annotations_to_start_training": 0,
            "created_at": self.created_at,
            "updated_at": _now(),
            "is_published": False,
            "is_draft": False,
            "organization": 1,
            "created_by": {
                "id": 1,
                "first_name": "",
                "last_name": "",
                "email": "annotator@example.com",
                "avatar": None,
            },
        }

    def task_json(self, task_id: int) -> dict:
        task = self.tasks[task_id]
        predictions = self.predictions.get(task_id, [])
        return {
            **task,
            "is_labeled": bool(task["annotations"]),
            "total_annotations": len(task["annotations"]),
            "cancelled_annotations": 0,
            "total_predictions": len(predictions),
            "predictions": predictions,
            "project": self.id,
            "overlap": 1,
            "inner_id": task_id,
            "updated_at": _now(),
        }


class _Handler(BaseHTTPRequestHandler):
    project: FakeProject  # set on the subclass the server makes

    def log_message(self, *args):  # quiet: the replay prints its own progress
        pass

    def _send(self, status: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if header in (f"Token {TOKEN}", f"Bearer {TOKEN}"):
            return True
        self._send(401, {"detail": "Authentication credentials were not provided or are invalid."})
        return False

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"null")

    def _route(self, method: str) -> None:
        if not self._authorized():
            return
        url = urlparse(self.path)
        path, query = url.path.rstrip("/"), parse_qs(url.query)
        project = self.project
        match = re.fullmatch(r"/api/projects/(\d+)(/import/predictions)?", path)
        if match and int(match.group(1)) != project.id:
            return self._send(404, {"detail": "Not found."})
        if match and method == "GET" and not match.group(2):
            return self._send(200, project.as_json())
        if match and method == "PATCH" and not match.group(2):
            return self._patch_project(self._body())
        if match and method == "POST" and match.group(2):
            return self._import_predictions(self._body())
        if path == "/api/tasks" and method == "GET":
            return self._list_tasks(query)
        if path == "/api/current-user/whoami" and method == "GET":  # the backend's check of its key
            return self._send(200, {"id": 1, "email": "replay@example.com"})
        project.unknown_calls.append(f"{method} {self.path}")
        self._send(404, {"detail": f"not served by the replay: {method} {path}"})

    def _patch_project(self, body) -> None:
        project = self.project
        with project.lock:
            version = (body or {}).get("model_version")
            if version is not None:
                known = {p["model_version"] for ps in project.predictions.values() for p in ps}
                if version not in known:  # what Label Studio answers, as observed
                    return self._send(
                        400,
                        {
                            "detail": "Model version doesn't exist either as live model or as "
                            "static predictions."
                        },
                    )
                project.model_version = version
                project.activations.append((time.perf_counter(), version))
            if (body or {}).get("sampling"):
                project.sampling = body["sampling"]
            answer = project.as_json()
        self._send(200, answer)

    def _import_predictions(self, body) -> None:
        project = self.project
        if not isinstance(body, list):
            return self._send(400, {"detail": "expected a list of predictions"})
        with project.lock:
            for item in body:
                task_id = item.get("task")
                if task_id not in project.tasks:
                    return self._send(
                        400, {"detail": f"task {task_id} does not exist in project {project.id}"}
                    )
            for item in body:
                prediction = {
                    "id": project.next_prediction_id,
                    "task": item["task"],
                    "project": project.id,
                    "result": item.get("result", []),
                    "score": item.get("score"),
                    "model_version": item.get("model_version", ""),
                    "created_at": _now(),
                }
                project.next_prediction_id += 1
                project.predictions.setdefault(item["task"], []).append(prediction)
        self._send(201, {"created": len(body)})

    def _list_tasks(self, query) -> None:
        project = self.project
        if query.get("project", [str(project.id)])[0] != str(project.id):
            return self._send(200, {"tasks": [], "total": 0})
        page = int(query.get("page", ["1"])[0])
        size = int(query.get("page_size", ["100"])[0])
        with project.lock:
            ids = sorted(project.tasks)
            chunk = [project.task_json(i) for i in ids[(page - 1) * size : page * size]]
        self._send(200, {"tasks": chunk, "total": len(ids), "total_annotations": 0, "total_predictions": 0})

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_PATCH(self):
        self._route("PATCH")


class FakeLabelStudio:
    """The Label Studio API routes the backend calls, served from memory on 127.0.0.1."""

    def __init__(self, project: FakeProject, port: int = 0):
        handler = type("Handler", (_Handler,), {"project": project})
        self.project = project
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeLabelStudio:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class ReplayError(ALError):
    """The backend did not answer as Label Studio expects."""


class Replay:
    """Label Studio and an annotator, replaying gold labels against a backend at `backend_url`."""

    def __init__(
        self,
        examples: list[Example],
        kind: str,
        labels: list[str],
        backend_url: str,
        project_id: int = 1,
        timeout: float = 600.0,
    ):
        self.examples = examples
        self.kind = kind
        self.backend = backend_url.rstrip("/")
        self.timeout = timeout
        xml = label_config_xml(kind, labels)
        self.config = parse_label_config(xml)
        self.project = FakeProject(id=project_id, title="replay", label_config=xml)
        self.by_task: dict[int, Example] = {}
        for number, example in enumerate(examples, start=1):
            self.by_task[number] = example
            self.project.tasks[number] = {
                "id": number,
                "data": {self.config.value_key: example.text},
                "meta": {},
                "annotations": [],
                "created_at": _now(),
            }
        self.client = httpx.Client(timeout=httpx.Timeout(timeout, connect=5.0))

    @property
    def ls_project(self) -> str:
        return f"{self.project.id}.{int(time.time())}"

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
                "schema": self.project.label_config,
                "hostname": "http://127.0.0.1",
                "access_token": TOKEN,
                "extra_params": None,
            },
            timeout=10.0,
        )
        if answer.status_code != 200 or "model_version" not in answer.json():
            raise ReplayError(f"POST /setup answered {answer.status_code}: {answer.text[:200]}")
        return answer.json()["model_version"]

    def annotate(self, task_id: int) -> float:
        """Store the gold annotation, then send ANNOTATION_CREATED; returns the webhook's answer time."""
        example = self.by_task[task_id]
        project = self.project
        with project.lock:
            annotation = {
                "id": project.next_annotation_id,
                "result": prediction_result(example, self.config),
                "was_cancelled": False,
                "ground_truth": False,
                "created_at": _now(),
                "updated_at": _now(),
                "lead_time": 3.2,
                "task": task_id,
                "project": project.id,
                "completed_by": 1,
                "updated_by": 1,
                "result_count": 1,
                "parent_prediction": None,
                "parent_annotation": None,
            }
            project.next_annotation_id += 1
            project.tasks[task_id]["annotations"].append(annotation)
            payload = {
                "action": "ANNOTATION_CREATED",
                "annotation": annotation,
                "task": {k: v for k, v in project.task_json(task_id).items() if k != "predictions"},
                "project": project.as_json(),
            }
        start = time.perf_counter()
        answer = self.client.post(f"{self.backend}/webhook", json=payload, timeout=30.0)
        elapsed = time.perf_counter() - start
        if answer.status_code >= 300:
            raise ReplayError(f"POST /webhook answered {answer.status_code}: {answer.text[:200]}")
        return elapsed

    def predict_unlabeled(self) -> tuple[float, list[dict]]:
        """The Data Manager's "Retrieve predictions": /setup, then one /predict with every unlabeled task."""
        self.setup()
        with self.project.lock:
            tasks = [self.project.task_json(i) for i, t in self.project.tasks.items() if not t["annotations"]]
        start = time.perf_counter()
        answer = self.client.post(
            f"{self.backend}/predict",
            json={
                "tasks": tasks,
                "project": self.ls_project,
                "label_config": self.project.label_config,
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
    def wait_for_version(self, after: float, n_unlabeled: int) -> tuple[str, float]:
        """Wait until a version activated after `after` holds a prediction for every unlabeled task."""
        deadline = time.perf_counter() + self.timeout
        while time.perf_counter() < deadline:
            with self.project.lock:
                for moment, version in reversed(self.project.activations):
                    if moment < after:
                        break
                    covered = sum(
                        1
                        for i, t in self.project.tasks.items()
                        if not t["annotations"]
                        and any(p["model_version"] == version for p in self.project.predictions.get(i, []))
                    )
                    saw_all = not any(  # published for unlabeled tasks only: it read every annotation
                        p["model_version"] == version
                        for i, t in self.project.tasks.items()
                        if t["annotations"]
                        for p in self.project.predictions.get(i, [])
                    )
                    if covered == n_unlabeled and saw_all:
                        return version, moment
            time.sleep(0.2)
        calls = "; ".join(self.project.unknown_calls[-3:])
        raise ReplayError(
            f"no new model version within {self.timeout:.0f} s"
            + (f" (unserved calls from the backend: {calls})" if calls else "")
        )

    def next_batch(self, version: str, size: int) -> list[int]:
        """Uncertainty sampling as Label Studio does it: the lowest published score first."""
        with self.project.lock:
            scored = []
            for i, task in self.project.tasks.items():
                if task["annotations"]:
                    continue
                mine = [p for p in self.project.predictions.get(i, []) if p["model_version"] == version]
                scored.append((mine[-1]["score"] if mine else float("inf"), i))
        return [i for _, i in sorted(scored)[:size]]

    def pool_accuracy(self, version: str) -> float | None:
        """Share of unlabeled tasks whose published label (classification) matches the gold one."""
        if self.kind != CLASSIFICATION:
            return None
        hits = total = 0
        with self.project.lock:
            for i, task in self.project.tasks.items():
                mine = [p for p in self.project.predictions.get(i, []) if p["model_version"] == version]
                if task["annotations"] or not mine or not mine[-1]["result"]:
                    continue
                total += 1
                hits += mine[-1]["result"][0]["value"]["choices"][0] == self.by_task[i].label
        return hits / total if total else None

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
            n_unlabeled = sum(1 for task in self.project.tasks.values() if not task["annotations"])
            version, activated = self.wait_for_version(last, n_unlabeled)
            try:
                predict_s, results = self.predict_unlabeled()
            except httpx.HTTPError as error:
                raise ReplayError(f"/setup or /predict failed: {error}") from None
            record = {
                "iteration": t,
                "labeled": len(self.project.tasks) - n_unlabeled,
                "annotated_now": len(batch),
                "version": version,
                "webhook_max_s": max(webhook_s),
                "webhook_mean_s": sum(webhook_s) / len(webhook_s),
                "retrain_latency_s": activated - last,
                "predict_s": predict_s,
                "predict_tasks": len(results),
                "published": sum(
                    len([p for p in ps if p["model_version"] == version])
                    for ps in self.project.predictions.values()
                ),
                "pool_accuracy": self.pool_accuracy(version),
                "sampling": self.project.sampling,
            }
            yield record
            batch = self.next_batch(version, batch_size)
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
    with FakeLabelStudio(replay.project, port=ls_port) as ls:
        print(
            f"Label Studio routes served at {ls.url} (LABEL_STUDIO_URL), token {TOKEN} (LABEL_STUDIO_API_KEY)",
            file=sys.stderr,
        )
        try:
            if backend_url is None:
                port = free_port()
                replay.backend = f"http://127.0.0.1:{port}"
                out.mkdir(parents=True, exist_ok=True)
                process = start_backend(ls.url, port, str(out / "backend-models"), backend_env)
                wait_until_up(replay.backend)
            for n, record in enumerate(
                replay.run(seed_tasks, batch_size, config.iterations, progress=progress)
            ):
                out.mkdir(parents=True, exist_ok=True)
                with path.open(
                    "w" if n == 0 else "a", encoding="utf-8"
                ) as records:  # no file before a record
                    records.write(json.dumps(record) + "\n")
        finally:
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
    return path
