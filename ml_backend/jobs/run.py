"""The retrain and scoring jobs, as the runners call them.

`retrain(project_id, settings)` and `score_new_tasks(project_id, tasks, settings)` are the RQ
entry points (primitive arguments only; `settings`: the values the web process resolved,
`Settings.for_jobs`, so a worker runs with them whatever its own environment). The embedded
runner calls `run_retrain` / `run_scoring` directly with the web process's settings.
`run_retrain` records the retrain's outcome in the project's state; the retrain itself is
`ml_backend.jobs.retrain_steps.train_and_publish`.
"""

from __future__ import annotations

import logging
import time

from al_core.ups import CachedScore
from ml_backend.jobs.finetune_lane import request_finetune, run_finetune
from ml_backend.jobs.queue import EmbeddedRunner, RQRunner
from ml_backend.jobs.retrain_steps import NotReadyError, train_and_publish
from ml_backend.jobs.split_pass import SplitPass
from ml_backend.jobs.status import RedisState, RunLockTimeout, rq_job_alive
from ml_backend.labelstudio.gateway import LabelStudioError, LSGateway, PublishReport
from ml_backend.labelstudio.label_set import check_config, label_set_changed
from ml_backend.predictor import Predictor
from ml_backend.settings import Settings, job_settings
from ml_backend.storage.layout import check_project
from ml_backend.storage.store import VersionStore, has_model, score_cache

log = logging.getLogger(__name__)


def _redis(settings: Settings):
    if not settings.redis_url:
        return None
    from redis import Redis

    return Redis.from_url(settings.redis_url)


# --- RQ entry points -------------------------------------------------------------------------


def retrain(project_id: int, settings: dict | None = None) -> dict:
    """RQ job: one retrain of a project with the web process's settings (a job queued without
    them: the worker's environment), one at a time per project whatever the number of workers."""
    from rq import get_current_job

    settings = job_settings(settings)
    redis = _redis(settings)
    state = RedisState(redis)
    job = get_current_job()
    if job is None:  # called outside a worker
        return run_retrain(int(project_id), settings, state, redis=redis)
    project = check_project(project_id)
    try:
        with state.exclusive_run(
            project,
            job.id,
            wait=settings.job_timeout,
            owner_alive=lambda holder: rq_job_alive(redis, holder),
            ttl=settings.job_timeout + 60,
        ):
            split = SplitPass(settings, redis, project, job.id, job.worker_name or job.id)
            return run_retrain(
                int(project_id), settings, state, redis=redis, job_id=job.id, split=split,
                runner=RQRunner(settings, redis),
            )
    except RunLockTimeout as error:
        state.release_pending(project)
        state.record_error(project, str(error))
        raise
    except Exception as error:
        if getattr(error, "al_logged", False):
            # logged and in /status already: raising would make rq log the traceback a second time
            return {"status": "failed", "error": f"{type(error).__name__}: {error}"}
        raise


def finetune(project_id: int, settings: dict | None = None) -> dict:
    """RQ job: the background lane's fine-tune of a project (ml_backend.jobs.finetune_lane)."""
    settings = job_settings(settings)
    redis = _redis(settings)
    try:
        return run_finetune(int(project_id), settings, RedisState(redis), RQRunner(settings, redis), redis=redis)
    except Exception as error:
        if getattr(error, "al_logged", False):  # logged and in /status already
            return {"status": "failed", "error": f"{type(error).__name__}: {error}"}
        raise


def score_new_tasks(project_id: int, tasks: list[dict], settings: dict | None = None) -> dict:
    """RQ job: score newly imported tasks with the promoted version and publish them."""
    settings = job_settings(settings)
    return run_scoring(int(project_id), tasks, settings, redis=_redis(settings))


def embedded_runner(settings: Settings, state) -> EmbeddedRunner:
    """The embedded mode's runner (threads of the web process) with these jobs."""
    return EmbeddedRunner(settings, state, retrain=run_retrain, finetune=run_finetune, scoring=run_scoring)


# --- the work --------------------------------------------------------------------------------


def run_retrain(
    project_id: int,
    settings: Settings,
    state,
    redis=None,
    gateway: LSGateway | None = None,
    job_id: str | None = None,
    split: SplitPass | None = None,
    runner=None,
) -> dict:
    """Runs one retrain, recording its outcome in `state`. Returns a summary (also on 'waiting').
    `split`: the scoring pass may be split over the queue's workers (a retrain in an rq worker).
    `runner` (ml_backend.jobs.queue): where a fine-tune the retrain finds due is asked for (the
    background lane, ml_backend.jobs.finetune_lane); without one, nobody asks for it."""
    project = check_project(project_id)
    started = False
    try:
        if settings.retrain_delay:
            time.sleep(settings.retrain_delay)  # later events of a burst still merge into this run
        generation = state.start_run(project, job_id)
        started = True
        summary = train_and_publish(int(project), settings, redis, gateway or LSGateway(settings), state, split)
        state.finish_run(project, generation, summary, shortfall_error(summary))
        if summary.get("finetune_due") and runner is not None:
            ttl = settings.job_timeout + 60  # a fine-tune whose worker died blocks the next one no longer
            if request_finetune(state, project, lambda: runner.submit_finetune(project), ttl):
                log.info("project %s: fine-tune asked for (background lane)", project)
        return summary
    except NotReadyError as why:
        summary = dict(why.summary, status="waiting", reason=str(why))
        state.finish_run(project, None, summary, None)
        return summary
    except Exception as error:
        log_failure(project, error)
        state.finish_run(project, None, None, f"{type(error).__name__}: {error}")
        raise
    finally:
        if not started:
            state.release_pending(project)


def log_failure(project: str, error: Exception) -> None:
    """Logs a failed job once: the runner (embedded thread or rq) must not log it again. A refused
    API key or another Label Studio error is one line; anything else gets its traceback."""
    if isinstance(error, LabelStudioError):
        log.error("project %s: retrain failed: %s", project, error)
    else:
        log.exception("project %s: retrain failed", project)
    error.al_logged = True  # type: ignore[attr-defined]


def shortfall_error(summary: dict) -> str | None:
    """The /status error of a publish that Label Studio did not fully confirm, or None."""
    refused = (summary.get("publish") or {}).get("refused") or {}
    if not refused:
        return None
    reasons = sorted(set(refused.values()))
    tasks = ", ".join(list(refused)[:20]) + (" ..." if len(refused) > 20 else "")
    return (
        f"Label Studio did not create {len(refused)} of the predictions of {summary.get('version')} "
        f"(tasks {tasks}): {'; '.join(reasons[:3])}"
    )


def run_scoring(
    project_id: int, tasks: list[dict], settings: Settings, redis=None, gateway: LSGateway | None = None
) -> dict:
    """Scores new tasks with the promoted version, caches and publishes the scores."""
    project = check_project(project_id)
    store = VersionStore(settings.model_dir, keep=settings.keep_versions)
    current = store.current(project)
    if current is None or not tasks:
        return {"status": "skipped", "n_published": 0}
    meta = store.meta(project, current["version"])
    if not has_model(meta):  # a cold-start version: the next retrain orders new tasks
        return {"status": "skipped", "reason": "no model yet", "n_published": 0}
    gateway = gateway or LSGateway(settings)
    config = check_config(gateway.get_project(int(project)).get("label_config") or "")
    if label_set_changed(meta, config):  # the promoted model predicts an old label set
        log.info("project %s: new tasks not scored: the label config changed since %s", project, current["version"])
        return {"status": "skipped", "reason": "label config changed", "n_published": 0}
    folder = store.version_dir(project, current["version"])
    predictor = Predictor(folder, meta, settings)
    answers, informativeness = predictor.predict_and_score(tasks)
    score_cache(settings, project, redis).set_many(
        {
            str(task["id"]): CachedScore(float(u), current["version"], int(current["iteration"]))
            for task, u in zip(tasks, informativeness, strict=True)
        }
    )
    predictions = [
        {"task": int(t["id"]), "result": a["result"], "score": a["score"]}
        for t, a in zip(tasks, answers, strict=True)
    ]
    report = PublishReport()
    published = gateway.publish_predictions(int(project), current["version"], predictions, report)
    if report.shortfall or report.refused:
        log.warning(
            "project %s: Label Studio created %d of %d predictions of new tasks: %s",
            project, published, len(predictions), report.summary(),
        )
    return {"status": "scored", "version": current["version"], "n_published": published}
