"""What real projects do to the backend: edited label configs, deleted tasks, refused predictions,
disagreeing annotations, one class only, a wrong API key. Against the fake Label Studio, which
imports predictions as Label Studio 1.23.2 does (testkit.fake_label_studio)."""

from __future__ import annotations

import logging

import pytest

from al_core.ls_format import parse_label_config, task_to_example
from ml_backend.app import create_app
from ml_backend.campaign.project_warnings import class_warnings
from ml_backend.jobs.run import run_retrain
from ml_backend.jobs.status import MemoryState
from ml_backend.labelstudio.gateway import NO_REASON, LSGateway, PublishReport
from ml_backend.storage.store import score_cache
from testkit.fake_label_studio import CLS_CONFIG, NER_CONFIG, TEXTS
from tests.helpers import backend_settings

THREE_CLASSES = """<View><Text name="text" value="$text"/>
<Choices name="sentiment" toName="text" choice="single">
<Choice value="Positive"/><Choice value="Negative"/><Choice value="Neutral"/></Choices></View>"""


def settings_for(url, tmp_path, model, **overrides):
    # UPS from the second iteration on, with a small share: a fine-tuning retrain re-scores only part
    # of the pool (a frozen head would score all of it)
    values = dict(
        ups_mode="ups", ups_full_first=1, ups_full_every=0, ups_gamma=0.1, ups_temperature=0.01,
        acquisition_mode="finetune",
    )
    values.update(overrides)
    return backend_settings(url, tmp_path / "store", model, **values)


def label_project(fake, project, n_tasks, labels, config=CLS_CONFIG):
    fake.add_project(project, config)
    ids = fake.add_tasks(project, TEXTS[:n_tasks])
    for task_id, label in zip(ids, labels, strict=False):
        fake.choose(task_id, label)
    return ids


def choices(prediction) -> list[str]:
    return [c for region in prediction["result"] for c in region["value"]["choices"]]


# --- items 1 and 3: a label removed from the config mid-campaign ------------------------------


def test_a_removed_label_is_a_new_model_full_rescore_and_nothing_of_the_old_label_set(
    fake_ls, tmp_path, tiny_model_dir
):
    fake, url = fake_ls
    ids = label_project(fake, 1, 40, ["Positive", "Negative", "Neutral"] * 2, THREE_CLASSES)
    settings = settings_for(url, tmp_path, tiny_model_dir)
    first = run_retrain(1, settings, MemoryState())
    assert first["n_scored"] == first["n_pool"] == 34
    # as in the campaign: earlier predictions of the pool used the label that is about to go
    for task_id in ids[6:]:
        fake.tasks[task_id]["predictions"].append(
            {
                "model_version": "older",
                "created_at": "2099-01-01T00:00:00Z",
                "result": [
                    {
                        "from_name": "sentiment",
                        "to_name": "text",
                        "type": "choices",
                        "value": {"choices": ["Neutral"]},
                    }
                ],
            }
        )
    fake.projects[1]["label_config"] = CLS_CONFIG  # Neutral removed
    second = run_retrain(1, settings, MemoryState())

    assert second["label_config_changed"] is True
    assert second["n_scored"] == second["n_pool"], "a new label set must re-score the whole pool"
    published = fake.predictions_of(second["version"])
    assert sorted(p["task"] for p in published) == ids[6:]
    assert all(set(choices(p)) <= {"Positive", "Negative"} and choices(p) for p in published)
    assert fake.rejected_log == []
    assert second["publish"] == {"ok": True, "sent": 34, "created": 34}
    cached = score_cache(settings, 1).all()
    assert {c.model_version for c in cached.values()} == {second["version"]}
    # the third retrain is an ordinary UPS round again, reusing the new model's regions
    third = run_retrain(1, settings, MemoryState())
    assert third["label_config_changed"] is False and third["n_scored"] < third["n_pool"]
    assert fake.rejected_log == []


def test_a_renamed_control_is_a_new_model_too(fake_ls, tmp_path, tiny_model_dir):
    fake, url = fake_ls
    label_project(fake, 2, 20, ["Positive", "Negative"] * 2)
    settings = settings_for(url, tmp_path, tiny_model_dir)
    run_retrain(2, settings, MemoryState())
    fake.projects[2]["label_config"] = CLS_CONFIG.replace('name="sentiment"', 'name="tone"')
    for task in fake.tasks.values():  # the annotations follow the rename, as Label Studio keeps them
        for annotation in task["annotations"]:
            annotation["result"][0]["from_name"] = "tone"
    summary = run_retrain(2, settings, MemoryState())
    assert summary["label_config_changed"] is True and summary["n_scored"] == summary["n_pool"]
    assert {r["from_name"] for p in fake.predictions_of(summary["version"]) for r in p["result"]} == {"tone"}
    assert fake.rejected_log == []


def test_a_layout_edit_keeps_the_model_and_its_cache(fake_ls, tmp_path, tiny_model_dir):
    fake, url = fake_ls
    label_project(fake, 3, 30, ["Positive", "Negative"] * 2)
    settings = settings_for(url, tmp_path, tiny_model_dir)
    run_retrain(3, settings, MemoryState())
    fake.projects[3]["label_config"] = CLS_CONFIG.replace("<View>", '<View><Header value="Tone?"/>')
    summary = run_retrain(3, settings, MemoryState())
    assert summary["label_config_changed"] is False and summary["n_scored"] < summary["n_pool"]


def test_new_tasks_are_not_scored_by_a_model_of_an_old_label_set(fake_ls, tmp_path, tiny_model_dir):
    from ml_backend.jobs.run import run_scoring

    fake, url = fake_ls
    label_project(fake, 4, 10, ["Positive", "Negative", "Neutral"] * 2, THREE_CLASSES)
    settings = settings_for(url, tmp_path, tiny_model_dir)
    version = run_retrain(4, settings, MemoryState())["version"]
    fake.projects[4]["label_config"] = CLS_CONFIG
    (new,) = fake.add_tasks(4, ["a brand new text"])
    answer = run_scoring(4, [{"id": new, "data": {"text": "a brand new text"}}], settings)
    assert answer["status"] == "skipped" and answer["reason"] == "label config changed"
    assert not [p for p in fake.predictions_of(version) if p["task"] == new]


# --- item 4: Label Studio's created count is checked ------------------------------------------


def bad_and_good(ids):
    good = [{"task": t, "result": [], "score": 0.5} for t in ids[1:]]
    bad = {
        "task": ids[0],
        "score": 0.1,
        "result": [
            {
                "from_name": "sentiment",
                "to_name": "text",
                "type": "choices",
                "value": {"choices": ["Neutral"]},
            }
        ],
    }
    return [bad] + good


def test_a_silent_shortfall_is_found_and_named(fake_ls, tmp_path):
    fake, url = fake_ls
    fake.add_project(1)
    ids = fake.add_tasks(1, ["a", "b", "c", "d"])
    report = PublishReport()
    timings = LSGateway(backend_settings(url, tmp_path, "unused")).publish_version(
        1, "v1", bad_and_good(ids)[:2], bad_and_good(ids)[2:], report
    )
    assert fake.rejected_log == [
        "Prediction 0: Invalid value for control 'sentiment'. Got: {'choices': ['Neutral']}"
    ]
    assert (report.sent, report.created) == (4, 3)
    assert report.refused == {ids[0]: NO_REASON}
    assert fake.projects[1]["model_version"] == "v1" and "activate_s" in timings


def test_refusals_listed_by_label_studio_keep_its_reason_and_the_rest_is_published(fake_ls, tmp_path):
    fake, url = fake_ls
    fake.import_mode = "validating"  # Label Studio's prediction-validation flag: 400 listing each one
    fake.add_project(1)
    ids = fake.add_tasks(1, ["a", "b", "c"])
    report = PublishReport()
    created = LSGateway(backend_settings(url, tmp_path, "unused")).publish_predictions(
        1, "v1", bad_and_good(ids), report
    )
    assert created == 2 and sorted(p["task"] for p in fake.predictions_of("v1")) == ids[1:]
    assert report.refused == {ids[0]: "Invalid value for control 'sentiment'. Got: {'choices': ['Neutral']}"}


def test_a_shortfall_is_an_error_and_a_warning_on_status(fake_ls, tmp_path, tiny_model_dir, monkeypatch):
    import ml_backend.jobs.retrain_steps as jobs

    fake, url = fake_ls
    ids = label_project(fake, 1, 12, ["Positive", "Negative"] * 2)
    real = jobs.pool_predictions
    broken = []  # the task whose prediction Label Studio refuses (the first the version sends)

    def one_bad(*args, **kwargs):  # as a version of a removed label did before the fix
        out = real(*args, **kwargs)
        out[0]["result"] = bad_and_good(ids)[0]["result"]
        broken.append(str(out[0]["task"]))
        return out

    monkeypatch.setattr(jobs, "pool_predictions", one_bad)
    app = create_app(settings_for(url, tmp_path, tiny_model_dir))
    backend = app.extensions["al_backend"]
    backend.retrainer.request("1", force=True)
    assert backend.runner.join(timeout=120)
    status = app.test_client().get("/status/1").json["projects"]["1"]
    assert broken and broken[-1] in {str(i) for i in ids[4:]}
    assert f"(tasks {broken[-1]})" in status["last_error"] and "did not create 1 of the predictions" in status["last_error"]
    assert status["last_round"]["n_published"] == 7 and status["last_round"]["publish"]["sent"] == 8
    (shortfall,) = [w for w in status["warnings"] if w["code"] == "publish_shortfall"]
    assert f"1 tasks ({broken[-1]})" in shortfall["message"]


# --- item 2: tasks deleted while a retrain runs ----------------------------------------------


@pytest.mark.parametrize("mode", ["legacy", "memory_efficient"])
def test_tasks_deleted_during_a_retrain_are_left_out_and_the_version_is_activated(
    fake_ls, tmp_path, tiny_model_dir, mode
):
    fake, url = fake_ls
    fake.import_mode = mode
    ids = label_project(fake, 1, 20, ["Positive", "Negative"] * 2)
    gone = ids[4:7]
    deleted = []

    def delete_once(items):  # someone deletes tasks after the retrain read the project
        if not deleted:
            deleted.extend(gone)
            fake.delete_tasks(gone)

    fake.before_import = delete_once
    state = MemoryState()
    summary = run_retrain(1, settings_for(url, tmp_path, tiny_model_dir), state)
    assert state.status("1").get("last_error") is None
    assert fake.projects[1]["model_version"] == summary["version"]
    assert sorted(p["task"] for p in fake.predictions_of(summary["version"])) == ids[7:]
    assert summary["publish"] == {"ok": True, "sent": 13, "created": 13, "deleted_tasks": gone}
    assert not set(map(str, gone)) & set(score_cache(backend_settings(url, tmp_path / "store", "x"), 1).all())


def test_when_every_fresh_task_is_deleted_the_rest_is_published_first_and_activated(fake_ls, tmp_path):
    fake, url = fake_ls
    fake.add_project(1)
    ids = fake.add_tasks(1, ["a", "b", "c", "d"])
    fake.delete_tasks(ids[:2])
    report = PublishReport()
    LSGateway(backend_settings(url, tmp_path, "unused", publish_batch_size=1)).publish_version(
        1,
        "v1",
        [{"task": t, "result": [], "score": 0.1} for t in ids[:2]],
        [{"task": t, "result": [], "score": 0.9} for t in ids[2:]],
        report,
    )
    assert fake.projects[1]["model_version"] == "v1"
    assert report.deleted == ids[:2] and report.created == 2


# --- item 5: NER spans outside the label set --------------------------------------------------


def span(start, end, label, text):
    return {
        "from_name": "label",
        "to_name": "text",
        "type": "labels",
        "value": {"start": start, "end": end, "text": text[start:end], "labels": [label]},
    }


def test_an_ner_task_keeps_its_valid_spans_and_counts_the_rest(fake_ls, tmp_path, tiny_model_dir):
    fake, url = fake_ls
    fake.add_project(5, NER_CONFIG)
    texts = [f"john smith was in {city} with mary" for city in ("paris", "london", "berlin", "rome")] * 2
    ids = fake.add_tasks(5, texts)
    for task_id in ids[:4]:
        text = fake.tasks[task_id]["data"]["text"]
        city = text.split()[4]
        at = text.index(city)
        fake.annotate(
            task_id,
            [span(0, 10, "PER", text), span(at, at + len(city), "ORG", text), span(5, 14, "LOC", text)],
        )
    app = create_app(settings_for(url, tmp_path, tiny_model_dir))
    backend = app.extensions["al_backend"]
    backend.retrainer.request("5", force=True)
    assert backend.runner.join(timeout=120)
    status = app.test_client().get("/status/5").json["projects"]["5"]
    assert status["last_error"] is None
    assert status["last_round"]["n_labeled"] == 4  # no task dropped for its ORG span
    assert status["skipped"] == {"unknown_label": 4, "overlapping_span": 4}
    assert status["last_round"]["label_counts"] == {"PER": 4, "LOC": 0}
    codes = {w["code"] for w in status["warnings"]}
    assert {"skipped_annotations", "single_class"} <= codes


def test_lenient_reading_keeps_valid_spans_strict_reading_refuses():
    config = parse_label_config(NER_CONFIG)
    text = "john smith was in paris"
    task = {
        "id": 1,
        "data": {"text": text},
        "annotations": [
            {
                "id": 1,
                "result": [span(0, 10, "PER", text), span(18, 23, "ORG", text), span(5, 14, "LOC", text)],
            }
        ],
    }
    example = task_to_example(task, config, lenient=True)
    assert example.tags == ["B-PER", "I-PER", "O", "O", "O"]
    assert example.meta["skipped"] == {"unknown_label": 1, "overlapping_span": 1}
    only_unknown = {
        "id": 2,
        "data": {"text": text},
        "annotations": [{"id": 2, "result": [span(18, 23, "ORG", text)]}],
    }
    assert not task_to_example(only_unknown, config, lenient=True).is_labeled  # not "no entities"
    with pytest.raises(Exception, match="'ORG' is not in the label config"):
        task_to_example(task, config)


# --- item 6: /setup refusals --------------------------------------------------------------------


def test_setup_refusals_are_logged_and_two_texts_are_refused(tmp_path, caplog):
    client = create_app(backend_settings(None, tmp_path / "s", tmp_path / "m")).test_client()
    image = CLS_CONFIG.replace("<View>", '<View><Image name="photo" value="$photo"/>')
    two_texts = CLS_CONFIG.replace("<View>", '<View><Text name="title" value="$title"/>')
    with caplog.at_level(logging.WARNING, logger="ml_backend.web.backend"):
        for config in (image, two_texts, image):
            answer = client.post("/setup", json={"project": "3.1", "schema": config})
            assert answer.status_code == 400
    two = client.post("/setup", json={"project": "3.1", "schema": two_texts}).json["error"]
    assert "several <Text> objects (title, text)" in two
    logged = [r.getMessage() for r in caplog.records if r.name == "ml_backend.web.backend"]
    assert len(logged) == 2  # once per project and reason, not on every /setup
    assert any("<Image>" in m for m in logged) and any("<Text> objects" in m for m in logged)


# --- item 8: a wrong API key --------------------------------------------------------------------


def test_a_wrong_api_key_is_named_at_connect_and_a_failed_retrain_logs_once(fake_ls, tmp_path, caplog):
    fake, url = fake_ls
    fake.add_project(1)
    settings = backend_settings(url, tmp_path / "s", tmp_path / "m", label_studio_api_key="wrong-key-123")
    with caplog.at_level(logging.INFO):
        app = create_app(settings)
        backend = app.extensions["al_backend"]
        backend.key_check.check()  # what the start and the first /setup run in the background
        backend.retrainer.request("1", force=True)
        assert backend.runner.join(timeout=60)
    status = app.test_client().get("/status/1").json["projects"]["1"]
    (key,) = [w for w in status["warnings"] if w["code"] == "api_key"]
    assert "LABEL_STUDIO_API_KEY" in key["message"] and "401" in key["message"]
    assert "LABEL_STUDIO_API_KEY" in status["last_error"]
    refused = [r for r in caplog.records if "refuses LABEL_STUDIO_API_KEY" in r.getMessage()]
    assert len(refused) == 1 and refused[0].levelno == logging.WARNING
    failures = [r for r in caplog.records if "failed" in r.getMessage() and r.levelno >= logging.ERROR]
    assert len(failures) == 1 and failures[0].exc_info is None  # one line, no traceback
    assert "wrong-key-123" not in caplog.text


def test_a_good_key_gives_no_warning(fake_ls, tmp_path):
    fake, url = fake_ls
    backend = create_app(backend_settings(url, tmp_path / "s", tmp_path / "m")).extensions["al_backend"]
    assert backend.key_check.check() is None and backend.key_check.warning() is None


# --- item 9: disagreeing annotations ------------------------------------------------------------


def test_disagreements_ground_truth_then_majority_then_newest(fake_ls, tmp_path, tiny_model_dir):
    fake, url = fake_ls
    fake.add_project(1)
    ids = fake.add_tasks(1, TEXTS[:12])
    # task 0: two say Negative, one (edited last) says Positive: the majority wins
    fake.choose(ids[0], "Negative")
    fake.choose(ids[0], "Negative")
    fake.choose(ids[0], "Positive", updated_at="2099-01-01T00:00:00Z")
    # task 1: the ground truth wins over a majority
    fake.choose(ids[1], "Negative")
    fake.choose(ids[1], "Negative")
    fake.choose(ids[1], "Positive", ground_truth=True)
    # task 2: a tie; the newest wins and the tie is counted
    fake.choose(ids[2], "Negative", updated_at="2099-01-01T00:00:00Z")
    fake.choose(ids[2], "Positive")
    fake.choose(ids[3], "Positive")
    summary = run_retrain(1, settings_for(url, tmp_path, tiny_model_dir), MemoryState())
    assert summary["ties"] == 1
    assert summary["label_counts"] == {"Positive": 2, "Negative": 2}


def test_choose_annotation_rule():
    from al_core.ls_format import choose_annotation

    config = parse_label_config(CLS_CONFIG)

    def ann(i, label, **fields):
        region = {
            "from_name": "sentiment",
            "to_name": "text",
            "type": "choices",
            "value": {"choices": [label]},
        }
        return {"id": i, "result": [region], "updated_at": f"2026-01-0{i}", **fields}

    def label(*annotations):
        task = {"id": 1, "data": {"text": "x"}, "annotations": list(annotations)}
        choice = choose_annotation(task, config)
        return task_to_example(task, config).label, choice.rule, choice.tie

    assert label(ann(1, "Negative"), ann(2, "Negative"), ann(3, "Positive")) == (
        "Negative",
        "majority",
        False,
    )
    assert label(ann(1, "Positive", ground_truth=True), ann(2, "Negative"), ann(3, "Negative")) == (
        "Positive",
        "ground_truth",
        False,
    )
    assert label(ann(1, "Positive"), ann(2, "Negative")) == ("Negative", "newest", True)
    assert label(ann(2, "Positive"), ann(1, "Negative", was_cancelled=True)) == ("Positive", "single", False)
    assert label(ann(1, "Positive"), ann(2, "Positive")) == ("Positive", "majority", False)


# --- item 10: one class labeled so far ----------------------------------------------------------


def test_one_class_only_is_warned_until_every_class_has_a_label(fake_ls, tmp_path, tiny_model_dir):
    fake, url = fake_ls
    ids = label_project(fake, 1, 12, ["Negative"] * 3)
    app = create_app(settings_for(url, tmp_path, tiny_model_dir))
    backend = app.extensions["al_backend"]
    client = app.test_client()
    backend.retrainer.request("1", force=True)
    assert backend.runner.join(timeout=120)
    status = client.get("/status/1").json["projects"]["1"]
    (single,) = [w for w in status["warnings"] if w["code"] == "single_class"]
    assert "'Negative'" in single["message"] and "'Positive'" in single["message"]
    fake.choose(ids[5], "Positive")
    backend.retrainer.request("1", force=True)
    assert backend.runner.join(timeout=120)
    status = client.get("/status/1").json["projects"]["1"]
    assert not [w for w in status["warnings"] if w["code"] in ("single_class", "missing_classes")]
    assert status["last_round"]["label_counts"] == {"Positive": 1, "Negative": 3}


def test_class_warnings():
    assert class_warnings({"A": 3, "B": 0, "C": 0})[0]["code"] == "single_class"
    assert class_warnings({"A": 3, "B": 1, "C": 0})[0]["code"] == "missing_classes"
    assert class_warnings({"A": 3, "B": 1}) == []


# --- item 7: the embedded state survives a restart (the process itself: test_embedded_restart.py) --


def test_the_embedded_state_survives_a_restart_and_an_interrupted_retrain_is_queued_again(
    tmp_path, monkeypatch
):
    from ml_backend.jobs.embedded_state import INTERRUPTED, FileState
    from ml_backend.jobs.queue import EmbeddedRunner
    from ml_backend.web.backend import Backend

    state = FileState(tmp_path)
    state.record_error("2", "unsupported label config: ...")
    state.note_event("1")
    assert state.claim_pending("1", ttl=60)
    state.start_run("1")  # the process stops here, during the retrain of project 1
    state.note_event("3")
    assert state.claim_pending("3", ttl=60)  # and project 3's retrain was still queued

    submitted = []
    monkeypatch.setattr(EmbeddedRunner, "submit_retrain", lambda self, project: submitted.append(project))
    backend = Backend(backend_settings(None, tmp_path, tmp_path / "model"))
    assert submitted == ["1", "3"]
    status = backend.status()["projects"]
    assert status["2"]["last_error"] == "unsupported label config: ..."
    assert status["1"]["last_error"] == INTERRUPTED and status["3"]["last_error"] is None
    assert status["1"]["pending_retrain"] and not status["1"]["running_retrain"]
    # stopped again before they ran: their queue died with the process, the next start queues them again
    Backend(backend_settings(None, tmp_path, tmp_path / "model"))
    assert submitted == ["1", "3", "1", "3"]


def test_chunks_label_studio_stored_before_refusing_a_deleted_task_are_not_sent_twice(fake_ls, tmp_path):
    fake, url = fake_ls
    fake.import_mode, fake.chunk_size = "memory_efficient", 2
    fake.add_project(1)
    ids = fake.add_tasks(1, ["a", "b", "c", "d", "e"])
    fake.delete_tasks([ids[3]])  # in the second chunk: the first is stored, then the 400
    report = PublishReport()
    created = LSGateway(backend_settings(url, tmp_path, "unused")).publish_predictions(
        1, "v1", [{"task": t, "result": [], "score": 0.5} for t in ids], report
    )
    assert sorted(p["task"] for p in fake.predictions_of("v1")) == [ids[0], ids[1], ids[2], ids[4]]
    assert created == report.created == report.sent == 4 and report.deleted == [ids[3]]


# --- a class with labels that the model does not learn -----------------------------------------


def test_unlearned_warnings_name_a_class_never_predicted_or_of_near_zero_recall():
    from ml_backend.campaign import project_warnings as pw

    counts = {"A": 40, "B": 6, "C": 3}
    # B has 6 labels and is predicted for none of 1000 scored tasks; C has too few labels to expect it
    (warned,) = pw.unlearned_warnings(counts, {"A": 1000, "B": 0, "C": 0}, 1000, None)
    assert warned["code"] == "unlearned_class" and warned["label"] == "B"
    assert "'B' has 6 labeled tasks" in warned["message"] and "0 of the 1000 unlabeled tasks" in warned["message"]
    # a share at the threshold is not warned; just below it is
    assert pw.unlearned_warnings(counts, {"A": 995, "B": 5, "C": 0}, 1000, None) == []
    assert len(pw.unlearned_warnings(counts, {"A": 996, "B": 4, "C": 0}, 1000, None)) == 1
    # the estimate's recall: below 0.1 with >= 10 labels is warned, a class with no example measured is not
    quality = {"per_label": {"A": {"recall": 0.05, "support": 8}, "C": {"recall": 0.0, "support": 0}}}
    (low,) = pw.unlearned_warnings({"A": 40, "C": 30}, None, None, quality)
    assert "'A' has 40 labeled tasks" in low["message"] and "recall is 0.05" in low["message"]
    assert pw.unlearned_warnings({"A": 9}, None, None, {"per_label": {"A": {"recall": 0.0, "support": 3}}}) == []
    # a class per task predicted for under a fifth of its share of the labels (10% of 200 labels, 1.9%
    # of the pool) is warned with both shares; at 2.0%, or with fewer than 10 labels, it is not
    counts = {"A": 180, "B": 20}
    (under,) = pw.unlearned_warnings(counts, {"A": 981, "B": 19}, 1000, None, "classification", 200)
    assert "'B' has 20 labeled tasks" in under["message"] and "1.9% of the 1000" in under["message"]
    assert "10% of the labeled tasks" in under["message"]
    assert pw.unlearned_warnings(counts, {"A": 980, "B": 20}, 1000, None, "classification", 200) == []
    assert pw.unlearned_warnings({"A": 91, "B": 9}, {"A": 995, "B": 5}, 1000, None, "classification", 100) == []
    # spans are counted per mention, not per task: no share rule for NER
    assert pw.unlearned_warnings({"PER": 180, "LOC": 20}, {"PER": 981, "LOC": 19}, 1000, None, "tagging", 200) == []
    assert [w["code"] for w in pw.round_warnings(
        {"kind": "classification", "label_counts": counts, "predicted_counts": {"A": 990, "B": 10},
         "n_predicted": 1000, "n_labeled": 200}
    )] == ["unlearned_class"]
    # a summary written before the counts and the per-class estimate: no such warning
    assert pw.round_warnings({"kind": "classification", "label_counts": {"A": 40, "B": 6}, "quality": {"metric": "accuracy", "value": 0.9}}) == []
    assert [w["code"] for w in pw.round_warnings(
        {"kind": "tagging", "label_counts": {"PER": 12}, "predicted_counts": {"PER": 0}, "n_predicted": 50}
    )] == ["unlearned_class"]


def test_a_class_the_model_never_predicts_is_named_on_status_and_the_page(
    fake_ls, tmp_path, tiny_model_dir, monkeypatch
):
    from al_core.kinds.classification import Classification

    fake, url = fake_ls
    label_project(fake, 1, 40, ["Positive", "Negative", "Neutral"] * 5, THREE_CLASSES)
    real_decode = Classification.decode

    def never_neutral(self, probs, labels):  # a model that has not learned Neutral
        return real_decode(self, [0.0 if label == "Neutral" else p for label, p in zip(labels, probs)], labels)

    monkeypatch.setattr(Classification, "decode", never_neutral)
    app = create_app(settings_for(url, tmp_path, tiny_model_dir, acquisition_mode="frozen"))
    backend = app.extensions["al_backend"]
    client = app.test_client()
    backend.retrainer.request("1", force=True)
    assert backend.runner.join(timeout=120)
    status = client.get("/status/1").json["projects"]["1"]
    last = status["last_round"]
    assert last["n_predicted"] == last["n_pool"] == 25  # a frozen head scores the whole pool
    assert last["predicted_counts"]["Neutral"] == 0
    assert sum(last["predicted_counts"].values()) == 25
    (warned,) = [w for w in status["warnings"] if w["code"] == "unlearned_class"]
    assert "'Neutral' has 5 labeled tasks" in warned["message"]
    from html import unescape

    page = unescape(client.get("/campaign/1").get_data(as_text=True))
    assert "'Neutral' has 5 labeled tasks" in page and 'id="class-quality"' in page
