"""The fake Label Studio (testkit.fake_label_studio) answers as Label Studio 1.23.2 does."""

from __future__ import annotations

import json

import httpx

from testkit.fake_label_studio import (
    TOKEN,
    annotation_updated_webhook,
    annotation_webhook,
    annotations_deleted_webhook,
    tasks_created_webhook,
    tasks_deleted_webhook,
)

AUTH = {"Authorization": f"Token {TOKEN}"}


def get(url, path, **params):
    return httpx.get(f"{url}{path}", params=params, headers=AUTH, timeout=10)


def delete(url, **kwargs):
    """DELETE with a JSON body, as the SDK sends a model-versions delete."""
    return httpx.request("DELETE", url, headers=AUTH, timeout=10, **kwargs)


def since_query(value: str) -> str:
    item = {"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime", "value": value}
    return json.dumps({"filters": {"conjunction": "and", "items": [item]}})


def predict(task_id, version, score):
    region = {
        "from_name": "sentiment",
        "to_name": "text",
        "type": "choices",
        "value": {"choices": ["Positive"]},
    }
    return {"task": task_id, "model_version": version, "score": score, "result": [region]}


def import_predictions(url, project_id, items):
    answer = httpx.post(
        f"{url}/api/projects/{project_id}/import/predictions", json=items, headers=AUTH, timeout=10
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["created"]


def test_project_counts_annotations_and_skips(fake_ls):
    fake, url = fake_ls
    fake.add_project(1)
    ids = fake.add_tasks(1, ["a", "b", "c"])
    fake.choose(ids[0], "Positive")
    fake.choose(ids[0], "Negative")
    fake.annotate(ids[1], [], was_cancelled=True)
    project = get(url, "/api/projects/1/").json()
    assert (
        project["task_number"],
        project["total_annotations_number"],
        project["skipped_annotations_number"],
    ) == (
        3,
        2,
        1,
    )
    fake.delete_annotation(1)
    assert get(url, "/api/projects/1/").json()["total_annotations_number"] == 1


def test_tasks_are_listed_without_annotations_unless_all_fields_are_asked(fake_ls):
    fake, url = fake_ls
    fake.add_project(1)
    ids = fake.add_tasks(1, ["a", "b"])
    fake.choose(ids[0], "Positive")
    fake.annotate(ids[0], [], was_cancelled=True)
    import_predictions(url, 1, [predict(ids[0], "v1", 0.5)])

    (short, _) = get(url, "/api/tasks/", project=1).json()["tasks"]
    assert "annotations" not in short and "predictions" not in short
    assert {k: short[k] for k in ("id", "project", "total_annotations", "cancelled_annotations")} == {
        "id": ids[0],
        "project": 1,
        "total_annotations": 1,
        "cancelled_annotations": 1,
    }
    assert short["total_predictions"] == 1 and short["data"] == {"text": "a"}
    assert short["created_at"] < short["updated_at"]

    (full, _) = get(url, "/api/tasks/", project=1, fields="all").json()["tasks"]
    assert len(full["annotations"]) == 2 and [p["model_version"] for p in full["predictions"]] == ["v1"]
    assert get(url, "/api/tasks/", project=1, page=2, page_size=2).status_code == 404


def test_updated_at_moves_with_annotations_but_not_with_predictions(fake_ls):
    fake, url = fake_ls
    fake.add_project(1)
    ids = fake.add_tasks(1, ["a", "b", "c"])
    stamp = fake.tasks[ids[2]]["updated_at"]

    def changed():
        answer = get(url, "/api/tasks/", project=1, query=since_query(stamp))
        assert answer.status_code == 200, answer.text
        return [t["id"] for t in answer.json()["tasks"]]

    assert changed() == []
    import_predictions(url, 1, [predict(i, "v1", 0.1) for i in ids])
    delete(f"{url}/api/projects/1/model-versions/", json={"model_version": "v1"})
    assert changed() == []
    annotation_id = fake.choose(ids[1], "Positive")
    assert changed() == [ids[1]]
    stamp = fake.tasks[ids[1]]["updated_at"]
    fake.update_annotation(annotation_id, ground_truth=True)
    assert changed() == [ids[1]] and fake.tasks[ids[1]]["annotations"][0]["ground_truth"] is True
    stamp = fake.tasks[ids[1]]["updated_at"]
    fake.delete_annotation(annotation_id)
    assert changed() == [ids[1]] and fake.tasks[ids[1]]["annotations"] == []


def test_a_task_query_without_filters_or_with_a_bad_date(fake_ls):
    fake, url = fake_ls
    fake.add_project(1)
    fake.add_tasks(1, ["a", "b"])
    assert get(url, "/api/tasks/", project=1, query=json.dumps({"ordering": ["id"]})).json()["total"] == 2
    assert (
        get(url, "/api/tasks/", project=1, query=since_query("2000-01-01T00:00:00.000000Z")).json()["total"]
        == 2
    )
    bad = get(url, "/api/tasks/", project=1, query=since_query("2026-12-01T10:00:00Z"))
    assert bad.status_code == 400 and bad.json()["validation_errors"]


def test_export_of_annotated_tasks_or_of_ids(fake_ls):
    fake, url = fake_ls
    fake.add_project(1)
    fake.add_project(2)
    ids = fake.add_tasks(1, ["a", "b", "c", "d"])
    (other,) = fake.add_tasks(2, ["e"])
    fake.choose(ids[0], "Positive")
    fake.annotate(ids[1], [], was_cancelled=True)
    import_predictions(url, 1, [predict(ids[0], "v1", 0.2), predict(ids[2], "v1", 0.3)])
    prediction_ids = [p["id"] for p in fake.predictions]

    annotated = get(url, "/api/projects/1/export", exportType="JSON").json()
    assert [t["id"] for t in annotated] == ids[:2]
    assert annotated[0]["annotations"][0]["result"][0]["value"] == {"choices": ["Positive"]}
    assert annotated[0]["predictions"] == prediction_ids[:1] and annotated[0]["drafts"] == []
    assert set(annotated[0]) >= {"id", "data", "project", "created_at", "updated_at"}

    everything = get(url, "/api/projects/1/export", exportType="JSON", download_all_tasks="true").json()
    assert [t["id"] for t in everything] == ids
    chosen = get(
        url,
        "/api/projects/1/export",
        exportType="JSON",
        download_all_tasks="true",
        **{"ids[]": [ids[2], other]},
    ).json()
    assert [(t["id"], t["predictions"]) for t in chosen] == [(ids[2], prediction_ids[1:])]
    assert fake.count("GET", "/api/projects/1/export") == 3


def test_model_versions_are_counted_and_deleted_in_bulk(fake_ls):
    fake, url = fake_ls
    fake.add_project(1)
    fake.add_project(2)
    ids = fake.add_tasks(1, ["a", "b", "c"])
    (other,) = fake.add_tasks(2, ["d"])
    import_predictions(url, 1, [predict(i, "v1", 0.1) for i in ids] + [predict(ids[0], "v2", 0.1)])
    import_predictions(url, 2, [predict(other, "v1", 0.1)])
    assert get(url, "/api/projects/1/model-versions/").json() == {"v1": 3, "v2": 1}

    versions = f"{url}/api/projects/1/model-versions/"
    fake.projects[1]["model_version"] = "v2"
    answer = delete(versions, json={"model_version": "v1"})
    assert answer.status_code == 200 and answer.json() == {"deleted_predictions": 3}
    assert get(url, "/api/projects/1/model-versions/").json() == {"v2": 1}
    assert [p["task"] for p in fake.predictions_of("v1")] == [other]  # project 2 keeps its own
    assert [p["model_version"] for p in fake.tasks[ids[0]]["predictions"]] == ["v2"]
    assert fake.projects[1]["model_version"] == "v2"

    answer = delete(versions, json={"model_version": "v2"})
    assert answer.json() == {"deleted_predictions": 1} and fake.projects[1]["model_version"] is None
    assert delete(versions, json={}).status_code == 400


def test_deleting_any_version_clears_a_backend_title(fake_ls):
    fake, url = fake_ls
    fake.add_project(1)
    assert fake.projects[1]["model_version"] == "backend-title"
    answer = delete(f"{url}/api/projects/1/model-versions/", json={"model_version": "old"})
    assert answer.json() == {"deleted_predictions": 0} and fake.projects[1]["model_version"] is None


def test_next_task_is_the_lowest_score_of_the_current_version_then_random(fake_ls):
    fake, url = fake_ls
    fake.add_project(1)
    ids = fake.add_tasks(1, ["a", "b", "c", "d", "e"])
    import_predictions(
        url,
        1,
        [predict(ids[0], "v1", 0.05), predict(ids[1], "v1", 0.4), predict(ids[2], "v1", 0.2)]
        + [predict(ids[3], "v1", 0.2), predict(ids[4], "v0", 0.01)],
    )
    fake.projects[1]["model_version"] = "v1"
    fake.choose(ids[0], "Positive")  # annotated: never served

    served = get(url, "/api/projects/1/next").json()
    assert (served["id"], served["queue"]) == (ids[2], "uncertainty")  # 0.2 twice: the lowest id
    assert served["annotations"] == [] and [p["score"] for p in served["predictions"]] == [0.2]
    assert fake.next_task(1) == served

    fake.projects[1]["model_version"] = "v9"  # no task holds a prediction of it
    assert (fake.next_task(1)["id"], fake.next_task(1)["queue"]) == (ids[1], "random")
    for task_id in ids[1:]:
        fake.choose(task_id, "Negative")
    assert fake.next_task(1) is None
    gone = get(url, "/api/projects/1/next")
    assert gone.status_code == 404 and "detail" in gone.json()


def test_webhook_bodies(fake_ls):
    fake, _ = fake_ls
    fake.add_project(3)
    (task_id,) = fake.add_tasks(3, ["a"])
    annotation_id = fake.choose(task_id, "Positive")
    annotation = fake.tasks[task_id]["annotations"][0]

    created = annotation_webhook(3, task_id)
    updated = annotation_updated_webhook(3, task_id, annotation)
    assert updated["action"] == "ANNOTATION_UPDATED" and updated["annotation"] == annotation
    assert {k: updated[k] for k in ("task", "project")} == {k: created[k] for k in ("task", "project")}
    assert annotations_deleted_webhook(3, [annotation_id]) == {
        "action": "ANNOTATIONS_DELETED",
        "annotations": [{"id": annotation_id}],
        "project": {"id": 3},
    }
    body = tasks_created_webhook(3, [fake.tasks[task_id]])
    assert body["action"] == "TASKS_CREATED" and body["tasks"][0]["data"] == {"text": "a"}
    assert tasks_deleted_webhook(3, [task_id]) == {
        "action": "TASKS_DELETED",
        "tasks": [{"id": task_id}],
        "project": {"id": 3},
    }


def test_a_fault_answers_every_call_quoting_its_headers(fake_ls):
    fake, url = fake_ls
    fake.add_project(1)
    fake.fail_with = 503
    answer = httpx.get(f"{url}/api/projects/1/", headers={"Authorization": "Token another-key"}, timeout=10)
    assert answer.status_code == 503 and answer.json()["headers"]["Authorization"] == "Token another-key"
    assert fake.calls == [("GET", "/api/projects/1/")]
    fake.fail_with = None
    assert get(url, "/api/projects/1/").status_code == 200
