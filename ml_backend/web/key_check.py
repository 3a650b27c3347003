"""Is LABEL_STUDIO_API_KEY accepted? Checked at start and when a project connects (/setup).

A wrong key used to show only when a retrain failed. One cheap authenticated call
(GET /api/current-user/whoami) tells it at once: a 401/403 is logged once at WARNING naming the
variable, and every project's /status carries an `api_key` warning until a check passes.
Checks run in a background thread (Label Studio gives /setup 3 s) and at most every `interval` s.
"""

from __future__ import annotations

import logging
import threading
import time

from ml_backend.settings import Settings

log = logging.getLogger(__name__)

NOT_SET = (
    "LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY must both be set for retrains to read annotations and "
    "publish scores"
)


class KeyCheck:
    def __init__(self, settings: Settings, interval: float = 60.0):
        self.settings = settings
        self.interval = interval
        self.problem: str | None = None
        self._checked_at = 0.0
        self._lock = threading.Lock()
        self._checking = threading.Lock()  # one check at a time: its verdict is logged once
        self._running = False

    @property
    def configured(self) -> bool:
        return bool(self.settings.label_studio_url and self.settings.label_studio_api_key)

    def warning(self) -> dict[str, str] | None:
        """The `api_key` warning of /status, or None."""
        if not self.configured:
            return {"code": "api_key", "message": NOT_SET}
        if self.problem:
            return {"code": "api_key", "message": self.problem}
        return None

    def check(self) -> str | None:
        """Runs the check now; returns the problem (None: the key is accepted or LS is unreachable)."""

        if not self.configured:
            return None
        with self._checking:
            return self._check()

    def _check(self) -> str | None:
        from ml_backend.labelstudio.gateway import LabelStudioError, LSGateway

        self._checked_at = time.monotonic()
        settings = self.settings.model_copy(
            update={"ls_retries": 0, "ls_timeout": min(self.settings.ls_timeout, 5.0)}
        )
        try:
            refused = LSGateway(settings).check_access()
        except LabelStudioError as error:  # not reachable (yet): say so, keep the last verdict
            log.info("could not check LABEL_STUDIO_API_KEY: %s", error)
            return self.problem
        problem = (
            f"Label Studio at {self.settings.label_studio_url} refuses LABEL_STUDIO_API_KEY ({refused}); "
            "set it to a valid personal access token (or a legacy token where the organisation allows them)"
            if refused
            else None
        )
        if problem and problem != self.problem:
            log.warning("%s", problem)
        elif self.problem and not problem:
            log.info("LABEL_STUDIO_API_KEY is accepted by Label Studio again")
        self.problem = problem
        return problem

    def check_soon(self, force: bool = False) -> None:
        """Starts a check in the background unless one ran less than `interval` s ago."""
        if not self.configured:
            return
        with self._lock:
            if self._running or (not force and time.monotonic() - self._checked_at < self.interval):
                return
            self._running = True

        def run() -> None:
            try:
                self.check()
            finally:
                self._running = False

        threading.Thread(target=run, name="al-key-check", daemon=True).start()
