"""The HTTP routes, and the embedded loop end to end against a fake Label Studio."""

import time

import pytest

from ml_backend.app import create_app
from ml_backend.storage.history import history_path, read_last
from testkit.fake_label_studio import CLS_CONFIG, NER_CONFIG, TEXTS
from tests.helpers import backend_settings


def wait_until(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def webhook(project_id, task_id):
    return {
        "action": "ANNOTATION_CREATED",
        "annotation": {"id": task_id, "task": task_id},
        "task": {"id": task_id},
        "project": {"id": project_id, "label_config": CLS_CONFIG},
    }


def test_before_the_first_training_predict_gives_the_documented_answer(tmp_path):
    client = create_app(backend_settings(None, tmp_path / "s", tmp_path / "m")).test_client()
    tasks = [{"id": i, "data": {"text": "x"}} for i in range(3)]
    answer = client.post("/predict", json={"project": "1.17", "tasks": tasks, "label_config": CLS_CONFIG})
    assert answer.status_code == 200
    assert answer.json["results"] == [{"result": [], "score": 0.0, "model_version": "untrained"}] * 3


def test_bad_requests_get_a_message(tmp_path):
    client = create_app(backend_settings(None, tmp_path / "s", tmp_path / "m")).test_client()
    bad_json = client.post("/webhook", data="{not json", content_type="application/json")
    assert bad_json.status_code == 400 and "JSON" in bad_json.json["error"]
    assert client.post("/predict", json={"project": "1.2"}).status_code == 400
    assert client.get("/status/..%2Fetc").status_code in (400, 404)
    assert client.get("/nowhere").status_code == 404


def test_health_versions_and_status_routes(tmp_path):
    client = create_app(backend_settings(None, tmp_path / "s", tmp_path / "m")).test_client()
    assert client.get("/health").json["status"] == "UP"
    assert client.get("/versions").json == {"versions": [], "details": []}
    assert client.get("/status").json == {"queue": "embedded", "projects": {}}


def test_embedded_loop_trains_promotes_publishes_and_serves(tmp_path, fake_ls, tiny_model_dir):
    fake, url = fake_ls
    fake.add_project(1)
    ids = fake.add_tasks(1, TEXTS[:40])
    settings = backend_settings(url, tmp_path / "store", tiny_model_dir, retrain_delay=0.3)
    app = create_app(settings)
    client = app.test_client()
    backend = app.extensions["al_backend"]
    for n, task_id in enumerate(ids[:6]):  # a burst: annotation then webhook, as Label Studio does
        fake.choose(task_id, "Positive" if n % 2 else "Negative")
        reply = client.post("/webhook", json=webhook(1, task_id))
        assert reply.status_code == 200
    assert backend.runner.join(timeout=120)
    status = client.get("/status/1").json["projects"]["1"]
    assert status["last_error"] is None, status
    version = status["current_version"]
    assert status["versions"] == [version]  # one retrain for the whole burst
    meta = backend.store.meta(1, version)
    assert sorted(meta["labeled_ids"], key=int) == [str(i) for i in ids[:6]]
    published = fake.predictions_of(version)
    assert sorted(p["task"] for p in published) == ids[6:]
    assert all(0.0 <= p["score"] <= 1.0 for p in published)
    assert fake.projects[1]["model_version"] == version
    assert fake.projects[1]["sampling"] == "Uncertainty sampling"
    # the retrain left its record in the history, and the campaign page shows it
    (entry,) = read_last(history_path(settings.model_dir, 1))
    assert entry["version"] == version and entry["n_labeled"] == 6 and entry["n_published"] == len(published)
    assert entry["label_counts"] == {"Positive": 3, "Negative": 3}
    assert set(entry["stability"]["predictions"]) == {str(i) for i in ids[6:]}  # the pool is under the sample size
    assert set(entry["stability"]["predictions"].values()) <= {0, 1}
    assert {"read_s", "fit_s", "total_s", "publish_s"} <= set(entry["timings"])
    # the record carries the estimate's per-class table and what the version predicts over the pool
    assert entry["n_predicted"] == 34 and sum(entry["predicted_counts"].values()) == 34
    assert sorted(entry["predicted_counts"]) == ["Negative", "Positive"]
    # /status and /versions: the headline and a row per class beside the fields they had
    current = status["current"]
    assert {"acquisition_mode", "quality", "n_labeled", "label_counts", "strategy", "created_at"} <= set(current)
    assert current["predicted_counts"] == entry["predicted_counts"] and current["n_predicted"] == 34
    assert [row["label"] for row in current["classes"]] == ["Positive", "Negative"]
    assert all(row["labels"] == 3 and row["predicted"] == entry["predicted_counts"][row["label"]] for row in current["classes"])
    assert status["last_round"]["predicted_counts"] == entry["predicted_counts"]
    (detail,) = client.get("/versions").json["details"]
    assert detail["headline"] == current["headline"] and detail["classes"] == current["classes"]
    figures = client.get("/campaign/1.json").json
    assert figures["current_version"] == version and figures["label_counts"] == entry["label_counts"]
    assert client.get("/campaign/1").status_code == 200

    assert client.post("/setup", json={"project": "1.17", "schema": CLS_CONFIG}).json == {
        "model_version": version
    }
    tasks = [fake.tasks[i] for i in ids[10:15]]
    answer = client.post(
        "/predict", json={"project": "1.17", "tasks": tasks, "label_config": CLS_CONFIG}
    ).json
    assert [r["model_version"] for r in answer["results"]] == [version] * 5
    assert all(r["result"][0]["value"]["choices"][0] in ("Positive", "Negative") for r in answer["results"])

    # a restart: a new app on the same folder serves the promoted version at once
    restarted = create_app(settings).test_client()
    assert restarted.post("/setup", json={"project": "1.17", "schema": CLS_CONFIG}).json == {
        "model_version": version
    }
    # a different label set in the request is not answered with the old model's labels
    ner = restarted.post(
        "/predict", json={"project": "1.17", "tasks": tasks[:1], "label_config": NER_CONFIG}
    ).json
    assert ner["results"][0]["model_version"] == "untrained"


def test_tasks_list_is_read_across_pages(fake_ls):
    from ml_backend.labelstudio.gateway import LSGateway

    fake, url = fake_ls
    fake.add_project(4)
    ids = fake.add_tasks(4, TEXTS[:23])
    gateway = LSGateway(backend_settings(url, "unused", "unused", ls_page_size=7))
    assert [t["id"] for t in gateway.list_tasks(4)] == ids
    assert fake.count("GET", "/api/tasks") == 5  # 4 pages, then the 404 that ends the listing


def test_ner_project_trains_and_publishes_character_spans(tmp_path, fake_ls, tiny_model_dir):
    from ml_backend.jobs.run import run_retrain
    from ml_backend.jobs.status import MemoryState

    fake, url = fake_ls
    fake.add_project(5, NER_CONFIG)
    texts = [f"john smith was in {city} with mary" for city in ("paris", "london", "berlin", "france")] * 3
    ids = fake.add_tasks(5, texts)
    for task_id in ids[:4]:
        text = fake.tasks[task_id]["data"]["text"]
        city = text.split()[4]
        start = text.index(city)
        fake.annotate(
            task_id,
            [
                {
                    "from_name": "label",
                    "to_name": "text",
                    "type": "labels",
                    "value": {"start": 0, "end": 10, "text": "john smith", "labels": ["PER"]},
                },
                {
                    "from_name": "label",
                    "to_name": "text",
                    "type": "labels",
                    "value": {"start": start, "end": start + len(city), "text": city, "labels": ["LOC"]},
                },
            ],
        )
    settings = backend_settings(url, tmp_path / "store", tiny_model_dir, epochs=2)
    summary = run_retrain(5, settings, MemoryState())
    assert summary["status"] == "trained" and summary["n_labeled"] == 4
    published = fake.predictions_of(summary["version"])
    assert sorted(p["task"] for p in published) == ids[4:]
    for prediction in published:
        text = fake.tasks[prediction["task"]]["data"]["text"]
        assert 0.0 < prediction["score"] <= 1.0  # exp(-mnlp)
        for region in prediction["result"]:
            value = region["value"]
            assert region["type"] == "labels" and value["labels"][0] in ("PER", "LOC")
            assert text[value["start"] : value["end"]] == value["text"]
    (entry,) = read_last(history_path(settings.model_dir, 5))
    assert entry["label_counts"] == {"PER": 4, "LOC": 4} and entry["kind"] == "tagging"
    tags = entry["stability"]["predictions"]
    assert set(tags) == {str(i) for i in ids[4:]}
    assert all(len(tags[str(i)]) == 7 for i in ids[4:])  # one tag index per word


def test_new_tasks_are_scored_with_the_promoted_version_and_warm_start_reuses_it(
    tmp_path, fake_ls, tiny_model_dir
):
    from ml_backend.jobs.run import run_retrain, run_scoring
    from ml_backend.jobs.status import MemoryState
    from ml_backend.storage.layout import ModelDirLayout
    from ml_backend.storage.store import FileScoreCache, VersionStore

    fake, url = fake_ls
    ids = fake.add_labeled_project(6, 20)
    settings = backend_settings(
        url, tmp_path / "store", tiny_model_dir, warm_start=True, acquisition_mode="finetune"
    )
    first = run_retrain(6, settings, MemoryState())["version"]

    new_ids = fake.add_tasks(6, ["a new good film", "a new bad film"])
    new_tasks = [{"id": i, "data": fake.tasks[i]["data"]} for i in new_ids]
    assert run_scoring(6, new_tasks, settings)["n_published"] == 2
    assert sorted(p["task"] for p in fake.predictions_of(first)) == sorted(ids[4:] + new_ids)
    cached = FileScoreCache(ModelDirLayout(settings.model_dir).scores_file(6)).get_many(
        [str(i) for i in new_ids]
    )
    assert {c.model_version for c in cached.values()} == {first}

    fake.choose(ids[4], "Positive")
    second = run_retrain(6, settings, MemoryState())
    assert second["status"] == "trained" and second["iteration"] == 1
    assert VersionStore(settings.model_dir).meta(6, second["version"])["n_labeled"] == 5
    history = read_last(history_path(settings.model_dir, 6))
    assert [r["version"] for r in history] == [first, second["version"]]
    stability = history[1]["stability"]
    assert stability["n_compared"] == len(ids) - 5 and -1.0 <= stability["kappa"] <= 1.0

    # warm start begins from the promoted weights; the default begins from the pretrained ones
    from ml_backend.jobs.retrain_steps import new_model

    labels = ["Positive", "Negative"]
    store = VersionStore(settings.model_dir)
    warm = new_model(settings, store, 6, "classification", labels, "finetune")
    cold = new_model(
        settings.model_copy(update={"warm_start": False}), store, 6, "classification", labels, "finetune"
    )
    assert warm.model_ is not None and not warm.config.from_scratch
    assert cold.model_ is None and cold.config.from_scratch


def test_webhook_answers_503_with_a_message_when_redis_is_down(tmp_path):
    settings = backend_settings(None, tmp_path / "s", tmp_path / "m", redis_url="redis://127.0.0.1:1/0")
    client = create_app(settings).test_client()
    reply = client.post("/webhook", json=webhook(1, 1))
    assert reply.status_code == 503 and "Redis is unavailable" in reply.json["error"]


def _layer_kind(layer) -> str:
    if "quantized" in type(layer).__module__:
        return "int8"
    return "bf16" if str(layer.weight.dtype) == "torch.bfloat16" else "fp32"


@pytest.mark.parametrize("precision, tolerance", [("int8", 0.05), ("bf16", 0.01)])
def test_reduced_precision_inference_gives_the_same_answers_within_rounding(
    tmp_path, fake_ls, tiny_model_dir, precision, tolerance
):
    from ml_backend.jobs.run import run_retrain
    from ml_backend.jobs.status import MemoryState
    from ml_backend.predictor import PredictorCache
    from ml_backend.storage.store import VersionStore

    fake, url = fake_ls
    fake.add_project(8)
    ids = fake.add_tasks(8, TEXTS[:12])
    for n, task_id in enumerate(ids[:4]):
        fake.choose(task_id, "Positive" if n % 2 else "Negative")
    settings = backend_settings(
        url, tmp_path / "store", tiny_model_dir, inference_precision="fp32", acquisition_mode="finetune"
    )
    run_retrain(8, settings, MemoryState())
    tasks = [fake.tasks[i] for i in ids[4:]]
    store = VersionStore(settings.model_dir)
    plain_predictor = PredictorCache(store, settings).get("8")
    assert plain_predictor.precision == "fp32" == _layer_kind(plain_predictor.model.model_.classifier)
    plain = plain_predictor.predict(tasks)
    quick_settings = settings.model_copy(update={"inference_precision": precision})
    quick_predictor = PredictorCache(store, quick_settings).get("8")
    assert _layer_kind(quick_predictor.model.model_.classifier) == precision
    quick = quick_predictor.predict(tasks)
    assert [a["model_version"] for a in quick] == [a["model_version"] for a in plain]
    assert [a["score"] for a in quick] == pytest.approx([a["score"] for a in plain], abs=tolerance)


def test_auto_precision_is_bf16_only_where_the_cpu_has_amx(monkeypatch):
    from ml_backend import predictor

    monkeypatch.setattr(predictor, "cpu_has_amx_bf16", lambda: True)
    assert predictor.inference_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(predictor, "cpu_has_amx_bf16", lambda: False)
    assert predictor.inference_precision("auto", "cpu") == "int8"
    assert predictor.inference_precision("fp32", "cpu") == "fp32"
    assert predictor.inference_precision("auto", "cuda") == "fp32"  # mixed precision there instead


def test_auto_mode_trains_a_frozen_head_then_fine_tunes_and_each_version_says_how_well(
    tmp_path, fake_ls, tiny_model_dir
):
    from ml_backend.jobs.run import run_retrain
    from ml_backend.jobs.status import MemoryState

    fake, url = fake_ls
    ids = fake.add_labeled_project(9, 40, n_labeled=12)
    settings = backend_settings(
        url, tmp_path / "store", tiny_model_dir, frozen_below_classification=16, finetune_lane="inline"
    )
    state = MemoryState()
    first = run_retrain(9, settings, state)
    assert first["acquisition_mode"] == "frozen"
    assert first["n_scored"] == 28  # a frozen head scores every unlabeled task, even on a UPS iteration
    assert first["quality"]["method"] == "5-fold cross-validation" and first["quality"]["n"] == 12
    for n, task_id in enumerate(ids[12:20]):
        fake.choose(task_id, "Positive" if n % 2 else "Negative")
    second = run_retrain(9, settings, state)
    assert second["acquisition_mode"] == "finetune"  # 20 labels reach the threshold of 16
    assert second["quality"]["method"] == "held-out 10% of the labels"

    client = create_app(settings).test_client()
    details = {d["version"]: d for d in client.get("/versions?project=9").json["details"]}
    assert details[first["version"]]["acquisition_mode"] == "frozen"
    assert details[second["version"]]["label_counts"] == {"Positive": 10, "Negative": 10}
    current = client.get("/status/9").json["projects"]["9"]["current"]
    assert current["version"] == second["version"] and current["quality"] == second["quality"]


def test_a_frozen_round_publishes_the_most_informative_tasks_before_activating_the_version(
    tmp_path, fake_ls, tiny_model_dir
):
    from ml_backend.jobs.run import run_retrain
    from ml_backend.jobs.status import MemoryState

    fake, url = fake_ls
    fake.add_labeled_project(10, 40, n_labeled=6)
    # AL_QUERY_WINDOW=0: every task is published under the version, the first five before the switch
    settings = backend_settings(url, tmp_path / "store", tiny_model_dir, publish_first=5, query_window=0)
    summary = run_retrain(10, settings, MemoryState())
    assert summary["acquisition_mode"] == "frozen" and summary["n_published"] == 34
    published = fake.predictions_of(summary["version"])  # in the order Label Studio received them
    assert fake.activated_with[summary["version"]] == 5  # five were in before the switch ...
    lowest = sorted(p["score"] for p in published)[:5]
    assert sorted(p["score"] for p in published[:5]) == lowest  # ... the five most informative


def test_a_version_saved_with_accuracy_only_still_shows_on_status_and_versions(tmp_path):
    import json

    from ml_backend.storage.store import VersionStore

    settings = backend_settings(None, tmp_path / "s", tmp_path / "m")
    store = VersionStore(settings.model_dir)
    old_meta = {
        "project": 3, "kind": "classification", "labels": ["Positive", "Negative"], "acquisition_mode": "frozen",
        "quality": {"metric": "accuracy", "value": 0.84, "method": "5-fold cross-validation", "n": 30},
        "label_counts": {"Positive": 25, "Negative": 5}, "n_labeled": 30, "strategy": "dlc", "created_at": 1.0,
    }
    store.save_version(3, "3-v1-20260101T000000Z", 0, lambda folder: None, old_meta)
    client = create_app(settings).test_client()
    current = client.get("/status/3").json["projects"]["3"]["current"]
    assert current["quality"] == old_meta["quality"]
    assert current["headline"] == {"metric": "accuracy", "value": 0.84, "worst": None}
    assert current["audit"] is None and current["audit_estimate"] is None  # saved before the audit sample
    assert current["classes"] == [
        {"label": "Positive", "labels": 25, "precision": None, "recall": None, "f1": None, "support": None, "predicted": None},
        {"label": "Negative", "labels": 5, "precision": None, "recall": None, "f1": None, "support": None, "predicted": None},
    ]
    assert current["predicted_counts"] is None
    (detail,) = client.get("/versions").json["details"]
    assert detail == current
    json.dumps(detail)
