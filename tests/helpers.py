"""The backend's settings for tests that run it against the fake Label Studio."""

from __future__ import annotations

from ml_backend.settings import Settings, env_name
from testkit.fake_label_studio import backend_values, rq_worker_env


def backend_settings(url: str | None, model_dir, model, **overrides) -> Settings:
    """Fast settings for tests: tiny model, one epoch, one thread, no debounce."""
    return Settings(**backend_values(url, model_dir, model, **overrides))


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment an `rq worker` needs to run the backend's jobs with these settings."""
    variables = {env_name(k): str(v) for k, v in settings.model_dump().items() if v is not None}
    return rq_worker_env(variables)
