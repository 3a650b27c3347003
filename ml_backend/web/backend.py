"""The backend's services behind the HTTP routes: setup, predict, webhook, versions, status."""

from __future__ import annotations

import logging
import threading
from typing import Any

from al_core.acquisition import label_table
from al_core.exceptions import DataFormatError, UnsupportedConfigError
from al_core.ls_format import LabelConfig
from ml_backend.campaign.project_warnings import round_warnings
from ml_backend.jobs.embedded_state import FileState
from ml_backend.jobs.queue import Retrainer, RQRunner
from ml_backend.jobs.status import RedisState, pending_ttl, submit_retrain_once
from ml_backend.labelstudio.label_set import check_config, label_set_changed, promoted_label_set_changed
from ml_backend.labelstudio.mirror import task_mirror
from ml_backend.predictor import PredictorCache, untrained_answer
from ml_backend.settings import Settings
from ml_backend.storage.layout import PROJECT_RE
from ml_backend.storage.store import UNTRAINED, VersionStore, has_model, score_cache
from ml_backend.web.errors import BadRequest
from ml_backend.web.events import handle_event
from ml_backend.web.key_check import KeyCheck

log = logging.getLogger(__name__)


def project_from_ls(value: Any) -> str:
    """Label Studio names the project "<id>.<created timestamp>" in /setup and /predict."""
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    head = text.split(".", 1)[0]
    if not PROJECT_RE.match(head):  # ASCII digits only: "²" or "١" pass str.isdigit()
        raise BadRequest(
            f"invalid project {str(value)[:80]!r}: expected '<id>.<timestamp>' as Label Studio sends it"
        )
    return str(int(head))


class Backend:
    def __init__(self, settings: Settings, redis=None):
        self.settings = settings
        if settings.torch_threads:
            import torch

            torch.set_num_threads(settings.torch_threads)  # /predict runs in this process
        self.store = VersionStore(settings.model_dir, keep=settings.keep_versions)
        if settings.redis_url:
            if redis is None:
                from redis import Redis

                # short timeouts: Label Studio gives a webhook 1 s, and a clear 503 beats a hang
                redis = Redis.from_url(settings.redis_url, socket_connect_timeout=0.5, socket_timeout=0.8)
            self.redis = redis
            self.state = RedisState(redis)
            self.runner = RQRunner(settings, redis)
        else:
            self.redis = None
            self.state = FileState(settings.model_dir)  # survives a restart (embedded_state.py)
            from ml_backend.jobs.run import embedded_runner  # the engine and torch: only where jobs run here

            self.runner = embedded_runner(settings, self.state)
        self.retrainer = Retrainer(settings, self.state, self.runner)
        self.predictors = PredictorCache(self.store, settings)
        self._configs: dict[str, LabelConfig] = {}
        self._configs_lock = threading.Lock()
        self._caches: dict[str, Any] = {}
        self.key_check = KeyCheck(settings)
        self._refusals_logged: set[tuple[str, str]] = set()
        self._connected: set[str] = set()
        if self.redis is None:
            self._requeue_interrupted()
        self.key_check.check_soon(force=True)  # at start, when LABEL_STUDIO_URL and the key are set

    def _requeue_interrupted(self) -> None:
        """Queues again the retrains a stop of the last process interrupted (or left pending)."""
        ttl = pending_ttl(self.settings.job_timeout, self.settings.retrain_delay)
        for project in self.state.interrupted():
            if submit_retrain_once(self.state, project, ttl, lambda p=project: self.runner.submit_retrain(p)):
                log.warning("project %s: queued again the retrain the last stop interrupted or left queued", project)

    # --- helpers ---
    def check_config(self, label_config: str) -> LabelConfig:
        """Parsed and accepted label config (memoised: /setup parses the same text every time)."""
        config = self._configs.get(label_config)
        if config is None:
            config = check_config(label_config)
            with self._configs_lock:
                if len(self._configs) > 256:
                    self._configs.clear()
                self._configs[label_config] = config
        return config

    def labels_changed(self, project: str, config: LabelConfig) -> bool:
        """True when the promoted version was trained for another label set than `config` (labels
        added, removed or renamed, another control tag; see label_set.py)."""
        return promoted_label_set_changed(self.store, project, config)

    def mark_changed(self, project: str, task_ids=(), annotation_ids=()) -> None:
        """A webhook named these tasks or deleted annotations: the next retrain reads them again."""
        mirror = task_mirror(self.settings, project, create=False)
        if mirror is not None:
            mirror.mark(task_ids)
            if annotation_ids:
                mirror.mark_annotations(annotation_ids)

    def awaits_cold_start(self, project: str) -> bool:
        """Whether a retrain should be requested for the project's cold-start order when it connects
        or gets new tasks: the cold start is on (AL_COLD_START_LABELS), retrains follow annotations
        (AL_RETRAIN_TRIGGER=annotation; with start_training only the Train button starts one), Label
        Studio can be read (LABEL_STUDIO_URL and a key), and the project has no model yet (no
        version, or a cold-start version)."""
        settings = self.settings
        if (
            settings.acquisition_config().cold_start_labels <= 0
            or settings.retrain_trigger != "annotation"
            or not (settings.label_studio_url and settings.label_studio_api_key)
        ):
            return False
        version = self.store.current_version(project)
        if version is None:
            return True
        try:
            return not has_model(self.store.meta(project, version))
        except (OSError, ValueError):
            return False

    def score_cache(self, project: str):
        """The project's score cache (store.score_cache), one object per project for this process."""
        cache = self._caches.get(project)
        if cache is None:
            cache = self._caches[project] = score_cache(self.settings, project, self.redis)
        return cache

    # --- routes ---
    def health(self) -> dict:
        return {
            "status": "UP",
            "model_class": "ActiveLearningBackend",
            "queue": "rq" if self.redis else "embedded",
        }

    def setup(self, body: Any) -> dict:
        if not isinstance(body, dict):
            raise BadRequest("/setup expects a JSON object with 'project' and 'schema'")
        project = project_from_ls(body.get("project"))
        schema = body.get("schema")
        if not isinstance(schema, str) or not schema.strip():
            raise BadRequest("/setup: 'schema' (the label config) is missing")
        try:
            self.check_config(schema)
        except UnsupportedConfigError as error:
            # Label Studio's dialog shows only "400 Client Error": say why on the console too
            if (project, str(error)) not in self._refusals_logged:
                self._refusals_logged.add((project, str(error)))
                log.warning("project %s: /setup refused the label config: %s", project, error)
            raise BadRequest(f"unsupported label config: {error}") from error
        if project not in self._connected:  # a project connects: is our Label Studio key accepted?
            self._connected.add(project)
            self.key_check.check_soon(force=True)
            self._request_cold_start(project)
        else:
            self.key_check.check_soon()
        self._recover_lost_run(project)
        version = self.store.current_version(project)
        if version is not None:
            self.predictors.warm(project)
        return {"model_version": version or UNTRAINED}

    def _request_cold_start(self, project: str) -> None:
        """A project without any version connects: a retrain publishes its cold-start order (or
        trains, when it has the labels), unless one is already pending or running. Best effort: an
        unreachable Redis must not fail /setup."""
        if self.store.current_version(project) is not None or not self.awaits_cold_start(project):
            return
        try:
            status = self.state.status(project)
            if not status.get("pending") and not status.get("running"):
                self.retrainer.request(project, force=True)
        except Exception as error:  # noqa: BLE001 - the next event requests it again
            log.warning("project %s: could not request the cold-start order: %s", project, error)

    def _recover_lost_run(self, project: str) -> None:
        """Best effort on /setup: Label Studio calls it before every predict batch, so a retrain
        lost with its worker is queued again soon; an unreachable Redis must not fail /setup."""
        if self.redis is None:
            return
        from redis.exceptions import RedisError

        try:
            self.retrainer.recover_lost_run(project)
        except RedisError as error:
            log.warning("project %s: could not check for a lost retrain: %s", project, error)

    def predict(self, body: Any) -> dict:
        if not isinstance(body, dict) or not isinstance(body.get("tasks"), list):
            raise BadRequest("/predict expects a JSON object with a list of 'tasks'")
        project = project_from_ls(body.get("project"))
        tasks = body["tasks"]
        if not all(isinstance(t, dict) and "id" in t for t in tasks):
            raise BadRequest("/predict: every task must be an object with an id")
        config = None
        if isinstance(body.get("label_config"), str):
            try:
                config = self.check_config(body["label_config"])
            except UnsupportedConfigError as error:
                raise BadRequest(f"unsupported label config: {error}") from error
        predictor = self.predictors.get(project)
        if predictor is None or (config is not None and label_set_changed(predictor.meta, config)):
            # no model yet, or one trained for another label set: the documented untrained answer
            return {"results": untrained_answer(len(tasks))}
        try:
            return {"results": predictor.predict(tasks, config)}
        except DataFormatError as error:
            raise BadRequest(str(error)) from error

    def webhook(self, body: Any) -> dict:
        return handle_event(body, self)

    def versions(self, project: str | None = None) -> dict:
        """Label Studio reads `versions` (names); `details` says how each version learned and how well."""
        projects = [project] if project else self.store.projects()
        pairs = [(p, v) for p in projects for v in self.store.versions(p)]
        return {"versions": [v for _, v in pairs], "details": [self.version_summary(p, v) for p, v in pairs]}

    def version_summary(self, project: str, version: str | None) -> dict | None:
        """A version's mode, quality estimate and label counts, from its metadata (None if unreadable);
        `headline`: the estimate's metric, value and worst label; `classes`: per label, the labels
        given, the estimated precision, recall, F1 and support, and the scored pool tasks it is
        predicted for (al_core.acquisition.label_table)."""
        if version is None:
            return None
        try:
            meta = self.store.meta(project, version)
        except (OSError, ValueError, KeyError):
            return None
        keys = (
            "acquisition_mode", "quality", "n_labeled", "label_counts", "strategy", "created_at",
            "predicted_counts", "n_predicted", "audit",
        )
        quality = meta.get("quality") if isinstance(meta.get("quality"), dict) else {}
        return {
            "version": version,
            **{k: meta.get(k) for k in keys},
            "headline": {k: quality.get(k) for k in ("metric", "value", "worst")},
            # the estimate on the audit sample, with its interval (None: too few labeled audit tasks)
            "audit_estimate": quality.get("audit"),
            "classes": label_table(quality, meta.get("label_counts"), meta.get("predicted_counts")),
        }

    def status(self, project: str | None = None) -> dict:
        projects = [project] if project else sorted(set(self.store.projects()) | set(self.state.projects()))
        key_warning = self.key_check.warning()
        out = {}
        for p in projects:
            self.retrainer.recover_lost_run(p)
            state = self.state.status(p)
            current = self.store.current_version(p)
            last_round = state.get("last_round")
            warnings = ([key_warning] if key_warning else []) + round_warnings(last_round)
            out[p] = {
                "current_version": current,
                "current": self.version_summary(p, current),
                "versions": self.store.versions(p),
                "pending_retrain": state.get("pending", False),
                "running_retrain": state.get("running", False),
                "running_since": state.get("running_since"),
                "running_finetune": state.get("finetuning", False),  # the background lane's (one at a time)
                "last_finetune": state.get("last_finetune"),
                "events_since_last_retrain": state.get("events", 0),
                "last_error": state.get("last_error"),
                "last_error_at": state.get("last_error_at"),
                "last_round": last_round,
                "warnings": warnings,
                "skipped": (last_round or {}).get("skipped") or {},
            }
        return {"queue": "rq" if self.redis else "embedded", "projects": out}

    def shutdown(self) -> None:
        """A graceful stop (SIGTERM/SIGINT): no new job starts; a retrain still running is marked
        in MODEL_DIR and queued again at the next start (embedded mode)."""
        running = self.runner.stop() if hasattr(self.runner, "stop") else None
        if running:
            log.warning(
                "stopping during a retrain of project %s: it is queued again when the backend starts", running
            )
