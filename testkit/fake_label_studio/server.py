"""A tiny Label Studio speaking the few API routes the backend calls, as Label Studio 1.23.2 does.

Routes (all need `Authorization: Token <TOKEN>`; every call is logged in `calls` as (method, path)):
- GET /api/current-user/whoami
- GET /api/projects/<id>/ and PATCH /api/projects/<id>/: the project, with `task_number`,
  `total_annotations_number` (annotations not cancelled) and `skipped_annotations_number`
  (cancelled ones) counted at request time. PATCHing model_version to a version with no
  predictions answers 400, as the real server does; `activated_with[version]` keeps how many
  predictions the version held when it was activated.
- GET /api/tasks/?project=P (paged by `page`/`page_size`, 404 past the last page as LS does):
  with `fields=all` the tasks come with `annotations` and `predictions`; without it (LS's
  "task_only") they have neither, only ids, data, times and the counts `total_annotations`
  (not cancelled), `cancelled_annotations`, `total_predictions`. `query` (JSON) may hold
  `filters` items; only "filter:tasks:updated_at" "greater" is applied (its value must be
  `%Y-%m-%dT%H:%M:%S.%fZ`, else 400), the others are ignored.
- GET /api/projects/<id>/export?exportType=JSON&download_all_tasks=true|false&ids[]=1&ids[]=2:
  the project's tasks (those of `ids[]` when given) with full annotations, predictions as ids
  only and `drafts`; `download_all_tasks` false (its default) keeps only annotated tasks
  (cancelled annotations count).
- GET /api/projects/<id>/model-versions/: {model_version: predictions of it in the project}.
  DELETE it with {"model_version": v}: deletes them all, answers {"deleted_predictions": n}
  (400 without a version) and, as LS does, sets the project's model_version to None when it is
  `v` or one of `ml_backend_titles`.
- GET /api/projects/<id>/next: the task "Uncertainty sampling" serves (projects/functions/
  next_task.py): of the tasks with no annotation, one holding a prediction of the project's
  model_version, lowest score first (ties: lowest id), with `"queue": "uncertainty"`; when no such
  task exists LS picks a random unlabeled task: the fake takes the lowest id, `"queue": "random"`.
  404 when no unlabeled task is left. `next_task(project_id)` answers the same without HTTP.
- POST /api/projects/<id>/import/predictions (below).

Times: tasks and annotations have `created_at` and `updated_at` (`%Y-%m-%dT%H:%M:%S.%fZ`, UTC) from
a clock that strictly increases, so tests can rely on ordering. A task's `updated_at` is bumped
when it is created and when one of its annotations is created, updated (`update_annotation`) or
deleted (`delete_annotation`); importing or deleting predictions does not bump it (LS
bulk-creates and bulk-deletes them). Imported predictions get an integer `id`, `project` and
`created_at`.

Importing predictions behaves as Label Studio 1.23.2 does (data_import/api.py):
- a task id that is not in the project refuses the whole request with HTTP 400
  ("... contains invalid "task" field: corresponding task ID couldn't be retrieved ...");
- `import_mode = "legacy"` (its default): a prediction whose regions do not fit the label config
  (a label not in it, another from_name) is left out, only logged, and the answer is still 201
  with `created` counting the others; `"validating"` (its prediction-validation flag): 400 listing
  "Prediction <i>: <reason>" for each; `"memory_efficient"` (its faster import flag): stored as is,
  in chunks of `chunk_size`, each stored before the next is checked (a missing task in a later
  chunk leaves the earlier ones stored, and the answer is still a 400).

Faults: with `fail_with` set to an HTTP status, every call is answered with it and a body quoting
the request's headers, as the error page of a misbehaving server or proxy may (the token check
comes after, so any key gets it).

Hooks for the simulator's replay (simulate/replay.py): `activations` lists (time.perf_counter(),
version) for each PATCH of model_version, `unserved` the calls no route answers ("METHOD /path"),
`annotation_created(annotation_id)` is the ANNOTATION_CREATED webhook body Label Studio sends,
from the fake's state, and `start(port)` serves on a chosen port.

Minimal webhook bodies and fast backend settings values are in testkit.fake_label_studio.testing.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

TOKEN = "fake-ls-token-0123456789"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # Label Studio's DATETIME_FORMAT

CLS_CONFIG = """<View><Text name="text" value="$text"/>
<Choices name="sentiment" toName="text" choice="single">
<Choice value="Positive"/><Choice value="Negative"/></Choices></View>"""

MULTI_CONFIG = """<View><Text name="text" value="$text"/>
<Choices name="topics" toName="text" choice="multiple">
<Choice value="Sport"/><Choice value="Money"/><Choice value="Food"/></Choices></View>"""

NER_CONFIG = """<View><Labels name="label" toName="text">
<Label value="PER"/><Label value="LOC"/></Labels>
<Text name="text" value="$text"/></View>"""

NOT_FOUND = {"detail": "Not found."}


class FakeLabelStudio:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.projects: dict[int, dict] = {}
        self.tasks: dict[int, dict] = {}
        self.predictions: list[dict] = []
        self.calls: list[tuple[str, str]] = []
        self.activated_with: dict[str, int] = {}
        self.activations: list[tuple[float, str]] = []  # (time.perf_counter(), version) per activation
        self.unserved: list[str] = []  # "METHOD /path" of the calls no route answers
        self._next_task = 1
        self._next_annotation = 1
        self._next_prediction = 1
        self._clock = datetime.fromtimestamp(0, timezone.utc)  # the last time handed out
        self.server: ThreadingHTTPServer | None = None
        self.url: str | None = None  # set by start()
        self.import_mode = "legacy"
        self.chunk_size = 500  # the faster import validates and stores 500 at a time
        self.rejected_log: list[str] = []  # what the legacy import only logs
        self.before_import = None  # a hook called with the items before an import is handled
        self.ml_backend_titles = {"backend-title"}  # deleting a version clears these model_versions
        self.fail_with: int | None = None  # every call answers this status, quoting its headers

    # --- clock (call with the lock held) ---
    def _now(self) -> str:
        """Now, in Label Studio's format, always later than the previous answer."""
        self._clock = max(datetime.now(timezone.utc), self._clock + timedelta(microseconds=1))
        return self._clock.strftime(TIME_FORMAT)

    # --- data ---
    def add_project(self, project_id: int, label_config: str = CLS_CONFIG) -> dict:
        with self.lock:
            project = {
                "id": project_id,
                "title": f"project {project_id}",
                "label_config": label_config,
                "model_version": "backend-title",
                "sampling": "Sequential sampling",
            }
            self.projects[project_id] = project
            return project

    def add_labeled_project(self, project_id: int, n_tasks: int, n_labeled: int = 4) -> list[int]:
        """A classification project of TEXTS[:n_tasks] whose first `n_labeled` tasks are annotated
        (Negative, Positive, ... in turn); returns the task ids."""
        self.add_project(project_id)
        ids = self.add_tasks(project_id, TEXTS[:n_tasks])
        for n, task_id in enumerate(ids[:n_labeled]):
            self.choose(task_id, "Positive" if n % 2 else "Negative")
        return ids

    def add_tasks(self, project_id: int, texts: list[str], key: str = "text") -> list[int]:
        """Tasks of `texts` (as data[key]) in the project; returns their ids."""
        ids = []
        with self.lock:
            for text in texts:
                task_id = self._next_task
                self._next_task += 1
                now = self._now()
                self.tasks[task_id] = {
                    "id": task_id,
                    "project": project_id,
                    "data": {key: text},
                    "annotations": [],
                    "predictions": [],
                    "is_labeled": False,
                    "total_annotations": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                ids.append(task_id)
        return ids

    def annotate(self, task_id: int, result: list[dict], **fields) -> int:
        with self.lock:
            annotation_id = self._next_annotation
            self._next_annotation += 1
            task = self.tasks[task_id]
            now = self._now()
            task["annotations"].append(
                {
                    "id": annotation_id,
                    "result": result,
                    "was_cancelled": False,
                    "ground_truth": False,
                    "created_at": now,
                    "updated_at": now,
                    "task": task_id,
                    "project": task["project"],
                    **fields,
                }
            )
            self._annotations_changed(task)
            return annotation_id

    def choose(self, task_id: int, label: str | list[str], from_name: str = "sentiment", **fields) -> int:
        """An annotation choosing `label` (a list: several choices, for a multiple-choice config)."""
        choices = [label] if isinstance(label, str) else list(label)
        return self.annotate(
            task_id,
            [{"from_name": from_name, "to_name": "text", "type": "choices", "value": {"choices": choices}}],
            **fields,
        )

    def update_annotation(self, annotation_id: int, result: list[dict] | None = None, **fields) -> dict:
        """Edits an annotation (its result and/or other fields) as an annotator does; returns it."""
        with self.lock:
            task, annotation = self._find_annotation(annotation_id)
            if result is not None:
                annotation["result"] = result
            annotation["updated_at"] = self._now()
            annotation.update(fields)
            self._annotations_changed(task)
            return copy.deepcopy(annotation)

    def delete_annotation(self, annotation_id: int) -> None:
        with self.lock:
            task, annotation = self._find_annotation(annotation_id)
            task["annotations"].remove(annotation)
            self._annotations_changed(task)

    def _find_annotation(self, annotation_id: int) -> tuple[dict, dict]:
        for task in self.tasks.values():
            for annotation in task["annotations"]:
                if annotation["id"] == annotation_id:
                    return task, annotation
        raise KeyError(f"no annotation {annotation_id}")

    def _annotations_changed(self, task: dict) -> None:
        task["is_labeled"] = bool(task["annotations"])
        task["total_annotations"] = sum(not a.get("was_cancelled") for a in task["annotations"])
        task["updated_at"] = self._now()

    def delete_tasks(self, task_ids) -> None:
        with self.lock:
            for task_id in task_ids:
                self.tasks.pop(task_id, None)

    def invalid_reason(self, item: dict) -> str | None:
        """Why Label Studio's label validation refuses a prediction (None: it is valid)."""
        from al_core.ls_format import parse_label_config

        project = self.projects[self.tasks[item["task"]]["project"]]
        config = parse_label_config(project["label_config"])
        for region in item.get("result") or []:
            if region.get("from_name") != config.from_name:
                return f"Control tag '{region.get('from_name')}' not found in the label config"
            values = (region.get("value") or {}).get(config.result_type) or []
            if any(v not in config.labels for v in values):
                return f"Invalid value for control '{config.from_name}'. Got: {region.get('value')}"
        return None

    def _store_prediction(self, item: dict) -> None:
        """Stores one imported prediction (lock held); LS sets its id, project and created_at."""
        item["id"] = self._next_prediction
        self._next_prediction += 1
        item["project"] = self.tasks[item["task"]]["project"]
        item["created_at"] = self._now()
        self.predictions.append(item)
        self.tasks[item["task"]]["predictions"].append(item)

    def predictions_of(self, version: str) -> list[dict]:
        with self.lock:
            return [p for p in self.predictions if p.get("model_version") == version]

    def count(self, method: str, path_prefix: str) -> int:
        with self.lock:
            return sum(1 for m, p in self.calls if m == method and p.startswith(path_prefix))

    # --- what the routes answer: (HTTP status, body) ---
    def _tasks_of(self, project_id: int) -> list[dict]:
        return [t for t in self.tasks.values() if t["project"] == project_id]

    def project_view(self, project_id: int) -> tuple[int, dict]:
        with self.lock:
            if project_id not in self.projects:
                return 404, NOT_FOUND
            annotations = [a for t in self._tasks_of(project_id) for a in t["annotations"]]
            return 200, {
                **copy.deepcopy(self.projects[project_id]),
                "task_number": len(self._tasks_of(project_id)),
                "total_annotations_number": sum(not a.get("was_cancelled") for a in annotations),
                "skipped_annotations_number": sum(bool(a.get("was_cancelled")) for a in annotations),
            }

    @staticmethod
    def _task_view(task: dict, full: bool) -> dict:
        """A task as /api/tasks/ lists it: with annotations and predictions (`fields=all`) or not."""
        annotations = task["annotations"]
        counts = {
            "total_annotations": sum(not a.get("was_cancelled") for a in annotations),
            "cancelled_annotations": sum(bool(a.get("was_cancelled")) for a in annotations),
            "total_predictions": len(task["predictions"]),
        }
        if full:
            return {**copy.deepcopy(task), **counts}
        keys = ("id", "data", "project", "created_at", "updated_at", "is_labeled")
        return {**{k: copy.deepcopy(task.get(k)) for k in keys}, **counts}

    def task_view(self, task_id: int, full: bool = True) -> dict:
        """One task as /api/tasks/ lists it (a copy)."""
        with self.lock:
            return self._task_view(self.tasks[task_id], full)

    def annotation_created(self, annotation_id: int) -> dict:
        """The ANNOTATION_CREATED webhook body Label Studio sends for a stored annotation: the
        annotation, its task (no annotations or predictions) and the project, as they are now."""
        with self.lock:
            task, annotation = self._find_annotation(annotation_id)
            annotation, task_id = copy.deepcopy(annotation), task["id"]
        task = self.task_view(task_id, full=False)
        return {
            "action": "ANNOTATION_CREATED",
            "annotation": annotation,
            "task": task,
            "project": self.project_view(task["project"])[1],
        }

    def list_tasks(self, query: dict[str, list[str]]) -> tuple[int, dict]:
        project = int(query["project"][0])
        page = int(query.get("page", ["1"])[0])
        size = int(query.get("page_size", ["100"])[0])
        full = query.get("fields", [""])[0] == "all"
        try:
            since = _updated_after(query.get("query", ["{}"])[0])
        except ValueError as error:
            return 400, _validation_error([str(error)])
        with self.lock:
            tasks = [
                self._task_view(t, full)
                for t in self._tasks_of(project)
                if since is None or _parse_time(t["updated_at"]) > since
            ]
        chunk = tasks[(page - 1) * size : page * size]
        if page > 1 and not chunk:
            return 404, {"detail": "Invalid page."}
        return 200, {"tasks": chunk, "total": len(tasks)}

    def export(self, project_id: int, query: dict[str, list[str]]) -> tuple[int, list | dict]:
        """Label Studio's JSON export (data_export/api.py ExportAPI)."""
        ids = {int(i) for i in query.get("ids[]", [])}
        download_all = query.get("download_all_tasks", ["false"])[0].lower() in ("true", "1", "yes", "on")
        with self.lock:
            if project_id not in self.projects:
                return 404, NOT_FOUND
            return 200, [
                {
                    **{
                        k: copy.deepcopy(task[k])
                        for k in ("id", "data", "project", "created_at", "updated_at")
                    },
                    "annotations": copy.deepcopy(task["annotations"]),
                    "predictions": [p.get("id") for p in task["predictions"]],
                    "drafts": [],
                }
                for task in self._tasks_of(project_id)
                if (not ids or task["id"] in ids) and (download_all or task["annotations"])
            ]

    def model_versions(self, project_id: int) -> tuple[int, dict]:
        with self.lock:
            if project_id not in self.projects:
                return 404, NOT_FOUND
            counts: dict[str, int] = {}
            for task in self._tasks_of(project_id):
                for prediction in task["predictions"]:
                    version = prediction.get("model_version")
                    counts[version] = counts.get(version, 0) + 1
            return 200, counts

    def delete_version(self, project_id: int, version: str | None) -> tuple[int, dict]:
        """Label Studio's Project.delete_predictions(model_version): one bulk delete."""
        with self.lock:
            if project_id not in self.projects:
                return 404, NOT_FOUND
            if not version:
                return 400, _validation_error(["model_version param is required"])
            deleted = 0
            for task in self._tasks_of(project_id):
                kept = [p for p in task["predictions"] if p.get("model_version") != version]
                deleted += len(task["predictions"]) - len(kept)
                task["predictions"] = kept
            project_tasks = {t["id"] for t in self._tasks_of(project_id)}

            def gone(p: dict) -> bool:
                in_project = p.get("project") == project_id or p.get("task") in project_tasks
                return in_project and p.get("model_version") == version

            self.predictions = [p for p in self.predictions if not gone(p)]
            project = self.projects[project_id]
            if (
                project.get("model_version") == version
                or project.get("model_version") in self.ml_backend_titles
            ):
                project["model_version"] = None
            return 200, {"deleted_predictions": deleted}

    def next_task(self, project_id: int) -> dict | None:
        """The task Label Studio's uncertainty sampling serves next, with `queue`; None when every
        task is annotated."""
        with self.lock:
            unlabeled = [t for t in self._tasks_of(project_id) if not t["annotations"]]
            if not unlabeled:
                return None
            version = (self.projects.get(project_id) or {}).get("model_version")
            # (lowest score of a prediction of the version, task id); a NULL score sorts last,
            # as PostgreSQL orders ascending
            ranked = [
                (min((p.get("score") is None, p.get("score") or 0.0) for p in current), task["id"], task)
                for task in unlabeled
                if (current := [p for p in task["predictions"] if p.get("model_version") == version])
            ]
            if ranked:
                task, queue = min(ranked, key=lambda r: r[:2])[2], "uncertainty"
            else:
                task, queue = min(unlabeled, key=lambda t: t["id"]), "random"  # LS: a random one
            return {**self._task_view(task, full=True), "queue": queue}

    # --- server ---
    def start(self, port: int = 0) -> str:
        """Serves the routes on 127.0.0.1:`port` (0: a free one) in a thread; returns the URL."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, body) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self):
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"null")

            def _auth(self) -> bool:
                if self.headers.get("Authorization") != f"Token {TOKEN}":
                    self._send(401, {"detail": "Authentication credentials were not provided."})
                    return False
                return True

            def _unserved(self, method: str, path: str) -> None:
                with fake.lock:
                    fake.unserved.append(f"{method} {path}")
                self._send(404, NOT_FOUND)

            def _start(self, method: str):
                """Logs the call; the parsed URL, or None when it was answered already (a fault, a
                refused token)."""
                url = urlparse(self.path)
                with fake.lock:
                    fake.calls.append((method, url.path))
                if fake.fail_with is not None:
                    self._send(fake.fail_with, {"detail": "bad request", "headers": dict(self.headers)})
                    return None
                return url if self._auth() else None

            def do_GET(self):
                url = self._start("GET")
                if url is None:
                    return
                query = parse_qs(url.query)
                match = re.fullmatch(r"/api/projects/(\d+)/?", url.path)
                if match:
                    return self._send(*fake.project_view(int(match[1])))
                if url.path.rstrip("/") == "/api/current-user/whoami":
                    return self._send(200, {"id": 1, "email": "admin@example.com"})
                if url.path.rstrip("/") == "/api/tasks":
                    return self._send(*fake.list_tasks(query))
                match = re.fullmatch(r"/api/projects/(\d+)/export/?", url.path)
                if match:
                    return self._send(*fake.export(int(match[1]), query))
                match = re.fullmatch(r"/api/projects/(\d+)/model-versions/?", url.path)
                if match:
                    return self._send(*fake.model_versions(int(match[1])))
                match = re.fullmatch(r"/api/projects/(\d+)/next/?", url.path)
                if match:
                    if int(match[1]) not in fake.projects:
                        return self._send(404, NOT_FOUND)
                    task = fake.next_task(int(match[1]))
                    return (
                        self._send(200, task) if task else self._send(404, {"detail": "No more tasks found"})
                    )
                return self._unserved("GET", url.path)

            def do_DELETE(self):
                url = self._start("DELETE")
                if url is None:
                    return
                match = re.fullmatch(r"/api/projects/(\d+)/model-versions/?", url.path)
                if not match:
                    return self._unserved("DELETE", url.path)
                body = self._body()
                version = body.get("model_version") if isinstance(body, dict) else None
                return self._send(*fake.delete_version(int(match[1]), version))

            def do_PATCH(self):
                url = self._start("PATCH")
                if url is None:
                    return
                match = re.fullmatch(r"/api/projects/(\d+)/?", url.path)
                if not match:
                    return self._unserved("PATCH", url.path)
                if int(match[1]) not in fake.projects:
                    return self._send(404, NOT_FOUND)
                changes = self._body() or {}
                version = changes.get("model_version")
                if version is not None and not fake.predictions_of(version):
                    return self._send(
                        400,
                        {
                            "model_version": [
                                "Model version doesn't exist either as live model or as static predictions."
                            ]
                        },
                    )
                with fake.lock:
                    if version is not None:
                        fake.activated_with[version] = sum(
                            p.get("model_version") == version for p in fake.predictions
                        )
                        fake.activations.append((time.perf_counter(), version))
                    fake.projects[int(match[1])].update(changes)
                return self._send(*fake.project_view(int(match[1])))

            def do_POST(self):
                url = self._start("POST")
                if url is None:
                    return
                match = re.fullmatch(r"/api/projects/(\d+)/import/predictions/?", url.path)
                if not match:
                    return self._unserved("POST", url.path)
                items = self._body()
                if fake.before_import is not None:
                    fake.before_import(items)
                with fake.lock:
                    for n, item in enumerate(items):
                        if item.get("task") not in fake.tasks:
                            if fake.import_mode == "memory_efficient":  # earlier chunks are stored
                                for done in items[: n - n % fake.chunk_size]:
                                    fake._store_prediction(done)
                            message = (
                                f'{item} contains invalid "task" field: task ID {item.get("task")} not found in '
                                f"project {match[1]}"
                                if fake.import_mode == "memory_efficient"
                                else f'{item} contains invalid "task" field: corresponding task ID couldn\'t be '
                                f"retrieved from project {match[1]} tasks"
                            )
                            return self._send(400, _validation_error([message]))
                    kept, errors = [], []
                    for i, item in enumerate(items):
                        reason = None if fake.import_mode == "memory_efficient" else fake.invalid_reason(item)
                        if reason is None:
                            kept.append(item)
                        else:
                            errors.append(f"Prediction {i}: {reason}")
                    if errors and fake.import_mode == "validating":
                        return self._send(400, _validation_error(errors))
                    fake.rejected_log += errors
                    for item in kept:
                        fake._store_prediction(item)
                return self._send(201, {"created": len(kept)})

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def _parse_time(text: str) -> datetime:
    """A stored time (the fake's own format, or another ISO one a test set) as an aware datetime."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _updated_after(query_json: str) -> datetime | None:
    """The value of a "filter:tasks:updated_at" "greater" filter of a `query` (None: no such
    filter). A value that is not `%Y-%m-%dT%H:%M:%S.%fZ` raises ValueError, as in Label Studio."""
    try:
        query = json.loads(query_json or "{}")
    except ValueError:
        raise ValueError(f"query is not JSON: {query_json!r}") from None
    items = ((query or {}).get("filters") or {}).get("items") or []
    since = None
    for item in items:
        if item.get("filter") == "filter:tasks:updated_at" and item.get("operator") == "greater":
            value = datetime.strptime(str(item.get("value")), TIME_FORMAT).replace(tzinfo=timezone.utc)
            since = value if since is None else max(since, value)
    return since


def _validation_error(messages: list[str]) -> dict:
    """Label Studio's body for a DRF ValidationError (core/utils/common.py)."""
    return {
        "id": "00000000-0000-0000-0000-000000000000",
        "status_code": 400,
        "version": "1.23.2",
        "detail": "Validation error",
        "exc_info": None,
        "validation_errors": {"non_field_errors": messages},
    }


TEXTS = [
    f"the {a} was {b} and {c}"
    for a in ("movie", "film", "plot", "story", "game")
    for b in ("good", "bad", "great", "awful")
    for c in ("fun", "boring", "the best", "the worst")
]
