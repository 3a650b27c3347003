"""What real projects do to the backend, against a real Label Studio 1.23.2: disagreeing
annotations (ground truth, majority, newest), a label removed from the config mid-campaign, a
restart (SIGTERM) during a retrain, tasks deleted while a retrain runs.

The backend runs in the embedded mode (no Redis): that is where a restart used to lose a retrain.
One project, its tests are steps in order.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from testkit import processes, real_label_studio
from testkit.ls_api import LabelStudioAPI
from tests.e2e.conftest import TEST_SETTINGS

pytestmark = pytest.mark.e2e

THREE = """<View><Text name="text" value="$text"/>
<Choices name="sentiment" toName="text" choice="single">
<Choice value="positive"/><Choice value="negative"/><Choice value="neutral"/></Choices></View>"""
TWO = THREE.replace('<Choice value="neutral"/>', "")
TEXTS = [
    f"the {a} was {b} and {c}"
    for a in ("movie", "film", "plot", "story")
    for b in ("good", "bad", "great")
    for c in ("fun", "boring")
]


class EmbeddedBackend:
    """`ml-backend` as the compose service runs it, without REDIS_URL (the embedded runner)."""

    def __init__(self, work, ls: LabelStudioAPI, settings: dict[str, str]):
        self.work = work
        self.port = processes.free_port()
        self.url = f"http://{processes.HOST}:{self.port}"
        env = dict(os.environ)
        env.update(processes.compose_environment("backend"))
        env.pop("REDIS_URL", None)
        env.update(
            LABEL_STUDIO_URL=ls.url,
            LABEL_STUDIO_API_KEY=ls.token,
            MODEL_DIR=str(work / "models"),
            HF_HOME=str(work / "hf-cache"),
            HF_HUB_OFFLINE="1",
        )
        env.update(settings)
        self.env = env
        self.process: processes.Process | None = None
        self.starts = 0

    def start(self, **overrides: str) -> None:
        self.starts += 1
        command = processes.compose_command("backend", {"--host": processes.HOST, "--port": str(self.port)})
        command[0] = processes.project_executable(command[0])
        env = dict(self.env, **overrides)
        self.process = processes.Process(f"embedded-{self.starts}", command, env, self.work, cwd=self.work)
        processes.wait_http(f"{self.url}/health", self.process, 60)

    def status(self, project: int) -> dict:
        answer = httpx.get(f"{self.url}/status/{project}", timeout=10)
        answer.raise_for_status()
        return answer.json()["projects"][str(project)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, label_studio, tiny_model_dir):
    settings = dict(TEST_SETTINGS, AL_ACQUISITION_MODEL=str(tiny_model_dir))
    backend = EmbeddedBackend(tmp_path_factory.mktemp("e2e-embedded"), label_studio, settings)
    backend.start()
    state: dict = {"backend": backend}
    yield state
    if backend.process is not None:
        backend.process.stop()


def choice(label: str) -> list[dict]:
    return [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def wait_version(ls: LabelStudioAPI, backend: EmbeddedBackend, project: int, previous, timeout=240.0) -> dict:
    """Waits until a retrain newer than `previous` is done and Label Studio points at it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = backend.status(project)
        current = status["current_version"]
        if (
            current
            and current != previous
            and not status["pending_retrain"]
            and not status["running_retrain"]
            and ls.project(project)["model_version"] == current
        ):
            return status
        time.sleep(0.5)
    raise AssertionError(
        f"no version after {previous} in {timeout} s: {backend.status(project)}\n"
        f"{backend.process.log_tail(60)}"
    )


def test_disagreeing_annotations_ground_truth_then_majority_then_newest(stack, label_studio: LabelStudioAPI):
    ls, backend = label_studio, stack["backend"]
    project = ls.sdk.projects.create(title="real projects", label_config=THREE).id
    ls.import_tasks(project, TEXTS)
    ids = sorted(t["id"] for t in ls.tasks(project))
    ls.sdk.ml.create(project=project, url=backend.url, title="embedded backend")
    stack.update(project=project, ids=ids)

    def annotate(task_id, label, ground_truth=False):
        ls.request(
            "POST",
            f"/api/tasks/{task_id}/annotations/",
            json={"result": choice(label), "ground_truth": ground_truth},
        )
        time.sleep(0.05)  # distinct updated_at

    # t0: two say negative, the newest says positive: majority -> negative
    for label in ("negative", "negative", "positive"):
        annotate(ids[0], label)
    # t1: the ground truth (the oldest) says positive, the newest negative -> positive
    annotate(ids[1], "positive", ground_truth=True)
    annotate(ids[1], "negative")
    # t2: the ground truth says negative against two newer positives -> negative
    annotate(ids[2], "negative", ground_truth=True)
    annotate(ids[2], "positive")
    annotate(ids[2], "positive")
    # t3: a tie: the newest (negative) wins, and the tie is counted
    annotate(ids[3], "positive")
    annotate(ids[3], "negative")
    annotate(ids[4], "positive")
    truth = {
        a["id"]: a["ground_truth"] for t in ls.tasks(project) if t["id"] == ids[1] for a in t["annotations"]
    }
    assert sorted(truth.values()) == [False, True], truth  # Label Studio kept the flag

    ls.sdk.ml.train(id=ls.sdk.ml.list(project=project)[0].id)
    status = wait_version(ls, backend, project, None)
    stack["versions"] = [status["current_version"]]
    last = status["last_round"]
    # newest-wins (before) gave positive 3 (t0, t2, t4), negative 2 (t1, t3), and no tie
    assert last["label_counts"] == {"positive": 2, "negative": 3, "neutral": 0}, last
    assert last["ties"] == 1
    codes = {w["code"] for w in status["warnings"]}
    assert codes >= {"missing_classes", "annotation_ties"}
    assert "api_key" not in codes  # the personal access token passed the check at start and connect


def test_a_label_removed_mid_campaign_is_a_new_model(stack, label_studio: LabelStudioAPI):
    ls, backend, project = label_studio, stack["backend"], stack["project"]
    unlabeled = sorted(ls.unlabeled_ids(project))
    # earlier predictions that use the label about to go, newer than the first version's
    older = [
        {"task": t, "result": choice("neutral"), "score": 0.5, "model_version": "an-earlier-model"}
        for t in unlabeled
    ]
    ls.request("POST", f"/api/projects/{project}/import/predictions", json=older)
    ls.update_project(project, label_config=TWO)  # PROJECT_UPDATED: the backend retrains by itself
    status = wait_version(ls, backend, project, stack["versions"][-1])
    version = status["current_version"]
    stack["versions"].append(version)
    last = status["last_round"]
    assert last["label_config_changed"] is True
    assert last["n_scored"] == last["n_pool"] == len(unlabeled), "a new label set re-scores the whole pool"
    assert status["last_error"] is None, status
    published = ls.predictions(project, version)
    assert set(published) == set(unlabeled)
    used = {c for p in published.values() for r in p["result"] for c in r["value"]["choices"]}
    assert used and used <= {"positive", "negative"}, used
    assert last["publish"] == {"ok": True, "sent": len(unlabeled), "created": len(unlabeled)}


TOPICS = """<View><Text name="text" value="$text"/>
<Choices name="topics" toName="text" choice="multiple">
<Choice value="sport"/><Choice value="money"/><Choice value="food"/></Choices></View>"""


def test_a_multiple_choice_project_learns_sets_of_classes(stack, label_studio: LabelStudioAPI):
    """A <Choices choice="multiple"> project: annotations with several choices are read from Label
    Studio, the version's pre-annotations name several classes, and Label Studio accepts them and
    serves the lowest score first."""
    ls, backend = label_studio, stack["backend"]
    backend.process.stop()
    backend.start(AL_ACQUISITION_MODE="frozen")  # what the live default serves below 40 labels: a head per class
    project = ls.sdk.projects.create(title="topics", label_config=TOPICS).id
    texts = [f"the {a} {b} story number {i}" for i, (a, b) in enumerate((a, b) for a in ("team", "bank", "soup") for b in ("goal", "tax", "bread"))]
    ls.import_tasks(project, texts * 2)
    ids = sorted(t["id"] for t in ls.tasks(project))
    ls.sdk.ml.create(project=project, url=backend.url, title="embedded backend")
    answers = [["sport", "money", "food"]] * 6 + [["sport"], ["sport", "food"]]
    for task_id, chosen in zip(ids, answers, strict=False):
        result = [{"from_name": "topics", "to_name": "text", "type": "choices", "value": {"choices": chosen}}]
        ls.annotate(task_id, result)
    stored = {t["id"]: t["annotations"][0]["result"][0]["value"]["choices"] for t in ls.tasks(project) if t["annotations"]}
    assert stored[ids[0]] == ["sport", "money", "food"], stored  # Label Studio kept every choice

    ls.sdk.ml.train(id=ls.sdk.ml.list(project=project)[0].id)
    status = wait_version(ls, backend, project, None)
    assert status["last_error"] is None, status
    last = status["last_round"]
    assert last["kind"] == "multilabel" and last["n_labeled"] == 8, last
    assert last["label_counts"] == {"sport": 8, "money": 6, "food": 7}, last
    version = status["current_version"]
    published = ls.predictions(project, version)
    unlabeled = ls.unlabeled_ids(project)
    assert published and set(published) <= unlabeled
    chosen = [r["value"]["choices"] for p in published.values() for r in p["result"]]
    assert chosen and all(set(c) <= {"sport", "money", "food"} for c in chosen), chosen
    assert max(len(c) for c in chosen) > 1, chosen  # several classes in one pre-annotation
    scores = {t: p["score"] for t, p in published.items()}
    served = ls.next_task(project)
    assert scores.get(served["id"]) == min(scores.values()), (served["id"], scores)


def test_sigterm_during_a_retrain_stops_cleanly_and_the_retrain_is_queued_again(
    stack, label_studio: LabelStudioAPI
):
    ls, backend, project, ids = label_studio, stack["backend"], stack["project"], stack["ids"]
    backend.process.stop()
    backend.start(AL_MIN_STEPS="100000")  # a retrain that runs until it is stopped
    ls.annotate(ids[5], choice("positive"))
    ls.sdk.ml.train(id=ls.sdk.ml.list(project=project)[0].id)
    deadline = time.monotonic() + 60
    while not backend.status(project)["running_retrain"]:
        assert time.monotonic() < deadline, backend.process.log_tail()
        time.sleep(0.3)
    time.sleep(1.0)
    os.killpg(backend.process.pid, signal.SIGTERM)
    assert backend.process.popen.wait(60) == 0
    log = backend.process.log_path.read_text(errors="replace")
    assert "terminate called" not in log and "SIGABRT" not in log, log[-3000:]
    backend.process.stop()

    backend.start(AL_MIN_STEPS="3000")  # slow enough to delete tasks while it trains (next test)
    status = backend.status(project)
    assert status["pending_retrain"] or status["running_retrain"], status
    assert "interrupted" in status["last_error"], status


def test_tasks_deleted_while_a_retrain_runs_are_left_out_and_the_version_is_activated(
    stack, label_studio: LabelStudioAPI
):
    ls, backend, project = label_studio, stack["backend"], stack["project"]
    deadline = time.monotonic() + 60
    while not backend.status(project)["running_retrain"]:
        assert time.monotonic() < deadline, backend.process.log_tail()
        time.sleep(0.2)
    time.sleep(2.0)  # the retrain has read the project and is training
    assert backend.status(project)["running_retrain"], "the retrain ended before the tasks were deleted"
    gone = sorted(ls.unlabeled_ids(project))[:3]
    for task_id in gone:
        ls.request("DELETE", f"/api/tasks/{task_id}/")
    status = wait_version(ls, backend, project, stack["versions"][-1])
    version = status["current_version"]
    assert status["last_error"] is None, status
    last_round = status["last_round"]
    deleted = last_round["publish"].get("deleted_tasks", [])
    # the retrain read the tasks before they went: those in its query window were refused by Label
    # Studio and left out (all of them when the round scored every task)
    assert set(deleted) <= set(gone) and (deleted == gone or last_round["n_scored"] < last_round["n_pool"])
    unlabeled = ls.unlabeled_ids(project)
    published = set(ls.predictions(project, version))
    assert published and published <= unlabeled and len(published) == last_round["n_published"]
    assert ls.project(project)["model_version"] == version
    os.killpg(backend.process.pid, signal.SIGTERM)  # an idle stop is clean too
    assert backend.process.popen.wait(60) == 0


def test_with_label_studio_defaults_a_silent_shortfall_is_named_and_a_wrong_key_is_told(tmp_path):
    """Label Studio's default import (without the compose file's faster-import flag) leaves out a
    prediction whose label is not in the config, answers 201 and only logs why; a task id that is
    gone refuses the whole request. The gateway publishes the rest and names what is missing."""
    from ml_backend.labelstudio.gateway import NO_REASON, LSGateway, PublishReport
    from ml_backend.settings import Settings

    venv = real_label_studio.ensure_ls_venv()
    token = real_label_studio.copy_template(real_label_studio.ensure_template(venv), tmp_path / "data")
    flag = {"fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short": "false"}
    process, url, _ = real_label_studio.start_label_studio(venv, tmp_path / "data", tmp_path, extra_env=flag)
    try:
        ls = LabelStudioAPI(url, token)
        project = ls.sdk.projects.create(title="defaults", label_config=TWO).id
        ls.import_tasks(project, TEXTS[:4])
        ids = sorted(t["id"] for t in ls.tasks(project))
        gateway = LSGateway(Settings(label_studio_url=url, label_studio_api_key=token, ls_retries=0))
        assert gateway.check_access() is None
        report = PublishReport()
        fresh = [{"task": ids[0], "result": choice("neutral"), "score": 0.1}]
        fresh.append({"task": ids[1], "result": choice("positive"), "score": 0.2})
        rest = [{"task": ids[2], "result": choice("negative"), "score": 0.3}]
        ls.request("DELETE", f"/api/tasks/{ids[3]}/")
        rest.append({"task": ids[3], "result": choice("negative"), "score": 0.4})
        gateway.publish_version(project, "v1", fresh, rest, report)
        assert (report.sent, report.created) == (3, 2)
        assert report.refused == {ids[0]: NO_REASON} and report.deleted == [ids[3]]
        assert ls.project(project)["model_version"] == "v1"
        assert set(ls.predictions(project, "v1")) == {ids[1], ids[2]}
        wrong = LSGateway(
            Settings(label_studio_url=url, label_studio_api_key="not-the-key-123", ls_retries=0)
        )
        assert wrong.check_access() == "HTTP 401: Invalid token."
    finally:
        process.stop()
