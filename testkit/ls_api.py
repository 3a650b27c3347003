"""What the end-to-end scenarios and benchmarks ask a real Label Studio: the SDK where it has the
call, plain HTTP where it has not."""

from __future__ import annotations

import time
from typing import Any

import httpx
from label_studio_sdk import LabelStudio


class LabelStudioAPI:
    def __init__(self, url: str, token: str, credentials: tuple[str, str] | None = None):
        self.url = url.rstrip("/")
        self.token = token  # a personal access token (JWT refresh token)
        self.credentials = credentials  # (email, password) for the login form
        self.sdk = LabelStudio(base_url=self.url, api_key=token)
        self.http = httpx.Client(base_url=self.url, timeout=120, follow_redirects=True)
        self._access: tuple[str, float] | None = None

    def _headers(self) -> dict[str, str]:
        """Bearer access token from the PAT, refreshed well before its 5 minutes run out."""
        if self._access is None or time.monotonic() - self._access[1] > 120:
            answer = self.http.post("/api/token/refresh/", json={"refresh": self.token}, timeout=10)
            answer.raise_for_status()
            self._access = (answer.json()["access"], time.monotonic())
        return {"Authorization": f"Bearer {self._access[0]}"}

    def request(self, method: str, path: str, **kwargs) -> Any:
        answer = self.http.request(method, path, headers=self._headers(), **kwargs)
        if not answer.is_success:
            raise AssertionError(f"{method} {path} -> {answer.status_code}: {answer.text[:500]}")
        return answer.json() if answer.content else None

    # --- projects ---
    def project(self, project_id: int) -> dict:
        return self.request("GET", f"/api/projects/{project_id}")

    def update_project(self, project_id: int, **fields) -> dict:
        return self.request("PATCH", f"/api/projects/{project_id}", json=fields)

    def model_versions(self, project_id: int) -> dict[str, int]:
        return self.request("GET", f"/api/projects/{project_id}/model-versions/")

    def webhooks(self, project_id: int) -> list[dict]:
        return self.request("GET", "/api/webhooks/", params={"project": project_id})

    def next_task(self, project_id: int) -> dict:
        """What "Label All Tasks" serves next (and locks for this user)."""
        return self.request("GET", f"/api/projects/{project_id}/next")

    def retrieve_predictions(self, project_id: int) -> dict:
        """The Data Manager action "Retrieve Predictions" on every task."""
        body = {"selectedItems": {"all": True, "excluded": []}}
        return self.request(
            "POST",
            "/api/dm/actions",
            params={"id": "retrieve_tasks_predictions", "project": project_id},
            json=body,
        )

    def create_view(self, project_id: int, title: str, task_ids: list[int]) -> int:
        """A Data Manager tab holding only `task_ids`; its "Label Tasks As Displayed" streams them alone
        (Label Studio 1.23.2's "Label All Tasks" ignores a tab's filters)."""
        items = [
            {"filter": "filter:tasks:id", "operator": "equal", "type": "Number", "value": task_id}
            for task_id in task_ids
        ]
        data = {"title": title, "filters": {"conjunction": "or", "items": items}}
        return self.request("POST", "/api/dm/views/", json={"project": project_id, "data": data})["id"]

    # --- tasks ---
    def tasks(self, project_id: int) -> list[dict]:
        """Every task with its annotations and predictions (all versions)."""
        out, page = [], 1
        while True:
            answer = self.http.get(
                "/api/tasks",
                headers=self._headers(),
                params={"project": project_id, "fields": "all", "page": page, "page_size": 500},
            )
            if answer.status_code == 404:  # past the last page
                break
            answer.raise_for_status()
            rows = answer.json()["tasks"]
            out.extend(rows)
            if len(rows) < 500:
                break
            page += 1
        return out

    def predictions(self, project_id: int, version: str) -> dict[int, dict]:
        """{task id: prediction of `version`} over the project's tasks."""
        out = {}
        for task in self.tasks(project_id):
            for prediction in task.get("predictions") or []:
                if prediction.get("model_version") == version:
                    out[task["id"]] = prediction
        return out

    def unlabeled_ids(self, project_id: int) -> set[int]:
        return {t["id"] for t in self.tasks(project_id) if not t.get("total_annotations")}

    def annotate(self, task_id: int, result: list[dict]) -> int:
        return self.sdk.annotations.create(id=task_id, result=result, lead_time=1.0).id

    def import_tasks(self, project_id: int, texts: list[str]) -> None:
        self.sdk.projects.import_tasks(id=project_id, request=[{"text": t} for t in texts])
