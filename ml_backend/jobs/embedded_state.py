"""The embedded mode's per-project retrain state, kept in MODEL_DIR so that a restart keeps it.

MemoryState held it in memory only: a restart during a retrain lost that retrain without a
trace (nothing running, nothing pending, no error) and erased every earlier error. FileState is
the same state written to MODEL_DIR/embedded_state.json after every change (atomic rename).
At start, `interrupted()` ends the runs the last process left open and names the projects
whose retrain was running or pending then: the backend queues them again.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path

from ml_backend.jobs.status import MemoryState
from ml_backend.storage.layout import ModelDirLayout

log = logging.getLogger(__name__)

INTERRUPTED = "the retrain was interrupted when the backend stopped; queued again at its start"


class FileState(MemoryState):
    def __init__(self, model_dir: str | Path):
        super().__init__()
        self.path = ModelDirLayout(model_dir).embedded_state_file()
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self._projects = {str(p): dict(v) for p, v in data.get("projects", {}).items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as error:
            log.warning("cannot read %s (%s); starting with an empty retrain state", self.path, error)

    def _save(self) -> None:
        with self._lock:
            text = json.dumps({"projects": self._projects}, indent=1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, self.path)

    def interrupted(self) -> list[str]:
        """Projects whose retrain was running or pending when the last process stopped; their
        flags are cleared (the caller queues them again) and a running one gets an error saying so."""
        found = []
        with self._lock:
            cut_short = [p for p, state in self._projects.items() if state.get("finetuning")]
            for project, state in self._projects.items():
                state["finetuning"] = False  # a fine-tune the stop cut short: the next retrain that finds it due asks again
                if state.get("running") or state.get("pending"):
                    found.append(project)
                    if state.get("running"):
                        state.update(last_error=INTERRUPTED, last_error_at=time.time())
                    state.update(running=False, pending=False)
                    state.pop("running_since", None)
        if found or cut_short:
            self._save()
        return sorted(found)

    # every change is written at once
    def note_event(self, project: str) -> tuple[int, int]:
        out = super().note_event(project)
        self._save()
        return out

    def claim_pending(self, project: str, ttl: int) -> bool:
        claimed = super().claim_pending(project, ttl)
        if claimed:
            self._save()
        return claimed

    def release_pending(self, project: str) -> None:
        super().release_pending(project)
        self._save()

    def claim_finetune(self, project: str, ttl: int) -> bool:
        claimed = super().claim_finetune(project, ttl)
        if claimed:
            self._save()
        return claimed

    def finish_finetune(self, project: str, result: dict | None) -> None:
        super().finish_finetune(project, result)
        self._save()

    def start_run(self, project: str, job_id: str | None = None) -> int:
        out = super().start_run(project, job_id)
        self._save()
        return out

    def finish_run(self, project: str, generation, result, error) -> None:
        super().finish_run(project, generation, result, error)
        self._save()

    def record_error(self, project: str, error: str) -> None:
        super().record_error(project, error)
        self._save()
