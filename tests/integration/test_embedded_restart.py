"""The embedded mode (no Redis) stopped with SIGTERM during a retrain, then started again: a real
`ml-backend` process against the fake Label Studio."""

from __future__ import annotations

import os
import signal

import pytest

from tests.helpers import backend_settings
from tests.integration.test_faults import Processes, http, wait_until

pytestmark = pytest.mark.integration

TWO_TEXTS = """<View><Text name="text" value="$text"/><Text name="title" value="$title"/>
<Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices></View>"""


@pytest.fixture
def processes():
    started = Processes()
    yield started
    started.stop_all()


def test_sigterm_during_a_retrain_stops_cleanly_and_the_retrain_runs_after_the_restart(
    tmp_path, fake_ls, processes, tiny_model_dir
):
    fake, ls_url = fake_ls
    fake.add_labeled_project(1, 20, n_labeled=4)
    settings = backend_settings(ls_url, tmp_path / "store", tiny_model_dir)
    slow = settings.model_copy(update={"min_steps": 100000})  # trains until it is stopped
    process, url = processes.backend(slow)

    # an earlier error of another project, which a restart must not erase
    update = {"action": "PROJECT_UPDATED", "project": {"id": 2, "label_config": TWO_TEXTS}}
    assert http("POST", url + "/webhook", update)[1]["config"] == "unsupported"
    assert (
        http("POST", url + "/webhook", {"action": "START_TRAINING", "project": {"id": 1}})[1]["retrain"]
        == "queued"
    )
    assert wait_until(
        lambda: http("GET", url + "/status/1")[1]["projects"]["1"]["running_retrain"], timeout=60
    )

    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    output = process.stdout.read()
    assert "terminate called" not in output and "SIGABRT" not in output, output[-3000:]
    assert "queued again when the backend starts" in output

    process, url = processes.backend(settings)
    status = http("GET", url + "/status")[1]["projects"]
    assert "<Text> objects" in status["2"]["last_error"]
    first = status["1"]
    assert first["pending_retrain"] or first["running_retrain"] or first["current_version"], first
    assert "interrupted" in (first["last_error"] or "") or first["current_version"], first
    assert wait_until(
        lambda: http("GET", url + "/status/1")[1]["projects"]["1"]["current_version"], timeout=120
    )
    assert wait_until(lambda: not http("GET", url + "/status/1")[1]["projects"]["1"]["running_retrain"])
    done = http("GET", url + "/status/1")[1]["projects"]["1"]
    assert done["last_error"] is None, done
    assert done["last_round"]["n_labeled"] == 4
    assert fake.projects[1]["model_version"] == done["current_version"]
    os.killpg(process.pid, signal.SIGINT)  # an idle stop with SIGINT (Ctrl-C) is clean too
    assert process.wait(timeout=60) == 0
