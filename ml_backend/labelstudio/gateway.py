"""Everything the backend says to Label Studio, over label-studio-sdk.

Reading a project's tasks, publishing predictions in bulk and pointing the project at a new
model version. Failed calls (connection errors, 429 and 5xx answers) are retried with
exponential backoff; other errors are raised as LabelStudioError naming the call.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import tenacity
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from ml_backend.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

UNCERTAINTY_SAMPLING = "Uncertainty sampling"


class LabelStudioError(RuntimeError):
    """A call to Label Studio failed for good (after retries, or with a 4xx answer)."""

    def __init__(self, message: str, status_code: int | None = None, body: Any = None):
        super().__init__(message)
        self.status_code = status_code
        self.body = body


# Label Studio 1.23.2 refuses a whole import naming one task that does not exist (HTTP 400):
# 'corresponding task ID couldn't be retrieved' (default) or 'task ID N not found in project'
# (its memory-efficient import flag).
_MISSING_TASK = re.compile(r"\"task\" field|task ID .* not found|task not found in project")
# With its prediction-validation flag it lists every refused item: "Prediction <index>: <reason>".
_REFUSED_ITEM = re.compile(r"^Prediction (\d+): (.*)$", re.S)
NO_REASON = "Label Studio did not create it and gave no reason in its answer (its server log has it)"


@dataclass
class PublishReport:
    """What Label Studio confirmed of a publish: created counts, tasks gone, tasks refused."""

    sent: int = 0
    created: int = 0
    deleted: list[int] = field(default_factory=list)  # no longer in the project: left out
    refused: dict[int, str] = field(default_factory=dict)  # task -> Label Studio's reason
    unconfirmed: list[int] = field(default_factory=list)  # sent in a batch that came back short
    activated: bool = False  # the project was pointed at the version

    def add(self, other: PublishReport) -> None:
        self.sent += other.sent
        self.created += other.created
        self.deleted += other.deleted
        self.refused.update(other.refused)
        self.unconfirmed += other.unconfirmed

    @property
    def shortfall(self) -> int:
        """Predictions sent for existing tasks that Label Studio did not create."""
        return self.sent - self.created

    def summary(self) -> dict[str, Any]:
        """`ok` is true when Label Studio created everything sent (the campaign page reads it)."""
        out: dict[str, Any] = {"ok": not self.refused and self.shortfall == 0, "sent": self.sent, "created": self.created}
        if not out["ok"]:
            out["error"] = f"Label Studio created {self.created} of {self.sent} predictions"
        if self.deleted:
            out["deleted_tasks"] = sorted(self.deleted)
        if self.refused:
            out["refused"] = {str(t): reason for t, reason in sorted(self.refused.items())}
        return out


def _messages(body: Any) -> list[str]:
    """Every string in an error body (Label Studio nests them under validation_errors)."""
    if isinstance(body, str):
        return [body]
    if isinstance(body, dict):
        return [
            m
            for key, value in body.items()
            if key not in ("id", "version", "exc_info")
            for m in _messages(value)
        ]
    if isinstance(body, list):
        return [m for value in body for m in _messages(value)]
    return []


def _is_jwt(key: str) -> bool:
    """A personal access token is a JWT (three base64url parts, the first a JSON header); a legacy
    token is not."""
    parts = key.split(".")
    if len(parts) != 3:
        return False
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(header, dict) and "alg" in header


class ApiKeyAuth(httpx.Auth):
    """LABEL_STUDIO_API_KEY on the gateway's own requests, sent as label-studio-sdk sends it: a legacy
    token as `Token <key>`; a personal access token (a JWT refresh token) as `Bearer <access token>`,
    the access token got from Label Studio by `refresh(key)` and got again when one is refused (401)."""

    def __init__(self, api_key: str, refresh: Callable[[str], str]):
        self.api_key = api_key
        self.personal = _is_jwt(api_key)
        self._refresh = refresh
        self._access: str | None = None
        self._lock = threading.Lock()

    def _access_token(self, refused: str | None = None) -> str:
        with self._lock:
            if self._access is None or self._access == refused:
                self._access = self._refresh(self.api_key)
            return self._access

    def auth_flow(self, request: httpx.Request):
        if not self.personal:
            request.headers["Authorization"] = f"Token {self.api_key}"
            yield request
            return
        access = self._access_token()
        request.headers["Authorization"] = f"Bearer {access}"
        response = yield request
        if response.status_code == 401:  # the access token expired: one more try with a new one
            request.headers["Authorization"] = f"Bearer {self._access_token(refused=access)}"
            yield request


def _retryable(error: Exception) -> bool:
    if isinstance(error, ApiError):
        return error.status_code is None or error.status_code == 429 or error.status_code >= 500
    return isinstance(error, httpx.TransportError)


class LSGateway:
    """Label Studio's API as the retrain job needs it."""

    def __init__(
        self, settings: Settings, client: LabelStudio | None = None, sleep: Callable[[float], None] = time.sleep
    ):
        if client is None and not (settings.label_studio_url and settings.label_studio_api_key):
            raise LabelStudioError(
                "LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY must be set for the backend to read tasks "
                "and publish scores"
            )
        self.settings = settings
        self._client = client
        self._http: httpx.Client | None = None
        self._api_key_auth = ApiKeyAuth(settings.label_studio_api_key or "", self._access_token)
        self._sleep = sleep  # between retries; tests pass one that records instead of waiting

    def _redact(self, text: str) -> str:
        """The text with the API key masked (a proxy or Label Studio may echo the request)."""
        key = self.settings.label_studio_api_key
        return text.replace(key, "***") if key else text

    @property
    def http(self) -> httpx.Client:
        """The connections to Label Studio, shared by the SDK's calls and the gateway's own (`_raw`)."""
        if self._http is None:
            self._http = httpx.Client(
                base_url=self.settings.label_studio_url.rstrip("/") + "/",
                timeout=self.settings.ls_timeout,
                follow_redirects=True,  # as the SDK's own client
            )  # no client-wide auth: the SDK authenticates its calls, `_raw` passes ApiKeyAuth
        return self._http

    @property
    def client(self) -> LabelStudio:
        if self._client is None:
            self._client = LabelStudio(
                base_url=self.settings.label_studio_url.rstrip("/"),
                api_key=self.settings.label_studio_api_key,
                timeout=self.settings.ls_timeout,
                max_retries=0,  # retries are ours, with backoff
                httpx_client=self.http,
            )
        return self._client

    def _detail(self, error: Exception) -> str:
        text = f"HTTP {error.status_code}: {error.body}" if isinstance(error, ApiError) else str(error)
        return self._redact(text)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """`fn()`, retried with exponential backoff (0.5 s, 1 s, 2 s ... at most 10 s) on connection
        errors, 429 and 5xx, at most AL_LS_RETRIES times; then a LabelStudioError naming `what`."""

        def before_sleep(state) -> None:
            error = state.outcome.exception()
            log.warning("Label Studio %s failed (%s); retry in %.1f s", what, self._detail(error), state.next_action.sleep)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.settings.ls_retries + 1),
            wait=tenacity.wait_exponential(multiplier=0.5, max=10.0),
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, (ApiError, httpx.HTTPError)) and _retryable(e)),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(fn)
        except (ApiError, httpx.HTTPError) as error:
            # not chained: the original error (and a traceback of it) may quote the API key
            raise LabelStudioError(
                f"Label Studio {what} failed: {self._detail(error)}{_key_hint(error)}",
                status_code=getattr(error, "status_code", None),
                body=getattr(error, "body", None),
            ) from None

    # --- reading ---
    def get_project(self, project_id: int) -> dict[str, Any]:
        project = self._call(f"GET project {project_id}", lambda: self.client.projects.get(id=project_id))
        return project.model_dump() if hasattr(project, "model_dump") else dict(project)

    def list_tasks(self, project_id: int, with_annotations: bool = True) -> list[dict[str, Any]]:
        """Every task of the project (dicts shaped like Label Studio's JSON): with its annotations and
        predictions, or (`with_annotations=False`) its data, `updated_at` and counters only."""

        def read() -> list[dict[str, Any]]:
            pager = self.client.tasks.list(
                project=project_id, fields="all" if with_annotations else "task_only", page_size=self.settings.ls_page_size
            )
            return [task.model_dump(mode="json") if hasattr(task, "model_dump") else dict(task) for task in pager]

        return self._call(f"list tasks of project {project_id}", read)

    def _access_token(self, refresh_token: str) -> str:
        """An access token for a personal access token (label-studio-sdk's token refresh)."""
        return self.client.tokens.refresh(refresh=refresh_token).access

    def _raw(self, method: str, path: str, **kwargs) -> Any:
        """One call to a route label-studio-sdk does not wrap (the project's model versions), with the
        gateway's own httpx client; a non-2xx answer raises ApiError as the SDK does."""
        response = self.http.request(method, path, auth=self._api_key_auth, **kwargs)
        if not 200 <= response.status_code < 300:
            try:
                body = response.json()
            except ValueError:
                body = response.text[:500]
            raise ApiError(status_code=response.status_code, headers=dict(response.headers), body=body)
        return response.json()

    def export_tasks(self, project_id: int, task_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Tasks with their data and annotations, their predictions as ids only (Label Studio's JSON
        export): the tasks of `task_ids` (asked 200 at a time, to keep the URL short; an id that is
        not in the project is absent from the answer), or with None every task holding an annotation."""
        if task_ids is None:
            return self._call(
                f"export the annotated tasks of project {project_id}", lambda: self._export(project_id, False)
            )
        ids = sorted({int(t) for t in task_ids})
        out: list[dict[str, Any]] = []
        for start in range(0, len(ids), 200):
            chunk = ids[start : start + 200]
            out += self._call(
                f"export {len(chunk)} tasks of project {project_id}",
                lambda chunk=chunk: self._export(project_id, True, chunk),
            )
        return out

    def _export(self, project_id: int, all_tasks: bool, ids: list[int] | None = None) -> list[dict[str, Any]]:
        """Label Studio's JSON export through the SDK; the task ids go as `ids[]`, the name Label
        Studio reads (the SDK's own `ids` argument is sent as `ids`, which it ignores)."""
        query: dict[str, Any] = {"exportType": "JSON"}
        if ids is not None:
            query["ids[]"] = ids
        data = self.client.projects.exports.download_sync(
            id=project_id,
            download_all_tasks=all_tasks,
            request_options={"additional_query_parameters": query},
        )
        return json.loads(b"".join(data))

    def changed_tasks(self, project_id: int, since: str) -> list[dict[str, Any]]:
        """Tasks whose `updated_at` is later than `since` (Label Studio bumps it when a task's
        annotations change), without annotations or predictions: ids, `updated_at` and counts."""
        query = json.dumps(
            {
                "filters": {
                    "conjunction": "and",
                    "items": [
                        {"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime", "value": since}
                    ],
                }
            }
        )

        def read() -> list[dict[str, Any]]:
            pager = self.client.tasks.list(
                project=project_id, fields="task_only", query=query, page_size=self.settings.ls_page_size
            )
            return [task.model_dump(mode="json") if hasattr(task, "model_dump") else dict(task) for task in pager]

        return self._call(f"list tasks of project {project_id} changed since {since}", read)

    def model_versions(self, project_id: int) -> dict[str, int]:
        """The project's prediction versions and their prediction counts."""
        return self._call(
            f"GET model versions of project {project_id}",
            lambda: self._raw("GET", f"api/projects/{project_id}/model-versions/"),
        )

    def delete_version(self, project_id: int, model_version: str) -> int:
        """Deletes every prediction of `model_version` in one call; returns how many went. Label
        Studio clears the project's model_version when it is this version: never call it on that one."""
        answer = self._call(
            f"delete the predictions of {model_version} in project {project_id}",
            lambda: self._raw(
                "DELETE", f"api/projects/{project_id}/model-versions/", json={"model_version": model_version}
            ),
        )
        return int((answer or {}).get("deleted_predictions") or 0) if isinstance(answer, dict) else 0

    def check_access(self) -> str | None:
        """None when LABEL_STUDIO_API_KEY is accepted, else what to fix (a 401/403 answer). Other
        failures (Label Studio not reachable yet) are raised as LabelStudioError."""
        try:
            self._call("GET current user", lambda: self.client.users.whoami())
        except LabelStudioError as error:
            if error.status_code in (401, 403):
                detail = error.body.get("detail") if isinstance(error.body, dict) else error.body
                return self._redact(f"HTTP {error.status_code}: {str(detail)[:200]}")
            raise
        return None

    # --- writing ---
    def publish_predictions(
        self,
        project_id: int,
        model_version: str,
        predictions: Sequence[dict[str, Any]],
        report: PublishReport | None = None,
    ) -> int:
        """Create predictions in bulk; each item is {"task": id, "result": [...], "score": float}.

        Every prediction is stored under `model_version`. Returns the number Label Studio says it
        created. A batch naming a task deleted meanwhile is sent again without the tasks that are
        gone; items Label Studio refuses by name are left out and recorded; a batch that comes
        back with fewer created than sent leaves its tasks `unconfirmed` in `report`.
        """
        report = report if report is not None else PublishReport()
        size = self.settings.publish_batch_size
        created = 0
        for start in range(0, len(predictions), size):
            batch = [dict(p, model_version=model_version) for p in predictions[start : start + size]]
            part = self._import_batch(project_id, batch)
            created += part.created
            report.add(part)
        return created

    def _import_batch(self, project_id: int, batch: list[dict[str, Any]]) -> PublishReport:
        report = PublishReport()
        for _ in range(3):  # each retry drops tasks Label Studio named; three rounds are plenty
            if not batch:
                return report
            what = f"import {len(batch)} predictions into project {project_id}"
            try:
                answer = self._call(
                    what,
                    lambda batch=batch: self.client.projects.import_predictions(id=project_id, request=batch),
                )
            except LabelStudioError as error:
                if error.status_code != 400:
                    raise
                kept = self._without_refused(project_id, batch, error, report)
                if kept is None:
                    raise
                batch = kept
                continue
            created = getattr(answer, "created", None)
            created = len(batch) if created is None else int(created)
            report.sent += len(batch)
            report.created += created
            if created < len(batch):
                report.unconfirmed += [int(p["task"]) for p in batch]
            return report
        raise LabelStudioError(f"Label Studio import into project {project_id} kept refusing tasks")

    def _without_refused(
        self, project_id: int, batch: list[dict], error: LabelStudioError, report: PublishReport
    ) -> list[dict] | None:
        """The batch without what a 400 answer refused, or None when the answer names nothing."""
        messages = _messages(error.body)
        refused: dict[int, str] = {}
        for message in messages:
            match = _REFUSED_ITEM.match(message)
            if match and int(match[1]) < len(batch) and not _MISSING_TASK.search(match[2]):
                refused[int(batch[int(match[1])]["task"])] = match[2][:300]
        gone: set[int] = set()
        stored: set[int] = set()
        if any(_MISSING_TASK.search(m) for m in messages):
            sent = [int(p["task"]) for p in batch]
            present, stored = self._presence(project_id, batch[0].get("model_version"), sent)
            gone = set(sent) - present
            # Label Studio's faster import stores each chunk of 500 before it checks the next one:
            # what it stored before refusing is not sent twice
            report.sent += len(stored)
            report.created += len(stored)
        if not refused and not gone:
            return None
        if gone:
            log.warning(
                "project %s: %d tasks were deleted while publishing (%s); publishing the rest",
                project_id,
                len(gone),
                ", ".join(map(str, sorted(gone)[:20])),
            )
        report.deleted += sorted(gone)
        report.refused.update(refused)
        left_out = gone | stored | set(refused)
        return [p for p in batch if int(p["task"]) not in left_out]

    def _presence(self, project_id: int, model_version, task_ids: Iterable[int]) -> tuple[set[int], set[int]]:
        """Of `task_ids`: (those still in the project, those holding a prediction of the version);
        one read of the project."""
        wanted = {int(t) for t in task_ids}
        present, holding = set(), set()
        for task in self.list_tasks(project_id):
            if int(task["id"]) in wanted:
                present.add(int(task["id"]))
                if any(p.get("model_version") == model_version for p in task.get("predictions") or []):
                    holding.add(int(task["id"]))
        return present, holding

    def find_unpublished(self, project_id: int, model_version: str, task_ids: Iterable[int]) -> set[int]:
        """Of `task_ids`, the existing ones holding no prediction of `model_version` (one read)."""
        present, holding = self._presence(project_id, model_version, task_ids)
        return present - holding

    def publish_version(
        self,
        project_id: int,
        model_version: str,
        fresh: Sequence[dict[str, Any]],
        rest: Sequence[dict[str, Any]] = (),
        report: PublishReport | None = None,
    ) -> dict[str, float]:
        """Publishes a version and points the project's ordering at it; returns each step's seconds.

        Label Studio serves only tasks holding a prediction of the project's version, so the
        freshly scored tasks go first: once the version is activated the next task already comes
        from them (where UPS takes its query), while the cached scores of the `rest` follow.
        `report` receives what Label Studio confirmed (see `PublishReport`).
        """
        report = report if report is not None else PublishReport()
        if not fresh:  # nothing re-scored: the version needs some prediction before it is activated
            fresh, rest = rest, ()
        timings: dict[str, float] = {}

        def timed(step: str, call: Callable[[], object]) -> Any:
            start = time.perf_counter()
            value = call()
            timings[step] = round(time.perf_counter() - start, 3)
            return value

        created = timed(
            "publish_s", lambda: self.publish_predictions(project_id, model_version, fresh, report)
        )
        if not created and rest:  # every fresh task was deleted or refused: activate after the rest
            fresh, rest = rest, ()
            created = timed(
                "publish_rest_s", lambda: self.publish_predictions(project_id, model_version, fresh, report)
            )
        if created:
            timed("activate_s", lambda: self.activate_version(project_id, model_version))
            report.activated = True
        if rest:
            timed("publish_rest_s", lambda: self.publish_predictions(project_id, model_version, rest, report))
        if report.unconfirmed:
            self._identify_shortfall(project_id, model_version, report)
        return timings

    def _identify_shortfall(self, project_id: int, model_version: str, report: PublishReport) -> None:
        """Names the tasks of short batches that hold no prediction of the version."""
        missing = self.find_unpublished(project_id, model_version, report.unconfirmed)
        for task in missing:
            report.refused.setdefault(task, NO_REASON)
        report.unconfirmed = []

    def activate_version(
        self, project_id: int, model_version: str, sampling: str = UNCERTAINTY_SAMPLING
    ) -> None:
        """Point the project's ordering at `model_version` (its predictions must exist) and its sampling."""
        self._call(
            f"update project {project_id} (model_version={model_version})",
            lambda: self.client.projects.update(
                id=project_id, model_version=model_version, sampling=sampling
            ),
        )


def _key_hint(error: Exception) -> str:
    if isinstance(error, ApiError) and error.status_code in (401, 403):
        return " (check LABEL_STUDIO_API_KEY: Label Studio refuses it)"
    return ""


def annotated(task: dict[str, Any]) -> bool:
    """True when the task holds at least one annotation that was not cancelled (skipped)."""
    return any(not a.get("was_cancelled") for a in task.get("annotations") or [] if isinstance(a, dict))


def split_tasks(tasks: Iterable[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """(labeled, unlabeled) tasks."""
    labeled, unlabeled = [], []
    for task in tasks:
        (labeled if annotated(task) else unlabeled).append(task)
    return labeled, unlabeled
