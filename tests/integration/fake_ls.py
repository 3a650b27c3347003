"""A tiny Label Studio speaking the few API routes label-studio-sdk calls for the backend.

GET/PATCH /api/projects/<id>/, GET /api/tasks/ (paged, 404 past the last page as LS does),
GET /api/current-user/whoami, POST /api/projects/<id>/import/predictions. PATCHing model_version
to a version with no predictions answers 400, as the real server does. Every call is logged in
`calls`, and `activated_with[version]` keeps how many predictions the version held when it was
activated.

Importing predictions behaves as Label Studio 1.23.2 does (data_import/api.py):
- a task id that is not in the project refuses the whole request with HTTP 400
  ("... contains invalid "task" field: corresponding task ID couldn't be retrieved ...");
- `import_mode = "legacy"` (its default): a prediction whose regions do not fit the label config
  (a label not in it, another from_name) is left out, only logged, and the answer is still 201
  with `created` counting the others; `"validating"` (its prediction-validation flag): 400 listing
  "Prediction <i>: <reason>" for each; `"memory_efficient"` (its faster import flag): stored as is,
  in chunks of `chunk_size`, each stored before the next is checked (a missing task in a later
  chunk leaves the earlier ones stored, and the answer is still a 400).
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

TOKEN = "fake-ls-token-0123456789"

CLS_CONFIG = """<View><Text name="text" value="$text"/>
<Choices name="sentiment" toName="text" choice="single">
<Choice value="Positive"/><Choice value="Negative"/></Choices></View>"""

NER_CONFIG = """<View><Labels name="label" toName="text">
<Label value="PER"/><Label value="LOC"/></Labels>
<Text name="text" value="$text"/></View>"""


class FakeLabelStudio:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.projects: dict[int, dict] = {}
        self.tasks: dict[int, dict] = {}
        self.predictions: list[dict] = []
        self.calls: list[tuple[str, str]] = []
        self.activated_with: dict[str, int] = {}
        self._next_task = 1
        self._next_annotation = 1
        self.server: ThreadingHTTPServer | None = None
        self.import_mode = "legacy"
        self.chunk_size = 500  # the faster import validates and stores 500 at a time
        self.rejected_log: list[str] = []  # what the legacy import only logs
        self.before_import = None  # a hook called with the items before an import is handled

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

    def add_tasks(self, project_id: int, texts: list[str]) -> list[int]:
        ids = []
        with self.lock:
            for text in texts:
                task_id = self._next_task
                self._next_task += 1
                self.tasks[task_id] = {
                    "id": task_id,
                    "project": project_id,
                    "data": {"text": text},
                    "annotations": [],
                    "predictions": [],
                    "is_labeled": False,
                    "total_annotations": 0,
                }
                ids.append(task_id)
        return ids

    def annotate(self, task_id: int, result: list[dict], **fields) -> int:
        with self.lock:
            annotation_id = self._next_annotation
            self._next_annotation += 1
            task = self.tasks[task_id]
            task["annotations"].append(
                {
                    "id": annotation_id,
                    "result": result,
                    "was_cancelled": False,
                    "ground_truth": False,
                    "created_at": f"2026-01-01T00:{annotation_id // 60:02d}:{annotation_id % 60:02d}Z",
                    "updated_at": f"2026-01-01T00:{annotation_id // 60:02d}:{annotation_id % 60:02d}Z",
                    "task": task_id,
                    "project": task["project"],
                    **fields,
                }
            )
            task["is_labeled"] = True
            task["total_annotations"] = len(task["annotations"])
            return annotation_id

    def choose(self, task_id: int, label: str, from_name: str = "sentiment", **fields) -> int:
        return self.annotate(
            task_id,
            [{"from_name": from_name, "to_name": "text", "type": "choices", "value": {"choices": [label]}}],
            **fields,
        )

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

    def predictions_of(self, version: str) -> list[dict]:
        with self.lock:
            return [p for p in self.predictions if p.get("model_version") == version]

    def count(self, method: str, path_prefix: str) -> int:
        with self.lock:
            return sum(1 for m, p in self.calls if m == method and p.startswith(path_prefix))

    # --- server ---
    def start(self) -> str:
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

            def do_GET(self):
                url = urlparse(self.path)
                with fake.lock:
                    fake.calls.append(("GET", url.path))
                if not self._auth():
                    return
                match = re.fullmatch(r"/api/projects/(\d+)/?", url.path)
                if match:
                    project = fake.projects.get(int(match[1]))
                    return self._send(200, project) if project else self._send(404, {"detail": "Not found."})
                if url.path.rstrip("/") == "/api/current-user/whoami":
                    return self._send(200, {"id": 1, "email": "admin@example.com"})
                if url.path.rstrip("/") == "/api/tasks":
                    query = parse_qs(url.query)
                    project = int(query["project"][0])
                    page = int(query.get("page", ["1"])[0])
                    size = int(query.get("page_size", ["100"])[0])
                    with fake.lock:
                        tasks = [
                            json.loads(json.dumps(t)) for t in fake.tasks.values() if t["project"] == project
                        ]
                    chunk = tasks[(page - 1) * size : page * size]
                    if page > 1 and not chunk:
                        return self._send(404, {"detail": "Invalid page."})
                    return self._send(200, {"tasks": chunk, "total": len(tasks)})
                return self._send(404, {"detail": "Not found."})

            def do_PATCH(self):
                url = urlparse(self.path)
                with fake.lock:
                    fake.calls.append(("PATCH", url.path))
                if not self._auth():
                    return
                match = re.fullmatch(r"/api/projects/(\d+)/?", url.path)
                if not match or int(match[1]) not in fake.projects:
                    return self._send(404, {"detail": "Not found."})
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
                        fake.activated_with[version] = sum(p.get("model_version") == version for p in fake.predictions)
                    fake.projects[int(match[1])].update(changes)
                    return self._send(200, fake.projects[int(match[1])])

            def do_POST(self):
                url = urlparse(self.path)
                with fake.lock:
                    fake.calls.append(("POST", url.path))
                if not self._auth():
                    return
                match = re.fullmatch(r"/api/projects/(\d+)/import/predictions/?", url.path)
                if not match:
                    return self._send(404, {"detail": "Not found."})
                items = self._body()
                if fake.before_import is not None:
                    fake.before_import(items)
                with fake.lock:
                    for n, item in enumerate(items):
                        if item.get("task") not in fake.tasks:
                            if fake.import_mode == "memory_efficient":  # earlier chunks are stored
                                stored = items[: n - n % fake.chunk_size]
                                fake.predictions += stored
                                for done in stored:
                                    fake.tasks[done["task"]]["predictions"].append(done)
                            message = (
                                f"{item} contains invalid \"task\" field: task ID {item.get('task')} not found in "
                                f"project {match[1]}"
                                if fake.import_mode == "memory_efficient"
                                else f"{item} contains invalid \"task\" field: corresponding task ID couldn't be "
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
                        fake.predictions.append(item)
                        fake.tasks[item["task"]]["predictions"].append(item)
                return self._send(201, {"created": len(kept)})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


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


def backend_settings(url: str | None, model_dir, model, **overrides):
    """Fast settings for tests: tiny model, one epoch, one thread, no debounce."""
    from ml_backend.settings import Settings

    values = dict(
        label_studio_url=url,
        label_studio_api_key=TOKEN if url else None,
        model_dir=str(model_dir),
        acquisition_model=str(model),
        retrain_delay=0,
        epochs=1,
        min_steps=0,
        batch_size=8,
        max_length=32,
        torch_threads=1,
        ls_retries=0,
    )
    values.update(overrides)
    return Settings(**values)


TEXTS = [
    f"the {a} was {b} and {c}"
    for a in ("movie", "film", "plot", "story", "game")
    for b in ("good", "bad", "great", "awful")
    for c in ("fun", "boring", "the best", "the worst")
]


def annotation_webhook(project_id: int, task_id: int) -> dict:
    """The ANNOTATION_CREATED webhook Label Studio sends for one annotation (fields the backend reads)."""
    return {
        "action": "ANNOTATION_CREATED",
        "annotation": {"id": task_id, "task": task_id, "project": project_id},
        "task": {"id": task_id, "project": project_id},
        "project": {"id": project_id, "label_config": CLS_CONFIG},
    }
