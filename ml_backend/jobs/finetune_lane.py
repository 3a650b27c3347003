"""The background lane's fine-tune: the retrains never wait for one.

In auto mode (AL_FINETUNE_LANE=background, the default; kinds that refresh) a retrain that finds a
fine-tune due (every AL_FINETUNE_EVERY labels) does not run it: it serves a refresh round over the
last fine-tuned encoder (the frozen head before the first fine-tune) in seconds, and asks for one
fine-tune job (`request_finetune`: one per project, queued or running). That job reads the project,
fine-tunes (al_core.loop.finetune_encoder), hands the vectors of the labeled tasks and of the pool
(the whole pool until a pass found UPS's premise held, then the UPS subset) over to the embedding
cache, and judges it: a head over the
new encoder against a head over the encoder served now, on the same held-out labels. Taken up, the
encoder is saved under <project>/encoders/ and a retrain is asked for, which reads it (a refresh
round: the new ordering seconds after the fine-tune ends, an ordinary version); not taken up, it is
dropped and the retrains go on with the encoder they read. Either way /status shows the verdict
(`last_finetune`).
"""

from __future__ import annotations

import logging
import time

from al_core.acquisition import audit_ids, audit_slots, finetune_in_background
from al_core.loop import finetune_encoder
from al_core.ls_format import model_labels
from al_core.strategies import get_strategy
from al_core.ups import PoolSubsampler
from ml_backend.jobs.retrain_steps import (
    encoder_folder,
    finetuned_encoder,
    new_model,
    read_project,
    strategy_name,
)
from ml_backend.jobs.split_pass import configure_torch
from ml_backend.jobs.status import pending_ttl, submit_once, submit_retrain_once
from ml_backend.labelstudio.gateway import LSGateway
from ml_backend.labelstudio.label_set import promoted_label_set_changed
from ml_backend.settings import Settings
from ml_backend.storage.layout import check_project
from ml_backend.storage.store import VersionStore, embedding_cache, score_cache

log = logging.getLogger(__name__)


def request_finetune(state, project: str, submit, ttl: int) -> bool:
    """Asks for the project's fine-tune unless one is queued or running; True when asked."""
    return submit_once(lambda: state.claim_finetune(project, ttl=ttl), lambda: state.finish_finetune(project, None), submit)


def run_finetune(project_id: int, settings: Settings, state, runner, redis=None, gateway: LSGateway | None = None) -> dict:
    """The fine-tune job: fine-tunes, judges, saves the encoder taken up and asks `runner` for the
    retrain that serves it (through the pending flag, as an annotation would). Returns its summary,
    also /status's `last_finetune`."""
    project = check_project(project_id)
    summary: dict | None = None
    try:
        summary = finetune_and_judge(int(project), settings, redis, gateway or LSGateway(settings))
        if summary.get("accepted"):
            ttl = pending_ttl(settings.job_timeout, settings.retrain_delay)
            submit_retrain_once(state, project, ttl, lambda: runner.submit_retrain(project))
        log.info("project %s: fine-tune %s", project, summary)
        return summary
    except Exception as error:
        log.exception("project %s: fine-tune failed", project)
        summary = {"status": "failed", "error": f"{type(error).__name__}: {error}", "finished_at": time.time()}
        error.al_logged = True  # type: ignore[attr-defined]
        raise
    finally:
        state.finish_finetune(project, summary)


def finetune_and_judge(project_id: int, settings: Settings, redis, gateway: LSGateway) -> dict:
    """Reads the project, fine-tunes on its labels, judges the encoder and saves it if taken up."""
    started = time.time()
    store = VersionStore(settings.model_dir, keep=settings.keep_versions)
    configure_torch(settings)
    read = read_project(project_id, settings, gateway)
    kind, labeled, pool = read.config.kind, read.labeled, read.pool
    labels = model_labels(read.config)
    acquisition = settings.acquisition_config()
    previous = None if promoted_label_set_changed(store, project_id, read.config) else finetuned_encoder(
        store, project_id, labels
    )
    if not finetune_in_background(acquisition, kind, len(labeled), previous["n_labeled"] if previous else None):
        return {"status": "skipped", "reason": "no fine-tune due", "n_labeled": len(labeled), "finished_at": time.time()}
    name = f"ft-{len(labeled)}-{int(time.time() * 1000)}"
    folder = store.layout.encoder_dir(project_id, name)
    share = acquisition.audit_share
    serve = audit_ids([e.id for e in pool], settings.seed, share)[: audit_slots(settings.query_window or len(pool), share)]
    verdict = finetune_encoder(
        lambda mode: new_model(settings, store, project_id, kind, labels, mode),
        kind, labels, labeled, pool, score_cache(settings, project_id, redis),
        PoolSubsampler(settings.subsampling_config(), seed=settings.seed), store.next_iteration(project_id),
        acquisition, str(folder.resolve()),
        (encoder_folder(store, project_id, previous), previous["n_labeled"]) if previous else None,
        settings.training_config(), embedding_cache(settings, project_id), seed=settings.seed, also_score=serve,
        strategy=get_strategy(strategy_name(settings, kind), seed=settings.seed),
    )
    if verdict.accepted:
        store.save_encoder(
            project_id, name, verdict.save,
            {"labels": labels, "n_labeled": len(labeled), "verdict": verdict.as_dict(), "created_at": time.time()},
        )
    return {
        "status": "adopted" if verdict.accepted else "rejected",
        "encoder": name if verdict.accepted else None,
        "incumbent": (previous or {}).get("encoder") or (previous or {}).get("version") or "pretrained",
        **verdict.as_dict(),
        "started_at": started,
        "finished_at": time.time(),
    }
