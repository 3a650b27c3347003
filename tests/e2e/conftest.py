"""One real stack per test session: Label Studio 1.23.2, Redis, `ml-backend` and `rq worker`.

First run on a machine: installs Label Studio into its own virtualenv and migrates a template
data folder (several minutes, kept in $AL_E2E_CACHE, default ~/.cache/al-e2e). Later runs copy
the template and start in seconds. Logs of every process: <pytest tmp>/e2e-*/logs.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from testkit import processes, real_label_studio
from testkit.ls_api import LabelStudioAPI
from tests.conftest import require_or_skip

# Settings that make a retrain take seconds and reach a UPS iteration early. Retrains run only on
# START_TRAINING, so the tests can tell the Train button and the annotation-count trigger apart.
TEST_SETTINGS = {
    "AL_RETRAIN_TRIGGER": "start_training",
    "AL_RETRAIN_DELAY": "0.5",
    "AL_MIN_LABELS": "2",
    "AL_EPOCHS": "1",
    "AL_MIN_STEPS": "20",
    # fine-tuning, so that a UPS iteration re-scores a subset (a frozen head scores every task)
    "AL_ACQUISITION_MODE": "finetune",
    "AL_BATCH_SIZE": "8",
    "AL_MAX_LENGTH": "64",
    "AL_TORCH_THREADS": "1",
    "AL_UPS_MODE": "ups",
    "AL_UPS_FULL_FIRST": "1",  # iteration 0 scores every task, iteration 1 only a subset
    "AL_UPS_FULL_EVERY": "0",
    "AL_UPS_GAMMA": "0.25",
    "AL_QUERY_WINDOW": "200",  # the default, larger than these pools: a full round publishes every task
    "AL_KEEP_PREDICTION_VERSIONS": "2",
    "AL_SPLIT_CHUNK": "4",  # every scoring pass is split: one worker runs it all, two share it
    "AL_SERVER_THREADS": "4",
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


class Timings(dict):
    def __str__(self) -> str:
        return ", ".join(f"{k} {v:.1f} s" for k, v in self.items())


@pytest.fixture(scope="session")
def e2e_timings():
    timings = Timings()
    yield timings
    print(f"\n[e2e] {timings}")


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory, e2e_timings):
    """A running Label Studio on a copy of the template data folder, as a LabelStudioAPI."""
    start = time.monotonic()
    venv = real_label_studio.ensure_ls_venv()
    template = real_label_studio.ensure_template(venv)
    e2e_timings["ls-prepare"] = time.monotonic() - start
    work = tmp_path_factory.mktemp("e2e-ls")
    token = real_label_studio.copy_template(template, work / "data")
    process, url, seconds = real_label_studio.start_label_studio(venv, work / "data", work)
    e2e_timings["ls-start"] = seconds
    try:
        yield LabelStudioAPI(url, token, credentials=(real_label_studio.ADMIN_EMAIL, real_label_studio.ADMIN_PASSWORD))
    finally:
        process.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    require_or_skip(
        shutil.which("redis-server") is not None,
        "redis-server is not installed (apt-get install redis-server)",
    )
    work = tmp_path_factory.mktemp("e2e-redis")
    process, url = processes.start_redis(work, work)
    yield url
    process.stop()


@pytest.fixture(scope="session")
def backend(tmp_path_factory, label_studio, redis_url, tiny_model_dir, e2e_timings):
    """`ml-backend` + `rq worker` as compose runs them, on the tiny random model."""
    settings = dict(TEST_SETTINGS, AL_ACQUISITION_MODEL=str(tiny_model_dir))
    stack = processes.BackendStack(
        tmp_path_factory.mktemp("e2e-backend"), label_studio.url, label_studio.token, redis_url, settings
    )
    try:
        e2e_timings["backend-start"] = stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def chromium_paths():
    from tests.e2e.browser import find_chromium

    browser, driver = find_chromium()
    require_or_skip(
        browser is not None and driver is not None,
        "Chromium and chromedriver are not installed (apt-get install -y chromium chromium-driver)",
    )
    try:
        import selenium  # noqa: F401
    except ImportError:
        require_or_skip(False, "selenium is not installed (pip install -e '.[dev]')")
    return browser, driver


@pytest.fixture(scope="session")
def screenshot_dir():
    folder = Path(os.environ.get("AL_E2E_ARTIFACTS", "/tmp/al-e2e-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
