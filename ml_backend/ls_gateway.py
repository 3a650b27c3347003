"""Everything the backend says to Label Studio, over label-studio-sdk.

Reading a project's tasks, publishing predictions in bulk and pointing the project at a new
model version. Failed calls (connection errors, 429 and 5xx answers) are retried with
exponential backoff; other errors are raised as LabelStudioError naming the call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from ml_backend.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

UNCERTAINTY_SAMPLING = "Uncertainty sampling"


class LabelStudioError(RuntimeError):
    """A call to Label Studio failed for good (after retries, or with a 4xx answer)."""


def _retryable(error: Exception) -> bool:
    if isinstance(error, ApiError):
        return error.status_code is None or error.status_code == 429 or error.status_code >= 500
    return isinstance(error, httpx.TransportError)


class LSGateway:
    """Label Studio's API as the retrain job needs it."""

    def __init__(self, settings: Settings, client: LabelStudio | None = None):
        if client is None and not (settings.label_studio_url and settings.label_studio_api_key):
            raise LabelStudioError(
                "LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY must be set for the backend to read tasks "
                "and publish scores"
            )
        self.settings = settings
        self._client = client

    def _redact(self, text: str) -> str:
        """The text with the API key masked (a proxy or Label Studio may echo the request)."""
        key = self.settings.label_studio_api_key
        return text.replace(key, "***") if key else text

    @property
    def client(self) -> LabelStudio:
        if self._client is None:
            self._client = LabelStudio(
                base_url=self.settings.label_studio_url.rstrip("/"),
                api_key=self.settings.label_studio_api_key,
                timeout=self.settings.ls_timeout,
                max_retries=0,  # retries are ours, with backoff
            )
        return self._client

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        retries = self.settings.ls_retries
        for attempt in range(retries + 1):
            try:
                return fn()
            except (ApiError, httpx.HTTPError) as error:
                detail = self._redact(
                    f"HTTP {error.status_code}: {error.body}" if isinstance(error, ApiError) else str(error)
                )
                if attempt < retries and _retryable(error):
                    delay = min(0.5 * 2**attempt, 10.0)
                    log.warning("Label Studio %s failed (%s); retry in %.1f s", what, detail, delay)
                    time.sleep(delay)
                    continue
                # not chained: the original error (and a traceback of it) may quote the API key
                raise LabelStudioError(f"Label Studio {what} failed: {detail}") from None
        raise AssertionError("unreachable")

    # --- reading ---
    def get_project(self, project_id: int) -> dict[str, Any]:
        project = self._call(f"GET project {project_id}", lambda: self.client.projects.get(id=project_id))
        return project.model_dump() if hasattr(project, "model_dump") else dict(project)

    def list_tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every task of the project with its annotations (dicts shaped like Label Studio's JSON)."""

        def read() -> list[dict[str, Any]]:
            pager = self.client.tasks.list(
                project=project_id, fields="all", page_size=self.settings.ls_page_size
            )
            return [task.model_dump() if hasattr(task, "model_dump") else dict(task) for task in pager]

        return self._call(f"list tasks of project {project_id}", read)

    # --- writing ---
    def publish_predictions(
        self, project_id: int, model_version: str, predictions: Sequence[dict[str, Any]]
    ) -> int:
        """Create predictions in bulk; each item is {"task": id, "result": [...], "score": float}.

        Every prediction is stored under `model_version`. Returns the number sent.
        """
        size = self.settings.publish_batch_size
        sent = 0
        for start in range(0, len(predictions), size):
            batch = [dict(p, model_version=model_version) for p in predictions[start : start + size]]
            self._call(
                f"import {len(batch)} predictions into project {project_id}",
                lambda batch=batch: self.client.projects.import_predictions(id=project_id, request=batch),
            )
            sent += len(batch)
        return sent

    def publish_version(
        self, project_id: int, model_version: str, fresh: Sequence[dict[str, Any]], rest: Sequence[dict[str, Any]] = ()
    ) -> dict[str, float]:
        """Publishes a version and points the project's ordering at it; returns each step's seconds.

        Label Studio serves only tasks holding a prediction of the project's version, so the
        freshly scored tasks go first: once the version is activated the next task already comes
        from them (where UPS takes its query), while the cached scores of the `rest` follow.
        """
        if not fresh:  # nothing re-scored: the version needs some prediction before it is activated
            fresh, rest = rest, ()
        timings: dict[str, float] = {}

        def timed(step: str, call: Callable[[], object]) -> None:
            start = time.perf_counter()
            call()
            timings[step] = round(time.perf_counter() - start, 3)

        timed("publish_s", lambda: self.publish_predictions(project_id, model_version, fresh))
        timed("activate_s", lambda: self.activate_version(project_id, model_version))
        if rest:
            timed("publish_rest_s", lambda: self.publish_predictions(project_id, model_version, rest))
        return timings

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


def annotated(task: dict[str, Any]) -> bool:
    """True when the task holds at least one annotation that was not cancelled (skipped)."""
    return any(not a.get("was_cancelled") for a in task.get("annotations") or [] if isinstance(a, dict))


def split_tasks(tasks: Iterable[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """(labeled, unlabeled) tasks."""
    labeled, unlabeled = [], []
    for task in tasks:
        (labeled if annotated(task) else unlabeled).append(task)
    return labeled, unlabeled
