"""A tiny Label Studio speaking the few API routes label-studio-sdk calls for the backend.

GET/PATCH /api/projects/<id>/, GET /api/tasks/ (paged, 404 past the last page as LS does),
POST /api/projects/<id>/import/predictions. PATCHing model_version to a version with no
predictions answers 400, as the real server does. Every call is logged in `calls`, and
`activated_with[version]` keeps how many predictions the version held when it was activated.
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

    def annotate(self, task_id: int, result: list[dict]) -> int:
        with self.lock:
            annotation_id = self._next_annotation
            self._next_annotation += 1
            task = self.tasks[task_id]
            task["annotations"].append(
                {
                    "id": annotation_id,
                    "result": result,
                    "was_cancelled": False,
                    "created_at": f"2026-01-01T00:00:{annotation_id:02d}Z",
                    "updated_at": f"2026-01-01T00:00:{annotation_id:02d}Z",
                    "task": task_id,
                    "project": task["project"],
                }
            )
            task["is_labeled"] = True
            task["total_annotations"] = len(task["annotations"])
            return annotation_id

    def choose(self, task_id: int, label: str, from_name: str = "sentiment") -> int:
        return self.annotate(
            task_id,
            [{"from_name": from_name, "to_name": "text", "type": "choices", "value": {"choices": [label]}}],
        )

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
                with fake.lock:
                    for item in items:
                        if item.get("task") not in fake.tasks:
                            return self._send(400, {"detail": f"task {item.get('task')} does not exist"})
                    for item in items:
                        fake.predictions.append(item)
                        fake.tasks[item["task"]]["predictions"].append(item)
                return self._send(201, {"created": len(items)})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


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
