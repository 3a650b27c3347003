"""What each Label Studio webhook event does. Nothing here trains: it records and enqueues.

| action                              | effect                                                        |
|-------------------------------------|---------------------------------------------------------------|
| ANNOTATION_CREATED / _UPDATED       | retrain requested (merged into a pending one)                 |
| ANNOTATIONS_DELETED                 | retrain requested (the labeled set shrank)                    |
| START_TRAINING                      | retrain requested, whatever RETRAIN_TRIGGER / RETRAIN_EVERY say |
| (every task and annotation event)   | the tasks it names are marked for the next retrain to read again (ml_backend/labelstudio/mirror.py) |
| TASKS_CREATED                       | new tasks scored with the promoted version (unless a retrain is pending, which scores them anyway); with no model yet, a retrain is requested for the cold-start order (Backend.awaits_cold_start) |
| TASKS_DELETED                       | their cached scores dropped                                   |
| PROJECT_UPDATED                     | label config checked; a changed label set drops the score cache and requests a retrain |
| anything else                       | ignored (200)                                                 |
"""

from __future__ import annotations

import logging
from typing import Any

from al_core.exceptions import UnsupportedConfigError
from ml_backend.storage.layout import PROJECT_RE
from ml_backend.web.errors import BadRequest

log = logging.getLogger(__name__)

RETRAIN_ACTIONS = {"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "ANNOTATION_DELETED"}


def project_of(body: dict[str, Any]) -> str:
    """The project id of a webhook: project.id (full object), or an annotation's / task's project."""
    project = body.get("project")
    if isinstance(project, dict):
        project = project.get("id")
    if project is None:
        for key in ("annotation", "task"):
            if isinstance(body.get(key), dict):
                project = body[key].get("project")
                break
    if isinstance(project, str) and "." in project:  # "<id>.<timestamp>" as in /setup
        project = project.split(".", 1)[0]
    if isinstance(project, bool) or not isinstance(project, (int, str)) or not PROJECT_RE.match(str(project)):
        raise BadRequest(
            f"webhook {body.get('action')!r} names no valid project id (expected project.id, "
            f"got {str(project)[:80]!r})"
        )
    return str(int(project))


def tasks_of(body: dict[str, Any]) -> list:
    """The event's list of tasks (TASKS_CREATED / TASKS_DELETED)."""
    tasks = body.get("tasks")
    if tasks is None:
        return []
    if not isinstance(tasks, list):
        raise BadRequest(
            f"webhook {body.get('action')!r}: 'tasks' must be a list, got {type(tasks).__name__}"
        )
    return tasks


def _is_id(value: Any) -> bool:
    """An id Label Studio gives: an int (a JSON true/false is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _ids(items: Any) -> list[int]:
    """The `id` of each dict of a list (anything else is left out)."""
    if not isinstance(items, list):
        return []
    return [item["id"] for item in items if isinstance(item, dict) and _is_id(item.get("id"))]


def changed_tasks(body: dict[str, Any]) -> list[int]:
    """The task an annotation event names (its `task` object, or the annotation's `task` id)."""
    task = body.get("task")
    annotation = body.get("annotation") if isinstance(body.get("annotation"), dict) else {}
    candidates = [task.get("id") if isinstance(task, dict) else task, annotation.get("task")]
    return [t for t in candidates if _is_id(t)][:1]


def deleted_annotations(body: dict[str, Any]) -> list[int]:
    """ANNOTATIONS_DELETED names only the annotations (`annotations: [{"id": ...}]`)."""
    return _ids(body.get("annotations")) if body.get("action") in ("ANNOTATIONS_DELETED", "ANNOTATION_DELETED") else []


def handle_event(body: Any, backend) -> dict[str, Any]:
    """Apply one webhook; returns the JSON answer. Fast: Redis/dict updates and an enqueue."""
    if not isinstance(body, dict) or not isinstance(body.get("action"), str):
        raise BadRequest("a webhook must be a JSON object with an 'action'")
    action = body["action"]
    if action in RETRAIN_ACTIONS or action == "START_TRAINING":
        project = project_of(body)
        backend.mark_changed(project, task_ids=changed_tasks(body), annotation_ids=deleted_annotations(body))
        outcome = backend.retrainer.request(project, force=action == "START_TRAINING")
        return {"status": "ok", "action": action, "project": project, "retrain": outcome}
    if action == "TASKS_CREATED":
        project = project_of(body)
        tasks = [
            {"id": t["id"], "data": t.get("data")}
            for t in tasks_of(body)
            if isinstance(t, dict) and _is_id(t.get("id"))
        ]
        backend.mark_changed(project, task_ids=[t["id"] for t in tasks])
        scheduled = False
        answer = {"status": "ok", "action": action, "project": project}
        if tasks and backend.awaits_cold_start(project):  # no model to score them: the cold-start order takes them in
            answer["retrain"] = backend.retrainer.request(project, force=True)
        elif tasks and backend.store.current_version(project) and not backend.retrainer.pending(project):
            backend.runner.submit_scoring(project, tasks)
            scheduled = True
        return {**answer, "scoring": scheduled, "tasks": len(tasks)}
    if action == "TASKS_DELETED":
        project = project_of(body)
        ids = [
            str(t["id"])
            for t in tasks_of(body)
            if isinstance(t, dict) and isinstance(t.get("id"), (int, str))
        ]
        if ids:
            backend.score_cache(project).delete_many(ids)
            backend.mark_changed(project, task_ids=[int(i) for i in ids if str(i).isdigit()])
        return {"status": "ok", "action": action, "project": project, "forgotten": len(ids)}
    if action == "PROJECT_UPDATED":
        return _project_updated(body, backend)
    return {"status": "ignored", "action": action}


def _project_updated(body: dict[str, Any], backend) -> dict[str, Any]:
    project = project_of(body)
    info = body.get("project") if isinstance(body.get("project"), dict) else {}
    label_config = info.get("label_config")
    answer = {"status": "ok", "action": "PROJECT_UPDATED", "project": project}
    if not isinstance(label_config, str):
        return answer
    try:
        config = backend.check_config(label_config)
    except UnsupportedConfigError as error:
        backend.state.record_error(project, f"unsupported label config: {error}")
        return dict(answer, config="unsupported", error=str(error))
    if backend.labels_changed(project, config):
        # our own PATCH of model_version lands here too; only a change of the label set retrains,
        # as a new model: the scores cached for the old label set are dropped
        cache = backend.score_cache(project)
        cache.delete_many(list(cache.all()))
        answer["retrain"] = backend.retrainer.request(project, force=True)
    return answer
