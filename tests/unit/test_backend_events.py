"""Webhook events: what each does, and how a burst merges into one pending retrain."""

import json
from pathlib import Path

import pytest

from al_core.ups import CachedScore
from ml_backend.jobs.run import run_retrain
from ml_backend.jobs.status import MemoryState
from ml_backend.labelstudio.gateway import LabelStudioError
from ml_backend.web.backend import Backend
from ml_backend.web.errors import BadRequest
from ml_backend.web.events import handle_event
from testkit.fake_label_studio import CLS_CONFIG, NER_CONFIG
from tests.conftest import require_or_skip
from tests.helpers import backend_settings

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "label-studio" / "samples"


class RecordingRunner:
    def __init__(self):
        self.retrains, self.scorings = [], []

    def submit_retrain(self, project):
        self.retrains.append(project)

    def submit_scoring(self, project, tasks):
        self.scorings.append((project, tasks))


def make_backend(tmp_path, **overrides):
    backend = Backend(backend_settings(None, tmp_path / "store", tmp_path / "model", **overrides))
    backend.runner = backend.retrainer.runner = RecordingRunner()
    return backend


def annotation_event(project=7, action="ANNOTATION_CREATED"):
    return {
        "action": action,
        "annotation": {"id": 1, "task": 3, "project": project, "result": []},
        "task": {"id": 3, "data": {"text": "x"}},
        "project": {"id": project, "label_config": CLS_CONFIG},
    }


def test_a_burst_of_annotations_queues_one_retrain(tmp_path):
    backend = make_backend(tmp_path)
    outcomes = [handle_event(annotation_event(), backend)["retrain"] for _ in range(20)]
    assert outcomes[0] == "queued" and set(outcomes[1:]) == {"merged"}
    assert backend.runner.retrains == ["7"]
    assert backend.state.status("7")["generation"] == 20


def test_projects_merge_separately(tmp_path):
    backend = make_backend(tmp_path)
    for project in (1, 2, 1, 2):
        handle_event(annotation_event(project), backend)
    assert sorted(backend.runner.retrains) == ["1", "2"]


@pytest.mark.parametrize("action", ["ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "START_TRAINING"])
def test_other_training_events_queue_a_retrain(tmp_path, action):
    backend = make_backend(tmp_path)
    body = (
        annotation_event(action=action)
        if action != "ANNOTATIONS_DELETED"
        else {"action": action, "annotations": [{"id": 1}], "project": {"id": 7}}
    )
    assert handle_event(body, backend)["retrain"] == "queued"


def test_start_training_trigger_ignores_annotations_until_the_button(tmp_path):
    backend = make_backend(tmp_path, retrain_trigger="start_training")
    assert handle_event(annotation_event(), backend)["retrain"] == "recorded"
    assert backend.runner.retrains == []
    assert handle_event({"action": "START_TRAINING", "project": {"id": 7}}, backend)["retrain"] == "queued"


def test_retrain_every_n_annotations(tmp_path):
    backend = make_backend(tmp_path, retrain_every=3)
    outcomes = [handle_event(annotation_event(), backend)["retrain"] for _ in range(3)]
    assert outcomes == ["recorded", "recorded", "queued"]


def test_an_event_during_a_run_queues_exactly_one_follow_up(tmp_path):
    backend = make_backend(tmp_path)
    handle_event(annotation_event(), backend)
    covered = backend.state.start_run("7")  # the job starts: pending cleared, LS read next
    outcomes = [handle_event(annotation_event(), backend)["retrain"] for _ in range(5)]
    assert outcomes == ["queued"] + ["merged"] * 4
    assert backend.runner.retrains == ["7", "7"]
    assert backend.state.status("7")["generation"] > covered


def test_a_failed_retrain_reports_its_error_and_frees_the_project(tmp_path):
    settings = backend_settings("http://127.0.0.1:9", tmp_path / "store", tmp_path / "model")
    state = MemoryState()
    assert state.claim_pending("7", ttl=60)
    with pytest.raises(LabelStudioError):
        run_retrain(7, settings, state)
    status = state.status("7")
    assert "Label Studio" in status["last_error"] and not status["running"] and not status["pending"]
    assert state.claim_pending("7", ttl=60)  # the next event can queue again


def test_tasks_created_are_scored_only_when_a_version_exists(tmp_path):
    backend = make_backend(tmp_path)
    body = {"action": "TASKS_CREATED", "tasks": [{"id": 44, "data": {"text": "a"}}], "project": {"id": 7}}
    assert handle_event(body, backend)["scoring"] is False
    (backend.store.layout.project_dir(7)).mkdir(parents=True)
    (backend.store.layout.project_dir(7) / "current.json").write_text(
        json.dumps({"version": "7-v1-20260101T000000Z", "iteration": 0})
    )
    assert handle_event(body, backend)["scoring"] is True
    assert backend.runner.scorings == [("7", [{"id": 44, "data": {"text": "a"}}])]


def test_tasks_deleted_drop_their_cached_scores(tmp_path):
    backend = make_backend(tmp_path)
    cache = backend.score_cache("7")
    cache.set_many({"1": CachedScore(0.5, "v", 0), "2": CachedScore(0.1, "v", 0)})
    handle_event({"action": "TASKS_DELETED", "tasks": [{"id": 2}], "project": {"id": 7}}, backend)
    assert set(cache.all()) == {"1"}


def test_project_updated_retrains_only_when_the_labels_change(tmp_path):
    backend = make_backend(tmp_path)
    folder = backend.store.layout.project_dir(7)
    version = "7-v1-20260101T000000Z"
    (folder / "versions" / version).mkdir(parents=True)
    (folder / "versions" / version / "version.json").write_text(
        json.dumps({"kind": "classification", "labels": ["Positive", "Negative"]})
    )
    (folder / "current.json").write_text(json.dumps({"version": version, "iteration": 0}))
    same = {
        "action": "PROJECT_UPDATED",
        "project": {"id": 7, "label_config": CLS_CONFIG, "model_version": version},
    }
    assert "retrain" not in handle_event(same, backend)  # e.g. our own PATCH of model_version
    changed = {"action": "PROJECT_UPDATED", "project": {"id": 7, "label_config": NER_CONFIG}}
    assert handle_event(changed, backend)["retrain"] == "queued"


def test_project_updated_with_an_unsupported_config_is_reported(tmp_path):
    backend = make_backend(tmp_path)
    bad = CLS_CONFIG.replace("<View>", '<View><Image name="photo" value="$photo"/>')
    answer = handle_event({"action": "PROJECT_UPDATED", "project": {"id": 7, "label_config": bad}}, backend)
    assert answer["config"] == "unsupported"
    assert "<Image> is not supported" in backend.status("7")["projects"]["7"]["last_error"]


@pytest.mark.parametrize(
    "body", [None, [], {"no": "action"}, {"action": "ANNOTATION_CREATED", "project": {}}]
)
def test_malformed_webhooks_are_refused(tmp_path, body):
    with pytest.raises(BadRequest):
        handle_event(body, make_backend(tmp_path))


def test_unknown_actions_are_ignored(tmp_path):
    backend = make_backend(tmp_path)
    assert (
        handle_event({"action": "LABEL_LINK_CREATED", "project": {"id": 1}}, backend)["status"] == "ignored"
    )
    assert backend.runner.retrains == []


def test_real_label_studio_webhooks_are_understood(tmp_path):
    files = sorted(SAMPLES.glob("*/req_*_POST_webhook.json"))
    require_or_skip(bool(files), f"the captured Label Studio samples are not in {SAMPLES}")
    backend = make_backend(tmp_path)
    seen = set()
    for path in files:
        body = json.loads(path.read_text())["body"]
        answer = handle_event(body, backend)
        seen.add(body["action"])
        assert answer["status"] in ("ok", "ignored")
    assert {
        "ANNOTATION_CREATED",
        "START_TRAINING",
        "TASKS_CREATED",
        "ANNOTATIONS_DELETED",
        "PROJECT_UPDATED",
    } <= seen
    assert backend.runner.retrains  # at least one retrain queued per project that had annotations
