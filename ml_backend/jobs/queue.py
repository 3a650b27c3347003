"""Where retrains run, and the rule that merges a burst of events into one pending retrain.

With REDIS_URL the jobs go to an RQ queue served by `rq worker`; without it a single
background thread in the web process runs them (the embedded default).

The merge rule (`Retrainer.request`): every event bumps the project's generation; the first
event finds no pending retrain, sets the pending flag and enqueues one; later events find
the flag set and merge into it. The job clears the flag when it starts and only then reads
Label Studio, so it sees every annotation made before it started; an event during the run
sets the flag again and enqueues exactly one follow-up retrain. Nothing is lost, nothing
runs twice for the same burst.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from ml_backend.jobs.status import RedisState, pending_ttl, rq_job_alive, submit_retrain_once
from ml_backend.settings import Settings

log = logging.getLogger(__name__)


class _Lane:
    """One daemon thread running jobs one after another, in submission order."""

    def __init__(self, name: str, stopping: threading.Event):
        self.name = name
        self._jobs: queue.Queue[tuple[Callable, tuple, dict]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stopping = stopping
        self.current: tuple[Callable, tuple, dict] | None = None

    def submit(self, fn: Callable, *args, **kwargs) -> None:
        self._jobs.put((fn, args, kwargs))
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while True:
            fn, args, kwargs = self._jobs.get()
            if self._stopping.is_set():  # pending retrains are in the state file: queued at the next start
                self._jobs.task_done()
                continue
            self.current = (fn, args, kwargs)
            try:
                fn(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - recorded in the project's status by the job itself
                if not getattr(error, "al_logged", False):  # a retrain logs its own failure once
                    log.exception("background job %s failed", getattr(fn, "__name__", fn))
            finally:
                self.current = None
                self._jobs.task_done()

    def join(self) -> None:
        self._jobs.join()

    @property
    def busy(self) -> bool:
        return self._jobs.unfinished_tasks > 0


class EmbeddedRunner:
    """The jobs in threads of the web process: retrains and scoring one after another in one lane,
    the background lane's fine-tunes (ml_backend.jobs.finetune_lane) in a second one beside it."""

    def __init__(self, settings: Settings, state, retrain: Callable, finetune: Callable, scoring: Callable):
        self.settings = settings
        self.state = state
        # the jobs (ml_backend.jobs.run.embedded_runner names them: this module imports none of them)
        self._run_retrain, self._run_finetune, self._run_scoring = retrain, finetune, scoring
        self._stopping = threading.Event()
        self._retrains = _Lane("al-retrain", self._stopping)
        self._finetunes = _Lane("al-finetune", self._stopping)

    def stop(self) -> str | None:
        """No job starts after this; returns the project whose retrain is running, if any."""
        self._stopping.set()
        current = self._retrains.current
        if current is not None and current[0] is self._run_retrain:
            return str(current[1][0])
        return None

    def submit_retrain(self, project: str) -> None:
        self._retrains.submit(self._run_retrain, int(project), self.settings, self.state, runner=self)

    def submit_finetune(self, project: str) -> None:
        self._finetunes.submit(self._run_finetune, int(project), self.settings, self.state, self)

    def submit_scoring(self, project: str, tasks: list[dict]) -> None:
        self._retrains.submit(self._run_scoring, int(project), tasks, self.settings)

    def job_alive(self, job_id: str) -> bool:
        return True  # its jobs run in this process: they cannot outlive it unnoticed

    def join(self, timeout: float | None = None) -> bool:
        """Waits until every submitted job of both lanes is done (tests and benchmarks); True when idle."""
        done = threading.Event()

        def wait() -> None:
            while True:  # a fine-tune asks for a retrain, a retrain for a fine-tune
                self._retrains.join()
                self._finetunes.join()
                if not (self._retrains.busy or self._finetunes.busy):
                    break
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)


class RQRunner:
    """Jobs on an RQ queue, for `rq worker` processes (primitive arguments only, the settings
    resolved here among them: `Settings.for_jobs`)."""

    def __init__(self, settings: Settings, redis):
        from rq import Queue

        self.settings = settings
        self.redis = redis
        self.queue = Queue(settings.rq_queue, connection=redis)

    def job_alive(self, job_id: str) -> bool:
        return rq_job_alive(self.redis, job_id)

    def submit_retrain(self, project: str) -> None:
        enqueue_retrain(self.queue, project, self.settings.job_timeout, self.settings.for_jobs())

    def submit_finetune(self, project: str) -> None:
        """The background lane's fine-tune, on the retrains' queue: a second worker runs it beside them."""
        self.queue.enqueue(
            "ml_backend.jobs.run.finetune",
            int(project),
            settings=self.settings.for_jobs(),
            job_timeout=self.settings.job_timeout,
            result_ttl=24 * 3600,
            failure_ttl=7 * 24 * 3600,
            description=f"fine-tune project {project} (background lane)",
        )

    def submit_scoring(self, project: str, tasks: list[dict]) -> None:
        self.queue.enqueue(
            "ml_backend.jobs.run.score_new_tasks",
            int(project),
            tasks,
            settings=self.settings.for_jobs(),
            job_timeout=self.settings.job_timeout,
            result_ttl=3600,
            failure_ttl=7 * 24 * 3600,
            description=f"score {len(tasks)} new tasks of project {project}",
        )


def enqueue_retrain(queue, project: str | int, job_timeout: int, settings: dict | None = None):
    """A retrain job on an RQ queue, with the settings it runs with (`Settings.for_jobs`). Should its
    worker die (SIGKILL, OOM), rq's registry cleanup calls `retrain_abandoned`, which clears the
    running flag and queues the retrain again."""
    from rq import Callback

    return queue.enqueue(
        "ml_backend.jobs.run.retrain",
        int(project),
        settings=settings,
        job_timeout=job_timeout,
        result_ttl=24 * 3600,
        failure_ttl=7 * 24 * 3600,
        description=f"retrain project {project}",
        on_failure=Callback("ml_backend.jobs.queue.retrain_abandoned"),
    )


def retrain_abandoned(job, connection, exc_type, exc_value, traceback) -> None:
    """rq failure callback. A job that raised has recorded its error itself; one whose worker
    died never finished its run, so the project would look busy for ever: mark the run ended
    and queue the retrain again (annotations live in Label Studio, so nothing is lost)."""
    from rq import Queue
    from rq.exceptions import AbandonedJobError


    if exc_type is not AbandonedJobError:
        return
    project, timeout, values = str(job.args[0]), int(job.timeout or 3600), job.kwargs.get("settings")
    delay = float((values or {}).get("retrain_delay") or 0)

    def submit() -> None:  # again, with the same settings
        enqueue_retrain(Queue(job.origin, connection=connection), project, timeout, values)

    if requeue_lost_run(RedisState(connection), project, job.id, pending_ttl(timeout, delay), submit):
        log.warning("project %s: retrain job %s was abandoned by its worker; queued again", project, job.id)


LOST_RUN = "the retrain was interrupted (its worker or work horse died); queued again"


def requeue_lost_run(state, project: str, job_id: str, ttl: int, submit) -> bool:
    """Ends a run whose job died (the one place a lost run is recovered) and, unless a retrain is
    pending already, submits one again; False when the run was not that job's any more."""
    if not state.end_lost_run(project, job_id, LOST_RUN):
        return False
    submit_retrain_once(state, project, ttl, submit)
    return True


class Retrainer:
    """Turns training-relevant events into at most one pending retrain per project."""

    def __init__(self, settings: Settings, state, runner):
        self.settings = settings
        self.state = state
        self.runner = runner

    def request(self, project: str, force: bool = False) -> str:
        """Record an event; returns "queued", "merged" (a retrain is already pending) or "recorded"
        (counted, but the trigger settings do not call for a retrain yet)."""
        self.recover_lost_run(project)
        _, events = self.state.note_event(project)
        if not force:
            if self.settings.retrain_trigger != "annotation" or events < self.settings.retrain_every:
                return "recorded"
        # the flag outlives a lost job only until the job timeout: then a new event re-queues
        ttl = pending_ttl(self.settings.job_timeout, self.settings.retrain_delay)
        if not submit_retrain_once(self.state, project, ttl, lambda: self.runner.submit_retrain(project)):
            return "merged"
        return "queued"

    def recover_lost_run(self, project: str) -> bool:
        """A run marked running whose job rq has given up (a work horse killed by the OOM killer
        is failed without any callback) is ended and queued again; True when that happened.
        Called where the project is looked at anyway: events, /setup, the status route."""
        status = self.state.status(project)
        job_id = status.get("job_id")
        if not status.get("running") or not job_id or self.runner.job_alive(job_id):
            return False
        ttl = pending_ttl(self.settings.job_timeout, self.settings.retrain_delay)
        if not requeue_lost_run(self.state, project, job_id, ttl, lambda: self.runner.submit_retrain(project)):
            return False
        log.warning("project %s: retrain job %s died without finishing; queued again", project, job_id)
        return True

    def pending(self, project: str) -> bool:
        return bool(self.state.status(project).get("pending"))
