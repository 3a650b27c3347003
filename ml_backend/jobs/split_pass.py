"""A big scoring pass split over the `rq worker`s of the queue, merged by the retrain that asked.

A retrain whose network must run over more than AL_SPLIT_CHUNK tasks (a full-scoring
iteration, a new encoder's first embedding pass) saves its model into a pass folder in
MODEL_DIR (which every worker shares), writes the tasks there in chunks and enqueues one
`score_chunk` job per chunk at the front of its queue. An idle worker takes a chunk job
from the front and, with the model loaded, goes on taking the chunks still queued. The
retrain's own worker takes them from the back. Every taker removes a chunk from the queue
before it runs it (one atomic LREM: a chunk runs once), so one worker alone runs the whole
pass itself. It then waits for the chunks other workers took, runs again any whose job
failed or whose worker died, and merges the outputs in chunk order: the result is what one
`model.infer` over all the tasks gives.

A frozen head's chunks fill the shared embedding cache; when only some tasks needed the
encoder, the merge is one `model.infer` over the whole pass, from the cache.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
import uuid
from collections import Counter
from pathlib import Path

from al_core.data import Example
from al_core.models import ModelOutputs, load_model
from ml_backend.jobs.status import rq_job_alive
from ml_backend.settings import Settings, job_settings
from ml_backend.storage.layout import ModelDirLayout, check_project
from ml_backend.storage.store import embedding_cache

log = logging.getLogger(__name__)

CHUNK_JOB = "ml_backend.jobs.split_pass.score_chunk"


def configure_torch(settings: Settings) -> None:
    """What a job sets before it runs a model: torch's threads, no progress bars in a worker's log."""
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def pass_folder(settings: Settings, project: int | str, pass_id: str) -> Path:
    return ModelDirLayout(settings.model_dir).pass_dir(project, pass_id)


def chunk_job_id(pass_id: str, index: int) -> str:
    return f"al-pass-{pass_id}-{index}"


def _owners_key(pass_id: str) -> str:
    """Redis hash: chunk index -> "<job id> <worker name>" of the job running it."""
    return f"al:pass:{pass_id}:owners"


def _record_owner(redis, pass_id: str, index: int, owner: str, ttl: int) -> None:
    key = _owners_key(pass_id)
    redis.hset(key, str(index), owner)
    redis.expire(key, ttl)


def take_chunk(queue, pass_id: str, index: int, owner: str, ttl: int) -> bool:
    """Takes chunk `index` out of the queue for `owner` (an atomic LREM: True for one taker only)."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    if not queue.remove(chunk_job_id(pass_id, index)):
        return False
    _record_owner(queue.connection, pass_id, index, owner, ttl)
    try:
        Job.fetch(chunk_job_id(pass_id, index), connection=queue.connection).delete(remove_from_queue=False)
    except NoSuchJobError:
        pass
    return True


def _run_chunk(model, folder: Path, index: int, probs: bool, embeddings: bool) -> ModelOutputs:
    rows = json.loads((folder / f"chunk-{index}.json").read_text(encoding="utf-8"))
    outputs = model.infer([Example(**row) for row in rows], probs=probs, embeddings=embeddings)
    partial = folder / f"chunk-{index}.npz.part"
    outputs.save(partial)
    partial.replace(folder / f"chunk-{index}.npz")  # the result exists whole or not at all
    return outputs


class SplitPass:
    """`run_round`'s `infer` for a retrain running in an rq worker (`job_id`, `worker`: its job and
    worker's names).

    After a call, `report` says how the pass went (empty when it was not split): chunks, tasks,
    chunks run per worker, chunks run again, seconds.
    """

    def __init__(self, settings: Settings, redis, project: int | str, job_id: str, worker: str):
        self.settings = settings
        self.redis = redis
        self.project = str(check_project(project))
        self.owner = f"{job_id} {worker}"
        self.report: dict = {}

    def __call__(self, model, examples: list[Example], probs: bool, embeddings: bool) -> ModelOutputs:
        size = self.settings.split_chunk
        # a pass no bigger than a chunk is never split: no need to ask what needs the network
        work = model.needs_forward(examples) if size and len(examples) > size else []
        if len(work) <= size:
            return model.infer(examples, probs=probs, embeddings=embeddings)
        started = time.perf_counter()
        outputs = self._run(model, work, probs, embeddings)
        if [e.id for e in work] != [e.id for e in examples]:  # a frozen head: the rest comes from the cache
            outputs = model.infer(examples, probs=probs, embeddings=embeddings)
        self.report["seconds"] = round(time.perf_counter() - started, 3)
        log.info("project %s: split scoring pass: %s", self.project, self.report)
        return outputs

    def _run(self, model, work: list[Example], probs: bool, embeddings: bool) -> ModelOutputs:
        from rq import Queue

        size = self.settings.split_chunk
        n = (len(work) + size - 1) // size
        pass_id = uuid.uuid4().hex[:12]
        folder = pass_folder(self.settings, self.project, pass_id)
        queue = Queue(self.settings.rq_queue, connection=self.redis)
        ttl = self.settings.job_timeout + 60
        try:
            model.save(folder / "model")
            for index in range(n):
                rows = [dataclasses.asdict(e) for e in work[index * size : (index + 1) * size]]
                (folder / f"chunk-{index}.json").write_text(json.dumps(rows), encoding="utf-8")
            # enqueued last to first at the front: chunk 0 is the next job an idle worker takes
            for index in reversed(range(n)):
                queue.enqueue(
                    CHUNK_JOB, int(self.project), pass_id, index, n, probs, embeddings,
                    settings=self.settings.for_jobs(), job_id=chunk_job_id(pass_id, index), at_front=True,
                    job_timeout=self.settings.job_timeout, result_ttl=600, failure_ttl=24 * 3600,
                    description=f"chunk {index + 1} of {n} of a scoring pass of project {self.project}",
                )
            parts: dict[int, ModelOutputs] = {}
            for index in reversed(range(n)):  # from the back, while nobody took them
                if take_chunk(queue, pass_id, index, self.owner, ttl):
                    parts[index] = _run_chunk(model, folder, index, probs, embeddings)
            rerun = self._collect(pass_id, n, parts, folder, model, probs, embeddings)
            workers = Counter(v.decode().split(" ", 1)[1] for v in self.redis.hvals(_owners_key(pass_id)))
        finally:
            for index in range(n):  # a failed retrain leaves no chunk behind it in the queue
                take_chunk(queue, pass_id, index, self.owner, ttl)
            self.redis.delete(_owners_key(pass_id))
            shutil.rmtree(folder, ignore_errors=True)
        self.report = {"chunks": n, "chunk_size": size, "tasks": len(work), "by_worker": dict(workers), "rerun": rerun}
        return ModelOutputs.concat([parts[i] for i in range(n)])

    def _collect(self, pass_id: str, n: int, parts: dict, folder: Path, model, probs, embeddings) -> int:
        """Waits for the chunks other workers run; runs here those whose job failed, whose worker
        died or that came back without a result. Returns how many were run again."""

        rerun = 0
        deadline = time.monotonic() + self.settings.job_timeout
        waiting = [i for i in range(n) if i not in parts]
        while waiting:
            for index in list(waiting):
                result = folder / f"chunk-{index}.npz"
                if not result.exists():
                    owner = self.redis.hget(_owners_key(pass_id), str(index))
                    job_id = owner.decode().split(" ", 1)[0] if owner else chunk_job_id(pass_id, index)
                    if rq_job_alive(self.redis, job_id) or result.exists():
                        continue
                    # its job failed, its worker died, or it ran where MODEL_DIR is another folder
                    log.warning("project %s: chunk %d of a scoring pass was lost; running it here", self.project, index)
                    _record_owner(self.redis, pass_id, index, self.owner, self.settings.job_timeout + 60)
                    _run_chunk(model, folder, index, probs, embeddings)
                    rerun += 1
                parts[index] = ModelOutputs.load(result)
                waiting.remove(index)
            if waiting:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"chunks {waiting} of a scoring pass did not finish in {self.settings.job_timeout} s")
                time.sleep(0.05)
        return rerun


def score_chunk(
    project_id: int, pass_id: str, index: int, n_chunks: int, probs: bool, embeddings: bool,
    settings: dict | None = None,
) -> dict:
    """RQ job: chunk `index` of a split scoring pass, by the pass's saved model (with the retrain's
    settings), then every chunk of the pass still in the queue, with the model already loaded. A
    pass that ended meanwhile, or lives in another MODEL_DIR, is nothing to do here."""
    from rq import Queue, get_current_job

    settings = job_settings(settings)
    project = check_project(project_id)
    folder = pass_folder(settings, project, pass_id)
    if not (folder / "model").exists():
        return {"status": "gone", "chunks": []}
    job = get_current_job()
    owner = f"{job.id} {job.worker_name}" if job else "here"
    configure_torch(settings)
    model = load_model(folder / "model", embedding_cache=embedding_cache(settings, project))
    ran = [int(index)]
    if job is not None:
        _record_owner(job.connection, pass_id, int(index), owner, settings.job_timeout + 60)
    _run_chunk(model, folder, int(index), bool(probs), bool(embeddings))
    if job is not None:  # from the front, while nobody took them
        queue = Queue(job.origin, connection=job.connection)
        for other in range(int(n_chunks)):
            if other != index and take_chunk(queue, pass_id, other, owner, settings.job_timeout + 60):
                _run_chunk(model, folder, other, bool(probs), bool(embeddings))
                ran.append(other)
    return {"status": "scored", "chunks": ran}
