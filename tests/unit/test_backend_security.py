"""Basic auth, secrets kept out of logs and answers, safetensors-only loading, size limit, names
that cannot leave the model folder."""

from __future__ import annotations

import base64
import json
import logging
import shutil

import pytest

from ml_backend.app import create_app
from testkit.fake_label_studio import CLS_CONFIG, TEXTS, FakeLabelStudio
from tests.helpers import backend_settings

API_KEY = "SECRET-ls-key-7f3a9c0e5b1d"
REDIS_PASSWORD = "redis-pass-51c2e8"


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


ROUTES = [
    ("POST", "/setup", {"project": "1.5", "schema": CLS_CONFIG}),
    ("POST", "/predict", {"project": "1.5", "tasks": [{"id": 1, "data": {"text": "x"}}]}),
    ("POST", "/webhook", {"action": "SOMETHING_ELSE", "project": {"id": 1}}),
    ("POST", "/train", {"project": 1}),
    ("GET", "/versions", None),
    ("GET", "/status", None),
    ("GET", "/status/1", None),
    ("GET", "/", None),
    ("GET", "/campaign/1", None),
    ("GET", "/campaign/1.json", None),
    ("GET", "/campaign/1/stability.svg", None),
]


@pytest.mark.parametrize("method,path,body", ROUTES, ids=[r[1] for r in ROUTES])
def test_basic_auth_guards_every_route_but_health(tmp_path, method, path, body):
    settings = backend_settings(
        None, tmp_path / "s", tmp_path / "m", basic_auth_user="ls", basic_auth_password="pa:ss wörd"
    )
    client = create_app(settings).test_client()
    assert client.get("/health").status_code == 200
    for headers in ({}, basic("ls", "wrong"), basic("other", "pa:ss wörd"), {"Authorization": "Bearer x"}):
        reply = client.open(path, method=method, json=body, headers=headers)
        assert reply.status_code == 401, (headers, reply.json)
        assert "basic auth" in reply.json["error"] and reply.headers["WWW-Authenticate"].startswith("Basic")
    ok = client.open(path, method=method, json=body, headers=basic("ls", "pa:ss wörd"))
    assert ok.status_code == 200, ok.json


def test_without_auth_settings_no_credentials_are_asked(tmp_path):
    client = create_app(backend_settings(None, tmp_path / "s", tmp_path / "m")).test_client()
    assert client.get("/versions").status_code == 200


@pytest.mark.parametrize("status", [400, 503])
def test_the_api_key_is_never_logged_nor_answered(tmp_path, caplog, fake_ls, status):
    """A retrain whose Label Studio calls fail (one retried 5xx, one 4xx) and an unreachable one.
    Label Studio misbehaves: its error pages quote the request headers."""
    caplog.set_level(logging.DEBUG)
    fake, url = fake_ls
    fake.fail_with = status
    settings = backend_settings(
        url,
        tmp_path / "s",
        tmp_path / "m",
        label_studio_api_key=API_KEY,
        ls_retries=1,
        redis_url=None,
    )
    app = create_app(settings)
    client = app.test_client()
    assert client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 3}}).status_code == 200
    assert app.extensions["al_backend"].runner.join(timeout=30)
    status_answer = client.get("/status/3").get_data(as_text=True)
    assert "Label Studio GET project 3 failed" in status_answer  # the failure is reported ...
    assert str(status) in status_answer
    assert fake.count("GET", "/api/projects/3") >= 1

    unreachable = create_app(settings.model_copy(update={"label_studio_url": "http://127.0.0.1:9"}))
    unreachable.test_client().post("/webhook", json={"action": "START_TRAINING", "project": {"id": 4}})
    assert unreachable.extensions["al_backend"].runner.join(timeout=30)
    answers = [
        status_answer,
        unreachable.test_client().get("/status/4").get_data(as_text=True),
        client.post("/setup", data="{bad").get_data(as_text=True),
        client.post("/predict", json={"project": "3.1", "tasks": [{"id": 1}]}).get_data(as_text=True),
    ]
    assert "Label Studio" in answers[1]
    logged = caplog.text + "".join(str(r.exc_info) for r in caplog.records)
    assert "failed" in logged  # ... and logged, but without the key
    for text in [logged, *answers]:
        assert API_KEY not in text


def test_print_settings_masks_secrets(monkeypatch, capsys):
    from ml_backend.cli import main

    monkeypatch.setenv("LABEL_STUDIO_API_KEY", API_KEY)
    monkeypatch.setenv("AL_BASIC_AUTH_USER", "ls")
    monkeypatch.setenv("AL_BASIC_AUTH_PASSWORD", "hunter2-password")
    assert main(["--print-settings"]) == 0
    out = capsys.readouterr().out
    assert API_KEY not in out and "hunter2-password" not in out
    assert "LABEL_STUDIO_API_KEY=***" in out and "AL_BASIC_AUTH_PASSWORD=***" in out


def test_a_redis_password_is_not_echoed_in_the_503(tmp_path):
    settings = backend_settings(
        None, tmp_path / "s", tmp_path / "m", redis_url=f"redis://:{REDIS_PASSWORD}@127.0.0.1:1/0"
    )
    reply = create_app(settings).test_client().post(
        "/webhook", json={"action": "START_TRAINING", "project": {"id": 1}}
    )
    assert reply.status_code == 503 and "Redis is unavailable" in reply.json["error"]
    assert REDIS_PASSWORD not in reply.get_data(as_text=True)


@pytest.fixture
def trained(tmp_path, tiny_model_dir):
    """A store holding one trained version of project 5, and its settings."""
    from ml_backend.jobs.run import run_retrain
    from ml_backend.jobs.status import MemoryState

    fake = FakeLabelStudio()
    url = fake.start()
    fake.add_project(5)
    ids = fake.add_tasks(5, TEXTS[:6])
    for n, task_id in enumerate(ids[:4]):
        fake.choose(task_id, "Positive" if n % 2 else "Negative")
    settings = backend_settings(url, tmp_path / "store", tiny_model_dir, acquisition_mode="finetune")
    version = run_retrain(5, settings, MemoryState())["version"]
    fake.stop()
    return settings, version


def test_a_version_holding_only_pickled_weights_is_refused(trained):
    import torch
    from safetensors.torch import load_file

    from ml_backend.storage.store import VersionStore

    settings, version = trained
    folder = VersionStore(settings.model_dir).version_dir(5, version)
    weights = folder / "model.safetensors"
    torch.save(load_file(weights), folder / "pytorch_model.bin")  # the same weights, as a pickle
    weights.unlink()
    client = create_app(settings).test_client()
    reply = client.post("/predict", json={"project": "5.1", "tasks": [{"id": 1, "data": {"text": "good"}}]})
    assert reply.status_code == 503
    assert "cannot be loaded" in reply.json["error"] and "safetensors" in reply.json["error"].lower()
    assert client.get("/health").status_code == 200


def test_current_json_cannot_point_outside_the_model_folder(trained, tmp_path):
    from ml_backend.storage.store import VersionStore

    settings, version = trained
    store = VersionStore(settings.model_dir)
    outside = tmp_path / "outside"
    shutil.copytree(store.version_dir(5, version), outside)
    (store.layout.current_file(5)).write_text(
        json.dumps({"version": "../../../outside", "iteration": 0}), encoding="utf-8"
    )
    reply = create_app(settings).test_client().post(
        "/predict", json={"project": "5.1", "tasks": [{"id": 1, "data": {"text": "good"}}]}
    )
    assert reply.status_code == 400 and "invalid model version" in reply.json["error"]


def test_hostile_names_in_routes_create_nothing_outside_the_model_folder(tmp_path):
    store = tmp_path / "root" / "store"
    store.parent.mkdir()
    client = create_app(backend_settings(None, store, tmp_path / "m")).test_client()
    hostile = ["..", "../x", "%2e%2e", "1/../../x", "/etc", "1\x00", "١", "1e3"]
    for name in hostile:
        client.get(f"/status/{name}")
        client.get("/versions", query_string={"project": name})
        client.post("/setup", json={"project": name, "schema": CLS_CONFIG})
        client.post("/webhook", json={"action": "TASKS_DELETED", "project": {"id": name}, "tasks": [{"id": 1}]})
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) in ([], ["store"])
    assert not store.exists() or all(p.name.isdigit() for p in store.iterdir())


def test_a_body_over_the_limit_gets_413_with_a_message(tmp_path):
    client = create_app(backend_settings(None, tmp_path / "s", tmp_path / "m", max_request_mb=0.5)).test_client()
    reply = client.post("/predict", data=b"x" * (600 * 1024), content_type="application/json")
    assert reply.status_code == 413 and "0.5 MB" in reply.json["error"]
    assert client.post("/predict", json={"project": "1.1", "tasks": []}).status_code == 200
