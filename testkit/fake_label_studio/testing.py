"""Helpers for the tests and benchmarks that run a backend against the fake Label Studio:
webhook bodies as Label Studio sends them, the values of fast backend settings reading the fake
(the caller builds ml_backend.settings.Settings of them) and an `rq worker`'s environment."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path

from testkit.fake_label_studio.server import CLS_CONFIG, TOKEN


def backend_values(url: str | None, model_dir, model, **overrides) -> dict:
    """Settings values for a fast backend: tiny model, one epoch, one thread, no debounce, no
    retries; reading the fake at `url` (None: no Label Studio)."""
    return {
        "label_studio_url": url,
        "label_studio_api_key": TOKEN if url else None,
        "model_dir": str(model_dir),
        "acquisition_model": str(model),
        "retrain_delay": 0,
        "epochs": 1,
        "min_steps": 0,
        "batch_size": 8,
        "max_length": 32,
        "torch_threads": 1,
        "ls_retries": 0,
        **overrides,
    }


def annotation_webhook(project_id: int, task_id: int) -> dict:
    """The ANNOTATION_CREATED webhook Label Studio sends for one annotation (fields the backend reads)."""
    return _annotation_body("ANNOTATION_CREATED", project_id, task_id, {"id": task_id})


def annotation_updated_webhook(project_id: int, task_id: int, annotation: dict) -> dict:
    """The ANNOTATION_UPDATED webhook Label Studio sends when `annotation` (a dict) is edited."""
    return _annotation_body("ANNOTATION_UPDATED", project_id, task_id, annotation)


def _annotation_body(action: str, project_id: int, task_id: int, annotation: dict) -> dict:
    return {
        "action": action,
        "annotation": {"task": task_id, "project": project_id, **annotation},
        "task": {"id": task_id, "project": project_id},
        "project": {"id": project_id, "label_config": CLS_CONFIG},
    }


def annotations_deleted_webhook(project_id: int, annotation_ids) -> dict:
    return {
        "action": "ANNOTATIONS_DELETED",
        "annotations": [{"id": i} for i in annotation_ids],
        "project": {"id": project_id},
    }


def tasks_created_webhook(project_id: int, tasks: list[dict]) -> dict:
    """TASKS_CREATED, with the full task dicts (e.g. `[fake.tasks[i] for i in ids]`)."""
    return {"action": "TASKS_CREATED", "tasks": copy.deepcopy(list(tasks)), "project": {"id": project_id}}


def tasks_deleted_webhook(project_id: int, task_ids) -> dict:
    return {"action": "TASKS_DELETED", "tasks": [{"id": i} for i in task_ids], "project": {"id": project_id}}


def rq_worker_env(variables: Mapping[str, str]) -> dict[str, str]:
    """The environment of an `rq worker` process running the backend's jobs: this one without its
    AL_* variables, plus `variables` (the settings' environment variables), this checkout on
    PYTHONPATH and one OpenMP thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AL_")}
    env.update(variables)
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env
