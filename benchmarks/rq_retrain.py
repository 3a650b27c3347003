"""Retrains on real `rq worker` processes, as the backend queues them: start the workers with a
settings' environment, enqueue a retrain with `enqueue_retrain`, wait for it, stop the workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ml_backend.jobs.queue import enqueue_retrain
from ml_backend.settings import Settings, env_name
from testkit.fake_label_studio import rq_worker_env

RQ = Path(sys.executable).with_name("rq")


def worker_environment(settings: Settings) -> dict[str, str]:
    return rq_worker_env({env_name(k): str(v) for k, v in settings.model_dump().items() if v is not None})


def start_workers(
    settings: Settings, redis, count: int, logs: Path | None = None, timeout: float = 120
) -> list[subprocess.Popen]:
    """`count` workers of `settings.rq_queue` (`ml_backend.worker.Worker`), each in a session of its
    own so that `stop_workers(kill=True)` also ends a job's work horse; returns once they listen.
    `logs`: a folder for each worker's output (worker-N.log), else it is discarded."""
    from rq import Queue, Worker

    processes = []
    for n in range(count):
        output = open(logs / f"worker-{n}.log", "w") if logs else subprocess.DEVNULL  # noqa: SIM115
        processes.append(subprocess.Popen(
            [str(RQ), "worker", "--worker-class", "ml_backend.worker.Worker", "--url", settings.redis_url,
             settings.rq_queue],
            env=worker_environment(settings), stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        ))
        if logs:
            output.close()
    queue = Queue(settings.rq_queue, connection=redis)
    deadline = time.monotonic() + timeout
    while len(Worker.all(queue=queue)) < count:
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            stop_workers(processes, kill=True)
            raise SystemExit(f"the rq workers did not start on {settings.redis_url} (queue {settings.rq_queue})")
        time.sleep(0.2)
    return processes


def stop_workers(processes: list[subprocess.Popen], kill: bool = False) -> None:
    """A warm shutdown (a running job finishes), or with `kill` the workers and their work horses."""
    for process in processes:
        if process.poll() is None:
            if kill:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.terminate()
    for process in processes:
        process.wait(timeout=120)


def run_retrain(settings: Settings, redis, project: int, timeout: float | None = None) -> tuple[dict, float]:
    """One retrain of `project` with `settings` (carried by the job); returns its summary and the seconds
    from enqueueing to its end. The summary is {"status": "over budget"} when it outlasts `timeout`
    (the job is left running: stop its workers with kill) and {"status": "failed"} when it failed."""
    from rq import Queue

    job = enqueue_retrain(
        Queue(settings.rq_queue, connection=redis), project, settings.job_timeout, settings.for_jobs()
    )
    started = time.perf_counter()
    while job.get_status(refresh=True) not in ("finished", "failed"):
        if timeout is not None and time.perf_counter() - started > timeout:
            return {"status": "over budget", "job": job.id}, time.perf_counter() - started
        time.sleep(0.1)
    elapsed = time.perf_counter() - started
    if job.get_status() != "finished":
        return {"status": "failed", "job": job.id, "error": (job.exc_info or "").strip().splitlines()[-1:]}, elapsed
    return {**job.return_value(), "job": job.id}, elapsed
