"""An `rq worker` class for the split-pass tests: a worker that does not see the backend's MODEL_DIR,
as one on a machine without the shared disk would (every pass folder it looks for is missing)."""

from __future__ import annotations

from pathlib import Path

from ml_backend.jobs import split_pass
from ml_backend.worker import Worker

__all__ = ["Worker"]


def _unseen_folder(settings, project, pass_id: str) -> Path:
    return Path("/nonexistent-model-dir") / str(project) / pass_id


split_pass.pass_folder = _unseen_folder  # in the worker's process only; its work horses are forks of it
