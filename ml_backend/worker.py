"""The backend's `rq worker` class: the job code loaded once, before any job.

rq forks a work horse per job. With the plain `rq worker`, each horse imports torch,
transformers and the engine itself (about 4 s on 2 cores): a cost every retrain and every
chunk of a split scoring pass pays again. This class is rq's own Worker; importing it loads
that code in the worker's main process, so each horse starts with it. Nothing runs a model
there (torch's thread pools are made in the horse, after the fork).

  rq worker --worker-class ml_backend.worker.Worker --url "$REDIS_URL" al-backend
"""

from __future__ import annotations

from rq import Worker as _RQWorker

import al_core.models  # noqa: F401
import ml_backend.jobs.run  # noqa: F401  (the retrain, its engine, torch and transformers)
import ml_backend.jobs.split_pass  # noqa: F401


class Worker(_RQWorker):
    """rq's Worker, unchanged: only its module's imports matter."""
