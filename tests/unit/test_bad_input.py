"""Malformed and hostile requests on every route: a 4xx naming the problem (or the protocol's
empty answer), never a 5xx, and the server still answers /health afterwards."""

from __future__ import annotations

import json

import pytest

from ml_backend.app import create_app
from testkit.fake_label_studio import CLS_CONFIG, TEXTS, FakeLabelStudio
from tests.helpers import backend_settings

TRAINED = 1  # project with a promoted version
UNTRAINED_PROJECT = 2  # known to Label Studio, never trained

IMAGE_CONFIG = '<View><Image name="img" value="$image"/><Choices name="c" toName="img"><Choice value="A"/></Choices></View>'
NO_CONTROL_CONFIG = '<View><Text name="text" value="$text"/></View>'


@pytest.fixture(scope="module")
def client(tmp_path_factory, tiny_model_dir):
    """An app serving a trained tiny model for project 1, with a fake Label Studio behind it."""
    from ml_backend.jobs.run import run_retrain
    from ml_backend.jobs.status import MemoryState

    fake = FakeLabelStudio()
    url = fake.start()
    fake.add_project(TRAINED)
    fake.add_project(UNTRAINED_PROJECT)
    ids = fake.add_tasks(TRAINED, TEXTS[:10])
    for n, task_id in enumerate(ids[:4]):
        fake.choose(task_id, "Positive" if n % 2 else "Negative")
    settings = backend_settings(url, tmp_path_factory.mktemp("store"), tiny_model_dir, max_request_mb=16)
    assert run_retrain(TRAINED, settings, MemoryState())["status"] == "trained"
    app = create_app(settings)
    yield app.test_client()
    app.extensions["al_backend"].runner.join(timeout=60)  # jobs started by the events below
    fake.stop()


def predict_body(texts, project="1.5", **extra):
    tasks = [{"id": n + 1, "data": {"text": t}} for n, t in enumerate(texts)]
    return dict({"project": project, "tasks": tasks, "label_config": CLS_CONFIG}, **extra)


def event(action, project=TRAINED, **extra):
    return dict({"action": action, "project": {"id": project, "label_config": CLS_CONFIG}}, **extra)


def raw(data, content_type="application/json"):
    return {"data": data, "content_type": content_type}


# (id, method, path, request kwargs or a function making them, expected status, words the answer must hold)
# expected status 200 means the protocol's answer; `words` are then checked in the JSON text.
CASES = [
    # --- /health and unknown routes ---
    ("health-post", "POST", "/health", {}, 405, "method"),
    ("health-query-junk", "GET", "/health?x=%00%ff", {}, 200, "UP"),
    ("unknown-route", "GET", "/admin/../../etc/passwd", {}, 404, "not found"),
    ("predict-get", "GET", "/predict", {}, 405, "method"),
    # --- /setup ---
    ("setup-invalid-json", "POST", "/setup", raw("{project: 1"), 400, "not valid JSON"),
    ("setup-json-list", "POST", "/setup", {"json": [1, 2]}, 400, "JSON object"),
    ("setup-json-null", "POST", "/setup", raw("null"), 400, "JSON object"),
    ("setup-empty-body", "POST", "/setup", raw(""), 400, "JSON object"),
    ("setup-not-utf8", "POST", "/setup", raw(b"\xff\xfe{\x00"), 400, "JSON"),
    ("setup-text-plain", "POST", "/setup", raw("hello", "text/plain"), 400, "JSON"),
    ("setup-deep-nesting", "POST", "/setup", raw("[" * 100000 + "]" * 100000), 400, "JSON"),
    ("setup-no-project", "POST", "/setup", {"json": {"schema": CLS_CONFIG}}, 400, "project"),
    ("setup-project-list", "POST", "/setup", {"json": {"project": [1], "schema": CLS_CONFIG}}, 400, "project"),
    ("setup-project-traversal", "POST", "/setup", {"json": {"project": "../1", "schema": CLS_CONFIG}}, 400, "project"),
    ("setup-project-negative", "POST", "/setup", {"json": {"project": "-1.5", "schema": CLS_CONFIG}}, 400, "project"),
    ("setup-project-huge", "POST", "/setup", {"json": {"project": "9" * 40, "schema": CLS_CONFIG}}, 400, "project"),
    ("setup-project-superscript", "POST", "/setup", {"json": {"project": "\u00b2.5", "schema": CLS_CONFIG}}, 400, "project"),
    ("setup-project-arabic-digits", "POST", "/setup", {"json": {"project": "\u0661.5", "schema": CLS_CONFIG}}, 400, "project"),
    ("setup-no-schema", "POST", "/setup", {"json": {"project": "1.5"}}, 400, "schema"),
    ("setup-schema-int", "POST", "/setup", {"json": {"project": "1.5", "schema": 7}}, 400, "schema"),
    ("setup-schema-blank", "POST", "/setup", {"json": {"project": "1.5", "schema": "  \n\t"}}, 400, "schema"),
    ("setup-schema-not-xml", "POST", "/setup", {"json": {"project": "1.5", "schema": "<View><Text"}}, 400, "not valid XML"),
    ("setup-image-tag", "POST", "/setup", {"json": {"project": "1.5", "schema": IMAGE_CONFIG}}, 400, "<Image>"),
    ("setup-no-control", "POST", "/setup", {"json": {"project": "1.5", "schema": NO_CONTROL_CONFIG}}, 400, "Choices"),
    ("setup-xml-entity-bomb", "POST", "/setup", {"json": {"project": "1.5", "schema": '<!DOCTYPE v [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><View><Text name="text" value="&c;"/></View>'}}, 400, "label config"),
    # --- /predict ---
    ("predict-invalid-json", "POST", "/predict", raw('{"tasks": [}'), 400, "not valid JSON"),
    ("predict-no-tasks", "POST", "/predict", {"json": {"project": "1.5"}}, 400, "tasks"),
    ("predict-tasks-dict", "POST", "/predict", {"json": {"project": "1.5", "tasks": {"id": 1}}}, 400, "tasks"),
    ("predict-task-string", "POST", "/predict", {"json": {"project": "1.5", "tasks": ["text"]}}, 400, "id"),
    ("predict-task-no-id", "POST", "/predict", {"json": {"project": "1.5", "tasks": [{"data": {"text": "x"}}]}}, 400, "id"),
    ("predict-no-project", "POST", "/predict", {"json": {"tasks": []}}, 400, "project"),
    ("predict-project-float", "POST", "/predict", {"json": {"project": 1.5e300, "tasks": []}}, 400, "project"),
    ("predict-missing-text-field", "POST", "/predict", {"json": {"project": "1.5", "tasks": [{"id": 1, "data": {"body": "x"}}]}}, 400, "'text' is missing"),
    ("predict-text-not-string", "POST", "/predict", {"json": {"project": "1.5", "tasks": [{"id": 1, "data": {"text": 5}}]}}, 400, "not a string"),
    ("predict-data-list", "POST", "/predict", {"json": {"project": "1.5", "tasks": [{"id": 1, "data": ["x"]}]}}, 400, "'text' is missing"),
    ("predict-unsupported-config", "POST", "/predict", {"json": predict_body(["x"], label_config=IMAGE_CONFIG)}, 400, "<Image>"),
    ("predict-empty-tasks", "POST", "/predict", {"json": predict_body([])}, 200, '"results": []'),
    ("predict-empty-text", "POST", "/predict", {"json": predict_body([""])}, 200, "model_version"),
    ("predict-whitespace-text", "POST", "/predict", {"json": predict_body([" \t\n\u00a0\u2003"])}, 200, "model_version"),
    ("predict-rtl-text", "POST", "/predict", {"json": predict_body(["\u202ethe film\u202c \u05d4\u05e1\u05e8\u05d8 \u0627\u0644\u0641\u064a\u0644\u0645"])}, 200, "model_version"),
    ("predict-emoji", "POST", "/predict", {"json": predict_body(["\U0001f600\U0001f44d\U0001f3fd\u200d\U0001f468\u200d\U0001f469 great film"])}, 200, "model_version"),
    ("predict-combining-marks", "POST", "/predict", {"json": predict_body(["g" + "\u0301\u0308\u0327" * 500 + "ood"])}, 200, "model_version"),
    ("predict-nul-and-controls", "POST", "/predict", {"json": predict_body(["bad\x00film\x1b[31m\x07\r"])}, 200, "model_version"),
    ("predict-lone-surrogate", "POST", "/predict", raw('{"project": "1.5", "tasks": [{"id": 1, "data": {"text": "bad \\ud800 film"}}]}'), 400, "not valid Unicode"),
    ("predict-10mb-text", "POST", "/predict", lambda: {"json": predict_body(["good film " * 1_000_000])}, 200, "model_version"),
    ("predict-over-size-limit", "POST", "/predict", lambda: {"json": predict_body(["x" * 17 * 2**20])}, 413, "MB"),
    ("predict-10000-tasks-untrained", "POST", "/predict", lambda: {"json": predict_body(["film"] * 10_000, project="2.5")}, 200, '"untrained"'),
    ("predict-untrained-project", "POST", "/predict", {"json": predict_body(["good"], project="77.1")}, 200, '"untrained"'),
    # --- /webhook ---
    ("webhook-invalid-json", "POST", "/webhook", raw("{'action': 'X'}"), 400, "not valid JSON"),
    ("webhook-no-action", "POST", "/webhook", {"json": {"project": {"id": 1}}}, 400, "action"),
    ("webhook-action-int", "POST", "/webhook", {"json": {"action": 5, "project": {"id": 1}}}, 400, "action"),
    ("webhook-json-string", "POST", "/webhook", {"json": "ANNOTATION_CREATED"}, 400, "action"),
    ("webhook-unknown-action", "POST", "/webhook", {"json": event("LAUNCH_ROCKETS")}, 200, '"ignored"'),
    ("webhook-no-project", "POST", "/webhook", {"json": {"action": "ANNOTATION_CREATED"}}, 400, "project"),
    ("webhook-project-bool", "POST", "/webhook", {"json": {"action": "START_TRAINING", "project": {"id": True}}}, 400, "project"),
    ("webhook-project-traversal", "POST", "/webhook", {"json": {"action": "START_TRAINING", "project": {"id": "../../etc"}}}, 400, "project"),
    ("webhook-project-superscript", "POST", "/webhook", {"json": {"action": "START_TRAINING", "project": {"id": "\u00b9\u00b2"}}}, 400, "project"),
    ("webhook-project-huge", "POST", "/webhook", {"json": {"action": "START_TRAINING", "project": {"id": 10**30}}}, 400, "project"),
    ("webhook-unknown-project-training", "POST", "/webhook", {"json": event("START_TRAINING", project=987654)}, 200, '"queued"'),
    ("webhook-tasks-created-tasks-int", "POST", "/webhook", {"json": event("TASKS_CREATED", tasks=5)}, 400, "tasks"),
    ("webhook-tasks-deleted-tasks-string", "POST", "/webhook", {"json": event("TASKS_DELETED", tasks="1,2")}, 400, "tasks"),
    ("webhook-tasks-deleted-unknown-project", "POST", "/webhook", {"json": event("TASKS_DELETED", project=424242, tasks=[{"id": 1}])}, 200, '"forgotten": 1'),
    ("webhook-project-updated-bad-config", "POST", "/webhook", {"json": {"action": "PROJECT_UPDATED", "project": {"id": 1, "label_config": "<View"}}}, 200, "unsupported"),
    ("webhook-annotation-of-unknown-project", "POST", "/webhook", {"json": {"action": "ANNOTATION_CREATED", "annotation": {"project": 31337}}}, 200, '"queued"'),
    # --- /train (legacy) ---
    ("train-json-list", "POST", "/train", {"json": [1]}, 400, "JSON object"),
    ("train-no-project", "POST", "/train", {"json": {}}, 400, "project"),
    # --- /versions and /status ---
    ("versions-project-letters", "GET", "/versions?project=abc", {}, 400, "project"),
    ("versions-project-traversal", "GET", "/versions?project=..%2F..%2Fetc", {}, 400, "project"),
    ("versions-unknown-project", "GET", "/versions?project=555", {}, 200, '"versions": []'),
    ("status-project-traversal", "GET", "/status/..%2F..%2Fetc", {}, (400, 404), ""),
    ("status-project-letters", "GET", "/status/abc", {}, 400, "project"),
    ("status-project-nul", "GET", "/status/1%00", {}, 400, "project"),
    ("status-project-emoji", "GET", "/status/%F0%9F%98%80", {}, 400, "project"),
    ("status-unknown-project", "GET", "/status/999999", {}, 200, '"current_version": null'),
]


def test_the_table_is_large_and_covers_every_route():
    ids = [case[0] for case in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 50
    paths = {case[2].split("?")[0].rstrip("/").split("/")[1] for case in CASES}
    assert {"health", "setup", "predict", "webhook", "versions", "status"} <= paths


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_bad_request_gets_a_clear_answer_and_the_server_stays_up(client, case):
    _, method, path, kwargs, expected, words = case
    if callable(kwargs):
        kwargs = kwargs()
    reply = client.open(path, method=method, **kwargs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert reply.status_code in expected, reply.get_data(as_text=True)[:500]
    assert reply.is_json, reply.get_data(as_text=True)[:200]
    text = json.dumps(reply.json, ensure_ascii=False)
    if reply.status_code >= 400:
        assert isinstance(reply.json.get("error"), str) and reply.json["error"]
        assert words.lower() in reply.json["error"].lower(), reply.json
    else:
        assert words in text, text[:500]
    assert client.get("/health").json["status"] == "UP"


def test_predict_answers_one_result_per_task_in_order_for_hostile_texts(client):
    texts = ["", " ", "\u202e\u05d4", "\U0001f600", "a\u0301" * 50, "x\x00y"]
    results = client.post("/predict", json=predict_body(texts)).json["results"]
    assert len(results) == len(texts)
    assert all(r["model_version"] != "untrained" and 0.0 <= r["score"] <= 1.0 for r in results)


def test_ten_thousand_tasks_before_training_get_ten_thousand_empty_answers(client):
    reply = client.post("/predict", json=predict_body(["film"] * 10_000, project="2.5"))
    assert reply.status_code == 200
    assert len(reply.json["results"]) == 10_000
    assert reply.json["results"][0] == {"result": [], "score": 0.0, "model_version": "untrained"}
