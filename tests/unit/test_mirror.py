"""The backend's copy of a project's tasks follows Label Studio with reads proportional to what
changed (ml_backend/labelstudio/mirror.py), against the fake Label Studio."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ml_backend.labelstudio.gateway import LSGateway
from ml_backend.labelstudio.mirror import TaskMirror, sync
from testkit.fake_label_studio import CLS_CONFIG, TEXTS
from tests.helpers import backend_settings

CONFIG_HASH = "h1"


@pytest.fixture
def project(fake_ls, tmp_path):
    """(fake, gateway, mirror, task ids) for a project of 20 tasks, 3 of them labeled."""
    fake, url = fake_ls
    fake.add_project(1, CLS_CONFIG)
    ids = fake.add_tasks(1, TEXTS[:20])
    for task_id in ids[:3]:
        fake.choose(task_id, "Positive")
    gateway = LSGateway(backend_settings(url, tmp_path / "store", tmp_path))
    # no overlap: what the sync reads again is exactly what changed
    return fake, gateway, TaskMirror(tmp_path / "mirror.sqlite", overlap=timedelta(0)), ids


def labels(tasks) -> dict[int, list[str]]:
    """Task id -> the choices of its annotations."""
    return {
        t["id"]: [c for a in t["annotations"] for r in a["result"] for c in r["value"]["choices"]]
        for t in tasks
        if t["annotations"]
    }


def export_calls(fake) -> int:
    return fake.count("GET", "/api/projects/1/export")


def test_first_sync_reads_everything_then_an_unchanged_project_reads_no_task(project):
    fake, gateway, mirror, ids = project
    tasks, first = sync(mirror, gateway, 1, CONFIG_HASH)
    assert first.mode == "full" and first.reread == 20
    assert [t["id"] for t in tasks] == ids
    assert labels(tasks) == {i: ["Positive"] for i in ids[:3]}
    assert all("predictions" not in t for t in tasks)

    before = export_calls(fake)
    tasks, second = sync(mirror, gateway, 1, CONFIG_HASH)
    assert (second.mode, second.reread, second.removed) == ("incremental", 0, 0)
    assert labels(tasks) == {i: ["Positive"] for i in ids[:3]}
    assert export_calls(fake) == before


def test_the_mirror_follows_created_updated_and_deleted_annotations_and_tasks(project):
    fake, gateway, mirror, ids = project
    sync(mirror, gateway, 1, CONFIG_HASH)
    new = fake.add_tasks(1, ["a brand new text", "another new one"])
    mirror.mark(new)  # TASKS_CREATED
    annotation = fake.choose(ids[5], "Negative")
    mirror.mark([ids[5]])  # ANNOTATION_CREATED
    first_annotation = fake.tasks[ids[0]]["annotations"][0]["id"]
    fake.update_annotation(first_annotation, result=[_choice("Negative")])
    mirror.mark([ids[0]])  # ANNOTATION_UPDATED
    second_annotation = fake.tasks[ids[1]]["annotations"][0]["id"]
    fake.delete_annotation(second_annotation)
    mirror.mark_annotations([second_annotation])  # ANNOTATIONS_DELETED names the annotation only
    fake.delete_tasks([ids[19]])
    mirror.mark([ids[19]])  # TASKS_DELETED

    tasks, report = sync(mirror, gateway, 1, CONFIG_HASH)
    assert report.mode == "incremental", report.reason
    assert report.removed == 1
    assert {t["id"] for t in tasks} == (set(ids) - {ids[19]}) | set(new)
    assert labels(tasks) == {ids[0]: ["Negative"], ids[2]: ["Positive"], ids[5]: ["Negative"]}
    assert annotation


def test_an_annotation_without_its_webhook_is_found_by_its_updated_at(project):
    fake, gateway, mirror, ids = project
    sync(mirror, gateway, 1, CONFIG_HASH)
    fake.choose(ids[7], "Negative")  # the webhook never arrived
    tasks, report = sync(mirror, gateway, 1, CONFIG_HASH)
    assert (report.mode, report.reread) == ("incremental", 1)
    assert labels(tasks)[ids[7]] == ["Negative"]


def test_a_missed_task_deletion_is_repaired_by_a_full_read(project):
    fake, gateway, mirror, ids = project
    sync(mirror, gateway, 1, CONFIG_HASH)
    fake.delete_tasks([ids[10], ids[11]])  # no TASKS_DELETED: the counts differ
    tasks, report = sync(mirror, gateway, 1, CONFIG_HASH)
    assert report.mode == "full" and "counts differ" in report.reason
    assert {t["id"] for t in tasks} == set(ids) - {ids[10], ids[11]}


def test_a_new_label_config_and_an_unknown_deleted_annotation_mean_a_full_read(project):
    fake, gateway, mirror, ids = project
    sync(mirror, gateway, 1, CONFIG_HASH)
    _, report = sync(mirror, gateway, 1, "h2")
    assert report.mode == "full" and report.reason == "the label config changed"
    mirror.mark_annotations([987654])
    _, report = sync(mirror, gateway, 1, "h2")
    assert report.mode == "full" and "did not hold" in report.reason


def _choice(label: str) -> dict:
    return {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}


def test_the_overlap_reads_again_only_the_tasks_that_changed_since_they_were_read(fake_ls, tmp_path):
    """After an import every task shares the last sync's newest seconds: the overlap lists them all
    again, and only the one annotated since is read again."""
    fake, url = fake_ls
    fake.add_project(1, CLS_CONFIG)
    ids = fake.add_tasks(1, TEXTS[:20])
    gateway = LSGateway(backend_settings(url, tmp_path / "store", tmp_path))
    mirror = TaskMirror(tmp_path / "mirror.sqlite", overlap=timedelta(hours=1))
    sync(mirror, gateway, 1, CONFIG_HASH)
    fake.choose(ids[4], "Negative")
    assert len(gateway.changed_tasks(1, mirror.since())) == 20
    tasks, second = sync(mirror, gateway, 1, CONFIG_HASH)
    assert (second.mode, second.reread) == ("incremental", 1)
    assert labels(tasks) == {ids[4]: ["Negative"]}
