"""Real Redis (a database of its own, flushed), a real `rq worker` process and a fake Label Studio."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_or_skip
from tests.helpers import worker_env

REDIS_URL = os.environ.get("AL_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
RQ = Path(sys.executable).with_name("rq")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def redis_conn():
    from redis import Redis
    from redis.exceptions import RedisError

    conn = Redis.from_url(REDIS_URL)
    try:
        conn.ping()
    except RedisError as error:
        require_or_skip(False, f"no Redis at {REDIS_URL}: {error}")
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()


@pytest.fixture
def run_worker():
    """Runs a real `rq worker --burst` on the settings' queue until the queue is empty."""
    require_or_skip(RQ.exists(), f"no rq executable beside {sys.executable}")
    started: list[subprocess.Popen] = []

    def run(settings, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
        process = subprocess.Popen(
            [str(RQ), "worker", "--burst", "--url", settings.redis_url, settings.rq_queue],
            env=worker_env(settings) if env is None else env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(process)
        out, _ = process.communicate(timeout=timeout)
        return subprocess.CompletedProcess(process.args, process.returncode, out, "")

    yield run
    for process in started:  # a worker still running (a timeout) is killed at teardown
        if process.poll() is None:
            process.kill()
            process.wait()
