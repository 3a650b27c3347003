"""Per-project retrain state shared by the web process and the job runner.

What it holds for each project:
  generation   a counter bumped by every training-relevant event (annotation created ...)
  events       events since the last retrain started (for RETRAIN_EVERY)
  pending      set while a retrain is queued and has not started: later events merge into it
  running      set while a retrain runs
  finetuning   set while a fine-tune of the background lane is queued or runs (one at a time)
  last_error / last_round / trained_generation  for the status route
RedisState is used with REDIS_URL (the web process and the rq worker share it); MemoryState
in the embedded mode, where the runner lives in the web process.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def pending_ttl(job_timeout: float, retrain_delay: float) -> int:
    """How long a retrain's pending flag may stand: a lost job blocks the project no longer."""
    return int(job_timeout + retrain_delay) + 60


def submit_once(claim: Callable[[], bool], release: Callable[[], None], submit: Callable[[], None]) -> bool:
    """Submits a job unless its flag is taken already (`claim()` False: one pending retrain, one
    fine-tune per project); the flag is released when the submit fails. True when submitted."""
    if not claim():
        return False
    try:
        submit()
    except Exception:
        release()
        raise
    return True


def submit_retrain_once(state, project: str, ttl: int, submit: Callable[[], None]) -> bool:
    """Submits a retrain unless one is pending already; the pending flag outlives a lost job by `ttl`
    at most (pending_ttl)."""
    return submit_once(lambda: state.claim_pending(project, ttl=ttl), lambda: state.release_pending(project), submit)


class RunLockTimeout(RuntimeError):
    """Another retrain of the project held the run lock for longer than a job may run."""


class MemoryState:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._projects: dict[str, dict[str, Any]] = {}

    def _get(self, project: str) -> dict[str, Any]:
        return self._projects.setdefault(
            str(project), {"generation": 0, "events": 0, "pending": False, "running": False, "finetuning": False}
        )

    def note_event(self, project: str) -> tuple[int, int]:
        """Bump the generation; returns (generation, events since the last retrain started)."""
        with self._lock:
            state = self._get(project)
            state["generation"] += 1
            state["events"] += 1
            return state["generation"], state["events"]

    def claim_pending(self, project: str, ttl: int) -> bool:
        """Set the pending flag; False when a retrain is already pending (the event merges into it)."""
        with self._lock:
            state = self._get(project)
            if state["pending"]:
                return False
            state["pending"] = True
            return True

    def release_pending(self, project: str) -> None:
        with self._lock:
            self._get(project)["pending"] = False

    def claim_finetune(self, project: str, ttl: int) -> bool:
        """Set the fine-tune flag (one fine-tune of the background lane per project, queued or running);
        False when it is set already."""
        with self._lock:
            state = self._get(project)
            if state.get("finetuning"):
                return False
            state["finetuning"] = True
            return True

    def finish_finetune(self, project: str, result: dict | None) -> None:
        """Clear the fine-tune flag; `result`: the fine-tune's summary, /status's `last_finetune`."""
        with self._lock:
            state = self._get(project)
            state["finetuning"] = False
            if result is not None:
                state["last_finetune"] = result

    def start_run(self, project: str, job_id: str | None = None) -> int:
        """Clear pending and mark running; returns the generation the run covers (at least)."""
        with self._lock:
            state = self._get(project)
            state.update(pending=False, running=True, running_since=time.time(), events=0)
            return state["generation"]

    def finish_run(
        self, project: str, generation: int | None, result: dict | None, error: str | None
    ) -> None:
        with self._lock:
            state = self._get(project)
            state["running"] = False
            state.pop("running_since", None)
            if error:
                state.update(last_error=error, last_error_at=time.time())
            else:
                state.pop("last_error", None)
                state.pop("last_error_at", None)
            if result is not None:
                state["last_round"] = result
                if generation is not None:
                    state["trained_generation"] = generation

    def end_lost_run(self, project: str, job_id: str, error: str) -> bool:
        return False  # in-process runs die with the process that would report them

    def record_error(self, project: str, error: str) -> None:
        with self._lock:
            self._get(project).update(last_error=error, last_error_at=time.time())

    def status(self, project: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._get(project))

    def projects(self) -> list[str]:
        with self._lock:
            return sorted(self._projects)


class RedisState:
    """The same state in Redis, so web processes and rq workers see one truth."""

    def __init__(self, redis, prefix: str = "al"):
        self.redis = redis
        self.prefix = prefix

    def _key(self, project: str, name: str) -> str:
        return f"{self.prefix}:{project}:{name}"

    def note_event(self, project: str) -> tuple[int, int]:
        pipe = self.redis.pipeline()
        pipe.sadd(f"{self.prefix}:projects", str(project))
        pipe.incr(self._key(project, "generation"))
        pipe.incr(self._key(project, "events"))
        _, generation, events = pipe.execute()
        return int(generation), int(events)

    def claim_pending(self, project: str, ttl: int) -> bool:
        # The TTL is a safety net: a worker killed mid-queue cannot block the project for ever.
        return bool(self.redis.set(self._key(project, "pending"), "1", nx=True, ex=max(1, int(ttl))))

    def release_pending(self, project: str) -> None:
        self.redis.delete(self._key(project, "pending"))

    def claim_finetune(self, project: str, ttl: int) -> bool:
        # The TTL: a fine-tune whose worker died cannot keep the next one from being asked for.
        return bool(self.redis.set(self._key(project, "finetune"), "1", nx=True, ex=max(1, int(ttl))))

    def finish_finetune(self, project: str, result: dict | None) -> None:
        pipe = self.redis.pipeline()
        pipe.delete(self._key(project, "finetune"))
        if result is not None:
            pipe.hset(self._key(project, "status"), "last_finetune", json.dumps(result))
        pipe.execute()

    def start_run(self, project: str, job_id: str | None = None) -> int:
        pipe = self.redis.pipeline()  # MULTI: clearing pending and reading the generation happen together
        pipe.sadd(f"{self.prefix}:projects", str(project))
        pipe.delete(self._key(project, "pending"))
        pipe.set(self._key(project, "events"), 0)
        key = self._key(project, "status")
        pipe.hset(key, mapping={"running": 1, "running_since": time.time()})
        if job_id:  # lets the web process tell a live run from one whose worker died
            pipe.hset(key, "job_id", job_id)
        else:
            pipe.hdel(key, "job_id")
        pipe.get(self._key(project, "generation"))
        return int(pipe.execute()[-1] or 0)

    @contextmanager
    def exclusive_run(
        self, project: str, owner: str, wait: float, owner_alive: Callable[[str], bool], ttl: int
    ) -> Iterator[None]:
        """One retrain of a project at a time across workers: with several `rq worker`s, a second
        retrain would otherwise run beside the first, and the older of the two could finish last
        and promote a model trained on fewer annotations. A holder whose job is no longer alive
        (its worker was killed) loses the lock at once; the TTL is the last safety net."""
        from redis.exceptions import LockNotOwnedError

        key = self._key(project, "run-lock")
        lock = self.redis.lock(key, timeout=max(1, int(ttl)))  # redis-py's Lock, its token the job id
        deadline = time.monotonic() + wait
        while not lock.acquire(blocking=False, token=owner):
            holder = _text(self.redis.get(key) or b"")
            if holder and not owner_alive(holder):
                try:
                    lock.do_release(holder)  # only while the dead job still holds it
                except LockNotOwnedError:
                    pass
                continue
            if time.monotonic() > deadline:
                raise RunLockTimeout(
                    f"another retrain of project {project} (job {holder}) still runs after {wait:.0f} s"
                )
            time.sleep(0.5)
        try:
            yield
        finally:
            try:
                lock.release()
            except LockNotOwnedError:  # expired and taken by another run: not this run's to release
                pass

    def end_lost_run(self, project: str, job_id: str, error: str) -> bool:
        """Marks the run of job `job_id` ended with `error`, unless another run has started since;
        True when this call ended it."""
        from redis.exceptions import WatchError

        key = self._key(project, "status")
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(key)
                running, current = pipe.hmget(key, "running", "job_id")
                if _text(running or b"") != "1" or _text(current or b"") != job_id:
                    return False
                pipe.multi()
                pipe.hset(key, mapping={"running": 0, "last_error": error, "last_error_at": time.time()})
                pipe.hdel(key, "running_since", "job_id")
                pipe.execute()
                return True
            except WatchError:  # the run's own state changed meanwhile: it is not lost
                return False

    def finish_run(
        self, project: str, generation: int | None, result: dict | None, error: str | None
    ) -> None:
        key = self._key(project, "status")
        pipe = self.redis.pipeline()
        pipe.hset(key, "running", 0)
        pipe.hdel(key, "running_since", "job_id")
        if error:
            pipe.hset(key, mapping={"last_error": error, "last_error_at": time.time()})
        else:
            pipe.hdel(key, "last_error", "last_error_at")
        if result is not None:
            pipe.hset(key, "last_round", json.dumps(result))
            if generation is not None:
                pipe.hset(key, "trained_generation", generation)
        pipe.execute()

    def record_error(self, project: str, error: str) -> None:
        self.redis.sadd(f"{self.prefix}:projects", str(project))
        self.redis.hset(
            self._key(project, "status"), mapping={"last_error": error, "last_error_at": time.time()}
        )

    def status(self, project: str) -> dict[str, Any]:
        pipe = self.redis.pipeline()
        pipe.get(self._key(project, "generation"))
        pipe.get(self._key(project, "events"))
        pipe.exists(self._key(project, "pending"))
        pipe.hgetall(self._key(project, "status"))
        pipe.exists(self._key(project, "finetune"))
        generation, events, pending, fields, finetuning = pipe.execute()
        fields = {_text(k): _text(v) for k, v in fields.items()}
        out: dict[str, Any] = {
            "generation": int(generation or 0),
            "events": int(events or 0),
            "pending": bool(pending),
            "running": fields.get("running") == "1",
            "finetuning": bool(finetuning),
        }
        for name in ("running_since", "last_error_at"):
            if name in fields:
                out[name] = float(fields[name])
        if "last_error" in fields:
            out["last_error"] = fields["last_error"]
        if "job_id" in fields:
            out["job_id"] = fields["job_id"]
        if "trained_generation" in fields:
            out["trained_generation"] = int(fields["trained_generation"])
        if "last_round" in fields:
            out["last_round"] = json.loads(fields["last_round"])
        if "last_finetune" in fields:
            out["last_finetune"] = json.loads(fields["last_finetune"])
        return out

    def projects(self) -> list[str]:
        return sorted(_text(p) for p in self.redis.smembers(f"{self.prefix}:projects"))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def rq_job_alive(redis, job_id: str) -> bool:
    """False once rq has given the job up (failed, stopped, gone) or finished it, or when the
    worker running it stopped sending heartbeats (a SIGKILLed worker's key expires)."""
    from rq import Worker
    from rq.exceptions import NoSuchJobError
    from rq.job import Job, JobStatus

    try:
        job = Job.fetch(job_id, connection=redis)
        status = job.get_status(refresh=True)
    except NoSuchJobError:
        return False
    if status == JobStatus.STARTED and job.worker_name:
        return bool(redis.exists(Worker.redis_worker_namespace_prefix + job.worker_name))
    return status in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED)
